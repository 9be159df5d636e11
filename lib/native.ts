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
  drain(records: Uint32Array): number;
  reschedule(): void;
  flush(): void;
  requestMethod(id: number): string | null;
  requestUrl(id: number): string | null;
  requestHeader(id: number, name: string): string | null;
  requestHeaders(id: number): string[] | null;
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

interface Addon {
  NativeServer: new (options: NativeOptions) => NativeServer;
}

const require = createRequire(import.meta.url);
const addon: Addon = require(process.env.FETCH_RS_NATIVE_PATH ?? "../fetch-rs.node");

export const NativeServer = addon.NativeServer;

/** Record kinds written by `drain`, three words each: `[kind, id, arg]` (src/bridge.rs). */
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
