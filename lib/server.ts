// Server (RFC 00001 section 3.2): options, listeners, the batch dispatch loop that the
// native doorbell drives, and graceful close.
import type { NativeBody } from "./body.js";
import { eventInternals, FetchEvent, type EventHost } from "./fetch-event.js";
import {
  ABORT_TIMEOUT,
  BODY_TOO_LARGE,
  CT_NONE,
  nativeError,
  createNativeServer,
  PULL_END,
  PULL_PENDING,
  RECORD_ABORT,
  RECORD_BODY_DATA,
  RECORD_BODY_END,
  RECORD_BODY_ERROR,
  RECORD_BODY_FULL,
  RECORD_CLOSED,
  RECORD_REQUEST,
  RECORD_WORDS,
  RECORD_WRITABLE,
  type NativeOptions,
  type NativeServer as NativeServerType,
} from "./native.js";
import { sendResponse, type StreamHooks } from "./reply.js";
import { abortRequest, detachRequest, incomingRequest, type Request, type RequestSource } from "./request.js";
import { Response } from "./response.js";

export interface ServerOptions {
  /** Port to listen on; 0 picks a free one (default 3000). */
  port?: number;
  /** Address to bind (default "0.0.0.0"); "localhost" means 127.0.0.1. */
  host?: string;
  /** Share the port with other processes (SO_REUSEPORT) for multi-core scaling. */
  reusePort?: boolean;
  /** Connections served at once; more wait in the backlog (default 65536). */
  maxConnections?: number;
  /** Largest request body in bytes; larger gets 413 (default 10 MiB). */
  maxBodySize?: number;
  /** Time in ms for a listener to produce a response; then 503 and `request.signal` aborts (default 30000, 0: none). */
  timeout?: number;
  /** Largest request head in bytes; larger gets 431 (default 16 KiB). */
  maxHeaderSize?: number;
  /** Requests waiting for JavaScript before new ones get 503 with Retry-After (default 16384). */
  maxPendingRequests?: number;
  /** Time in ms a client has to send a request head once it starts waiting for one (default 30000, 0: none). */
  headerTimeout?: number;
  /** Time in ms a keep-alive connection may sit with no request and no traffic before it is closed (default 10000, 0: none). */
  idleTimeout?: number;
  /** Time in ms `close()` lets in-flight requests finish before it forces connections closed (default 10000, 0: wait). */
  shutdownTimeout?: number;
  /** Rust worker threads for network I/O (default: cores - 1, at most 4). */
  workerThreads?: number;
  /** Listen backlog (default 2048). */
  backlog?: number;
  /** Install fetch-rs's Response as `globalThis.Response` (default true). */
  overrideGlobals?: boolean;
}

export interface ServerStats {
  activeConnections: number;
  totalRequests: number;
  requestsPerSecond: number;
  avgLatencyMs: number;
  /** Requests handed to JavaScript and not answered yet. */
  pendingRequests: number;
}

/** The event given to `error` listeners. */
export interface ServerErrorEvent {
  type: "error";
  error: unknown;
  /** The request being handled, when there is one. */
  request: Request | null;
}

type FetchListener = (this: Server, event: FetchEvent) => unknown;
type ErrorListener = (this: Server, event: ServerErrorEvent) => unknown;

/** Records drained per native call; 1024 requests fit in 12 KiB. */
const RECORDS_PER_DRAIN = 1024;
/** Records handled per doorbell before yielding to timers and I/O. */
const RECORDS_PER_TURN = 4096;
const INDEX_MASK = (1 << 20) - 1;

function optionError(message: string, range = false): Error {
  const e = range ? new RangeError(message) : new TypeError(message);
  (e as Error & { code: string }).code = "ERR_INVALID_OPTION";
  return e;
}

function integer(o: Record<string, unknown>, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = o[name];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v)) throw optionError(`${name} must be an integer, got ${String(v)}`);
  if (v < min || v > max) throw optionError(`${name} must be between ${min} and ${max}, got ${v}`, true);
  return v;
}

function validate(options: ServerOptions): NativeOptions & { shutdownTimeout: number; overrideGlobals: boolean } {
  if (options === null || typeof options !== "object") throw optionError("Server options must be an object");
  const o = options as Record<string, unknown>;
  const host = o.host ?? o.hostname;
  if (host !== undefined && (typeof host !== "string" || host === "")) throw optionError("host must be a non-empty string");
  for (const b of ["reusePort", "overrideGlobals"]) {
    if (o[b] !== undefined && typeof o[b] !== "boolean") throw optionError(`${b} must be a boolean`);
  }
  return {
    host: host as string | undefined,
    port: integer(o, "port", 0, 65535) ?? 3000,
    reusePort: o.reusePort as boolean | undefined,
    backlog: integer(o, "backlog", 1, 2 ** 31 - 1),
    maxConnections: integer(o, "maxConnections", 1, 2 ** 32 - 1),
    maxBodySize: integer(o, "maxBodySize", 0),
    maxHeaderSize: integer(o, "maxHeaderSize", 1, 2 ** 32 - 1),
    maxPendingRequests: integer(o, "maxPendingRequests", 1, 2 ** 32 - 1),
    workerThreads: integer(o, "workerThreads", 1, 1024),
    timeoutMs: integer(o, "timeout", 0),
    headerTimeoutMs: integer(o, "headerTimeout", 0),
    idleTimeoutMs: integer(o, "idleTimeout", 0),
    shutdownTimeout: integer(o, "shutdownTimeout", 0) ?? 10_000,
    overrideGlobals: (o.overrideGlobals as boolean | undefined) ?? true,
  };
}

export class Server {
  #native: NativeServerType;
  #options: ReturnType<typeof validate>;
  #fetchListeners: FetchListener[] = [];
  #errorListeners: ErrorListener[] = [];
  #records = new Uint32Array(RECORDS_PER_DRAIN * RECORD_WORDS);
  // The head texts of the REQUEST records of a drain, in order (emptied as dispatched).
  #texts: string[] = [];
  #events: (FetchEvent | undefined)[] = [];
  #bodyWaiters = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  #writableWaiters = new Map<number, (ok: boolean) => void>();
  #streamCancels = new Map<number, () => void>();
  #streamHooks: StreamHooks = {
    writable: (id) => new Promise((resolve) => this.#writableWaiters.set(id, resolve)),
    onAbort: (id, cancel) => {
      if (cancel === null) this.#streamCancels.delete(id);
      else this.#streamCancels.set(id, cancel);
    },
  };
  #waitUntil = new Set<Promise<unknown>>();
  #inBatch = false;
  #flushQueued = false;
  #listening = false;
  #closing: Promise<void> | null = null;
  #onClosed: (() => void) | null = null;
  #port = 0;
  #host: EventHost & RequestSource;

  constructor(options: ServerOptions = {}) {
    this.#options = validate(options);
    try {
      this.#native = createNativeServer(this.#options);
    } catch (e) {
      throw nativeError(e);
    }
    if (this.#options.overrideGlobals) (globalThis as { Response: unknown }).Response = Response;
    this.#host = this.#makeHost();
  }

  /** The bound port, once listening. */
  get port(): number {
    return this.#port;
  }

  /** `http://host:port/`, once listening. */
  get url(): URL {
    const h = this.#options.host ?? "0.0.0.0";
    const host = h === "0.0.0.0" || h === "::" || h === "[::]" ? "localhost" : h.includes(":") && !h.startsWith("[") ? `[${h}]` : h;
    return new URL(`http://${host}:${this.#port}/`);
  }

  addEventListener(type: "fetch", listener: FetchListener): void;
  addEventListener(type: "error", listener: ErrorListener): void;
  addEventListener(type: string, listener: FetchListener | ErrorListener): void {
    if (typeof listener !== "function") throw new TypeError("listener must be a function");
    if (type === "fetch") {
      if (!this.#fetchListeners.includes(listener as FetchListener)) this.#fetchListeners.push(listener as FetchListener);
    } else if (type === "error") {
      if (!this.#errorListeners.includes(listener as ErrorListener)) this.#errorListeners.push(listener as ErrorListener);
    } else {
      throw new TypeError(`Unknown event type ${JSON.stringify(type)}: use "fetch" or "error"`);
    }
  }

  removeEventListener(type: "fetch" | "error", listener: FetchListener | ErrorListener): void {
    const list: unknown[] = type === "fetch" ? this.#fetchListeners : type === "error" ? this.#errorListeners : [];
    const i = list.indexOf(listener);
    if (i >= 0) list.splice(i, 1);
  }

  /** Binds and starts serving. Rejects with `code: "ERR_LISTEN"` when the address is taken. */
  listen(): Promise<void> {
    try {
      this.listenSync();
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** @internal Binding is synchronous; `serve()` uses this to return a listening server. */
  listenSync(): void {
    if (this.#closing !== null) throw Object.assign(new Error("The server was closed"), { code: "ERR_SERVER_CLOSED" });
    try {
      this.#port = this.#native.listen(this.#onDoorbell);
    } catch (e) {
      throw nativeError(e);
    }
    this.#listening = true;
  }

  /**
   * Stops accepting, lets in-flight requests finish, closes idle connections, waits for
   * `waitUntil` promises, then resolves. After `shutdownTimeout` (or at once with
   * `{ force: true }`) the remaining connections are closed. Safe to call twice.
   */
  close(options?: { force?: boolean }): Promise<void> {
    if (this.#closing !== null) {
      if (options?.force && this.#listening) this.#native.forceClose();
      return this.#closing;
    }
    if (!this.#listening) {
      this.#closing = Promise.resolve();
      return this.#closing;
    }
    const closed = new Promise<void>((resolve) => (this.#onClosed = resolve));
    this.#native.close(this.#options.shutdownTimeout);
    if (options?.force) this.#native.forceClose();
    this.#closing = closed.then(async () => {
      while (this.#waitUntil.size > 0) await Promise.allSettled([...this.#waitUntil]);
      this.#native.shutdown();
      this.#listening = false;
    });
    return this.#closing;
  }

  stats(): ServerStats {
    const s = this.#native.stats();
    return { activeConnections: s[0], totalRequests: s[1], requestsPerSecond: s[2], avgLatencyMs: s[3], pendingRequests: s[4] };
  }

  // The doorbell: drains every queued record, in one native call per 1024, and
  // dispatches them; replies gathered meanwhile go out in one flush.
  #onDoorbell = (): void => {
    const native = this.#native;
    const rec = this.#records;
    const texts = this.#texts;
    this.#inBatch = true;
    let handled = 0;
    try {
      for (;;) {
        const n = native.drain(rec, texts);
        if (n === 0) break;
        // Each REQUEST record's head text: its URL (urlLength characters), then its headers.
        let k = 0;
        for (let i = 0; i < n * RECORD_WORDS; i += RECORD_WORDS) {
          if (rec[i] === RECORD_REQUEST) {
            const text = texts[k];
            texts[k++] = "";
            const urlLength = rec[i + 3];
            this.#dispatch(rec[i + 1], rec[i + 2] & 0xff, rec[i + 2], text.slice(0, urlLength), text.slice(urlLength));
          } else this.#record(rec[i], rec[i + 1], rec[i + 2]);
        }
        handled += n;
        if (handled >= RECORDS_PER_TURN) {
          native.reschedule();
          break;
        }
      }
    } catch (e) {
      this.#report(e, null);
    } finally {
      this.#inBatch = false;
      native.flush();
    }
  };

  /** Every record but REQUEST (dispatched by the drain loop, with its head text). */
  #record(kind: number, id: number, arg: number): void {
    switch (kind) {
      case RECORD_BODY_DATA:
      case RECORD_BODY_END:
      case RECORD_BODY_FULL:
        this.#wakeBody(id, null);
        break;
      case RECORD_BODY_ERROR:
        this.#wakeBody(id, bodyError(arg));
        break;
      case RECORD_ABORT:
        this.#abort(id, arg);
        break;
      case RECORD_WRITABLE: {
        const w = this.#writableWaiters.get(id);
        if (w !== undefined) {
          this.#writableWaiters.delete(id);
          w(true);
        }
        break;
      }
      case RECORD_CLOSED:
        this.#onClosed?.();
        break;
    }
  }

  #dispatch(id: number, code: number, flags: number, url: string, headers: string): void {
    const ev = eventInternals.create(this.#host, id, code, flags, url, headers);
    this.#events[id & INDEX_MASK] = ev;
    const listeners = this.#fetchListeners;
    for (let i = 0; i < listeners.length; i++) {
      try {
        const r = listeners[i].call(this, ev);
        if (r !== undefined && r !== null && typeof (r as PromiseLike<unknown>).then === "function")
          eventInternals.listenerPromise(ev, r as PromiseLike<unknown>);
      } catch (e) {
        eventInternals.listenerThrew(ev, e);
      }
    }
    eventInternals.afterDispatch(ev);
  }

  #eventFor(id: number): FetchEvent | undefined {
    const ev = this.#events[id & INDEX_MASK];
    return ev !== undefined && eventInternals.id(ev) === id ? ev : undefined;
  }

  #abort(id: number, reason: number): void {
    const ev = this.#eventFor(id);
    if (ev === undefined) return;
    const req = eventInternals.requestIfCreated(ev);
    if (req !== null) abortRequest(req, reason === ABORT_TIMEOUT ? "TimeoutError" : "AbortError");
    const err = Object.assign(new Error("The client closed the connection"), { code: "ERR_BODY_ABORTED" });
    this.#wakeBody(id, err);
    const w = this.#writableWaiters.get(id);
    if (w !== undefined) {
      this.#writableWaiters.delete(id);
      w(false);
    }
    const cancel = this.#streamCancels.get(id);
    if (cancel !== undefined) {
      this.#streamCancels.delete(id);
      cancel();
    }
    eventInternals.aborted(ev);
  }

  #wakeBody(id: number, error: Error | null): void {
    const w = this.#bodyWaiters.get(id);
    if (w === undefined) return;
    this.#bodyWaiters.delete(id);
    if (error === null) w.resolve();
    else w.reject(error);
  }

  #waitBody(id: number): Promise<void> {
    return new Promise((resolve, reject) => this.#bodyWaiters.set(id, { resolve, reject }));
  }

  #queueFlush(): void {
    if (this.#inBatch || this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      this.#native.flush();
    });
  }

  #report(error: unknown, ev: FetchEvent | null): void {
    const request = ev === null ? null : ev.request;
    if (this.#errorListeners.length === 0) {
      const where = request === null ? "" : ` while handling ${request.method} ${safeUrl(request)}`;
      console.error(`fetch-rs: error${where}:`, error);
      return;
    }
    const event: ServerErrorEvent = { type: "error", error, request };
    for (const l of this.#errorListeners) {
      try {
        l.call(this, event);
      } catch (e) {
        console.error("fetch-rs: an error listener threw:", e);
      }
    }
  }

  #makeHost(): EventHost & RequestSource {
    const native = this.#native;
    const server = this;
    const body = (id: number): NativeBody => ({
      readAll: () => server.#readAll(id),
      stream: () => server.#bodyStream(id),
    });
    return {
      method: (id) => native.requestMethod(id) ?? "GET",
      body,
      request: (_ev, id, code, flags, url, headers) => incomingRequest(this.#host, id, code, flags, url, headers),
      clientAddress: (id) => native.requestClientAddress(id) ?? "",
      send: (ev, id, response, release) => {
        // A Request object outliving its record reads what is still native first.
        if (release) {
          const req = eventInternals.requestIfCreated(ev);
          if (req !== null) detachRequest(req);
        }
        let r: Promise<void> | void;
        try {
          r = sendResponse(native, id, response, release, this.#streamHooks);
        } catch (e) {
          // Reported with its stable code (ERR_CONTENT_LENGTH_WITHOUT_BODY, ERR_INVALID_HEADER…).
          throw nativeError(e);
        }
        this.#queueFlush();
        // A body read first (a Blob, a foreign Response) is replied to later.
        return r === undefined
          ? r
          : r.then(undefined, (e: unknown) => Promise.reject(nativeError(e))).finally(() => this.#queueFlush());
      },
      fail: (ev, id, status, why) => {
        if (why.startsWith("no listener")) {
          const err = Object.assign(new Error(`${why}; answered ${status}`), { code: "ERR_NO_RESPONSE" });
          this.#report(err, ev);
        }
        native.respondEmpty(id, status, CT_NONE, null, false);
        this.#queueFlush();
      },
      report: (error, ev) => this.#report(error, ev),
      track: (p) => {
        this.#waitUntil.add(p);
        p.finally(() => this.#waitUntil.delete(p));
      },
      finish: (ev, id) => {
        const idx = eventInternals.id(ev) & INDEX_MASK;
        if (this.#events[idx] === ev) this.#events[idx] = undefined;
        if (id === -1) return;
        const req = eventInternals.requestIfCreated(ev);
        if (req !== null) detachRequest(req);
        native.requestRelease(id);
        this.#queueFlush();
      },
    };
  }

  /** The whole request body: at once when it came with the head, else a promise. May throw. */
  #readAll(id: number): Uint8Array | Promise<Uint8Array> {
    const b = this.#collect(id);
    return b !== null ? b : this.#readAllLater(id);
  }

  async #readAllLater(id: number): Promise<Uint8Array> {
    for (;;) {
      await this.#waitBody(id);
      const b = this.#collect(id);
      if (b !== null) return b;
    }
  }

  #collect(id: number): Buffer | null {
    try {
      return this.#native.bodyCollect(id);
    } catch (e) {
      throw nativeError(e);
    }
  }

  #bodyStream(id: number): ReadableStream<Uint8Array> {
    const native = this.#native;
    const pull = async (controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> => {
      for (;;) {
        let b: Buffer | number;
        try {
          b = native.bodyPull(id);
        } catch (e) {
          controller.error(nativeError(e));
          return;
        }
        if (b === PULL_END) {
          controller.close();
          return;
        }
        if (b !== PULL_PENDING) {
          controller.enqueue(b as Buffer);
          return;
        }
        try {
          await this.#waitBody(id);
        } catch (e) {
          controller.error(e);
          return;
        }
      }
    };
    // highWaterMark 0: nothing is read from the socket until the reader asks.
    return new ReadableStream<Uint8Array>({ pull }, { highWaterMark: 0 });
  }
}

function safeUrl(r: Request): string {
  try {
    return r.url;
  } catch {
    return "(released)";
  }
}

function bodyError(kind: number): Error {
  return kind === BODY_TOO_LARGE
    ? Object.assign(new Error("The request body is larger than maxBodySize"), { code: "ERR_BODY_TOO_LARGE" })
    : Object.assign(new Error("The client aborted the request body"), { code: "ERR_BODY_ABORTED" });
}

export interface ServeInfo {
  /** The client's IP address. */
  readonly clientAddress: string;
  /** Keeps work alive after the response; `close()` waits for it. */
  waitUntil(promise: unknown): void;
}

export interface ServeOptions extends ServerOptions {
  fetch: (request: Request, info: ServeInfo) => unknown;
  /** Alias of `host`, as Bun and Deno name it. */
  hostname?: string;
}

class EventInfo implements ServeInfo {
  #ev: FetchEvent;
  constructor(ev: FetchEvent) {
    this.#ev = ev;
  }
  get clientAddress(): string {
    return this.#ev.clientAddress;
  }
  get waitUntil(): (promise: unknown) => void {
    const ev = this.#ev;
    return (p) => ev.waitUntil(p);
  }
}

/**
 * Starts a server for a `fetch(request, info)` handler, the shape Bun, Deno and Hono
 * use, and returns it listening.
 */
export function serve(options: ServeOptions): Server {
  if (options === null || typeof options !== "object" || typeof options.fetch !== "function")
    throw optionError("serve() needs an options object with a fetch function");
  const { fetch, ...rest } = options;
  const server = new Server(rest);
  server.addEventListener("fetch", (ev) => ev.respondWith(fetch(ev.request, new EventInfo(ev))));
  server.listenSync();
  return server;
}
