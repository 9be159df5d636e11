// Server (RFC 00001 section 3.2): options, listeners, the batch dispatch loop that the
// native doorbell drives, and graceful close.
import type { NativeBody } from "./body.js";
import { eventInternals, FetchEvent, type ClientCertificate, type EventHost } from "./fetch-event.js";
import {
  ABORT_HALF_CLOSED,
  ABORT_TIMEOUT,
  bodyError,
  CT_NONE,
  nativeError,
  createNativeServer,
  INDEX_MASK,
  COLLECT_DEFERRED,
  FLAG_LARGE_BODY,
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
  RECORD_WS_CLOSE,
  RECORD_WS_DRAIN,
  RECORD_WS_MESSAGE,
  RECORD_WS_OPEN,
  RECORD_WS_PONG,
  WS_CLEAN,
  WS_PING,
  WS_POOLED,
  WS_POOLED_SAME,
  WS_TEXT_POOLED,
  WS_TEXT_POOLED_SAME,
  WS_TEXT,
  wsViewed,
  type NativeOptions,
  type NativeServer as NativeServerType,
} from "./native.js";
import { checkResponse, sendResponse, type StreamHooks } from "./reply.js";
import {
  abortRequest,
  detachRequest,
  incomingRequest,
  Request,
  type RequestInitLike,
  type RequestSource,
} from "./request.js";
import { Response } from "./response.js";
import { Headers } from "./headers.js";
import { resolve as resolvePath } from "node:path";
import { pathToFileURL } from "node:url";
import { incomingSlot } from "./request.js";
import {
  publishWith,
  socketInternals,
  type BinaryType,
  type ServerWebSocket,
  type SocketHandlers,
  type UpgradeWebSocketOptions,
  type WebSocketHandlers,
  type WebSocketHost,
} from "./websocket.js";

/**
 * The server's WebSocket options (the `websocket` member of ServerOptions), named as
 * Bun's: settings, and the handlers (`open`, `message`, `close`, `drain`, `ping`, `pong`)
 * that every socket of the server is handed to. `T` is the type of `ws.data`.
 */
// `any` by default, as `ws.data` is whatever `server.upgrade(req, { data })` was given.
export interface WebSocketOptions<T = any> extends WebSocketHandlers<T> {
  /** Largest message in bytes; a larger one closes the socket with 1009 (default 16 MiB). */
  maxPayloadLength?: number;
  /** Seconds a socket may be silent before it is pinged, and closed (1001) if it stays
   * silent as long again (default 120; 0: never). */
  idleTimeout?: number;
  /** Bytes a socket's send queue may hold; beyond it `send` returns 0 and drops the
   * message (default 16 MiB). */
  backpressureLimit?: number;
  /** Close a socket (1008) whose send queue reaches `backpressureLimit` (default false). */
  closeOnBackpressureLimit?: boolean;
  /** Agree on permessage-deflate (RFC 7692) when a client offers it (default false). */
  perMessageDeflate?: boolean;
}
import { tlsEntries, tlsFromOptions, type TlsOptions } from "./tls.js";
import { Router, type Fallback, type Routes } from "./routes.js";

export interface ServerOptions {
  /** Port to listen on; 0 picks a free one (default 3000). A string of decimal digits
   * (`process.env.PORT`) is taken as that number. */
  port?: number | string;
  /** Address to bind (default "0.0.0.0"); "localhost" means 127.0.0.1. */
  host?: string;
  /**
   * Listen on this Unix domain socket path instead of a TCP port (Bun's `unix`); a leading
   * `"\0"` names a Linux abstract socket. The file is made at `listen()` and removed by
   * `close()`; a file already there (a stale socket included) is `ERR_LISTEN`.
   */
  unix?: string;
  /** Alias of `unix`, as Deno.serve and node:http's `listen({ path })` name it. */
  path?: string;
  /** Deno's `transport`: `"unix"` with `path`/`unix`, `"tcp"` (the default) without. */
  transport?: "tcp" | "unix";
  /** Share the port with other processes (SO_REUSEPORT) for multi-core scaling. */
  reusePort?: boolean;
  /** With an IPv6 `host` such as `"::"`: IPv6 clients only (`IPV6_V6ONLY`; Bun's and
   * node:net's option). By default `"::"` takes IPv4 clients too. No effect on an IPv4 host. */
  ipv6Only?: boolean;
  /** Connections served at once; more wait in the backlog (default 65536). */
  maxConnections?: number;
  /** Largest request body in bytes; larger gets 413 (default 10 MiB). */
  maxBodySize?: number;
  /** Bun's name for `maxBodySize`. */
  maxRequestBodySize?: number;
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
  /** Rust worker threads for network I/O (default: cores - 1, at most 4); 0: network I/O on the JS thread (Linux). */
  workerThreads?: number;
  /** Listen backlog (default 2048). */
  backlog?: number;
  /** Install fetch-rs's Response and Headers as `globalThis.Response` and `globalThis.Headers` (default true). */
  overrideGlobals?: boolean;
  /** WebSocket settings (see `upgradeWebSocket`). */
  websocket?: WebSocketOptions;
  /** Serve HTTPS: one certificate, or one per host name (SNI). See the README. */
  tls?: TlsOptions | TlsOptions[];
  /** Alias of `tls.key` (node:https, Deno.serve). */
  key?: TlsOptions["key"];
  /** Alias of `tls.cert` (node:https, Deno.serve). */
  cert?: TlsOptions["cert"];
  /** Offer HTTP/2: ALPN `h2` over TLS and h2c by preface (default true); false: HTTP/1.1 only. */
  http2?: boolean;
  /** Time in ms a client has to finish the TLS handshake (default 10000, 0: none). */
  tlsHandshakeTimeout?: number;
  /** HTTP/2 streams a client may have open at once on one connection (default 128). */
  http2MaxConcurrentStreams?: number;
  /**
   * HTTP/2 flow-control window in bytes, each stream's and each connection's: request body
   * bytes a client may send before the handlers read them (default 1 MiB, 65535 to 2^31 - 1).
   */
  http2WindowSize?: number;
}

/** Deno's `server.addr` (and `onListen`'s argument): a TCP address or a Unix socket path. */
export type ServerAddr = { transport: "tcp"; hostname: string; port: number } | { transport: "unix"; path: string };

export interface ServerStats {
  activeConnections: number;
  totalRequests: number;
  requestsPerSecond: number;
  avgLatencyMs: number;
  /** Requests handed to JavaScript and not answered yet. */
  pendingRequests: number;
  /** Open WebSockets (each also counted in activeConnections). */
  webSockets: number;
  /** TLS handshakes completed. */
  tlsHandshakes: number;
  /** TLS handshakes that failed: not TLS, timed out, or a client certificate refused. */
  tlsHandshakeFailures: number;
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
/**
 * Bodies of FLAG_LARGE_BODY size being read (`Server.#reading`) past which no held request
 * goes to the listeners. With worker threads the JS thread's turns outran the reader:
 * one held request a turn still had up to 46 bodies of 1 MiB in flight at once, their
 * `arrayBuffer()` promises old by the time they settled (docs/network-thread.md, "Large
 * request bodies, round ten").
 */
const LARGE_READS = 2;
/**
 * Milliseconds without one of those bodies completing, while requests are held, after
 * which the oldest stops counting: a client sending its body slowly, or a handler that
 * reads only part of it, delays the others by this much, once.
 */
const LARGE_READ_WAIT_MS = 10;
/**
 * How often an unref'd server with requests in flight asks whether they are all answered
 * (`#holdWhilePending`): the process may outlive its last request by this much.
 */
const KEEPER_MS = 20;

function noop(): void {}

/** @internal An option error: `code: "ERR_INVALID_OPTION"` (also routes.ts's). */
export function optionError(message: string, range = false): Error {
  const e = range ? new RangeError(message) : new TypeError(message);
  (e as Error & { code: string }).code = "ERR_INVALID_OPTION";
  return e;
}

/** @internal What an option error says it got: the type, and the value where it is short. */
export function got(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "string") return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)}`;
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return `the ${typeof v} ${String(v)}`;
  if (typeof v === "function") return "a function";
  if (typeof v === "symbol") return "a symbol";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? `an object (${(v as object).constructor?.name ?? "null prototype"})` : typeof v;
}

/** `maxBodySize`, or Bun's name for it, `maxRequestBodySize` (not both). */
function bodyLimit(o: Record<string, unknown>): number | undefined {
  if (o.maxRequestBodySize === undefined) return integer(o, "maxBodySize", 0);
  if (o.maxBodySize !== undefined)
    throw optionError("maxBodySize and maxRequestBodySize are the same option: give one");
  return integer(o, "maxRequestBodySize", 0);
}

// A port written as a decimal string ("3456", as `process.env.PORT` gives it) is that
// number, as node:http and @hono/node-server take it.
const DECIMAL = /^\s*\d+\s*$/;

function integer(
  o: Record<string, unknown>,
  name: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
  strings = false,
): number | undefined {
  const raw = o[name];
  if (raw === undefined) return undefined;
  const v = strings && typeof raw === "string" && DECIMAL.test(raw) ? Number(raw) : raw;
  if (typeof v !== "number" || !Number.isInteger(v))
    throw optionError(
      `${name} must be an integer${strings ? " (or a string of decimal digits)" : ""}, got ${got(raw)}`,
    );
  if (v < min || v > max) throw optionError(`${name} must be between ${min} and ${max}, got ${got(raw)}`, true);
  return v;
}

const HANDLER_NAMES = ["open", "message", "close", "drain", "ping", "pong"] as const;

/** The handlers of the `websocket` option as sockets hold them, or null without any. */
function socketHandlers(options: ServerOptions): SocketHandlers | null {
  const ws = options.websocket as Record<string, unknown> | undefined;
  if (ws === undefined || !HANDLER_NAMES.some((h) => ws[h] !== undefined)) return null;
  const pick = (h: string) => ws[h] as SocketHandlers["open"];
  return {
    target: ws,
    open: pick("open"),
    message: pick("message"),
    close: pick("close"),
    drain: pick("drain"),
    ping: pick("ping"),
    pong: pick("pong"),
  };
}

/** The Unix socket path of the `unix`/`path`/`transport` options, or undefined for TCP. */
function unixPath(o: Record<string, unknown>): string | undefined {
  if (o.unix !== undefined && o.path !== undefined && o.unix !== o.path)
    throw optionError("unix and path are the same option: give one");
  const name = o.unix !== undefined ? "unix" : "path";
  const path = o[name];
  if (path !== undefined && (typeof path !== "string" || path === ""))
    throw optionError(`${name} must be a non-empty string, got ${got(path)}`);
  const t = o.transport;
  if (t !== undefined && t !== "tcp" && t !== "unix")
    throw optionError(`transport must be "tcp" or "unix", got ${got(t)}`);
  if (t === "unix" && path === undefined) throw optionError(`transport "unix" needs a path`);
  if (t === "tcp" && path !== undefined) throw optionError(`${name} is a Unix socket path: not with transport "tcp"`);
  if (path === undefined) return undefined;
  for (const other of ["port", "host", "hostname"])
    if (o[other] !== undefined)
      throw optionError(`${name} and ${other} are two places to listen: give one, got ${got(o[other])} for ${other}`);
  if (o.reusePort === true)
    throw optionError("reusePort does not apply to a Unix socket: one socket file has one listener");
  if (o.ipv6Only === true) throw optionError("ipv6Only does not apply to a Unix socket");
  return path as string;
}

function validate(options: ServerOptions): NativeOptions & { shutdownTimeout: number; overrideGlobals: boolean } {
  if (options === null || typeof options !== "object")
    throw optionError(`Server options must be an object, got ${got(options)}`);
  const o = options as Record<string, unknown>;
  const unix = unixPath(o);
  const host = o.host ?? o.hostname;
  if (host !== undefined && (typeof host !== "string" || host === ""))
    throw optionError(`${o.host !== undefined ? "host" : "hostname"} must be a non-empty string, got ${got(host)}`);
  for (const b of ["reusePort", "ipv6Only", "overrideGlobals", "http2"]) {
    if (o[b] !== undefined && typeof o[b] !== "boolean") throw optionError(`${b} must be a boolean, got ${got(o[b])}`);
  }
  const ws = o.websocket === undefined ? {} : (o.websocket as Record<string, unknown>);
  if (ws === null || typeof ws !== "object") throw optionError(`websocket must be an object, got ${got(o.websocket)}`);
  for (const b of ["closeOnBackpressureLimit", "perMessageDeflate"]) {
    if (ws[b] !== undefined && typeof ws[b] !== "boolean")
      throw optionError(`websocket.${b} must be a boolean, got ${got(ws[b])}`);
  }
  for (const h of HANDLER_NAMES) {
    if (ws[h] !== undefined && typeof ws[h] !== "function")
      throw optionError(`websocket.${h} must be a function, got ${got(ws[h])}`);
  }
  const wsIdle = ws.idleTimeout;
  if (wsIdle !== undefined && (typeof wsIdle !== "number" || !(wsIdle >= 0) || !Number.isFinite(wsIdle)))
    throw optionError(`websocket.idleTimeout must be a non-negative number of seconds, got ${got(wsIdle)}`);
  return {
    wsMaxPayloadLength: integer(ws, "maxPayloadLength", 1),
    wsIdleTimeoutMs: wsIdle === undefined ? undefined : (wsIdle as number) * 1000,
    wsBackpressureLimit: integer(ws, "backpressureLimit", 1),
    wsCloseOnBackpressureLimit: ws.closeOnBackpressureLimit as boolean | undefined,
    wsPerMessageDeflate: ws.perMessageDeflate as boolean | undefined,
    host: host as string | undefined,
    port: unix === undefined ? (integer(o, "port", 0, 65535, true) ?? 3000) : undefined,
    unix,
    reusePort: o.reusePort as boolean | undefined,
    ipv6Only: o.ipv6Only as boolean | undefined,
    backlog: integer(o, "backlog", 1, 2 ** 31 - 1),
    maxConnections: integer(o, "maxConnections", 1, 2 ** 32 - 1),
    maxBodySize: bodyLimit(o),
    maxHeaderSize: integer(o, "maxHeaderSize", 1, 2 ** 32 - 1),
    maxPendingRequests: integer(o, "maxPendingRequests", 1, 2 ** 32 - 1),
    workerThreads: integer(o, "workerThreads", 0, 1024),
    timeoutMs: integer(o, "timeout", 0),
    headerTimeoutMs: integer(o, "headerTimeout", 0),
    idleTimeoutMs: integer(o, "idleTimeout", 0),
    shutdownTimeout: integer(o, "shutdownTimeout", 0) ?? 10_000,
    tls: tlsFromOptions(o),
    http2: o.http2 as boolean | undefined,
    tlsHandshakeTimeoutMs: integer(o, "tlsHandshakeTimeout", 0),
    http2MaxConcurrentStreams: integer(o, "http2MaxConcurrentStreams", 1, 2 ** 31 - 1),
    http2WindowSize: integer(o, "http2WindowSize", 65_535, 2 ** 31 - 1),
    overrideGlobals: (o.overrideGlobals as boolean | undefined) ?? true,
  };
}

export class Server {
  #native: NativeServerType;
  #options: ReturnType<typeof validate>;
  #fetchListeners: FetchListener[] = [];
  #errorListeners: ErrorListener[] = [];
  #records = new Uint32Array(RECORDS_PER_DRAIN * RECORD_WORDS);
  // The payload of each WebSocket record of a drain that has one (a string or a Buffer), in
  // order (emptied as dispatched); a REQUEST record's head text comes from requestHead.
  #texts: unknown[] = [];
  #sockets = new Map<number, ServerWebSocket>();
  // The socket of the last WebSocket record, and its id (0: none; ids start at 1): a
  // socket's records come in runs (its messages of one read), and a Map lookup is about
  // 50 instructions.
  #lastSid = 0;
  #lastSocket: ServerWebSocket | undefined = undefined;
  // The responses `upgradeWebSocket` returned (and the 101s of `upgrade`), to the socket
  // each one opens, with the headers `upgrade` adds to the 101.
  #upgrades = new WeakMap<object, { id: number; sid: number; socket: ServerWebSocket; headers?: string[] }>();
  #wsHost: WebSocketHost;
  #wsHandlers: SocketHandlers | null;
  // Per request, by the slot index of its id (see RequestState).
  #requests: (RequestState | undefined)[] = [];
  #streamHooks: StreamHooks = {
    writable: (id) =>
      new Promise((resolve) => {
        const st = this.#state(id);
        if (st !== undefined) st.writable = resolve;
      }),
    onAbort: (id, cancel) => {
      const st = this.#state(id);
      if (st !== undefined) st.cancelStream = cancel;
    },
  };
  #waitUntil = new Set<Promise<unknown>>();
  #inBatch = false;
  /** A `setImmediate` for `#resumeBodies` is queued, or it is running. */
  #resumeQueued = false;
  /** A body read answered COLLECT_DEFERRED since `bodyResume` last said none waits. */
  #bodiesWaiting = false;
  /** Requests with FLAG_LARGE_BODY not yet given to the listeners, oldest first (`#hold`). */
  #held: HeldRequest[] = [];
  /**
   * Requests whose body read was deferred (COLLECT_DEFERRED: a FLAG_LARGE_BODY size) and has
   * not ended (BODY_FULL, BODY_ERROR or the request's end), oldest first; while LARGE_READS
   * or more, no held request goes to the listeners.
   */
  #reading = new Set<number>();
  /** `#reading` is not empty. */
  #readingAny = false;
  /** Set while requests are held behind `#reading` (`#readingStalled`). */
  #readingTimer: ReturnType<typeof setTimeout> | null = null;
  #flushQueued = false;
  #listening = false;
  #closing: Promise<void> | null = null;
  #onClosed: (() => void) | null = null;
  #port = 0;
  /** A Unix socket's absolute path, once listening. */
  #unixAt: string | undefined = undefined;
  #host: EventHost & RequestSource;
  #finished: Promise<void>;
  #onFinished!: () => void;
  /** `unref()` was called (and not undone by `ref()`): the server lets the process exit. */
  #unrefd = false;

  constructor(options: ServerOptions = {}) {
    this.#options = validate(options);
    try {
      this.#native = createNativeServer(this.#options);
    } catch (e) {
      throw nativeError(e);
    }
    if (this.#options.overrideGlobals) {
      // Headers too: code that builds its response's headers with `new Headers()` (Hono's
      // context does for every reply) hands the Response a class it reads without undici's
      // iterator. Both still pass `instanceof` against Node's classes.
      const g = globalThis as { Response: unknown; Headers: unknown };
      g.Response = Response;
      g.Headers = Headers;
    }
    this.#host = this.#makeHost();
    this.#wsHost = this.#makeWsHost();
    this.#wsHandlers = socketHandlers(options);
    this.#finished = new Promise<void>((resolve) => (this.#onFinished = resolve));
  }

  /** The bound port, once listening; undefined on a Unix socket (as Bun's). */
  get port(): number | undefined {
    return this.#options.unix === undefined ? this.#port : undefined;
  }

  /** The address given to bind (`host`), `"0.0.0.0"` by default; undefined on a Unix
   * socket (as Bun's). */
  get hostname(): string | undefined {
    return this.#options.unix === undefined ? (this.#options.host ?? "0.0.0.0") : undefined;
  }

  /** Deno's `server.addr`: where the server listens. */
  get addr(): ServerAddr {
    const path = this.#options.unix;
    if (path !== undefined) return { transport: "unix", path };
    return { transport: "tcp", hostname: this.#options.host ?? "0.0.0.0", port: this.#port };
  }

  /** Bun's `server.pendingRequests`: requests received and not yet answered. */
  get pendingRequests(): number {
    return this.stats().pendingRequests;
  }

  /** Bun's `server.pendingWebSockets`: WebSockets open. */
  get pendingWebSockets(): number {
    return this.stats().webSockets;
  }

  /** Deno's `server.finished`: resolves once `close()` has finished. */
  get finished(): Promise<void> {
    return this.#finished;
  }

  /** `http://host:port/` (`https://` with `tls`), once listening; on a Unix socket
   * `unix:///abs/path` (`abstract://name` for an abstract one), as Bun's. */
  get url(): URL {
    const path = this.#options.unix;
    if (path !== undefined)
      return path.startsWith("\0")
        ? new URL(`abstract://${encodeURIComponent(path.slice(1))}`)
        : new URL(`unix://${pathToFileURL(this.#unixAt ?? path).pathname}`);
    const h = this.#options.host ?? "0.0.0.0";
    const host =
      h === "0.0.0.0" || h === "::" || h === "[::]"
        ? "localhost"
        : h.includes(":") && !h.startsWith("[")
          ? `[${h}]`
          : h;
    const scheme = this.#options.tls === undefined ? "http" : "https";
    return new URL(`${scheme}://${host}:${this.#port}/`);
  }

  addEventListener(type: "fetch", listener: FetchListener): void;
  addEventListener(type: "error", listener: ErrorListener): void;
  addEventListener(type: string, listener: FetchListener | ErrorListener): void {
    if (typeof listener !== "function") throw new TypeError("listener must be a function");
    if (type === "fetch") {
      if (!this.#fetchListeners.includes(listener as FetchListener))
        this.#fetchListeners.push(listener as FetchListener);
    } else if (type === "error") {
      if (!this.#errorListeners.includes(listener as ErrorListener))
        this.#errorListeners.push(listener as ErrorListener);
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
    // A relative socket path is the working directory's now (the URL's, if it changes).
    const unix = this.#options.unix;
    if (unix !== undefined && !unix.startsWith("\0")) this.#unixAt = resolvePath(unix);
    this.#listening = true;
    if (this.#unrefd) this.#setRef(false);
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
    if (this.#unrefd) process.off("beforeExit", this.#holdWhilePending);
    if (!this.#listening) {
      this.#closing = Promise.resolve();
      this.#onFinished();
      return this.#closing;
    }
    const closed = new Promise<void>((resolve) => (this.#onClosed = resolve));
    // A close is work in flight: an unref'd server is held until it is done (an awaited
    // close() would otherwise leave the process with an unsettled promise).
    if (this.#unrefd) this.#setRef(true);
    this.#native.close(this.#options.shutdownTimeout);
    if (options?.force) this.#native.forceClose();
    this.#closing = closed.then(async () => {
      while (this.#waitUntil.size > 0) await Promise.allSettled([...this.#waitUntil]);
      this.#native.shutdown();
      this.#listening = false;
      this.#onFinished();
    });
    return this.#closing;
  }

  /**
   * Bun's and Deno's `server.unref()`: the process may exit while the server listens, once
   * nothing else keeps Node's event loop alive. Requests that arrive while it lives are
   * served, and requests in flight (received, not yet answered) keep it alive until answered.
   * Callable before `listen()`; after `close()` it does nothing.
   */
  unref(): void {
    if (this.#closing !== null || this.#unrefd) return;
    this.#unrefd = true;
    process.on("beforeExit", this.#holdWhilePending);
    if (this.#listening) this.#setRef(false);
  }

  /** Bun's and Deno's `server.ref()`: undoes `unref()` (a server is ref'd by default). */
  ref(): void {
    if (this.#closing !== null || !this.#unrefd) return;
    this.#unrefd = false;
    process.off("beforeExit", this.#holdWhilePending);
    if (this.#listening) this.#setRef(true);
  }

  #setRef(on: boolean): void {
    try {
      this.#native.setRef(on);
    } catch (e) {
      throw nativeError(e);
    }
  }

  /**
   * Node's loop ran out of work while this server is unref'd: where requests are in flight
   * (`pendingRequests`: handed to the handlers and not yet answered, e.g. one reading a body
   * still arriving), a short timer keeps the loop going, and the check comes again when it is
   * done. Nothing is added to the doorbell's path. Not counted: a small body of declared
   * length still arriving (read before the handlers get its request), a streamed response
   * after its head.
   */
  #holdWhilePending = (): void => {
    if (this.#listening && this.#closing === null && this.pendingRequests > 0) setTimeout(noop, KEEPER_MS);
  };

  /** Bun's `server.stop(closeActiveConnections)`: `close()`, forced when the argument is true. */
  stop(closeActiveConnections = false): Promise<void> {
    return this.close({ force: closeActiveConnections === true });
  }

  /** Deno's `server.shutdown()`: `close()`. */
  shutdown(): Promise<void> {
    return this.close();
  }

  /**
   * Bun's `server.reload(options)`, on a server `serve()` started: replaces the `fetch`
   * handler, the `routes` and the `error` handler that the options name (the others stay),
   * for requests that arrive from now on. Throws, changing nothing, when the options are
   * bad or would leave neither `fetch` nor `routes`.
   */
  reload(options: Pick<ServeOptions, "fetch" | "routes" | "error" | "onError">): this {
    const handlers = served.get(this);
    if (handlers === undefined) {
      const e = new TypeError("reload() is for a server started by serve(); this one answers its fetch listeners");
      (e as Error & { code: string }).code = "ERR_INVALID_STATE";
      throw e;
    }
    if (options === null || typeof options !== "object")
      throw optionError(`reload() needs an options object, got ${got(options)}`);
    const next = handlersOf(options, handlers);
    handlers.fetch = next.fetch;
    handlers.router = next.router;
    handlers.onError = next.onError;
    handlers.answer = next.answer;
    return this;
  }

  /**
   * Bun's `server.requestIP(request)`: the client's address, family and port for a request
   * this server received and has not finished with; `null` for any other, and on a Unix
   * socket (as Bun's: its peers have no address).
   */
  requestIP(request: Request): { address: string; family: "IPv4" | "IPv6"; port: number } | null {
    const slot = incomingSlot(request);
    if (slot === null || slot.source !== this.#host) return null;
    const address = this.#native.requestClientAddress(slot.id);
    const port = this.#native.requestClientPort(slot.id);
    if (address === null || port === null) return null;
    return { address, family: address.includes(":") ? "IPv6" : "IPv4", port };
  }

  /**
   * Bun's `server.timeout(request, seconds)`: the time `request`'s listener has to respond
   * (the `timeout` option), counted again from now: `seconds` from now, or no limit with 0.
   * Past it, as for `timeout`: `503`, and `request.signal` aborts with a `TimeoutError`. For
   * a request this server received and has not answered yet; does nothing for any other.
   * Throws a `RangeError` (`code: "ERR_INVALID_ARG_VALUE"`) unless `seconds` is a number, 0
   * or more.
   */
  timeout(request: Request, seconds: number): void {
    if (typeof seconds !== "number" || !(seconds >= 0)) {
      const e = new RangeError(`timeout() needs seconds as a number, 0 or more, got ${got(seconds)}`);
      (e as Error & { code: string }).code = "ERR_INVALID_ARG_VALUE";
      throw e;
    }
    const slot = incomingSlot(request);
    if (slot === null || slot.source !== this.#host || !this.#listening) return;
    // Infinity is no limit, as 0; a limit the clock cannot hold is none either.
    this.#native.requestTimeout(slot.id, seconds === Infinity ? 0 : seconds * 1000);
  }

  /**
   * Bun's `server.fetch(request)`: the request given to this server's fetch listeners (a
   * `serve()` server's `fetch`, `routes` and `error`) without a connection, resolving to
   * the Response they answer with, as they made it. `input` and `init` are `fetch()`'s: a
   * Request (this package's or Node's) is used as it is; a URL string or `URL` makes one,
   * a relative one resolved against `server.url` (`server.fetch("/users/1")`; on a Unix
   * socket against `http://localhost/`). An error a client would see as a status comes as
   * that status: a listener that throws, or answers with something other than a Response,
   * gives a `500` (the error is reported to the `error` listeners, as for a request from the
   * network); none calling respondWith() gives a `500` (reported as `ERR_NO_RESPONSE`).
   * There is no client: `requestIP()` is `null`, `clientAddress` is `""`; the `timeout`
   * option does not apply. `close()` waits for the `waitUntil` work of these requests as for
   * any other.
   */
  fetch(input: string | URL | Request | globalThis.Request, init?: RequestInitLike): Promise<Response> {
    let request: unknown;
    try {
      // Node's own Request is an instance too (`Request[Symbol.hasInstance]`).
      if (init === undefined && input instanceof Request) request = input;
      // A Unix socket's URL (unix://…) is no base for an HTTP path.
      else if (typeof input === "string")
        request = new Request(new URL(input, this.#options.unix === undefined ? this.url : "http://localhost/"), init);
      else request = new Request(input as URL | Request, init);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve) => {
      const ev = eventInternals.create(this.#programmaticHost(request, resolve as (r: unknown) => void), 0, 0, "", 0);
      this.#runListeners(ev);
    });
  }

  /**
   * Replaces the certificates (same shape as the `tls` option): new connections use them at
   * once, open ones keep theirs. Rejects with `code: "ERR_TLS_CONFIG"` and keeps the old ones
   * when the new ones cannot be used.
   */
  setTls(tls: TlsOptions | TlsOptions[]): Promise<void> {
    try {
      const entries = tlsEntries(tls);
      this.#native.setTls(entries);
      this.#options.tls = entries;
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(nativeError(e));
    }
  }

  stats(): ServerStats {
    const s = this.#native.stats();
    return {
      activeConnections: s[0],
      totalRequests: s[1],
      requestsPerSecond: s[2],
      avgLatencyMs: s[3],
      pendingRequests: s[4],
      tlsHandshakes: s[5],
      tlsHandshakeFailures: s[6],
      webSockets: s[7],
    };
  }

  /** Sends a message to every WebSocket subscribed to `topic`; returns how many took it.
   * The message is framed (and compressed) once for all of them. */
  publish(topic: string, data: string | ArrayBufferLike | ArrayBufferView, compress = true): number {
    if (!this.#listening) return 0;
    return publishWith(this.#wsHost, 0, topic, data, compress);
  }

  /** Bun's `server.subscriberCount(topic)`: how many open WebSockets are subscribed to
   * `topic` (0 before `listen()` and after `close()`). */
  subscriberCount(topic: string): number {
    if (typeof topic !== "string") throw new TypeError("A topic must be a string");
    return this.#listening ? this.#native.wsSubscriberCount(topic) : 0;
  }

  /**
   * Bun's `server.upgrade(request, { data, headers })`: answers `request` (one this server
   * received, not yet answered) with the 101 that opens a WebSocket, handed to the
   * `websocket` handlers, with `data` as `ws.data` and `headers` added to the 101 (a
   * `Sec-WebSocket-Protocol` there picks the subprotocol, which the client must have
   * offered). The handler may then return nothing. Returns false, and answers nothing,
   * when the request is not a valid WebSocket upgrade. Its sockets start with
   * `binaryType` "nodebuffer" (Buffers, as Bun's).
   */
  upgrade<T = unknown>(request: Request, options: { data?: T; headers?: HeadersInit } = {}): boolean {
    if (options === null || typeof options !== "object") throw new TypeError("upgrade() options must be an object");
    let headers: string[] | undefined;
    let protocol: string | undefined;
    if (options.headers !== undefined) {
      const list: string[] = [];
      for (const [name, value] of new Headers(options.headers)) {
        if (name === "sec-websocket-protocol") protocol = value;
        else list.push(name, value);
      }
      if (list.length > 0) headers = list;
    }
    const slot = incomingSlot(request);
    if (slot === null || slot.source !== this.#host) return false;
    const st = this.#state(slot.id);
    const ev = st?.event;
    if (ev === undefined || !eventInternals.upgradable(ev)) return false;
    let up: { socket: ServerWebSocket; response: Response };
    try {
      up = this.#upgrade(slot.id, { data: options.data, protocol }, "nodebuffer", headers);
    } catch (e) {
      if ((e as { code?: unknown }).code?.toString().startsWith("ERR_WS_")) return false;
      throw e;
    }
    eventInternals.upgrade(ev, up.response);
    return true;
  }

  // The doorbell: drains every queued record, in one native call per 1024, and
  // dispatches them; replies gathered meanwhile go out in one flush.
  #onDoorbell = (): void => {
    this.#inBatch = true;
    try {
      this.#drainBatch();
    } catch (e) {
      this.#report(e, null);
    } finally {
      this.#inBatch = false;
      this.#native.flush();
    }
  };

  // The loop is a method of its own, out of the doorbell's `try`: TurboFan leaves a
  // constructor's `super()` call generic in code inlined into a `try` block, so a message's
  // Buffer (a subclass of Uint8Array) made there cost about 150 instructions more. The
  // doorbell does not inline it (it is optimized first, with too much inlined already).
  #drainBatch(): void {
    const native = this.#native;
    const rec = this.#records;
    const texts = this.#texts;
    let handled = 0;
    // The record constants as locals: each imported binding read in the loop was a load
    // from its module cell with a hole check and a Smi check (about 8 instructions, 9 of
    // them a record); read once a drain here, they stay in registers or stack slots.
    const words = RECORD_WORDS;
    const wsOpen = RECORD_WS_OPEN;
    const wsClose = RECORD_WS_CLOSE;
    const wsMessage = RECORD_WS_MESSAGE;
    const wsDrain = RECORD_WS_DRAIN;
    const pooled = WS_POOLED;
    const pooledSame = WS_POOLED_SAME;
    const textPooled = WS_TEXT_POOLED;
    const textPooledSame = WS_TEXT_POOLED_SAME;
    for (;;) {
      const n = native.drain(rec, texts);
      if (n === 0) break;
      // The ArrayBuffer of this drain's small binary messages (WS_POOLED) and the string
      // of its small text messages (WS_TEXT_POOLED) last carried.
      let arena: unknown = undefined;
      let textArena: unknown = undefined;
      // The next payload in `texts`.
      let k = 0;
      for (let i = 0; i < n * words; i += words) {
        const kind = rec[i];
        if (kind >= wsOpen && kind <= wsClose) {
          // Every WebSocket record but DRAIN carries a payload; a small message may share
          // the ArrayBuffer or string of the one before it (WS_POOLED_SAME, WS_TEXT_POOLED_SAME).
          const form = kind === wsMessage ? rec[i + 2] & 0xff : 0;
          let payload: unknown = undefined;
          if (form === pooledSame) payload = arena;
          else if (form === textPooledSame) payload = textArena;
          else if (kind !== wsDrain) {
            payload = texts[k];
            texts[k++] = "";
            if (form === pooled) arena = payload;
            else if (form === textPooled) textArena = payload;
          }
          // A binary message in one of the drain's ArrayBuffers (the usual record of a busy
          // socket) straight to its socket: `#wsRecord`'s tests of the kind and form read
          // each constant from its module cell again.
          if (form === pooled || form === pooledSame) this.#wsPooled(rec[i + 1], rec[i + 2], payload, rec[i + 3]);
          else this.#wsRecord(kind, rec[i + 1], rec[i + 2], payload, rec[i + 3]);
        } else if (kind === RECORD_REQUEST) {
          const id = rec[i + 1];
          const flags = rec[i + 2];
          if ((flags & FLAG_LARGE_BODY) === 0) this.#dispatch(id, flags, native.requestHead(id), rec[i + 3]);
          else this.#hold({ id, flags, head: native.requestHead(id), urlLength: rec[i + 3], aborts: [] });
        } else this.#record(rec[i], rec[i + 1], rec[i + 2]);
      }
      handled += n;
      if (handled >= RECORDS_PER_TURN) {
        native.reschedule();
        break;
      }
    }
  }

  /** Every record but REQUEST (dispatched by the drain loop, with its head text). */
  #record(kind: number, id: number, arg: number): void {
    switch (kind) {
      case RECORD_BODY_DATA:
      case RECORD_BODY_END:
        this.#wakeBody(id, null);
        break;
      case RECORD_BODY_FULL:
        this.#readDone(id);
        this.#wakeBody(id, null);
        break;
      case RECORD_BODY_ERROR:
        this.#readDone(id);
        this.#wakeBody(id, bodyError(arg));
        break;
      case RECORD_ABORT:
        this.#abort(id, arg);
        break;
      case RECORD_WRITABLE: {
        const st = this.#state(id);
        const w = st?.writable;
        if (w != null) {
          st!.writable = null;
          w(true);
        }
        break;
      }
      case RECORD_CLOSED:
        this.#onClosed?.();
        break;
    }
  }

  /** The socket of a record: the last one again, as records come in runs of a socket's. */
  #socket(sid: number): ServerWebSocket | undefined {
    let ws = this.#lastSocket;
    if (sid !== this.#lastSid || ws === undefined) {
      ws = this.#sockets.get(sid);
      if (ws === undefined) return undefined;
      this.#lastSid = sid;
      this.#lastSocket = ws;
    }
    return ws;
  }

  /** A MESSAGE record of a binary message of up to 16 KiB (WS_POOLED, WS_POOLED_SAME): a
   * view of the drain's ArrayBuffer `payload`; `word` has its offset there in the low 16 bits (the
   * arena's number above them, for `wsViewed`), `arg` its length above the form's byte. */
  #wsPooled(sid: number, arg: number, payload: unknown, word: number): void {
    const ws = this.#socket(sid);
    if (ws !== undefined) socketInternals.pooled(ws, payload as ArrayBuffer, word & 0xffff, arg >>> 8, word);
  }

  #wsRecord(kind: number, sid: number, arg: number, payload: unknown, word: number): void {
    const ws = this.#socket(sid);
    if (ws === undefined) return;
    switch (kind) {
      case RECORD_WS_MESSAGE: {
        // A small text message is a substring of the batch's shared string; `word` has
        // its offset there in the low 16 bits (the arena's number above them, for
        // `wsViewed`). Binary messages in the drain's ArrayBuffers went to `#wsPooled`.
        const form = arg & 0xff;
        if (form === WS_TEXT_POOLED || form === WS_TEXT_POOLED_SAME) {
          const offset = word & 0xffff;
          const text = (payload as string).substring(offset, offset + (arg >>> 8));
          const viewed = wsViewed;
          viewed.text = text;
          viewed.textAt = word;
          socketInternals.message(ws, true, text);
        } else socketInternals.message(ws, arg === WS_TEXT, payload as string | Buffer);
        break;
      }
      case RECORD_WS_OPEN:
        socketInternals.open(ws, payload as string);
        break;
      case RECORD_WS_DRAIN:
        socketInternals.drain(ws);
        break;
      case RECORD_WS_PONG:
        if (arg === WS_PING) socketInternals.ping(ws, payload as Buffer);
        else socketInternals.pong(ws, payload as Buffer);
        break;
      case RECORD_WS_CLOSE:
        this.#sockets.delete(sid);
        this.#lastSid = 0;
        this.#lastSocket = undefined;
        socketInternals.closed(ws, arg & 0xffff, payload as string, (arg & WS_CLEAN) !== 0);
        break;
    }
  }

  #makeWsHost(): WebSocketHost {
    const n = this.#native;
    // Sends wake their sockets' writers at the next flush: the batch's end, or a
    // microtask when sent from elsewhere (a timer, a promise).
    return {
      // `compress` is left out when true, the default (one argument conversion less).
      sendText: (sid, data, compress) => {
        const r = compress ? n.wsSendText(sid, data) : n.wsSendText(sid, data, false);
        this.#queueFlush();
        return r;
      },
      sendBytes: (sid, data, compress) => {
        const r = compress ? n.wsSendBytes(sid, data) : n.wsSendBytes(sid, data, false);
        this.#queueFlush();
        return r;
      },
      close: (sid, code, reason) => n.wsClose(sid, code, reason),
      hearDrain: (sid) => n.wsHearDrain(sid),
      ownBuffers: (sid, on) => n.wsOwnBuffers(sid, on),
      abandon: (sid) => n.wsAbandon(sid),
      ping: (sid, data) => n.wsPing(sid, data),
      buffered: (sid) => n.wsBuffered(sid),
      remoteAddress: (sid) => n.wsRemoteAddress(sid),
      subscribe: (sid, topic, on) => n.wsSubscribe(sid, topic, on),
      isSubscribed: (sid, topic) => n.wsIsSubscribed(sid, topic),
      topics: (sid) => n.wsTopics(sid),
      publishText: (sid, topic, data, compress) => {
        const r = n.wsPublishText(sid, topic, data, compress);
        this.#queueFlush();
        return r;
      },
      publishBytes: (sid, topic, data, compress) => {
        const r = n.wsPublishBytes(sid, topic, data, compress);
        this.#queueFlush();
        return r;
      },
      report: (e) => this.#report(e, null),
    };
  }

  /** `upgradeWebSocket` (and `upgrade`) for request `id`: the socket, and the response
   * that opens it. */
  #upgrade(
    id: number,
    options: UpgradeWebSocketOptions,
    binaryType: BinaryType,
    headers?: string[],
  ): { socket: ServerWebSocket; response: Response } {
    const st = this.#state(id);
    const ev = st?.event;
    if (st === undefined || ev === undefined)
      throw Object.assign(new TypeError("upgradeWebSocket(): the request was already answered"), {
        code: "ERR_WS_NOT_UPGRADE",
      });
    const compress = options.compress === undefined ? 0 : options.compress ? 2 : 1;
    let sid: number;
    try {
      sid = this.#native.wsUpgrade(
        id,
        options.protocol ?? null,
        options.maxPayload ?? -1,
        options.idleTimeout === undefined ? -1 : options.idleTimeout * 1000,
        compress,
      );
    } catch (e) {
      throw nativeError(e);
    }
    const url = eventInternals.requestIfCreated(ev)?.url ?? "";
    const socket = socketInternals.create(
      this.#wsHost,
      sid,
      url,
      options.protocol ?? "",
      options.data,
      this.#wsHandlers,
      binaryType,
    );
    this.#sockets.set(sid, socket);
    if (sid === this.#lastSid) this.#lastSid = 0;
    // A Response cannot be constructed with 101; this one only stands for the upgrade.
    const response = new Response(null, { status: 200 });
    Object.defineProperty(response, "status", { value: 101 });
    this.#upgrades.set(response, { id, sid, socket, headers });
    st.socket = socket;
    return { socket, response };
  }

  #dispatch(id: number, flags: number, head: string, urlLength: number): void {
    const ev = eventInternals.create(this.#host, id, flags, head, urlLength);
    const idx = id & INDEX_MASK;
    const st = this.#requests[idx] ?? (this.#requests[idx] = new RequestState());
    st.clear();
    st.id = id;
    st.event = ev;
    st.large = (flags & FLAG_LARGE_BODY) !== 0;
    this.#runListeners(ev);
  }

  /** Gives `ev` to each fetch listener, then lets it answer what they did or did not. */
  #runListeners(ev: FetchEvent): void {
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

  /** The state of request `id` while its event lives. */
  #state(id: number): RequestState | undefined {
    const st = this.#requests[id & INDEX_MASK];
    return st !== undefined && st.id === id ? st : undefined;
  }

  #abort(id: number, reason: number): void {
    const st = this.#state(id);
    const ev = st?.event;
    if (st === undefined || ev === undefined) {
      // A held request learns it when it is given to the listeners (`#resumeBodies`).
      for (const h of this.#held) if (h.id === id) h.aborts.push(reason);
      return;
    }
    if (reason === ABORT_HALF_CLOSED) {
      // Only the signal: the body was complete, and the answer still goes out. The
      // Request is made now if the listener has not looked yet, so a later look sees it.
      abortRequest(ev.request, "AbortError");
      return;
    }
    const req = eventInternals.requestIfCreated(ev);
    if (req !== null) abortRequest(req, reason === ABORT_TIMEOUT ? "TimeoutError" : "AbortError");
    const err = Object.assign(new Error("The client closed the connection"), { code: "ERR_BODY_ABORTED" });
    this.#wakeBody(id, err);
    const w = st.writable;
    if (w !== null) {
      st.writable = null;
      w(false);
    }
    const cancel = st.cancelStream;
    if (cancel !== null) {
      st.cancelStream = null;
      cancel();
    }
    eventInternals.aborted(ev);
  }

  #wakeBody(id: number, error: Error | null): void {
    const st = this.#state(id);
    const w = st?.body;
    if (w == null) return;
    st!.body = null;
    if (error === null) w.resolve();
    else w.reject(error);
  }

  #waitBody(id: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const st = this.#state(id);
      if (st !== undefined) st.body = { resolve, reject };
    });
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

  /** Work `close()` waits for (`waitUntil`). */
  #track(p: Promise<unknown>): void {
    this.#waitUntil.add(p);
    p.finally(() => this.#waitUntil.delete(p));
  }

  /**
   * The host of an event `fetch()` makes: no connection and no native record, so the
   * request is the one given, there is no client, and the answer goes to `answer`.
   */
  #programmaticHost(request: unknown, answer: (r: unknown) => void): EventHost {
    return {
      request: () => request as Request,
      clientAddress: () => "",
      clientCertificate: () => null,
      send: (_ev, _id, response) => {
        checkResponse(response);
        answer(response);
      },
      fail: (ev, _id, status, unanswered) => {
        if (unanswered) {
          const why = `no listener called respondWith(); answered ${status}`;
          this.#report(Object.assign(new Error(why), { code: "ERR_NO_RESPONSE" }), ev);
        }
        answer(new Response(null, { status }));
      },
      report: (error, ev) => this.#report(error, ev),
      track: (p) => this.#track(p),
      finish: noop,
    };
  }

  #makeHost(): EventHost & RequestSource {
    const native = this.#native;
    const server = this;
    const body = (id: number): NativeBody => ({
      readAll: (finish) => server.#readAll(id, finish),
      stream: () => server.#bodyStream(id),
    });
    return {
      webSocket: (id: number, options: UpgradeWebSocketOptions) => this.#upgrade(id, options, "arraybuffer"),
      method: (id) => native.requestMethod(id) ?? "GET",
      body,
      request: (_ev, id, flags, head, urlLength) => incomingRequest(this.#host, id, flags, head, urlLength),
      clientAddress: (id) => native.requestClientAddress(id) ?? "",
      clientCertificate: (id) => {
        const c = native.requestClientCertificate(id);
        if (c === null) return null;
        const { validFrom, validTo, raw, ...names } = c;
        return { ...names, validFrom: new Date(validFrom), validTo: new Date(validTo), raw: new Uint8Array(raw) };
      },
      send: (ev, id, response, release) => {
        // Only a request that upgradeWebSocket() prepared a socket for can be answered with
        // the response that opens it; the others skip the lookup.
        const st = this.#state(id);
        const up =
          st !== undefined && st.socket !== null && typeof response === "object" && response !== null
            ? this.#upgrades.get(response)
            : undefined;
        if (up !== undefined && up.id === id) {
          this.#upgrades.delete(response as object);
          st!.socket = null;
          try {
            if (up.headers === undefined) native.wsAccept(id, up.sid, release);
            else native.wsAccept(id, up.sid, release, up.headers);
          } catch (e) {
            throw nativeError(e);
          }
          this.#queueFlush();
          return;
        }
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
      fail: (ev, id, status, unanswered) => {
        if (unanswered) {
          const why = `no listener called respondWith(); answered ${status}`;
          const err = Object.assign(new Error(why), { code: "ERR_NO_RESPONSE" });
          this.#report(err, ev);
        }
        native.respondEmpty(id, status, CT_NONE, null, false);
        this.#queueFlush();
      },
      report: (error, ev) => this.#report(error, ev),
      track: (p) => this.#track(p),
      finish: (ev, released) => {
        const id = eventInternals.id(ev);
        // A plain number's test: every request comes here (a Set's size cost 230
        // instructions a request more).
        if (this.#readingAny) this.#readDone(id);
        const st = this.#state(id);
        // A socket prepared for a request answered otherwise never opens.
        if (st?.socket != null) socketInternals.abandon(st.socket);
        if (st !== undefined && st.event === ev) st.clear();
        if (released) return;
        const req = eventInternals.requestIfCreated(ev);
        if (req !== null) detachRequest(req);
        native.requestRelease(id);
        this.#queueFlush();
      },
    };
  }

  /**
   * `finish` of the whole request body: at once when it came with the head, else a promise.
   * May throw.
   */
  #readAll<T>(id: number, finish: (b: Uint8Array) => T): T | Promise<T> {
    const b = this.#collect(id);
    return b !== null ? finish(b) : this.#readAllLater(id, finish);
  }

  /**
   * The body once its BODY_FULL (or BODY_ERROR) record came: taken and finished when the
   * record is handled, and the one promise settled, rather than an async function that
   * resumes on a later microtask to take it and a `then` for `finish` (two promise turns
   * and an await per body).
   */
  #readAllLater<T>(id: number, finish: (b: Uint8Array) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const ready = (): void => {
        let b: Buffer | null;
        try {
          b = this.#collect(id);
          if (b !== null) resolve(finish(b));
        } catch (e) {
          reject(e);
          return;
        }
        if (b === null) wait();
      };
      const wait = (): void => {
        const st = this.#state(id);
        if (st !== undefined) st.body = { resolve: ready, reject };
      };
      wait();
    });
  }

  #collect(id: number): Buffer | null {
    let b: Buffer | number;
    try {
      b = this.#native.bodyCollect(id);
    } catch (e) {
      throw nativeError(e);
    }
    if (typeof b !== "number") return b;
    if (b === COLLECT_DEFERRED) {
      // Only the held kind counts: an HTTP/2 body's read (deferred too, not held) does not
      // hold HTTP/1.1 requests back, which its streams' many reads would do without end.
      if (this.#state(id)?.large === true) {
        this.#reading.add(id);
        this.#readingAny = true;
      }
      this.#bodiesWaiting = true;
      this.#queueResume();
    }
    return null;
  }

  /** Request `id`'s deferred body read ended, if it had one: a held request may go on. */
  #readDone(id: number): void {
    if (!this.#readingAny || !this.#reading.delete(id)) return;
    this.#readingAny = this.#reading.size !== 0;
    if (this.#readingTimer !== null) {
      clearTimeout(this.#readingTimer);
      this.#readingTimer = null;
    }
    if (this.#held.length > 0) this.#queueResume();
  }

  /** No body of `#reading` ended for LARGE_READ_WAIT_MS: the oldest stops counting. */
  #readingStalled = (): void => {
    this.#readingTimer = null;
    for (const id of this.#reading) {
      this.#reading.delete(id);
      break;
    }
    this.#readingAny = this.#reading.size !== 0;
    if (this.#held.length > 0) this.#queueResume();
  };

  #queueResume(): void {
    if (this.#resumeQueued) return;
    this.#resumeQueued = true;
    setImmediate(this.#resumeBodies);
  }

  /**
   * A request whose declared body gets a Buffer of its own when read (FLAG_LARGE_BODY: 256
   * KiB to 1 MiB) goes to the listeners from `#resumeBodies`, one a turn, and not while a
   * body waits for its turn or LARGE_READS such bodies are being read. Given to them as its
   * head came, its handler's `arrayBuffer()` promise waited for the bodies before it, two
   * scavenges for a third of the uploads under load: an old promise settled with a young
   * Buffer keeps it, and its 1 MiB, until the next mark-compact (docs/network-thread.md,
   * "Large request bodies, round nine"). HTTP/1.1 only: an HTTP/2 stream held here would
   * fill its connection's flow-control window, and the bodies being read would stall
   * ("HTTP/2 with large bodies, round nineteen").
   */
  #hold(h: HeldRequest): void {
    this.#held.push(h);
    this.#queueResume();
  }

  // Once a turn while requests are held or bodies wait: first, while no body waits and fewer
  // than LARGE_READS are being read, the oldest held request to the listeners (a body its
  // handler asks for at once starts below, in this turn); then the bodies the native side
  // deferred (`bodyCollect` gave COLLECT_DEFERRED), one turn's worth: spreading their
  // Buffers over turns lets V8's scavenges keep pace with them (docs/network-thread.md,
  // "Large request bodies, round six").
  #resumeBodies = (): void => {
    // Still set while this runs: a read below starts here, not from another immediate.
    this.#resumeQueued = true;
    if (!this.#listening) this.#held.length = 0;
    const h = this.#bodiesWaiting || this.#reading.size >= LARGE_READS ? undefined : this.#held.shift();
    if (h !== undefined) {
      this.#dispatch(h.id, h.flags, h.head, h.urlLength);
      for (const reason of h.aborts) this.#abort(h.id, reason);
    }
    if (this.#bodiesWaiting) {
      let more = false;
      try {
        more = this.#native.bodyResume();
      } catch (e) {
        this.#report(e, null);
      }
      this.#bodiesWaiting = more;
    }
    // Held requests behind LARGE_READS bodies wait for one of them to end (`#readDone`), not
    // for the next turn.
    const readsFull = this.#held.length > 0 && this.#reading.size >= LARGE_READS;
    if (readsFull && this.#readingTimer === null) {
      this.#readingTimer = setTimeout(this.#readingStalled, LARGE_READ_WAIT_MS).unref();
    }
    this.#resumeQueued = this.#bodiesWaiting || (this.#held.length > 0 && !readsFull);
    if (this.#resumeQueued) setImmediate(this.#resumeBodies);
  };

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

/** A request held back from the listeners (`Server.#hold`), with the aborts it met. */
interface HeldRequest {
  id: number;
  flags: number;
  head: string;
  urlLength: number;
  aborts: number[];
}

/** What the server holds for one request while its event lives. One per slot index of the
 * native slab, reused by the slot's later requests (`id` says whose it is now), so a
 * request costs no allocation here; a stale id finds nothing. */
class RequestState {
  id = 0;
  event: FetchEvent | undefined = undefined;
  /** A body read waiting for the next BODY_* record. */
  body: { resolve: () => void; reject: (e: Error) => void } | null = null;
  /** A streamed response waiting for a WRITABLE record (false: the client left). */
  writable: ((ok: boolean) => void) | null = null;
  /** Stops a streamed response's producer when the client leaves. */
  cancelStream: (() => void) | null = null;
  /** A WebSocket prepared by `upgradeWebSocket` and not yet accepted. */
  socket: ServerWebSocket | null = null;
  /** The request had FLAG_LARGE_BODY: a deferred read of its body counts in `#reading`. */
  large = false;

  clear(): void {
    this.large = false;
    this.socket = null;
    this.id = 0;
    this.event = undefined;
    this.body = null;
    this.writable = null;
    this.cancelStream = null;
  }
}

function safeUrl(r: Request): string {
  try {
    return r.url;
  } catch {
    return "(released)";
  }
}

export interface ServeInfo {
  /** Bun's `server.upgrade(request, { data, headers })`: see `Server.upgrade`. */
  readonly upgrade: Server["upgrade"];
  /** Bun's `server.publish(topic, data, compress)`: see `Server.publish`. */
  readonly publish: Server["publish"];
  /** The server that received the request. */
  readonly server: Server;
  /** Bun's `server.requestIP(request)`: see `Server.requestIP`. */
  readonly requestIP: Server["requestIP"];
  /** Bun's `server.timeout(request, seconds)`: see `Server.timeout`. */
  readonly timeout: Server["timeout"];
  /** Bun's `server.subscriberCount(topic)`: see `Server.subscriberCount`. */
  readonly subscriberCount: Server["subscriberCount"];
  /** The client's IP address. */
  readonly clientAddress: string;
  /** Deno's `info.remoteAddr`: the client's address and port (`hostname` is
   * `clientAddress`); on a Unix socket, which gives none, the server's path (as Deno's). */
  readonly remoteAddr: ServerAddr;
  /** Deno's `info.completed`: resolves once the exchange is over (the response handed
   * over whole or its stream ended, `waitUntil` work settled; or the client gone). */
  readonly completed: Promise<void>;
  /** The client's verified certificate over HTTPS with `requestCert`, else `null`. */
  readonly clientCertificate: ClientCertificate | null;
  /** Keeps work alive after the response; `close()` waits for it. */
  waitUntil(promise: unknown): void;
}

/**
 * The third argument of a `serve()` handler, shaped as Cloudflare Workers' ExecutionContext
 * so that apps written for it (Hono's `c.executionCtx`) run unchanged.
 */
export interface ExecutionContext {
  /** Keeps work alive after the response; `close()` waits for it. */
  waitUntil(promise: unknown): void;
  /** Accepted and ignored: there is no origin behind this server to fall back to, so a
   * handler that throws is answered 500 as always. */
  passThroughOnException(): void;
  /** Cloudflare's per-invocation properties; always an empty object here. */
  readonly props: Record<string, unknown>;
}

/** A `serve()` handler: `fetch(request, info, ctx)`. */
export type ServeHandler = (
  request: Request,
  info: ServeInfo & ExecutionContext,
  ctx: ServeInfo & ExecutionContext,
) => unknown;

export interface ServeOptions extends ServerOptions {
  /** Called as `fetch(request, info, ctx)`: `info` and `ctx` are the same object, so both
   * Bun/Deno-style (`info.clientAddress`) and Cloudflare-style (`ctx.waitUntil`) handlers
   * find what they read. Optional with `routes`: it answers what no route does. */
  fetch?: ServeHandler;
  /** Deno's name for `fetch` (`Deno.serve({ handler })`). */
  handler?: ServeHandler;
  /** Bun's `routes`: path patterns (`/users/:id`, `/api/*`) to a handler called as `fetch`
   * is (with `request.params`), a fixed Response, or an object of either by method; `false`
   * leaves a path to `fetch`. See the README. */
  routes?: Routes;
  /** Alias of `host`, as Bun and Deno name it. */
  hostname?: string;
  /** Bun's `error(error)`: the answer to a request whose `fetch` threw or rejected, in
   * place of the 500 (the error is then not reported). If it throws too, 500 and that
   * error is reported. */
  error?: (error: unknown) => unknown;
  /** Deno's name for `error`. */
  onError?: (error: unknown) => unknown;
  /** Deno's `onListen(addr)`: called once the server listens, with `server.addr`. */
  onListen?: (addr: ServerAddr) => void;
  /** Deno's `signal`: aborting it closes the server, as `close()` does. */
  signal?: AbortSignal;
}

const NO_PROPS: Record<string, unknown> = Object.freeze({});

// One object per request, given as both the second and the third argument: Hono reads the
// second as `c.env` and the third as `c.executionCtx`.
class EventInfo implements ServeInfo, ExecutionContext {
  #ev: FetchEvent;
  #server: Server;
  #completed: Promise<void> | null = null;
  constructor(ev: FetchEvent, server: Server) {
    this.#ev = ev;
    this.#server = server;
  }
  // Bun passes its Server here; these are the members its handlers use.
  /** `server.upgrade(request, options)` (Bun's): see `Server.upgrade`. */
  get upgrade(): Server["upgrade"] {
    const server = this.#server;
    return (request, options) => server.upgrade(request, options);
  }
  /** `server.publish(topic, data, compress)`: see `Server.publish`. */
  get publish(): Server["publish"] {
    const server = this.#server;
    return (topic, data, compress) => server.publish(topic, data, compress);
  }
  /** `server.requestIP(request)` (Bun's): see `Server.requestIP`. */
  get requestIP(): Server["requestIP"] {
    const server = this.#server;
    return (request) => server.requestIP(request);
  }
  /** `server.timeout(request, seconds)` (Bun's): see `Server.timeout`. */
  get timeout(): Server["timeout"] {
    const server = this.#server;
    return (request, seconds) => server.timeout(request, seconds);
  }
  /** `server.subscriberCount(topic)` (Bun's): see `Server.subscriberCount`. */
  get subscriberCount(): Server["subscriberCount"] {
    const server = this.#server;
    return (topic) => server.subscriberCount(topic);
  }
  /** The server itself. */
  get server(): Server {
    return this.#server;
  }
  get clientAddress(): string {
    return this.#ev.clientAddress;
  }
  get completed(): Promise<void> {
    return (this.#completed ??= eventInternals.completed(this.#ev));
  }
  get remoteAddr(): ServerAddr {
    const addr = this.#server.addr;
    if (addr.transport === "unix") return addr;
    const ip = this.#server.requestIP(this.#ev.request);
    return { transport: "tcp", hostname: ip?.address ?? "", port: ip?.port ?? 0 };
  }
  get clientCertificate(): ClientCertificate | null {
    return this.#ev.clientCertificate;
  }
  // Getters returning bound functions, so `const { waitUntil } = info` works.
  get waitUntil(): (promise: unknown) => void {
    const ev = this.#ev;
    return (p) => ev.waitUntil(p);
  }
  get passThroughOnException(): () => void {
    return passThrough;
  }
  get props(): Record<string, unknown> {
    return NO_PROPS;
  }
  // The members are getters on the prototype (the address is read natively only when
  // asked for), so console.log and JSON.stringify are shown them here rather than `{}`.
  toJSON(): { clientAddress: string } {
    return { clientAddress: this.clientAddress };
  }
  [Symbol.for("nodejs.util.inspect.custom")](): object {
    return {
      clientAddress: this.clientAddress,
      remoteAddr: this.remoteAddr,
      clientCertificate: this.clientCertificate,
      waitUntil: this.waitUntil,
      passThroughOnException: passThrough,
      props: NO_PROPS,
    };
  }
}

function passThrough(): void {}

/**
 * Starts a server for a `fetch(request, info, ctx)` handler, the shape Bun, Deno, Hono and
 * Cloudflare Workers use, and returns it listening.
 */
export function serve(options: ServeOptions | ServeHandler, handler?: ServeHandler): Server {
  // Deno's forms: serve(handler), serve(options, handler) and serve({ ...options, handler }).
  if (typeof options === "function") options = { fetch: options };
  if (options === null || typeof options !== "object")
    throw optionError(`serve() needs an options object with a fetch function or routes, got ${got(options)}`);
  if (handler !== undefined || options.handler !== undefined) {
    const given = [options.fetch, options.handler, handler].filter((f) => f !== undefined).length;
    if (given > 1) throw optionError("serve() got its handler twice: give one of fetch, handler, or a second argument");
    const f = handler ?? options.handler;
    if (typeof f !== "function")
      throw optionError(
        `${handler !== undefined ? "serve()'s second argument" : "handler"} must be a function, got ${got(f)}`,
      );
    options = { ...options, fetch: handler ?? options.handler };
  }
  const { fetch: _f, handler: _h, routes: _r, error: _e, onError: _d, onListen, signal, ...rest } = options;
  const handlers = handlersOf(options, null);
  if (onListen !== undefined && typeof onListen !== "function")
    throw optionError(`onListen must be a function, got ${got(onListen)}`);
  if (
    signal !== undefined &&
    (signal === null ||
      typeof signal !== "object" ||
      typeof signal.aborted !== "boolean" ||
      typeof signal.addEventListener !== "function")
  )
    throw optionError(`signal must be an AbortSignal, got ${got(signal)}`);
  const server = new Server(rest);
  served.set(server, handlers);
  server.addEventListener("fetch", (ev) => {
    const info = new EventInfo(ev, server);
    const onError = handlers.onError;
    if (onError === undefined) {
      ev.respondWith(handlers.answer(ev.request, info, info));
      return;
    }
    let r: unknown;
    try {
      r = handlers.answer(ev.request, info, info);
    } catch (e) {
      // A throw of onError itself reaches the listener's caller: 500, reported.
      ev.respondWith(onError(e));
      return;
    }
    if (r !== null && typeof r === "object" && typeof (r as PromiseLike<unknown>).then === "function")
      r = Promise.resolve(r).catch(onError);
    ev.respondWith(r);
  });
  server.listenSync();
  if (signal !== undefined) {
    const stop = () => void server.close();
    if (signal.aborted) stop();
    else {
      signal.addEventListener("abort", stop, { once: true });
      void server.finished.then(() => signal.removeEventListener("abort", stop));
    }
  }
  if (onListen !== undefined) {
    try {
      onListen(server.addr);
    } catch (e) {
      void server.close({ force: true });
      throw e;
    }
  }
  return server;
}

// What a `serve()` server answers with; `reload()` replaces them. `answer` is `fetch`
// itself when there are no routes, so such a server's requests take no extra step.
interface Handlers {
  fetch: Fallback | null;
  router: Router | null;
  onError: ((error: unknown) => unknown) | undefined;
  answer: Fallback;
}

const served = new WeakMap<Server, Handlers>();

/** The handlers `options` name, over `old`'s (a reload) or none; throws on bad ones. */
function handlersOf(
  options: Pick<ServeOptions, "fetch" | "routes" | "error" | "onError">,
  old: Handlers | null,
): Handlers {
  const { fetch, routes, error, onError: deno } = options;
  for (const [name, f] of [
    ["fetch", fetch],
    ["error", error],
    ["onError", deno],
  ] as const)
    if (f !== undefined && typeof f !== "function") throw optionError(`${name} must be a function, got ${got(f)}`);
  if (error !== undefined && deno !== undefined) throw optionError("error and onError are the same option: give one");
  const router = routes === undefined ? (old?.router ?? null) : new Router(routes);
  const handler = (fetch as Fallback | undefined) ?? old?.fetch ?? null;
  if (handler === null && (router === null || router.size === 0))
    throw optionError(
      `${old === null ? "serve()" : "reload()"} needs a fetch function or routes in its options, got ${got(fetch)} for fetch`,
    );
  const answer: Fallback =
    router === null || router.size === 0 ? handler! : (request, info) => router.dispatch(request, info, handler);
  return { fetch: handler, router, onError: error ?? deno ?? old?.onError, answer };
}
