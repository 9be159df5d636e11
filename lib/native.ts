// The typed binding to the native addon: the only file that touches it.
// The table of calls, their arguments and threads is at the top of src/lib.rs.
import { createRequire } from "node:module";

export interface NativeOptions {
  host?: string;
  port?: number;
  reusePort?: boolean;
  backlog?: number;
  maxConnections?: number;
  maxBodySize?: number;
  maxHeaderSize?: number;
  maxPendingRequests?: number;
  workerThreads?: number;
  headerTimeoutMs?: number;
  idleTimeoutMs?: number;
  timeoutMs?: number;
}

export interface NativeServer {
  listen(doorbell: () => void): number;
  /** Writes `[kind, id, arg, urlLength]` records (RECORD_WORDS each), and for each REQUEST
   * record, in order from `texts[0]`, one string: its URL (the first urlLength characters)
   * then its headers, packed as `name\nvalue\nname\nvalue…`. Returns the record count. */
  drain(records: Uint32Array, texts: string[]): number;
  reschedule(): void;
  flush(): void;
  requestMethod(id: number): string | null;
  requestClientAddress(id: number): string | null;
  requestRelease(id: number): void;
  bodyCollect(id: number): Buffer | null;
  bodyPull(id: number): Buffer | number;
  respondText(id: number, status: number, ct: number, headers: string[] | null, body: string, release: boolean): void;
  respondBytes(id: number, status: number, ct: number, headers: string[] | null, body: Uint8Array, release: boolean): void;
  respondBytesShared(id: number, status: number, ct: number, headers: string[] | null, body: Uint8Array, release: boolean): void;
  respondEmpty(id: number, status: number, ct: number, headers: string[] | null, release: boolean): void;
  respondStream(id: number, status: number, ct: number, headers: string[] | null): void;
  streamWrite(id: number, chunk: Uint8Array): boolean;
  streamWriteShared(id: number, chunk: Uint8Array): boolean;
  streamEnd(id: number, failed: boolean): void;
  close(graceMs: number): void;
  forceClose(): void;
  shutdown(): void;
  stats(): number[];
  liveRequests(): number;
}

/** The addon's server object: its life (listen, close, GC) and its handle. */
interface ServerHandle {
  readonly handle: number;
  listen(doorbell: () => void): number;
  close(graceMs: number): void;
  forceClose(): void;
  shutdown(): void;
  stats(): number[];
  liveRequests(): number;
}

type H = number;
/** The addon's exports: the class, and one plain function per request-path call, each
 * taking the server's handle first (several times cheaper to call than a method). */
interface Addon {
  NativeServer: new (options: NativeOptions) => ServerHandle;
  drain(h: H, records: Uint32Array, texts: string[]): number;
  reschedule(h: H): void;
  flush(h: H): void;
  requestMethod(h: H, id: number): string | null;
  requestClientAddress(h: H, id: number): string | null;
  requestRelease(h: H, id: number): void;
  bodyCollect(h: H, id: number): Buffer | null;
  bodyPull(h: H, id: number): Buffer | number;
  respondText(h: H, id: number, status: number, ct: number, headers: string[] | null, body: string, release: boolean): void;
  respondBytes(h: H, id: number, status: number, ct: number, headers: string[] | null, body: Uint8Array, release: boolean): void;
  respondBytesShared(h: H, id: number, status: number, ct: number, headers: string[] | null, body: Uint8Array, release: boolean): void;
  respondEmpty(h: H, id: number, status: number, ct: number, headers: string[] | null, release: boolean): void;
  respondStream(h: H, id: number, status: number, ct: number, headers: string[] | null): void;
  streamWrite(h: H, id: number, chunk: Uint8Array): boolean;
  streamWriteShared(h: H, id: number, chunk: Uint8Array): boolean;
  streamEnd(h: H, id: number, failed: boolean): void;
}

const require = createRequire(import.meta.url);
const addon: Addon = require(process.env.FETCH_RS_NATIVE_PATH ?? "../fetch-rs.node");

/** A native server, as the rest of lib/ calls it: every call bound to its handle. The
 * object keeps the addon's server alive; dropping it lets GC free the native side. */
export function createNativeServer(options: NativeOptions): NativeServer {
  const s = new addon.NativeServer(options);
  const h = s.handle;
  const a = addon;
  return {
    listen: (doorbell) => s.listen(doorbell),
    close: (graceMs) => s.close(graceMs),
    forceClose: () => s.forceClose(),
    shutdown: () => s.shutdown(),
    stats: () => s.stats(),
    liveRequests: () => s.liveRequests(),
    drain: (records, texts) => a.drain(h, records, texts),
    reschedule: () => a.reschedule(h),
    flush: () => a.flush(h),
    requestMethod: (id) => a.requestMethod(h, id),
    requestClientAddress: (id) => a.requestClientAddress(h, id),
    requestRelease: (id) => a.requestRelease(h, id),
    bodyCollect: (id) => a.bodyCollect(h, id),
    bodyPull: (id) => a.bodyPull(h, id),
    respondText: (id, status, ct, headers, body, release) => a.respondText(h, id, status, ct, headers, body, release),
    respondBytes: (id, status, ct, headers, body, release) => a.respondBytes(h, id, status, ct, headers, body, release),
    respondBytesShared: (id, status, ct, headers, body, release) =>
      a.respondBytesShared(h, id, status, ct, headers, body, release),
    respondEmpty: (id, status, ct, headers, release) => a.respondEmpty(h, id, status, ct, headers, release),
    respondStream: (id, status, ct, headers) => a.respondStream(h, id, status, ct, headers),
    streamWrite: (id, chunk) => a.streamWrite(h, id, chunk),
    streamWriteShared: (id, chunk) => a.streamWriteShared(h, id, chunk),
    streamEnd: (id, failed) => a.streamEnd(h, id, failed),
  };
}

/** Record kinds written by `drain`, three words each: `[kind, id, arg]` (src/bridge.rs). */
/** Words per drained record (src/bridge.rs `record::WORDS`). */
export const RECORD_WORDS = 4;
export const RECORD_REQUEST = 1;
export const RECORD_BODY_DATA = 2;
export const RECORD_BODY_END = 3;
export const RECORD_BODY_FULL = 4;
export const RECORD_BODY_ERROR = 5;
export const RECORD_ABORT = 6;
export const RECORD_WRITABLE = 7;
export const RECORD_CLOSED = 8;
export const FLAG_HAS_BODY = 1 << 8;
export const FLAG_BODY_BUFFERED = 1 << 9;

/** `bodyPull` results other than a chunk. */
export const PULL_END = 0;
export const PULL_PENDING = 1;

/** Abort reasons in ABORT records. */
export const ABORT_CLIENT_GONE = 1;
export const ABORT_TIMEOUT = 2;
/** The client half-closed: `request.signal` aborts, the answer is still sent. */
export const ABORT_HALF_CLOSED = 3;

/** Body error kinds in BODY_ERROR records. */
export const BODY_TOO_LARGE = 1;

/** Content-type codes understood by the respond calls (src/response.rs). */
export const CT_NONE = 0;
export const CT_TEXT = 1;
export const CT_JSON = 2;
export const CT_FORM = 4;

/** Method codes in REQUEST records (src/bridge.rs `method_code`); 7 means "ask". */
export const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];

/**
 * Native errors carry their stable code as a `[CODE] message` prefix; this turns one
 * into an Error with `code` set (a TypeError for invalid input, as the Fetch standard
 * raises for bad headers or statuses).
 */
export function nativeError(e: unknown): Error {
  if (!(e instanceof Error)) return new Error(String(e));
  const m = /^\[([A-Z_]+)\] (.*)$/s.exec(e.message);
  if (!m) return e;
  const code = m[1];
  const err =
    code === "ERR_INVALID_HEADER" || code === "ERR_INVALID_STATUS" || code === "ERR_INVALID_OPTION"
      ? new TypeError(m[2])
      : new Error(m[2]);
  (err as Error & { code: string }).code = code;
  return err;
}
