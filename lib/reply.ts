// Turns a Response (ours, Node's global one, or anything shaped like it) into native
// respond calls: the fast paths first, streams with backpressure last.
import { isNativeBody, streamFromIterable, type BodySource } from "./body.js";
import { flatHeaders, packHeaders } from "./headers.js";
import { CT_NONE, type HeaderArg, type NativeServer } from "./native.js";
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
    let headers: HeaderArg = null;
    // A content type without a code (a Blob's, a FormData boundary) travels as a header.
    if (s.headers !== null || (s.ct === CT_NONE && s.contentType !== null)) {
      headers = packHeaders(materializeHeaders(s));
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
    let headers = flatHeaders(g.headers);
    if (g.body === null) {
      native.respondEmpty(id, g.status, CT_NONE, headers, release);
      return;
    }
    const decoded = decodedByFetch(g);
    if (decoded) headers = withoutCoding(headers);
    // A declared length means a finite body: read it and send it with that length.
    if (!decoded && g.headers.has("content-length")) {
      return g.arrayBuffer().then((buf) => {
        sendBody(native, id, g.status, CT_NONE, headers, new Uint8Array(buf), false, hooks);
      });
    }
    return sendBody(native, id, g.status, CT_NONE, headers, g.body as ReadableStream<Uint8Array>, release, hooks);
  }
  if (isResponseShaped(res)) return sendResponseShaped(native, id, res, release, hooks);
  throw notAResponse(res);
}

/** Throws what `sendResponse` throws for a value that is no Response of any kind it takes. */
export function checkResponse(res: unknown): void {
  if (!isOwnResponse(res) && !isNodeInstance("Response", res, looksLikeResponse) && !isResponseShaped(res))
    throw notAResponse(res);
}

function notAResponse(res: unknown): TypeError {
  return new TypeError(`respondWith() needs a Response, got ${describe(res)}`);
}

/** A Response from another implementation (a ponyfill such as @whatwg-node/fetch's). */
interface ResponseShaped {
  status: number;
  headers: object;
  body?: unknown;
  bodyUsed?: unknown;
  arrayBuffer?: () => Promise<ArrayBuffer>;
}

// What the other Node adapters (@hono/node-server, srvx) take as a response: a numeric
// status and a headers object; the body is read through its own interface below.
function isResponseShaped(v: unknown): v is ResponseShaped {
  return (
    typeof v === "object" &&
    v !== null &&
    typeof (v as ResponseShaped).status === "number" &&
    typeof (v as ResponseShaped).headers === "object" &&
    (v as ResponseShaped).headers !== null
  );
}

/** The slow, general path: headers through whatever iteration they offer, the body as a
 * stream, an async iterable, or whole when a length is declared. */
function sendResponseShaped(
  native: NativeServer,
  id: number,
  res: ResponseShaped,
  release: boolean,
  hooks: StreamHooks,
): Promise<void> | void {
  if ((res as { type?: unknown }).type === "error") {
    native.respondEmpty(id, 500, CT_NONE, null, release);
    return;
  }
  if (res.bodyUsed === true) throw new TypeError("The response body was already used");
  const status = res.status;
  const headers = headersLikeList(res.headers);
  const body = res.body;
  if (body === null || body === undefined) return native.respondEmpty(id, status, CT_NONE, headers, release);
  let declaredLength = false;
  for (let i = 0; i < headers.length; i += 2) if (headers[i].toLowerCase() === "content-length") declaredLength = true;
  if (declaredLength && typeof res.arrayBuffer === "function") {
    return res.arrayBuffer().then((buf) => {
      sendBody(native, id, status, CT_NONE, headers, new Uint8Array(buf), false, hooks);
    });
  }
  if (typeof body === "string" || body instanceof Uint8Array)
    return sendBody(native, id, status, CT_NONE, headers, body, release, hooks);
  if (body instanceof ReadableStream)
    return pump(native, id, status, CT_NONE, headers, body as ReadableStream<Uint8Array>, hooks);
  // Another implementation's stream (a ponyfill's) is read through its own interface.
  if (typeof (body as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function")
    return pump(
      native,
      id,
      status,
      CT_NONE,
      headers,
      streamFromIterable(body as AsyncIterable<Uint8Array | string>, 0),
      hooks,
    );
  if (typeof (body as ReadableStream).getReader === "function")
    return pump(native, id, status, CT_NONE, headers, readerStream(body as ReadableStream<Uint8Array>), hooks);
  throw new TypeError(`A response body must be a ReadableStream, an async iterable or null, got ${describe(body)}`);
}

/** The flat [name, value, …] list of a Headers-like object: iterable (or with entries()),
 * with forEach, or a plain record; Set-Cookie values kept apart where getSetCookie exists. */
function headersLikeList(h: object): string[] {
  if (typeof (h as Iterable<unknown>)[Symbol.iterator] === "function") return flatHeaders(h as globalThis.Headers);
  const out: string[] = [];
  const push = (v: unknown, n: unknown): void => {
    out.push(String(n), String(v));
  };
  if (typeof (h as { entries?: unknown }).entries === "function") {
    for (const [n, v] of (h as { entries(): Iterable<[string, string]> }).entries()) push(v, n);
  } else if (typeof (h as { forEach?: unknown }).forEach === "function") {
    (h as { forEach(cb: (v: unknown, n: unknown) => void): void }).forEach(push);
  } else {
    for (const n of Object.keys(h)) {
      const v = (h as Record<string, unknown>)[n];
      if (Array.isArray(v)) for (const x of v) push(x, n);
      else push(v, n);
    }
  }
  return out;
}

/** A ReadableStream of ours over any object with a stream-like getReader(). */
function readerStream(foreign: { getReader(): ReadableStreamDefaultReader<Uint8Array> }): ReadableStream<Uint8Array> {
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        reader ??= foreign.getReader();
        const { value, done } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      async cancel(reason) {
        await reader?.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

// The content codings Node's fetch decodes (undici's fetch, "HTTP-network fetch": gzip,
// x-gzip, deflate and br; zstd from undici 7.10, where zlib has it). It decodes all of a
// response's codings or, when one is unknown, none. Made on first use: node:zlib is looked
// at only for zstd, and loading it at import kept 0.2 MiB resident in every server.
let fetchDecodes: Set<string> | null = null;
function fetchDecodesSet(): Set<string> {
  if (fetchDecodes !== null) return fetchDecodes;
  const set = new Set(["gzip", "x-gzip", "deflate", "br"]);
  const [major, minor] = (process.versions.undici ?? "0.0").split(".").map(Number);
  if (
    (major > 7 || (major === 7 && minor >= 10)) &&
    typeof (process.getBuiltinModule("node:zlib") as { createZstdDecompress?: unknown }).createZstdDecompress ===
      "function"
  )
    set.add("zstd");
  return (fetchDecodes = set);
}

/**
 * Whether Node's `fetch()` made this response and already decoded its body, so that its
 * Content-Encoding and Content-Length describe bytes that are no longer there. A response
 * from `fetch()` has a type other than "default" (one built with `new Response()` has
 * "default"); the body is decoded exactly when every listed coding is one fetch decodes
 * (fetch leaves HEAD, 204/304 and followed redirects alone, but those have no body here).
 */
function decodedByFetch(g: globalThis.Response): boolean {
  if (g.type === "default") return false;
  const coding = g.headers.get("content-encoding");
  if (coding === null) return false;
  // As undici splits them: any other token, "identity" and "" included, stops all decoding.
  const decodes = fetchDecodesSet();
  for (const c of coding.toLowerCase().split(",")) if (!decodes.has(c.trim())) return false;
  return true;
}

/** The header list without Content-Encoding and Content-Length. */
function withoutCoding(list: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) {
    const n = list[i].toLowerCase();
    if (n !== "content-encoding" && n !== "content-length") out.push(list[i], list[i + 1]);
  }
  return out;
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
  headers: HeaderArg,
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

/**
 * Streams a ReadableStream into a chunked response, one chunk at a time as the socket takes
 * it. The stream is piped into a sink rather than read with a reader: pipeTo hands each chunk
 * to the sink directly, so a patched Object.prototype.then (which sees every {value, done}
 * a reader's read() resolves with) cannot change what goes on the wire.
 */
async function pump(
  native: NativeServer,
  id: number,
  status: number,
  ct: number,
  headers: HeaderArg,
  stream: ReadableStream<Uint8Array>,
  hooks: StreamHooks,
): Promise<void> {
  const stop = new AbortController();
  const clientGone = (): void => stop.abort(new DOMException("The client closed the connection", "AbortError"));
  const sink = new WritableStream<unknown>({
    async write(value) {
      const chunk = typeof value === "string" ? Buffer.from(value) : value;
      if (!(chunk instanceof Uint8Array)) throw new TypeError("Response body stream chunks must be Uint8Array");
      if (chunk.byteLength === 0) return;
      let written = tryWrite(native, id, chunk);
      while (written === 0 && (await hooks.writable(id))) written = tryWrite(native, id, chunk);
      // The client went away: stop the producer (pipeTo cancels the stream).
      if (written !== 1) clientGone();
    },
  });
  // pipeTo locks the stream at once, before anything is sent.
  const piped = stream.pipeTo(sink, { signal: stop.signal });
  native.respondStream(id, status, ct, headers);
  // The client leaving ends a stream that is waiting for its producer, too: the stream is
  // cancelled and the producer's cancel() runs.
  hooks.onAbort(id, clientGone);
  let ok = false;
  try {
    await piped;
    ok = true;
  } catch (e) {
    if (!stop.signal.aborted) throw e;
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
