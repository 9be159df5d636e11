// Request (https://fetch.spec.whatwg.org/#request-class). An incoming request is lazy:
// method from a table, url and packed headers as they came with the request's record
// (headers looked up in place, split when iterated), body read natively on demand, signal
// created on first access.
import { BodyState, extractBody, isStreamSource, type BodyInitLike, type BodySource, type NativeBody } from "./body.js";
import { cloneHeaders, Headers, headersFromPacked, type HeadersInitLike } from "./headers.js";
import { TOKEN } from "./mime-type.js";
import { FLAG_HAS_BODY, METHOD_MASK, METHODS } from "./native.js";
import { isNodeInstance, linkPrototype, looksLikeRequest } from "./node-classes.js";
import { brandRejection, defineInterface } from "./webidl.js";

/** @internal How an incoming request reaches its native record. */
export interface RequestSource {
  method(id: number): string;
  body(id: number): NativeBody;
  /** `upgradeWebSocket` for this request (lib/websocket.ts's UpgradeSource). */
  webSocket?(id: number, options: object): unknown;
}

type RequestMode = "navigate" | "same-origin" | "no-cors" | "cors";
type RequestCredentials = "omit" | "same-origin" | "include";
type RequestCache = "default" | "no-store" | "reload" | "no-cache" | "force-cache" | "only-if-cached";
type RequestRedirect = "follow" | "error" | "manual";
type ReferrerPolicy =
  | ""
  | "no-referrer"
  | "no-referrer-when-downgrade"
  | "same-origin"
  | "origin"
  | "strict-origin"
  | "origin-when-cross-origin"
  | "strict-origin-when-cross-origin"
  | "unsafe-url";

export interface RequestInitLike {
  method?: string;
  headers?: HeadersInitLike;
  body?: BodyInitLike;
  referrer?: string;
  referrerPolicy?: ReferrerPolicy;
  mode?: RequestMode;
  credentials?: RequestCredentials;
  cache?: RequestCache;
  redirect?: RequestRedirect;
  integrity?: string;
  keepalive?: boolean;
  signal?: AbortSignal | null;
  duplex?: "half";
  priority?: "high" | "low" | "auto";
  window?: null;
}

/**
 * The settings a server rarely looks at, kept in one object so an incoming request
 * carries a single shared reference to the defaults.
 */
interface RequestOptions {
  mode: RequestMode;
  credentials: RequestCredentials;
  cache: RequestCache;
  redirect: RequestRedirect;
  /** "client", "no-referrer", or a URL. */
  referrer: string;
  referrerPolicy: ReferrerPolicy;
  integrity: string;
  keepalive: boolean;
}

const DEFAULTS: Readonly<RequestOptions> = Object.freeze({
  mode: "cors",
  credentials: "same-origin",
  cache: "default",
  redirect: "follow",
  referrer: "client",
  referrerPolicy: "",
  integrity: "",
  keepalive: false,
});

const MODES = ["same-origin", "no-cors", "cors", "navigate"];
const CREDENTIALS = ["omit", "same-origin", "include"];
const CACHES = ["default", "no-store", "reload", "no-cache", "force-cache", "only-if-cached"];
const REDIRECTS = ["follow", "error", "manual"];
const POLICIES = [
  "",
  "no-referrer",
  "no-referrer-when-downgrade",
  "same-origin",
  "origin",
  "strict-origin",
  "origin-when-cross-origin",
  "strict-origin-when-cross-origin",
  "unsafe-url",
];
const PRIORITIES = ["high", "low", "auto"];
const DUPLEX = ["half"];

// https://fetch.spec.whatwg.org/#concept-method-normalize
const NORMALIZED = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"]);
// https://fetch.spec.whatwg.org/#forbidden-method
const FORBIDDEN = new Set(["CONNECT", "TRACE", "TRACK"]);
// https://fetch.spec.whatwg.org/#cors-safelisted-method
const CORS_SAFELISTED = new Set(["GET", "HEAD", "POST"]);
const INCOMING = Symbol("incoming");

function toStr(v: unknown): string {
  return typeof v === "string" ? v : `${v as string}`;
}

// A WebIDL enum member: the string, or a TypeError naming the allowed values.
function enumValue(v: unknown, allowed: readonly string[], what: string): string | undefined {
  if (v === undefined) return undefined;
  const s = toStr(v);
  if (!allowed.includes(s))
    throw new TypeError(
      `Invalid ${what} ${JSON.stringify(s)}: expected one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`,
    );
  return s;
}

function normalizeMethod(m: unknown): string {
  const s = toStr(m);
  if (!TOKEN.test(s)) throw new TypeError(`Invalid method: ${JSON.stringify(s)}`);
  const upper = s.toUpperCase();
  if (FORBIDDEN.has(upper)) throw new TypeError(`Forbidden method: ${s}`);
  return NORMALIZED.has(upper) ? upper : s;
}

function parseUrl(input: string, what: string): URL {
  try {
    // No base URL: a server has no document to resolve against, so "/path" is an error
    // (as in Node's and Deno's Request) rather than a guess at a host.
    return new URL(input);
  } catch {
    throw new TypeError(
      `Invalid ${what} ${JSON.stringify(input)}: an absolute URL is needed (there is no base URL to resolve against)`,
    );
  }
}

function abortReason(kind: "AbortError" | "TimeoutError"): DOMException {
  return kind === "TimeoutError"
    ? new DOMException("The request timed out", "TimeoutError")
    : new DOMException("The client closed the connection", "AbortError");
}

/** @internal */
export let incomingRequest: (
  source: RequestSource,
  id: number,
  flags: number,
  head: string,
  urlLength: number,
) => Request;
/** @internal Reads what is still native (an uncommon method) before the record goes away. */
export let detachRequest: (r: Request) => void;
/** @internal The server and record of a request it received (null for others). */
export let incomingSlot: (r: Request) => { source: RequestSource; id: number } | null;
/** @internal */
export let abortRequest: (r: Request, kind: "AbortError" | "TimeoutError") => void;

export class Request {
  #method: string | null = null;
  #url = "";
  #headers: Headers | null = null;
  #body: BodyState | null = null;
  #signal: AbortSignal | null = null;
  #controller: AbortController | null = null;
  #abortKind: "AbortError" | "TimeoutError" | null = null;
  #options: Readonly<RequestOptions> = DEFAULTS;
  // Incoming requests only.
  #source: RequestSource | null = null;
  #id = 0;
  #flags = 0;
  // The head text as it arrived: the URL, then from `#headersAt` the headers, packed (see
  // `unpackHeaders`); the Headers reads them in place (`headersFromPacked`).
  #packedHeaders = "";
  #headersAt = 0;

  // https://fetch.spec.whatwg.org/#dom-request
  constructor(input: string | URL | Request, init?: RequestInitLike) {
    // A request the server received is filled in by `incomingRequest`. The constructor's
    // steps are a method of their own so that this stays small: V8 optimizes a small
    // constructor early and inlines it where the server makes its requests, where the long
    // one ran in baseline code for each of them (about 500 instructions, callgrind).
    if ((input as unknown) === INCOMING) return;
    if (arguments.length === 0) throw new TypeError("Request constructor: 1 argument required, but only 0 present");
    this.#initialize(input, init);
  }

  // https://fetch.spec.whatwg.org/#dom-request (step numbers from there), after the
  // argument count.
  #initialize(input: string | URL | Request, init: RequestInitLike | undefined): void {
    if (init !== undefined && init !== null && typeof init !== "object" && typeof init !== "function")
      throw new TypeError("Request init must be an object");
    // WebIDL reads the RequestInit members once, in lexicographic order, converting each.
    const i = (init ?? {}) as Record<string, unknown>;
    const initBody = i.body as BodyInitLike;
    const initCache = enumValue(i.cache, CACHES, "cache mode") as RequestCache | undefined;
    const initCredentials = enumValue(i.credentials, CREDENTIALS, "credentials mode") as RequestCredentials | undefined;
    const initDuplex = enumValue(i.duplex, DUPLEX, "duplex");
    const initHeaders = i.headers as HeadersInitLike | undefined;
    const initIntegrity = i.integrity === undefined ? undefined : toStr(i.integrity);
    const initKeepalive = i.keepalive === undefined ? undefined : Boolean(i.keepalive);
    const initMethod = i.method === undefined ? undefined : toStr(i.method);
    const initMode = enumValue(i.mode, MODES, "mode") as RequestMode | undefined;
    enumValue(i.priority, PRIORITIES, "priority");
    const initRedirect = enumValue(i.redirect, REDIRECTS, "redirect mode") as RequestRedirect | undefined;
    const initReferrer = i.referrer === undefined ? undefined : toStr(i.referrer);
    const initPolicy = enumValue(i.referrerPolicy, POLICIES, "referrer policy") as ReferrerPolicy | undefined;
    const initSignal = i.signal as AbortSignal | null | undefined;
    if (initSignal !== undefined && initSignal !== null && !(initSignal instanceof AbortSignal))
      throw new TypeError("Request init's signal must be an AbortSignal or null");
    const initWindow = i.window;
    const initIsEmpty =
      initBody === undefined &&
      initCache === undefined &&
      initCredentials === undefined &&
      initDuplex === undefined &&
      initHeaders === undefined &&
      initIntegrity === undefined &&
      initKeepalive === undefined &&
      initMethod === undefined &&
      initMode === undefined &&
      i.priority === undefined &&
      initRedirect === undefined &&
      initReferrer === undefined &&
      initPolicy === undefined &&
      initSignal === undefined &&
      initWindow === undefined;

    let options: RequestOptions;
    let signal: AbortSignal | null = null;
    let inputHeaders: HeadersInitLike | null = null;
    let inputBody: (() => BodySource) | null = null;
    let inputBodyUnusable = false;
    if (Request.prototype.isPrototypeOf(input)) {
      // 6. A Request of ours: its request, signal, headers and body.
      const r = input as Request;
      this.#method = r.method;
      this.#url = r.url;
      options = { ...r.#options };
      if (r.#signal !== null || r.#source !== null) signal = r.signal;
      inputHeaders = r.headers;
      if (r.#body !== null ? r.#body.source !== null : r.#hasNativeBody()) {
        const b = r.#bodyState();
        inputBodyUnusable = b.unusable;
        inputBody = () => b.transfer();
      }
    } else if (isNodeInstance("Request", input, looksLikeRequest)) {
      // Node's own Request: read it through its public API.
      const g = input as globalThis.Request;
      this.#method = g.method;
      this.#url = g.url;
      options = {
        mode: g.mode as RequestMode,
        credentials: g.credentials as RequestCredentials,
        cache: g.cache as RequestCache,
        redirect: g.redirect as RequestRedirect,
        referrer: g.referrer === "about:client" ? "client" : g.referrer === "" ? "no-referrer" : g.referrer,
        referrerPolicy: g.referrerPolicy as ReferrerPolicy,
        integrity: g.integrity,
        keepalive: g.keepalive,
      };
      signal = g.signal;
      inputHeaders = g.headers;
      if (g.body !== null) {
        inputBodyUnusable = g.bodyUsed || g.body.locked;
        // The standard's proxy: reading ours reads theirs, which becomes disturbed.
        inputBody = () => g.body!.pipeThrough(new TransformStream<Uint8Array, Uint8Array>());
      }
    } else {
      // 5. A string (or anything with a string form: a URL).
      const parsed = parseUrl(toStr(input), "URL");
      if (parsed.username !== "" || parsed.password !== "")
        throw new TypeError(`Request URL must not include credentials: ${parsed.href}`);
      this.#url = parsed.href;
      this.#method = "GET";
      options = { ...DEFAULTS };
    }

    // 10. A window other than null.
    if (initWindow !== undefined && initWindow !== null) throw new TypeError("Request init's window must be null");
    // 13. Any init resets what belonged to the input's context.
    if (!initIsEmpty) {
      if (options.mode === "navigate") options.mode = "same-origin";
      options.referrer = "client";
      options.referrerPolicy = "";
    }
    // 14. referrer: "" means none; otherwise a URL, "about:client" meaning the client.
    if (initReferrer !== undefined) {
      if (initReferrer === "") options.referrer = "no-referrer";
      else {
        const parsed = parseUrl(initReferrer, "referrer");
        options.referrer = parsed.href === "about:client" ? "client" : parsed.href;
      }
    }
    if (initPolicy !== undefined) options.referrerPolicy = initPolicy;
    // 16-18. mode: "navigate" cannot be asked for.
    if (initMode === "navigate") throw new TypeError('Request mode "navigate" cannot be set from a constructor');
    if (initMode !== undefined) options.mode = initMode;
    if (initCredentials !== undefined) options.credentials = initCredentials;
    if (initCache !== undefined) options.cache = initCache;
    // 21.
    if (options.cache === "only-if-cached" && options.mode !== "same-origin")
      throw new TypeError('Request cache mode "only-if-cached" needs mode "same-origin"');
    if (initRedirect !== undefined) options.redirect = initRedirect;
    if (initIntegrity !== undefined) options.integrity = initIntegrity;
    if (initKeepalive !== undefined) options.keepalive = initKeepalive;
    // 25. method
    if (initMethod !== undefined) this.#method = normalizeMethod(initMethod);
    // 26, 29. The signal follows init's, else the input's.
    if (initSignal !== undefined) signal = initSignal;
    if (signal !== null) this.#followSignal(signal);
    this.#options = options;
    // 30. no-cors allows only the CORS-safelisted methods.
    if (options.mode === "no-cors" && !CORS_SAFELISTED.has(this.#method!))
      throw new TypeError(`Request mode "no-cors" allows only GET, HEAD and POST, not ${this.#method}`);
    // 31. headers: init's, else a copy of the input's.
    const headers = new Headers(initHeaders !== undefined ? initHeaders : (inputHeaders ?? undefined));
    // 33. GET and HEAD have no body, given or inherited.
    const hasInitBody = initBody !== undefined && initBody !== null;
    if ((hasInitBody || inputBody !== null) && (this.#method === "GET" || this.#method === "HEAD"))
      throw new TypeError(`Request with method ${this.#method} cannot have a body`);
    // 35. init's body, with its Content-Type unless one was given.
    let body: BodySource = null;
    if (hasInitBody) {
      const ex = extractBody(initBody);
      if (options.keepalive && isStreamSource(ex.source))
        throw new TypeError("A keepalive request cannot have a stream body");
      // 37. A stream body needs duplex: "half" (a Request cannot yet stream both ways).
      if (isStreamSource(ex.source) && initDuplex === undefined)
        throw new TypeError("A Request with a ReadableStream body needs duplex: 'half'");
      if (ex.type !== null && !headers.has("content-type")) headers.append("content-type", ex.type);
      body = ex.source;
    } else if (inputBody !== null) {
      // 39. The input's body moves here; the input becomes used.
      if (inputBodyUnusable)
        throw new TypeError("Cannot construct a Request from a Request whose body was already used");
      body = inputBody();
    }
    if (isStreamSource(body) && options.mode !== "same-origin" && options.mode !== "cors")
      throw new TypeError(
        `A Request with a stream body needs mode "cors" or "same-origin", not ${JSON.stringify(options.mode)}`,
      );
    this.#headers = headers;
    this.#body = body === null ? null : new BodyState(body);
  }

  static {
    incomingRequest = (source, id, flags, head, urlLength) => {
      const r = new Request(INCOMING as unknown as string);
      r.#source = source;
      r.#id = id;
      r.#flags = flags;
      r.#url = head.slice(0, urlLength);
      r.#packedHeaders = head;
      r.#headersAt = urlLength;
      const code = flags & METHOD_MASK;
      if (code < METHODS.length) r.#method = METHODS[code];
      return r;
    };
    // A brand check, not `instanceof`: that also says yes to Node's own Requests.
    incomingSlot = (r) =>
      typeof r === "object" && r !== null && #source in r && r.#source !== null
        ? { source: r.#source, id: r.#id }
        : null;
    detachRequest = (r) => {
      if (r.#source !== null) r.#method ??= r.#source.method(r.#id);
    };
    abortRequest = (r, kind) => {
      if (r.#abortKind !== null) return;
      r.#abortKind = kind;
      r.#controller?.abort(abortReason(kind));
    };
  }

  // https://dom.spec.whatwg.org/#abortsignal-follow
  #followSignal(s: AbortSignal): void {
    const c = new AbortController();
    this.#controller = c;
    this.#signal = c.signal;
    if (s.aborted) c.abort(s.reason);
    else s.addEventListener("abort", () => c.abort(s.reason), { once: true });
  }

  // A getter that reads no state still refuses a receiver that is not a Request
  // (https://webidl.spec.whatwg.org/#dfn-attribute-getter).
  #brand(): void {
    if (!(#url in this)) throw new TypeError("Illegal invocation: not a Request");
  }

  #hasNativeBody(): boolean {
    // An incoming GET may carry a body too; the client framed it, so it is readable.
    return this.#source !== null && (this.#flags & FLAG_HAS_BODY) !== 0;
  }

  #bodyState(): BodyState {
    if (this.#body === null) this.#body = new BodyState(this.#hasNativeBody() ? this.#source!.body(this.#id) : null);
    return this.#body;
  }

  // https://fetch.spec.whatwg.org/#dom-request-method
  get method(): string {
    return (this.#method ??= this.#source!.method(this.#id));
  }

  // https://fetch.spec.whatwg.org/#dom-request-url
  get url(): string {
    return this.#url;
  }

  // https://fetch.spec.whatwg.org/#dom-request-headers: an incoming request's are
  // immutable, as in a Service Worker's fetch event.
  get headers(): Headers {
    return (this.#headers ??= headersFromPacked(this.#packedHeaders, this.#headersAt));
  }

  // https://fetch.spec.whatwg.org/#dom-body-body
  get body(): ReadableStream<Uint8Array> | null {
    return this.#bodyState().stream();
  }

  // https://fetch.spec.whatwg.org/#dom-body-bodyused
  get bodyUsed(): boolean {
    return this.#body !== null && this.#body.disturbed;
  }

  // https://fetch.spec.whatwg.org/#dom-request-signal
  get signal(): AbortSignal {
    if (this.#signal === null) {
      this.#controller = new AbortController();
      this.#signal = this.#controller.signal;
      if (this.#abortKind !== null) this.#controller.abort(abortReason(this.#abortKind));
    }
    return this.#signal;
  }

  get redirect(): RequestRedirect {
    return this.#options.redirect;
  }

  // https://fetch.spec.whatwg.org/#dom-request-duplex
  get duplex(): "half" {
    this.#brand();
    return "half";
  }

  get cache(): RequestCache {
    return this.#options.cache;
  }

  get credentials(): RequestCredentials {
    return this.#options.credentials;
  }

  get destination(): string {
    this.#brand();
    return "";
  }

  get integrity(): string {
    return this.#options.integrity;
  }

  get keepalive(): boolean {
    return this.#options.keepalive;
  }

  get mode(): RequestMode {
    return this.#options.mode;
  }

  // https://fetch.spec.whatwg.org/#dom-request-referrer
  get referrer(): string {
    const r = this.#options.referrer;
    return r === "client" ? "about:client" : r === "no-referrer" ? "" : r;
  }

  get referrerPolicy(): ReferrerPolicy {
    return this.#options.referrerPolicy;
  }

  get isReloadNavigation(): boolean {
    this.#brand();
    return false;
  }

  get isHistoryNavigation(): boolean {
    this.#brand();
    return false;
  }

  arrayBuffer(): Promise<ArrayBuffer> {
    if (!(#url in this)) return brandRejection("Request", "arrayBuffer");
    return this.#bodyState().arrayBuffer();
  }

  bytes(): Promise<Uint8Array> {
    if (!(#url in this)) return brandRejection("Request", "bytes");
    return this.#bodyState().bytes();
  }

  text(): Promise<string> {
    if (!(#url in this)) return brandRejection("Request", "text");
    return this.#bodyState().text();
  }

  json(): Promise<unknown> {
    if (!(#url in this)) return brandRejection("Request", "json");
    return this.#bodyState().json();
  }

  blob(): Promise<Blob> {
    if (!(#url in this)) return brandRejection("Request", "blob");
    return this.#bodyState().blob(this.headers.get("content-type"));
  }

  formData(): Promise<FormData> {
    if (!(#url in this)) return brandRejection("Request", "formData");
    return this.#bodyState().formData(this.headers.get("content-type"));
  }

  // https://fetch.spec.whatwg.org/#dom-request-clone
  clone(): Request {
    const b = this.#bodyState();
    if (b.unusable) throw new TypeError("Cannot clone a Request whose body was already used");
    const r = new Request(INCOMING as unknown as string);
    r.#method = this.method;
    r.#url = this.url;
    r.#options = this.#options;
    r.#headers = cloneHeaders(this.headers);
    r.#body = b.source === null ? null : b.clone();
    r.#followSignal(this.signal);
    return r;
  }

  static [Symbol.hasInstance](v: unknown): boolean {
    return (
      (typeof v === "object" && v !== null && Request.prototype.isPrototypeOf(v)) ||
      isNodeInstance("Request", v, looksLikeRequest)
    );
  }
}

defineInterface(Request, "Request", 1);
linkPrototype("Request", Request.prototype);
