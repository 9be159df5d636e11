// Request (https://fetch.spec.whatwg.org/#request-class). An incoming request is lazy:
// method from a table, url and headers fetched natively on first read, body read
// natively on demand, signal created on first access.
import { BodyState, extractBody, type BodyInitLike, type NativeBody } from "./body.js";
import { Headers, materializeHeaders as materializeHeaderList, type HeadersInitLike } from "./headers.js";
import { FLAG_HAS_BODY, METHODS } from "./native.js";

const GlobalRequest = globalThis.Request;

/** @internal How an incoming request reaches its native record. */
export interface RequestSource {
  method(id: number): string;
  url(id: number): string;
  header(id: number, name: string): string | null;
  headers(id: number): string[];
  body(id: number): NativeBody;
}

export interface RequestInitLike {
  method?: string;
  headers?: HeadersInitLike;
  body?: BodyInitLike;
  signal?: AbortSignal | null;
  redirect?: "follow" | "error" | "manual";
  duplex?: "half";
  [key: string]: unknown;
}

// https://fetch.spec.whatwg.org/#concept-method-normalize
const NORMALIZED = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"]);
const FORBIDDEN = new Set(["CONNECT", "TRACE", "TRACK"]);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const INCOMING = Symbol("incoming");

function normalizeMethod(m: unknown): string {
  const s = String(m);
  if (!TOKEN.test(s)) throw new TypeError(`Invalid method: ${JSON.stringify(s)}`);
  const upper = s.toUpperCase();
  if (FORBIDDEN.has(upper)) throw new TypeError(`Forbidden method: ${s}`);
  return NORMALIZED.has(upper) ? upper : s;
}

function abortReason(kind: "AbortError" | "TimeoutError"): DOMException {
  return kind === "TimeoutError"
    ? new DOMException("The request timed out", "TimeoutError")
    : new DOMException("The client closed the connection", "AbortError");
}

/** @internal */
export let incomingRequest: (source: RequestSource, id: number, code: number, flags: number) => Request;
/** @internal Reads everything still lazy, before the native record goes away. */
export let detachRequest: (r: Request) => void;
/** @internal */
export let abortRequest: (r: Request, kind: "AbortError" | "TimeoutError") => void;

export class Request {
  #method: string | null = null;
  #url: string | null = null;
  #headers: Headers | null = null;
  #body: BodyState | null = null;
  #signal: AbortSignal | null = null;
  #controller: AbortController | null = null;
  #abortKind: "AbortError" | "TimeoutError" | null = null;
  #redirect: "follow" | "error" | "manual" = "follow";
  // Incoming requests only.
  #source: RequestSource | null = null;
  #id = 0;
  #flags = 0;

  constructor(input: string | URL | Request, init?: RequestInitLike) {
    if ((input as unknown) === INCOMING) return;
    if (init !== undefined && (init === null || typeof init !== "object")) throw new TypeError("Request init must be an object");
    let body: BodyState | null = null;
    let headersInit: HeadersInitLike | undefined;
    let contentType: string | null = null;
    if (input instanceof Request && Request.prototype.isPrototypeOf(input)) {
      this.#method = input.method;
      this.#url = input.url;
      this.#redirect = input.redirect as "follow";
      headersInit = input.headers;
      if (input.#signal !== null || input.#source !== null) this.#followSignal(input.signal);
      if (init?.body === undefined && (input.#body !== null || input.#hasNativeBody())) {
        const b = input.#bodyState();
        if (b.disturbed) throw new TypeError("Cannot construct a Request from one whose body was used");
        body = new BodyState(b.stream());
        b.used = true;
      }
    } else if (GlobalRequest !== undefined && input instanceof GlobalRequest) {
      const g = input as globalThis.Request;
      this.#method = g.method;
      this.#url = g.url;
      headersInit = g.headers;
      this.#followSignal(g.signal);
      if (init?.body === undefined && g.body !== null) body = new BodyState(g.body as ReadableStream<Uint8Array>);
    } else {
      let parsed: URL;
      try {
        parsed = new URL(String(input));
      } catch {
        throw new TypeError(`Invalid URL: ${JSON.stringify(String(input))}`);
      }
      if (parsed.username !== "" || parsed.password !== "") throw new TypeError("Request URL must not include credentials");
      this.#url = parsed.href;
      this.#method = "GET";
    }
    if (init !== undefined) {
      if (init.method !== undefined) this.#method = normalizeMethod(init.method);
      if (init.headers !== undefined) headersInit = init.headers;
      if (init.redirect !== undefined) {
        if (!["follow", "error", "manual"].includes(init.redirect)) throw new TypeError(`Invalid redirect mode: ${init.redirect}`);
        this.#redirect = init.redirect;
      }
      if (init.signal !== undefined && init.signal !== null) {
        if (!(init.signal instanceof AbortSignal)) throw new TypeError("signal must be an AbortSignal");
        this.#controller = null;
        this.#signal = null;
        this.#followSignal(init.signal);
      }
      if (init.body !== undefined && init.body !== null) {
        const ex = extractBody(init.body);
        if (ex.source instanceof ReadableStream && init.duplex !== "half")
          throw new TypeError("A ReadableStream body requires duplex: 'half'");
        body = new BodyState(ex.source);
        contentType = ex.type;
      }
    }
    if (body !== null && (this.#method === "GET" || this.#method === "HEAD"))
      throw new TypeError(`Request with method ${this.#method} cannot have a body`);
    this.#headers = new Headers(headersInit);
    if (contentType !== null && !this.#headers.has("content-type")) this.#headers.append("content-type", contentType);
    this.#body = body;
  }

  static {
    incomingRequest = (source, id, code, flags) => {
      const r = new Request(INCOMING as unknown as string);
      r.#source = source;
      r.#id = id;
      r.#flags = flags;
      if (code < METHODS.length) r.#method = METHODS[code];
      return r;
    };
    detachRequest = (r) => {
      if (r.#source === null) return;
      r.#method ??= r.#source.method(r.#id);
      r.#url ??= r.#source.url(r.#id);
      if (r.#headers === null) r.#headers = r.headers;
      materializeHeaderList(r.#headers);
    };
    abortRequest = (r, kind) => {
      if (r.#abortKind !== null) return;
      r.#abortKind = kind;
      r.#controller?.abort(abortReason(kind));
    };
  }

  #followSignal(s: AbortSignal): void {
    const c = new AbortController();
    this.#controller = c;
    this.#signal = c.signal;
    if (s.aborted) c.abort(s.reason);
    else s.addEventListener("abort", () => c.abort(s.reason), { once: true });
  }

  #hasNativeBody(): boolean {
    // An incoming GET may carry a body too; the client framed it, so it is readable.
    return this.#source !== null && (this.#flags & FLAG_HAS_BODY) !== 0;
  }

  #bodyState(): BodyState {
    if (this.#body === null) this.#body = new BodyState(this.#hasNativeBody() ? this.#source!.body(this.#id) : null);
    return this.#body;
  }

  get method(): string {
    return (this.#method ??= this.#source!.method(this.#id));
  }

  get url(): string {
    return (this.#url ??= this.#source!.url(this.#id));
  }

  get headers(): Headers {
    if (this.#headers === null) {
      const source = this.#source!;
      const id = this.#id;
      this.#headers = Headers.fromSource({ get: (n) => source.header(id, n), list: () => source.headers(id) });
    }
    return this.#headers;
  }

  get body(): ReadableStream<Uint8Array> | null {
    return this.#bodyState().stream();
  }

  get bodyUsed(): boolean {
    return this.#body !== null && this.#body.disturbed;
  }

  get signal(): AbortSignal {
    if (this.#signal === null) {
      this.#controller = new AbortController();
      this.#signal = this.#controller.signal;
      if (this.#abortKind !== null) this.#controller.abort(abortReason(this.#abortKind));
    }
    return this.#signal;
  }

  get redirect(): string {
    return this.#redirect;
  }

  get duplex(): "half" {
    return "half";
  }

  get cache(): string {
    return "default";
  }

  get credentials(): string {
    return "same-origin";
  }

  get destination(): string {
    return "";
  }

  get integrity(): string {
    return "";
  }

  get keepalive(): boolean {
    return false;
  }

  get mode(): string {
    return "cors";
  }

  get referrer(): string {
    return "about:client";
  }

  get referrerPolicy(): string {
    return "";
  }

  arrayBuffer(): Promise<ArrayBuffer> {
    return this.#bodyState().arrayBuffer();
  }

  bytes(): Promise<Uint8Array> {
    return this.#bodyState().bytes();
  }

  text(): Promise<string> {
    return this.#bodyState().text();
  }

  json(): Promise<unknown> {
    return this.#bodyState().json();
  }

  blob(): Promise<Blob> {
    return this.#bodyState().blob(this.headers.get("content-type"));
  }

  formData(): Promise<FormData> {
    return this.#bodyState().formData(this.headers.get("content-type"));
  }

  // https://fetch.spec.whatwg.org/#dom-request-clone
  clone(): Request {
    const b = this.#bodyState();
    if (b.disturbed) throw new TypeError("Cannot clone a Request whose body was used");
    const r = new Request(INCOMING as unknown as string);
    r.#method = this.method;
    r.#url = this.url;
    r.#redirect = this.#redirect;
    r.#headers = new Headers(this.headers);
    r.#body = b.source === null ? null : b.clone();
    r.#followSignal(this.signal);
    return r;
  }

  get [Symbol.toStringTag](): string {
    return "Request";
  }

  static [Symbol.hasInstance](v: unknown): boolean {
    return (
      (typeof v === "object" && v !== null && Request.prototype.isPrototypeOf(v)) ||
      (GlobalRequest !== undefined && v instanceof GlobalRequest)
    );
  }
}

if (GlobalRequest !== undefined) Object.setPrototypeOf(Request.prototype, GlobalRequest.prototype);
