// The body mixin shared by Request and Response
// (https://fetch.spec.whatwg.org/#body-mixin): extraction of a BodyInit, and
// arrayBuffer/blob/bytes/formData/json/text over strings, bytes, Blobs, streams and
// incoming request bodies read natively.
import { CT_FORM, CT_NONE, CT_TEXT } from "./native.js";

const GlobalResponse = globalThis.Response;

/** An incoming request body, read from the native side on demand. */
export interface NativeBody {
  readAll(): Promise<Uint8Array>;
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

const TEXT_TYPE = "text/plain;charset=UTF-8";
const FORM_TYPE = "application/x-www-form-urlencoded;charset=UTF-8";

export function isNativeBody(s: BodySource): s is NativeBody {
  return typeof s === "object" && s !== null && typeof (s as NativeBody).readAll === "function";
}

// https://fetch.spec.whatwg.org/#concept-bodyinit-extract
export function extractBody(init: BodyInitLike): Extracted {
  if (init === null || init === undefined) return { source: null, type: null, ct: CT_NONE };
  if (typeof init === "string") return { source: init, type: TEXT_TYPE, ct: CT_TEXT };
  if (init instanceof Uint8Array) return { source: init, type: null, ct: CT_NONE };
  if (init instanceof ArrayBuffer || init instanceof SharedArrayBuffer)
    return { source: new Uint8Array(init.slice(0)), type: null, ct: CT_NONE };
  if (ArrayBuffer.isView(init))
    return { source: new Uint8Array(init.buffer, init.byteOffset, init.byteLength), type: null, ct: CT_NONE };
  if (init instanceof Blob) return { source: init, type: init.type === "" ? null : init.type, ct: CT_NONE };
  if (init instanceof URLSearchParams) return { source: init.toString(), type: FORM_TYPE, ct: CT_FORM };
  if (init instanceof FormData) {
    // Node's implementation writes multipart with a fresh boundary; take its bytes.
    const r = new GlobalResponse(init);
    return { source: r.body!, type: r.headers.get("content-type"), ct: CT_NONE };
  }
  if (init instanceof ReadableStream) return { source: init, type: null, ct: CT_NONE };
  if (typeof (init as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function")
    return { source: streamFromIterable(init as AsyncIterable<Uint8Array | string>), type: null, ct: CT_NONE };
  return { source: String(init), type: TEXT_TYPE, ct: CT_TEXT };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function streamFromIterable(it: AsyncIterable<Uint8Array | string>): ReadableStream<Uint8Array> {
  let iter: AsyncIterator<Uint8Array | string> | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      iter ??= it[Symbol.asyncIterator]();
      const { value, done } = await iter.next();
      if (done) controller.close();
      else controller.enqueue(typeof value === "string" ? encoder.encode(value) : value);
    },
    async cancel(reason) {
      await iter?.return?.(reason);
    },
  });
}

/** A ReadableStream over a body source (for the `body` getter). */
export function toStream(source: BodySource): ReadableStream<Uint8Array> | null {
  if (source === null) return null;
  if (source instanceof ReadableStream) return source;
  if (source instanceof Blob) return source.stream() as ReadableStream<Uint8Array>;
  if (isNativeBody(source)) return source.stream();
  const bytes = typeof source === "string" ? encoder.encode(source) : source;
  return new ReadableStream<Uint8Array>({
    type: "bytes",
    start(controller) {
      if (bytes.byteLength > 0) controller.enqueue(bytes.slice());
      controller.close();
    },
  });
}

async function readStream(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (!(value instanceof Uint8Array)) throw new TypeError("Body stream chunks must be Uint8Array");
    chunks.push(value);
    total += value.byteLength;
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

async function bytesOf(s: BodySource): Promise<Uint8Array> {
  if (s === null) return new Uint8Array(0);
  if (typeof s === "string") return encoder.encode(s);
  if (s instanceof Uint8Array) return s.slice();
  if (s instanceof Blob) return new Uint8Array(await s.arrayBuffer());
  if (s instanceof ReadableStream) return readStream(s);
  return s.readAll();
}

/** Internal body state of one Request or Response. */
export class BodyState {
  source: BodySource;
  used = false;
  #stream: ReadableStream<Uint8Array> | null = null;

  constructor(source: BodySource) {
    this.source = source;
  }

  /** The `body` getter: created once, and from then on the stream is the body. */
  stream(): ReadableStream<Uint8Array> | null {
    if (this.#stream === null && this.source !== null) {
      this.#stream = toStream(this.source);
      this.source = this.#stream;
    }
    return this.#stream;
  }

  get disturbed(): boolean {
    return this.used || (this.#stream !== null && this.#stream.locked);
  }

  #take(): BodySource {
    if (this.disturbed) throw new TypeError("Body has already been used");
    this.used = true;
    return this.source;
  }

  // https://fetch.spec.whatwg.org/#concept-body-consume-body
  async bytes(): Promise<Uint8Array> {
    return bytesOf(this.#take());
  }

  async text(): Promise<string> {
    const s = this.#take();
    if (typeof s === "string") return s;
    return decoder.decode(await bytesOf(s));
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    const b = await this.bytes();
    if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && !(b.buffer instanceof SharedArrayBuffer))
      return b.buffer as ArrayBuffer;
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }

  async blob(type: string | null): Promise<Blob> {
    return new Blob([(await this.bytes()) as Uint8Array<ArrayBuffer>], { type: type ?? "" });
  }

  async formData(type: string | null): Promise<FormData> {
    const bytes = await this.bytes();
    return new GlobalResponse(bytes as Uint8Array<ArrayBuffer>, { headers: type === null ? {} : { "content-type": type } }).formData();
  }

  /** A second body for `clone()`: streams are teed, everything else is shared. */
  clone(): BodyState {
    if (this.disturbed) throw new TypeError("Cannot clone a body that has already been used");
    const s = this.source;
    if (s instanceof ReadableStream || isNativeBody(s)) {
      const [a, b] = (s instanceof ReadableStream ? s : this.stream()!).tee();
      this.source = a;
      this.#stream = a;
      const other = new BodyState(b);
      return other;
    }
    return new BodyState(s);
  }
}
