// Response (https://fetch.spec.whatwg.org/#response-class): a light class that records
// status, body and init at construction and builds Headers only when read, so the
// server can send the common cases without touching a header list.
import { BodyState, extractBody, type BodyInitLike, type BodySource } from "./body.js";
import { Headers, type HeadersInitLike } from "./headers.js";
import { CT_JSON, CT_NONE } from "./native.js";

const GlobalResponse = globalThis.Response;

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
  /** Content-type code for the fast path (CT_*), valid while `headers` and `init` are null. */
  ct: number;
  contentType: string | null;
  headers: Headers | null;
  init: HeadersInitLike | null;
}

const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);
// https://httpwg.org/specs/rfc9112.html#status.line: reason-phrase = *( HTAB / SP / VCHAR / obs-text )
const REASON_PHRASE = /^[\t\x20-\x7e\x80-\xff]*$/;

const FROM_STATE = Symbol("state");

/** @internal */
export let responseState: (r: Response) => ResponseState;
/** @internal A brand check: is `v` one of ours (not merely `instanceof`)? */
export let isOwnResponse: (v: unknown) => v is Response;
let fromState: (s: ResponseState) => Response;

// https://fetch.spec.whatwg.org/#initialize-a-response
function checkInit(init: ResponseInitLike | undefined): [number, string] {
  if (init === undefined || init === null) return [200, ""];
  if (typeof init !== "object") throw new TypeError("Response init must be an object");
  const status = init.status === undefined ? 200 : Number(init.status);
  if (!Number.isInteger(status) || status < 200 || status > 599)
    throw new RangeError(`Response status must be an integer between 200 and 599, got ${init.status}`);
  const statusText = init.statusText === undefined ? "" : String(init.statusText);
  if (!REASON_PHRASE.test(statusText)) throw new TypeError(`Invalid statusText: ${JSON.stringify(statusText)}`);
  return [status, statusText];
}

function makeState(status: number, statusText: string, ex: { source: BodySource; type: string | null; ct: number }, init: HeadersInitLike | null): ResponseState {
  return {
    status,
    statusText,
    type: "default",
    url: "",
    redirected: false,
    source: ex.source,
    body: null,
    ct: init === null ? ex.ct : CT_NONE,
    contentType: ex.type,
    headers: null,
    init,
  };
}

export class Response {
  #s: ResponseState;

  constructor(body?: BodyInitLike, init?: ResponseInitLike) {
    if ((body as unknown) === FROM_STATE) {
      this.#s = init as unknown as ResponseState;
      return;
    }
    const [status, statusText] = checkInit(init);
    const ex = extractBody(body);
    if (ex.source !== null && NULL_BODY_STATUS.has(status))
      throw new TypeError(`Response with status ${status} cannot have a body`);
    const hinit = init?.headers ?? null;
    this.#s = makeState(status, statusText, ex, hinit);
    // A header list given as a Headers is validated now, as the standard does; a
    // record or pair list is validated when the headers are built.
    if (hinit !== null && typeof hinit !== "object") throw new TypeError("headers must be an object");
  }

  static {
    responseState = (r) => r.#s;
    isOwnResponse = (v): v is Response => typeof v === "object" && v !== null && #s in v;
    fromState = (s) => new Response(FROM_STATE as unknown as string, s as unknown as ResponseInitLike);
  }

  // https://fetch.spec.whatwg.org/#dom-response-json
  static json(data: unknown, init?: ResponseInitLike): Response {
    const text = JSON.stringify(data);
    if (text === undefined) throw new TypeError("Response.json: the value is not JSON serializable");
    const [status, statusText] = checkInit(init);
    if (NULL_BODY_STATUS.has(status)) throw new TypeError(`Response with status ${status} cannot have a body`);
    const hinit = init?.headers ?? null;
    const s = makeState(status, statusText, { source: text, type: "application/json", ct: CT_JSON }, hinit);
    return fromState(s);
  }

  // https://fetch.spec.whatwg.org/#dom-response-redirect
  static redirect(url: string | URL, status = 302): Response {
    let parsed: URL;
    try {
      parsed = new URL(String(url));
    } catch {
      throw new TypeError(`Response.redirect: invalid URL ${JSON.stringify(String(url))}`);
    }
    if (!REDIRECT_STATUS.has(status)) throw new RangeError(`Response.redirect: ${status} is not a redirect status`);
    const s = makeState(status, "", { source: null, type: null, ct: CT_NONE }, null);
    s.headers = Headers.freeze(new Headers([["location", parsed.href]]));
    return fromState(s);
  }

  // https://fetch.spec.whatwg.org/#dom-response-error
  static error(): Response {
    const s = makeState(0, "", { source: null, type: null, ct: CT_NONE }, null);
    s.type = "error";
    s.headers = Headers.freeze(new Headers());
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

  get body(): ReadableStream<Uint8Array> | null {
    return bodyOf(this.#s).stream();
  }

  get bodyUsed(): boolean {
    const s = this.#s;
    return s.body !== null && s.body.disturbed;
  }

  arrayBuffer(): Promise<ArrayBuffer> {
    return bodyOf(this.#s).arrayBuffer();
  }

  bytes(): Promise<Uint8Array> {
    return bodyOf(this.#s).bytes();
  }

  text(): Promise<string> {
    return bodyOf(this.#s).text();
  }

  json(): Promise<unknown> {
    return bodyOf(this.#s).json();
  }

  blob(): Promise<Blob> {
    return bodyOf(this.#s).blob(materializeHeaders(this.#s).get("content-type"));
  }

  formData(): Promise<FormData> {
    return bodyOf(this.#s).formData(materializeHeaders(this.#s).get("content-type"));
  }

  // https://fetch.spec.whatwg.org/#dom-response-clone
  clone(): Response {
    const s = this.#s;
    if (s.body !== null && s.body.disturbed) throw new TypeError("Cannot clone a Response whose body was used");
    const headers = new Headers(materializeHeaders(s));
    const copy: ResponseState = { ...s, headers: s.type === "error" ? Headers.freeze(headers) : headers, init: null, ct: CT_NONE, body: null };
    if (s.body !== null || s.source instanceof ReadableStream) copy.body = bodyOf(s).clone();
    return fromState(copy);
  }

  get [Symbol.toStringTag](): string {
    return "Response";
  }

  static [Symbol.hasInstance](v: unknown): boolean {
    return (
      isOwnResponse(v) ||
      (GlobalResponse !== undefined && v instanceof GlobalResponse)
    );
  }
}

if (GlobalResponse !== undefined) Object.setPrototypeOf(Response.prototype, GlobalResponse.prototype);

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
    const h = s.init === null ? new Headers() : new Headers(s.init);
    if (s.contentType !== null && !h.has("content-type")) h.append("content-type", s.contentType);
    s.headers = h;
    s.init = null;
    s.ct = CT_NONE;
  }
  return s.headers;
}

/** @internal The current body source of a response to send, or throws if it was used. */
export function takeBodySource(s: ResponseState): BodySource {
  if (s.body === null) return s.source;
  if (s.body.disturbed) throw new TypeError("The response body was already used");
  s.body.used = true;
  return s.body.source;
}
