// Response (https://fetch.spec.whatwg.org/#response-class): a light class that records
// status and body at construction and builds Headers only when read or when init gave
// some, so the server can send the common cases without touching a header list.
import { BodyState, extractBody, TEXT_TYPE, type BodyInitLike, type BodySource } from "./body.js";
import { cloneHeaders, freezeHeaders, Headers, type HeadersInitLike } from "./headers.js";
import { CT_JSON, CT_NONE, CT_TEXT } from "./native.js";
import { isNodeInstance, linkPrototype, looksLikeResponse } from "./node-classes.js";
import { brandRejection, defineInterface, requireArgs } from "./webidl.js";

export interface ResponseInitLike {
  status?: number;
  statusText?: string;
  headers?: HeadersInitLike;
}

/** @internal What the server reads to send a Response. */
export interface ResponseState {
  status: number;
  statusText: string;
  type: "default" | "basic" | "error" | "opaque" | "opaqueredirect" | "cors";
  url: string;
  redirected: boolean;
  /** The body before anyone read it; moved into `body` on first use. */
  source: BodySource;
  body: BodyState | null;
  /** Content-type code for the fast path (CT_*), valid while `headers` is null. */
  ct: number;
  contentType: string | null;
  headers: Headers | null;
}

// https://fetch.spec.whatwg.org/#null-body-status (101 and 103 are also null-body
// statuses, but a constructed Response cannot have them: they are below 200).
function isNullBodyStatus(status: number): boolean {
  return status === 204 || status === 205 || status === 304;
}
// https://fetch.spec.whatwg.org/#redirect-status
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);
// https://fetch.spec.whatwg.org/#concept-response-status-message: RFC 9112's
// reason-phrase = *( HTAB / SP / VCHAR / obs-text )
const REASON_PHRASE = /^[\t\x20-\x7e\x80-\xff]*$/;
// WebIDL ByteString: no code unit above 0xFF.
const NOT_BYTESTRING = /[^\x00-\xff]/;

const FROM_STATE = Symbol("state");

/** @internal */
export let responseState: (r: Response) => ResponseState;
/** @internal A brand check: is `v` one of ours (not merely `instanceof`)? */
export let isOwnResponse: (v: unknown) => v is Response;
let fromState: (s: ResponseState) => Response;

// WebIDL `unsigned short`: ToNumber, truncate, modulo 2^16 (so 200.5 is 200).
function toUint16(v: unknown): number {
  if (typeof v === "number" && (v & 0xffff) === v) return v;
  const n = Number(v);
  if (!Number.isFinite(n)) return 0;
  const t = Math.trunc(n) % 65536;
  return t < 0 ? t + 65536 : t;
}

// What readInit found, in module variables rather than a tuple so the constructor
// allocates nothing for them (there is no user code between the write and the read).
let initStatus = 200;
let initStatusText = "";
let initHeaders: HeadersInitLike | undefined;

// https://fetch.spec.whatwg.org/#initialize-a-response, steps 1-2, after WebIDL has read
// the ResponseInit members (headers, status, statusText) once each, in that order.
function readInit(init: ResponseInitLike | null | undefined): void {
  if (init === undefined || init === null) {
    initStatus = 200;
    initStatusText = "";
    initHeaders = undefined;
    return;
  }
  if (typeof init !== "object" && typeof init !== "function") throw new TypeError("Response init must be an object");
  const headers = init.headers;
  const rawStatus = init.status;
  const rawText = init.statusText;
  const status = rawStatus === undefined ? 200 : toUint16(rawStatus);
  const statusText = rawText === undefined ? "" : typeof rawText === "string" ? rawText : `${rawText as string}`;
  // ByteString conversion comes before the status check.
  if (statusText !== "" && NOT_BYTESTRING.test(statusText))
    throw new TypeError(`Invalid statusText: ${JSON.stringify(statusText)} is not a ByteString`);
  if (status < 200 || status > 599)
    throw new RangeError(`Response status must be between 200 and 599, got ${String(rawStatus)}`);
  if (statusText !== "" && !REASON_PHRASE.test(statusText))
    throw new TypeError(`Invalid statusText: ${JSON.stringify(statusText)}`);
  initStatus = status;
  initStatusText = statusText;
  initHeaders = headers;
}

function makeState(
  status: number,
  statusText: string,
  source: BodySource,
  type: string | null,
  ct: number,
  headers: Headers | null,
): ResponseState {
  return {
    status,
    statusText,
    type: "default",
    url: "",
    redirected: false,
    source,
    body: null,
    ct: headers === null ? ct : CT_NONE,
    contentType: type,
    headers,
  };
}

// Steps 3-6 of "initialize a response": init's headers, then the body's type unless
// they name one. Null when init gave no headers, so the fast path keeps its code.
function buildHeaders(hinit: HeadersInitLike | undefined, type: string | null): Headers | null {
  if (hinit === undefined) return null;
  const h = new Headers(hinit);
  if (type !== null && !h.has("content-type")) h.append("content-type", type);
  return h;
}

// https://fetch.spec.whatwg.org/#dom-response: the constructor's steps, as the state of
// the new Response.
function constructState(body: BodyInitLike | undefined, init: ResponseInitLike | undefined): ResponseState {
  let source: BodySource;
  let type: string | null;
  let ct: number;
  // The two common bodies first, without an Extracted object.
  if (typeof body === "string") {
    source = body;
    type = TEXT_TYPE;
    ct = CT_TEXT;
  } else if (body === undefined || body === null) {
    source = null;
    type = null;
    ct = CT_NONE;
  } else if (body instanceof Uint8Array) {
    source = body;
    type = null;
    ct = CT_NONE;
  } else {
    const ex = extractBody(body);
    source = ex.source;
    type = ex.type;
    ct = ex.ct;
  }
  if (init === undefined) return makeState(200, "", source, type, ct, null);
  readInit(init);
  const status = initStatus;
  const statusText = initStatusText;
  const headers = buildHeaders(initHeaders, type);
  if (source !== null && isNullBodyStatus(status))
    throw new TypeError(`Response with status ${status} cannot have a body`);
  return makeState(status, statusText, source, type, ct, headers);
}

// Response.json()'s steps 3-4 with an init: the state of the response for `text`.
function jsonState(text: string, init: ResponseInitLike): ResponseState {
  readInit(init);
  const status = initStatus;
  const statusText = initStatusText;
  const headers = buildHeaders(initHeaders, "application/json");
  if (isNullBodyStatus(status)) throw new TypeError(`Response with status ${status} cannot have a body`);
  return makeState(status, statusText, text, "application/json", CT_JSON, headers);
}

export class Response {
  #s: ResponseState;

  // https://fetch.spec.whatwg.org/#dom-response
  constructor(body?: BodyInitLike, init?: ResponseInitLike) {
    // The steps are a function of their own so that this stays small enough for V8 to
    // inline where Response.json() and the other factories make their responses.
    this.#s = (body as unknown) === FROM_STATE ? (init as unknown as ResponseState) : constructState(body, init);
  }

  static {
    responseState = (r) => r.#s;
    isOwnResponse = (v): v is Response => typeof v === "object" && v !== null && #s in v;
    fromState = (s) => new Response(FROM_STATE as unknown as string, s as unknown as ResponseInitLike);
  }

  // https://fetch.spec.whatwg.org/#dom-response-json. Kept short (init is read in
  // jsonState) so that V8 inlines it, and the constructor, into a handler that calls it.
  static json(data: unknown, init?: ResponseInitLike): Response {
    if (arguments.length === 0) requireArgs(0, 1, "Response.json");
    const text = JSON.stringify(data);
    if (text === undefined) throw new TypeError("Response.json: the value is not JSON serializable");
    if (init === undefined) return fromState(makeState(200, "", text, "application/json", CT_JSON, null));
    return fromState(jsonState(text, init));
  }

  // https://fetch.spec.whatwg.org/#dom-response-redirect
  static redirect(url: string | URL, status: number = 302): Response {
    if (arguments.length === 0) throw new TypeError("Response.redirect: 1 argument required, but only 0 present");
    const input = typeof url === "string" ? url : `${url as unknown as string}`;
    let parsed: URL;
    try {
      // No base URL on a server: a relative Location must be set by hand.
      parsed = new URL(input);
    } catch {
      throw new TypeError(`Response.redirect: ${JSON.stringify(input)} is not an absolute URL`);
    }
    const code = toUint16(status);
    if (!REDIRECT_STATUS.has(code))
      throw new RangeError(`Response.redirect: ${String(status)} is not a redirect status`);
    const s = makeState(code, "", null, null, CT_NONE, freezeHeaders(new Headers([["location", parsed.href]])));
    return fromState(s);
  }

  // https://fetch.spec.whatwg.org/#dom-response-error
  static error(): Response {
    const s = makeState(0, "", null, null, CT_NONE, freezeHeaders(new Headers()));
    s.type = "error";
    return fromState(s);
  }

  get status(): number {
    return this.#s.status;
  }

  get ok(): boolean {
    return this.#s.status >= 200 && this.#s.status <= 299;
  }

  get statusText(): string {
    return this.#s.statusText;
  }

  get type(): string {
    return this.#s.type;
  }

  get url(): string {
    return this.#s.url;
  }

  get redirected(): boolean {
    return this.#s.redirected;
  }

  get headers(): Headers {
    return materializeHeaders(this.#s);
  }

  // https://fetch.spec.whatwg.org/#dom-body-body
  get body(): ReadableStream<Uint8Array> | null {
    return bodyOf(this.#s).stream();
  }

  // https://fetch.spec.whatwg.org/#dom-body-bodyused
  get bodyUsed(): boolean {
    const s = this.#s;
    return s.body !== null && s.body.disturbed;
  }

  arrayBuffer(): Promise<ArrayBuffer> {
    if (!(#s in this)) return brandRejection("Response", "arrayBuffer");
    return bodyOf(this.#s).arrayBuffer();
  }

  bytes(): Promise<Uint8Array> {
    if (!(#s in this)) return brandRejection("Response", "bytes");
    return bodyOf(this.#s).bytes();
  }

  text(): Promise<string> {
    if (!(#s in this)) return brandRejection("Response", "text");
    return bodyOf(this.#s).text();
  }

  json(): Promise<unknown> {
    if (!(#s in this)) return brandRejection("Response", "json");
    return bodyOf(this.#s).json();
  }

  blob(): Promise<Blob> {
    if (!(#s in this)) return brandRejection("Response", "blob");
    return bodyOf(this.#s).blob(materializeHeaders(this.#s).get("content-type"));
  }

  formData(): Promise<FormData> {
    if (!(#s in this)) return brandRejection("Response", "formData");
    return bodyOf(this.#s).formData(materializeHeaders(this.#s).get("content-type"));
  }

  // https://fetch.spec.whatwg.org/#dom-response-clone
  clone(): Response {
    const s = this.#s;
    if (s.body !== null && s.body.unusable) throw new TypeError("Cannot clone a Response whose body was already used");
    if (s.body === null && s.source instanceof ReadableStream && s.source.locked)
      throw new TypeError("Cannot clone a Response whose body stream is locked");
    const copy: ResponseState = { ...s, headers: cloneHeaders(materializeHeaders(s)), ct: CT_NONE, body: null };
    // A stream is teed; any other body is immutable and shared.
    if (s.body !== null || s.source instanceof ReadableStream) copy.body = bodyOf(s).clone();
    return fromState(copy);
  }

  static [Symbol.hasInstance](v: unknown): boolean {
    return isOwnResponse(v) || isNodeInstance("Response", v, looksLikeResponse);
  }
}

defineInterface(Response, "Response", 0, {}, { json: 1 });
linkPrototype("Response", Response.prototype);

function bodyOf(s: ResponseState): BodyState {
  if (s.body === null) {
    s.body = new BodyState(s.source);
    s.source = null;
  }
  return s.body;
}

/** @internal Builds the Headers of a response on first read. */
export function materializeHeaders(s: ResponseState): Headers {
  if (s.headers === null) {
    const h = new Headers();
    if (s.contentType !== null) h.append("content-type", s.contentType);
    s.headers = h;
    s.ct = CT_NONE;
  }
  return s.headers;
}

/** @internal The current body source of a response to send, or throws if it was used. */
export function takeBodySource(s: ResponseState): BodySource {
  if (s.body === null) {
    const src = s.source;
    if (typeof src !== "object" || src === null || !(src instanceof ReadableStream)) return src;
    // A stream given to the constructor: still a stream of ours over bytes in memory
    // (`new Response(res.body, res)`) is sent as those bytes.
    s.body = new BodyState(src);
    s.source = null;
  }
  if (s.body.unusable) throw new TypeError("The response body is locked or was already used");
  return s.body.take();
}
