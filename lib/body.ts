// The body mixin shared by Request and Response
// (https://fetch.spec.whatwg.org/#body-mixin): extraction of a BodyInit, and
// arrayBuffer/blob/bytes/formData/json/text over strings, bytes, Blobs, streams and
// incoming request bodies read natively.
import * as nodeStream from "node:stream";
import { encodeFormData, MultipartParser, parseUrlencoded } from "./form-data.js";
import { essence, extractMimeType, serializeMimeType } from "./mime-type.js";
import { CT_FORM, CT_NONE, CT_TEXT } from "./native.js";
import { isNodeInstance, looksLikeFormData } from "./node-classes.js";

/** An incoming request body, read from the native side on demand. */
export interface NativeBody {
  /**
   * `finish` of the whole body: at once when it has arrived already, else a promise of it,
   * settled as the body arrives (no extra promise turn for `finish`). May throw.
   */
  readAll<T>(finish: (b: Uint8Array) => T): T | Promise<T>;
  stream(): ReadableStream<Uint8Array>;
}

export type BodySource = null | string | Uint8Array | Blob | ReadableStream<Uint8Array> | NativeBody;

export type BodyInitLike =
  | string
  | ArrayBuffer
  | ArrayBufferView
  | Blob
  | URLSearchParams
  | FormData
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array | string>
  | null
  | undefined;

/** The extracted body: its source, the content type it implies, and that type's code. */
export interface Extracted {
  source: BodySource;
  type: string | null;
  ct: number;
}

// Node's stream.isDisturbed reads a web ReadableStream's [[disturbed]] slot (undici uses
// it the same way); @types/node does not declare it.
const isDisturbed = (nodeStream as unknown as { isDisturbed(s: ReadableStream): boolean }).isDisturbed;

export const TEXT_TYPE = "text/plain;charset=UTF-8";
const FORM_TYPE = "application/x-www-form-urlencoded;charset=UTF-8";
const NO_BODY: Extracted = Object.freeze({ source: null, type: null, ct: CT_NONE });

export function isNativeBody(s: BodySource): s is NativeBody {
  return typeof s === "object" && s !== null && typeof (s as NativeBody).readAll === "function";
}

/** Whether a body source is a stream, which the standard calls a body with a null source. */
export function isStreamSource(s: BodySource): s is ReadableStream<Uint8Array> {
  return s instanceof ReadableStream;
}

// https://fetch.spec.whatwg.org/#concept-bodyinit-extract, in the order WebIDL converts
// the BodyInit union: Blob, BufferSource, FormData, URLSearchParams, ReadableStream, an
// async iterable (not yet in the standard; Deno and Bun take one), then a string.
export function extractBody(init: BodyInitLike): Extracted {
  if (init === null || init === undefined) return NO_BODY;
  if (typeof init === "string") return { source: init, type: TEXT_TYPE, ct: CT_TEXT };
  if (typeof init === "object") {
    // Bytes are not copied (the standard copies a BufferSource): reply.ts hands large
    // bodies over without a copy (DESIGN.md section 2, rule 7), so a caller must not change
    // the bytes until the response is sent (README, "Fetch classes").
    if (init instanceof Uint8Array) return { source: init, type: null, ct: CT_NONE };
    if (init instanceof Blob) return { source: init, type: init.type === "" ? null : init.type, ct: CT_NONE };
    if (init instanceof ArrayBuffer) return { source: new Uint8Array(init), type: null, ct: CT_NONE };
    if (ArrayBuffer.isView(init))
      return { source: new Uint8Array(init.buffer, init.byteOffset, init.byteLength), type: null, ct: CT_NONE };
    if (isNodeInstance("FormData", init, looksLikeFormData)) {
      const { body, type } = encodeFormData(init as FormData);
      return { source: body, type, ct: CT_NONE };
    }
    if (init instanceof URLSearchParams) return { source: init.toString(), type: FORM_TYPE, ct: CT_FORM };
    if (init instanceof ReadableStream) {
      if (init.locked || isDisturbed(init)) throw new TypeError("The body stream is locked or has already been read");
      return { source: init, type: null, ct: CT_NONE };
    }
    if (typeof (init as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function")
      return { source: streamFromIterable(init as AsyncIterable<Uint8Array | string>), type: null, ct: CT_NONE };
  }
  // Anything else is a USVString (a symbol throws a TypeError here, as WebIDL says).
  return { source: `${init as unknown as string}`, type: TEXT_TYPE, ct: CT_TEXT };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A stream of an async iterable's chunks (strings as UTF-8); cancelling it ends the
 * iterator. `highWaterMark` 0 reads nothing ahead of the consumer. */
export function streamFromIterable(
  it: AsyncIterable<Uint8Array | string>,
  highWaterMark = 1,
): ReadableStream<Uint8Array> {
  let iter: AsyncIterator<Uint8Array | string> | undefined;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        iter ??= it[Symbol.asyncIterator]();
        const { value, done } = await iter.next();
        if (done) controller.close();
        else controller.enqueue(typeof value === "string" ? encoder.encode(value) : value);
      },
      async cancel(reason) {
        await iter?.return?.(reason);
      },
    },
    { highWaterMark },
  );
}

type InMemory = string | Uint8Array | Blob;

// The streams toStream made over an in-memory source, and that source. Frameworks change
// a response's headers by rebuilding it from its body (`new Response(res.body, res)`:
// Hono's middleware, itty-router's corsify); while such a stream is untouched, the new
// body is read or sent from the source directly, with its length known, instead of
// being pumped chunk by chunk.
const origins = new WeakMap<ReadableStream<Uint8Array>, InMemory>();

/**
 * The in-memory source behind an untouched stream of ours, taking it: the stream is
 * cancelled, so it reads as disturbed exactly as if it had been read to the end.
 */
export function takeStreamOrigin(stream: ReadableStream<Uint8Array>): InMemory | undefined {
  const origin = origins.get(stream);
  if (origin === undefined || stream.locked || isDisturbed(stream)) return undefined;
  origins.delete(stream);
  stream.cancel().catch(() => {});
  return origin;
}

/** A ReadableStream over a body source (for the `body` getter). */
export function toStream(source: BodySource): ReadableStream<Uint8Array> | null {
  if (source === null) return null;
  if (source instanceof ReadableStream) return source;
  if (isNativeBody(source)) return source.stream();
  let stream: ReadableStream<Uint8Array>;
  if (source instanceof Blob) {
    stream = source.stream() as ReadableStream<Uint8Array>;
  } else {
    // A byte stream transfers (detaches) what is enqueued, so it gets its own copy of our
    // bytes: `new Uint8Array(view)` copies, where a Buffer's slice() would share, and
    // transferring a pooled Buffer's memory would break every Buffer in the pool.
    const bytes = typeof source === "string" ? encoder.encode(source) : new Uint8Array(source);
    stream = new ReadableStream<Uint8Array>({
      type: "bytes",
      start(controller) {
        if (bytes.byteLength > 0) controller.enqueue(bytes);
        controller.close();
      },
    });
  }
  origins.set(stream, source);
  return stream;
}

function chunkError(): TypeError {
  return new TypeError("Body stream chunks must be Uint8Array");
}

// A body stream is read through pipeTo into a sink that collects the chunks: the sink gets
// each chunk directly, where a reader's read() resolves a promise with a {value, done}
// object, which a patched Object.prototype.then would intercept (a body read must give
// the stream's bytes whatever user code did to the prototypes). Likewise only undefined
// or the final result ever resolves a promise here.
function pipeAll(stream: ReadableStream<Uint8Array>, write: (chunk: Uint8Array) => void): Promise<void> {
  return stream.pipeTo(
    new WritableStream<Uint8Array>({
      write(value) {
        if (!(value instanceof Uint8Array)) throw chunkError();
        write(value);
      },
    }),
  );
}

function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  let total = 0;
  for (const c of chunks) total += c.byteLength;
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

/**
 * Calls `finish` with all of a body's bytes: at once where they are at hand (a string,
 * bytes, a request body that has arrived), else when they have arrived; the bytes are ours
 * to keep (never the caller's array) and never pass through a promise. May throw.
 */
function withBytes<T>(s: BodySource, finish: (b: Uint8Array) => T): T | Promise<T> {
  if (s === null) return finish(new Uint8Array(0));
  if (typeof s === "string") return finish(encoder.encode(s));
  if (s instanceof Uint8Array) return finish(new Uint8Array(s)); // a copy, even of a Buffer
  if (s instanceof Blob) return s.arrayBuffer().then((b) => finish(new Uint8Array(b)));
  if (s instanceof ReadableStream) {
    const chunks: Uint8Array[] = [];
    return pipeAll(s, (c) => chunks.push(c)).then(() => finish(concat(chunks)));
  }
  return s.readAll(finish);
}

/**
 * `withBytes(state.take(), finish)` as a promise, without the extra turns of an async
 * function when the bytes are at hand: a request body that arrived with its head is
 * read in the same microtask. Throws of `take()` and `finish` become rejections.
 */
function readBody<T>(state: BodyState, finish: (b: Uint8Array) => T): Promise<T> {
  try {
    const r = withBytes(state.take(), finish);
    return r instanceof Promise ? r : Promise.resolve(r);
  } catch (e) {
    return Promise.reject(e);
  }
}

function wholeArrayBuffer(b: Uint8Array): ArrayBuffer {
  // `buffer` read once: each read of a typed array's accessor here went through a LoadIC
  // (about 200 instructions) for the Buffers the native side makes.
  const ab = b.buffer;
  if (b.byteOffset === 0 && b.byteLength === ab.byteLength && ab instanceof ArrayBuffer) return ab;
  return ab.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

const decode = (b: Uint8Array): string => decoder.decode(b);
const parseJson = (b: Uint8Array): unknown => JSON.parse(decoder.decode(b));

/** Feeds a body to `write` chunk by chunk as it arrives (for the streaming form parser). */
async function feed(s: BodySource, write: (chunk: Uint8Array) => void): Promise<void> {
  if (s === null) return;
  if (typeof s === "string") return write(encoder.encode(s));
  if (s instanceof Uint8Array) return write(s);
  const stream =
    s instanceof ReadableStream ? s : s instanceof Blob ? (s.stream() as ReadableStream<Uint8Array>) : s.stream();
  // A limit or a parse error thrown by `write` cancels the stream (an upload stops being
  // read) and rejects with that error.
  return pipeAll(stream, write);
}

/** A Uint8Array (not a Buffer, which Node's native side returns) over the same bytes. */
function plainBytes(b: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(b) === Uint8Array.prototype ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Internal body state of one Request or Response (https://fetch.spec.whatwg.org/#concept-body). */
export class BodyState {
  /** What to read: the stream once there is one, else the source it was made from. */
  source: BodySource;
  /** Read by a mixin method, sent, or moved into another Request. */
  used = false;
  #stream: ReadableStream<Uint8Array> | null;

  constructor(source: BodySource) {
    this.source = source;
    this.#stream = source instanceof ReadableStream ? source : null;
  }

  /** The `body` getter: created once, and from then on the stream is the body. */
  stream(): ReadableStream<Uint8Array> | null {
    if (this.#stream === null) {
      if (this.source === null) return null;
      if (this.used) {
        // Read without ever becoming a stream: its stream is an empty, disturbed one.
        const s = new ReadableStream<Uint8Array>({ type: "bytes" });
        s.cancel().catch(() => {});
        this.#stream = s;
      } else {
        this.#stream = toStream(this.source);
        this.source = this.#stream;
      }
    }
    return this.#stream;
  }

  // https://fetch.spec.whatwg.org/#dom-body-bodyused
  get disturbed(): boolean {
    return this.used || (this.#stream !== null && isDisturbed(this.#stream));
  }

  // https://fetch.spec.whatwg.org/#body-unusable
  get unusable(): boolean {
    return this.disturbed || (this.#stream !== null && this.#stream.locked);
  }

  #take(): BodySource {
    if (this.unusable) throw new TypeError("Body has already been used");
    // A null body reads as empty, as often as asked, and never becomes used.
    if (this.source === null) return null;
    this.used = true;
    if (this.source instanceof ReadableStream) return takeStreamOrigin(this.source) ?? this.source;
    return this.source;
  }

  /** @internal For sending: the source to send, this body becoming used (see #take). */
  take(): BodySource {
    return this.#take();
  }

  /** Moves the body out, for `new Request(input)`: this one becomes used. */
  transfer(): BodySource {
    const s = this.#take();
    this.#stream = null;
    return s;
  }

  /**
   * A string body that UTF-8 decoding would give back unchanged (no leading BOM, no lone
   * surrogate), taken; else null and nothing taken.
   */
  #takeVerbatimString(): string | null {
    const s = this.source;
    if (typeof s !== "string" || this.unusable || s.charCodeAt(0) === 0xfeff) return null;
    if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) return null;
    this.used = true;
    return s;
  }

  // https://fetch.spec.whatwg.org/#dom-body-bytes
  bytes(): Promise<Uint8Array> {
    return readBody(this, plainBytes);
  }

  // https://fetch.spec.whatwg.org/#dom-body-text: UTF-8 decode, which drops a leading
  // BOM and replaces lone surrogates.
  text(): Promise<string> {
    const s = this.#takeVerbatimString();
    return s !== null ? Promise.resolve(s) : readBody(this, decode);
  }

  // https://fetch.spec.whatwg.org/#dom-body-arraybuffer
  arrayBuffer(): Promise<ArrayBuffer> {
    return readBody(this, wholeArrayBuffer);
  }

  // https://fetch.spec.whatwg.org/#dom-body-json: the text, parsed.
  json(): Promise<unknown> {
    const s = this.#takeVerbatimString();
    if (s === null) return readBody(this, parseJson);
    try {
      return Promise.resolve(JSON.parse(s));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // https://fetch.spec.whatwg.org/#dom-body-blob: typed with the MIME type extracted from
  // the Content-Type header (`contentType`), or "" when there is none.
  async blob(contentType: string | null): Promise<Blob> {
    const s = this.#take();
    const mime = extractMimeType(contentType);
    const type = mime === null ? "" : serializeMimeType(mime);
    if (s instanceof Blob) return s.slice(0, s.size, type);
    return withBytes(s, (b) => new Blob([b as Uint8Array<ArrayBuffer>], { type }));
  }

  // https://fetch.spec.whatwg.org/#dom-body-formdata
  async formData(contentType: string | null): Promise<FormData> {
    const s = this.#take();
    const mime = extractMimeType(contentType);
    const kind = mime === null ? null : essence(mime);
    if (kind === "multipart/form-data") {
      const boundary = mime!.parameters.get("boundary");
      if (boundary === undefined) throw new TypeError("multipart/form-data body without a boundary parameter");
      const parser = new MultipartParser(boundary);
      await feed(s, (chunk) => parser.write(chunk));
      return parser.end();
    }
    if (kind === "application/x-www-form-urlencoded") return withBytes(s, parseUrlencoded);
    throw new TypeError(
      `formData() needs a multipart/form-data or application/x-www-form-urlencoded body, got ${contentType === null ? "no Content-Type" : JSON.stringify(contentType)}`,
    );
  }

  // https://fetch.spec.whatwg.org/#concept-body-clone: a stream is teed (this body keeps
  // one branch); a string, bytes or a Blob are immutable here and shared.
  clone(): BodyState {
    if (this.unusable) throw new TypeError("Cannot clone a body that has already been used");
    if (this.#stream === null && !isNativeBody(this.source)) return new BodyState(this.source);
    const [a, b] = this.stream()!.tee();
    this.#stream = a;
    this.source = a;
    return new BodyState(b);
  }
}
