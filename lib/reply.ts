// Turns a Response (ours, Node's global one, or anything shaped like it) into native
// respond calls: the fast paths first, streams with backpressure last.
import { isNativeBody, type BodySource } from "./body.js";
import { flatHeaders } from "./headers.js";
import { CT_NONE, type NativeServer } from "./native.js";
import { isNodeInstance, looksLikeResponse } from "./node-classes.js";
import { isOwnResponse, materializeHeaders, responseState, takeBodySource } from "./response.js";


/** Bodies from this size on are lent to the native side instead of copied: below it a
 * copy is cheaper than holding a reference (DESIGN.md section 2, rule 7). */
const SHARE_MIN = 64 * 1024;

/** @internal What a streamed response needs from the server. */
export interface StreamHooks {
  /** Resolves when the response can take more; false when the client left. */
  writable(id: number): Promise<boolean>;
  /** Registers what to do when the client goes away mid-stream (null: done streaming). */
  onAbort(id: number, cancel: (() => void) | null): void;
}

/**
 * Sends `res` for request `id`. Returns a promise while the body still has to be read
 * or streamed, or undefined when the reply is queued.
 */
export function sendResponse(
  native: NativeServer,
  id: number,
  res: unknown,
  release: boolean,
  hooks: StreamHooks,
): Promise<void> | void {
  if (isOwnResponse(res)) {
    const s = responseState(res);
    if (s.type === "error") {
      // Response.error() is a network error; a server has no such thing to send, so the
      // client gets a plain 500 (README, "Responses").
      native.respondEmpty(id, 500, CT_NONE, null, release);
      return;
    }
    let ct = s.ct;
    let headers: string[] | null = null;
    // A content type without a code (a Blob's, a FormData boundary) travels as a header.
    if (s.headers !== null || (s.ct === CT_NONE && s.contentType !== null)) {
      headers = flatHeaders(materializeHeaders(s));
      ct = CT_NONE;
    }
    return sendBody(native, id, s.status, ct, headers, takeBodySource(s), release, hooks);
  }
  if (isNodeInstance("Response", res, looksLikeResponse)) {
    const g = res as globalThis.Response;
    if (g.type === "error") {
      native.respondEmpty(id, 500, CT_NONE, null, release);
      return;
    }
    if (g.bodyUsed) throw new TypeError("The response body was already used");
    const headers = flatHeaders(g.headers);
    if (g.body === null) {
      native.respondEmpty(id, g.status, CT_NONE, headers, release);
      return;
    }
    // A declared length means a finite body: read it and send it with that length.
    if (g.headers.has("content-length")) {
      return g.arrayBuffer().then((buf) => {
        sendBody(native, id, g.status, CT_NONE, headers, new Uint8Array(buf), false, hooks);
      });
    }
    return sendBody(native, id, g.status, CT_NONE, headers, g.body as ReadableStream<Uint8Array>, release, hooks);
  }
  throw new TypeError(`respondWith() needs a Response, got ${describe(res)}`);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "object") return (v as object).constructor?.name ?? "an object";
  return typeof v;
}

function sendBody(
  native: NativeServer,
  id: number,
  status: number,
  ct: number,
  headers: string[] | null,
  source: BodySource,
  release: boolean,
  hooks: StreamHooks,
): Promise<void> | void {
  if (source === null) return native.respondEmpty(id, status, ct, headers, release);
  if (typeof source === "string") return native.respondText(id, status, ct, headers, source, release);
  if (source instanceof Uint8Array) {
    if (source.byteLength >= SHARE_MIN) return native.respondBytesShared(id, status, ct, headers, source, release);
    return native.respondBytes(id, status, ct, headers, source, release);
  }
  if (source instanceof Blob)
    return source.arrayBuffer().then((b) => {
      sendBody(native, id, status, ct, headers, new Uint8Array(b), false, hooks);
    });
  if (isNativeBody(source)) return sendBody(native, id, status, ct, headers, source.stream(), release, hooks);
  return pump(native, id, status, ct, headers, source, hooks);
}

/** Streams a ReadableStream into a chunked response, one chunk at a time as the socket takes it. */
async function pump(
  native: NativeServer,
  id: number,
  status: number,
  ct: number,
  headers: string[] | null,
  stream: ReadableStream<Uint8Array>,
  hooks: StreamHooks,
): Promise<void> {
  const reader = stream.getReader();
  native.respondStream(id, status, ct, headers);
  // The client leaving ends a stream that is waiting for its producer, too: the
  // pending read resolves as done and the producer's cancel() runs.
  hooks.onAbort(id, () => {
    reader.cancel(new DOMException("The client closed the connection", "AbortError")).catch(() => {});
  });
  let ok = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const chunk = typeof value === "string" ? Buffer.from(value) : value;
      if (!(chunk instanceof Uint8Array)) throw new TypeError("Response body stream chunks must be Uint8Array");
      if (chunk.byteLength === 0) continue;
      let written = tryWrite(native, id, chunk);
      while (written === 0 && (await hooks.writable(id))) written = tryWrite(native, id, chunk);
      if (written !== 1) {
        // The client went away: stop the producer.
        await reader.cancel(new DOMException("The client closed the connection", "AbortError")).catch(() => {});
        ok = true;
        return;
      }
    }
    ok = true;
  } finally {
    hooks.onAbort(id, null);
    native.streamEnd(id, !ok);
  }
}

/** 1: queued; 0: full, wait for WRITABLE; -1: the response is gone. */
function tryWrite(native: NativeServer, id: number, chunk: Uint8Array): number {
  try {
    const queued = chunk.byteLength >= SHARE_MIN ? native.streamWriteShared(id, chunk) : native.streamWrite(id, chunk);
    return queued ? 1 : 0;
  } catch {
    return -1;
  }
}
