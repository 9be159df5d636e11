// The typed binding to the native addon: the only file that touches it. The calls, their
// arguments and threads are tabled in src/calls.rs (per request) and src/lib.rs (the server
// object); the constants both sides agree on are declared in src/wire.rs.
import { createRequire } from "node:module";

export interface NativeOptions {
  host?: string;
  port?: number;
  unix?: string;
  reusePort?: boolean;
  ipv6Only?: boolean;
  backlog?: number;
  maxConnections?: number;
  maxBodySize?: number;
  maxHeaderSize?: number;
  maxPendingRequests?: number;
  workerThreads?: number;
  headerTimeoutMs?: number;
  idleTimeoutMs?: number;
  timeoutMs?: number;
  wsMaxPayloadLength?: number;
  wsIdleTimeoutMs?: number;
  wsBackpressureLimit?: number;
  wsCloseOnBackpressureLimit?: boolean;
  wsPerMessageDeflate?: boolean;
  tls?: NativeTls[];
  http2?: boolean;
  tlsHandshakeTimeoutMs?: number;
  http2MaxConcurrentStreams?: number;
  http2WindowSize?: number;
}

/** One certificate entry: PEM text, arrays already joined (src/tls.rs `NativeTls`). */
export interface NativeTls {
  cert: string;
  key: string;
  ca?: string;
  passphrase?: string;
  serverName?: string;
  requestCert?: boolean;
}

/** A verified client certificate; dates in ms since the epoch (src/tls.rs). */
export interface NativeClientCertificate {
  subject: string;
  issuer: string;
  validFrom: number;
  validTo: number;
  fingerprint256: string;
  serialNumber: string;
  raw: Buffer;
}

/** The per-request calls (src/calls.rs, where their table is), as lib/ calls them: bound
 * to a server. To add a call: its entry in `calls!` there, its line here and in
 * `createNativeServer`. */
/** A response's header list: the `[name, value, …]` strings, or our own Headers packed as
 * one string (`packHeaders`, read as Latin-1: src/response.rs `HeaderList`); null for none. */
export type HeaderArg = string | string[] | null;

/** `respondBytes` copies `body`; `respondBytesShared` holds it, not copied, until written. */
type RespondBytes = (
  id: number,
  status: number,
  ct: number,
  headers: HeaderArg,
  body: Uint8Array,
  release: boolean,
) => void;

interface Calls {
  /** Writes `[kind, id, arg, urlLength]` records (RECORD_WORDS each), and for each WebSocket
   * record with a payload, in order from `texts[0]`, its payload (a REQUEST record's head text
   * comes from `requestHead`). Returns the record count. */
  drain(records: Uint32Array, texts: unknown[]): number;
  reschedule(): void;
  flush(): void;
  /** The head text of a REQUEST record, once: its URL (the first urlLength characters), then its
   * headers packed as `name\nvalue\nname\nvalue…`. */
  requestHead(id: number): string;
  requestMethod(id: number): string | null;
  requestClientAddress(id: number): string | null;
  requestClientPort(id: number): number | null;
  requestTimeout(id: number, ms: number): void;
  requestClientCertificate(id: number): NativeClientCertificate | null;
  requestRelease(id: number): void;
  bodyCollect(id: number): Buffer | number;
  bodyResume(): boolean;
  bodyPull(id: number): Buffer | number;
  respondText(id: number, status: number, ct: number, headers: HeaderArg, body: string, release: boolean): void;
  respondBytes: RespondBytes;
  respondBytesShared: RespondBytes;
  respondEmpty(id: number, status: number, ct: number, headers: HeaderArg, release: boolean): void;
  respondStream(id: number, status: number, ct: number, headers: HeaderArg): void;
  streamWrite(id: number, chunk: Uint8Array): boolean;
  streamWriteShared(id: number, chunk: Uint8Array): boolean;
  streamEnd(id: number, failed: boolean): void;
  wsUpgrade(id: number, protocol: string | null, maxPayload: number, idleTimeoutMs: number, compress: number): number;
  wsAccept(id: number, sid: number, release: boolean, headers?: string[]): void;
  wsAbandon(sid: number): void;
  /** `compress` left out: true. */
  wsSendText(sid: number, data: string, compress?: boolean): number;
  wsSendBytes(sid: number, data: Uint8Array, compress?: boolean): number;
  wsHearDrain(sid: number): void;
  wsOwnBuffers(sid: number, on: boolean): void;
  wsClose(sid: number, code: number, reason: string): void;
  wsPing(sid: number, data: Uint8Array): boolean;
  wsBuffered(sid: number): number;
  wsRemoteAddress(sid: number): string;
  wsSubscribe(sid: number, topic: string, on: boolean): boolean;
  wsIsSubscribed(sid: number, topic: string): boolean;
  wsTopics(sid: number): string[];
  wsSubscriberCount(topic: string): number;
  wsPublishText(sid: number, topic: string, data: string, compress: boolean): number;
  wsPublishBytes(sid: number, topic: string, data: Uint8Array, compress: boolean): number;
}

/** The addon's server object (src/registry.rs): its life (listen, close, GC) and its handle. */
interface ServerHandle {
  readonly handle: number;
  listen(doorbell: () => void): number;
  close(graceMs: number): void;
  forceClose(): void;
  shutdown(): void;
  setRef(on: boolean): void;
  setTls(entries: NativeTls[]): void;
  stats(): number[];
}

/** A native server as the rest of lib/ calls it. */
export type NativeServer = Calls & Omit<ServerHandle, "handle">;

/** The respond calls as the addon takes them (src/calls.rs): the status, the content-type
 * code and RESPOND_RELEASE packed in `flags` (`respondFlags`), the header list last and left
 * out when there is none (each argument converted costs the call time). */
interface AddonRespond {
  respondText(id: number, flags: number, body: string, headers?: HeaderArg): void;
  respondStage(area: Uint8Array): void;
  respondTextStaged(body: string, headers?: HeaderArg): void;
  respondBytes(id: number, flags: number, body: Uint8Array, headers?: HeaderArg): void;
  respondBytesShared(id: number, flags: number, body: Uint8Array, headers?: HeaderArg): void;
  respondEmpty(id: number, flags: number, headers?: HeaderArg): void;
  respondStream(id: number, flags: number, headers?: HeaderArg): void;
  respondBytesStaged(body: Uint8Array, headers?: HeaderArg): void;
  respondBytesSharedStaged(body: Uint8Array, headers?: HeaderArg): void;
  respondEmptyStaged(headers?: HeaderArg): void;
  respondStreamStaged(headers?: HeaderArg): void;
}

/** The staged send (src/core.rs, `ws_send_staged`): `wsSendBytes` of a small message
 * copied into an area registered once, with a call that converts no argument. */
interface AddonStage {
  wsStage(area: Uint8Array): void;
  wsSendStaged(): void;
}

/** The calls of one server as `calls(handle)` gives them: plain functions bound to it. */
type AddonCalls = Omit<Calls, keyof AddonRespond> & AddonRespond & AddonStage;

/** The addon's exports: the class, `calls` (one plain function per per-request call, bound
 * to a server: several times cheaper to call than a method), and the constants of
 * src/wire.rs. */
interface Addon {
  NativeServer: new (options: NativeOptions) => ServerHandle;
  calls(handle: number): AddonCalls;
  constants: Readonly<Record<string, number | readonly string[]>>;
}

const require = createRequire(import.meta.url);
const addon: Addon = require(process.env.FETCH_RS_NATIVE_PATH ?? "../fetch-rs.node");

/** A native server, as the rest of lib/ calls it. The object keeps the addon's server
 * alive; dropping it lets GC free the native side. Its members are the bound functions
 * themselves where lib/ calls them as the addon takes them, so that a call reads one
 * property of an object of one shape (the addon's own objects have too many properties
 * for V8 to keep them in fast mode: each read there took a generic property lookup). */
export function createNativeServer(options: NativeOptions): NativeServer {
  const s = new addon.NativeServer(options);
  const c = addon.calls(s.handle);
  // The respond calls' id and flags are written here rather than passed: converting each
  // number argument cost a call about 80 instructions (callgrind). This closure keeps the
  // area alive for as long as the addon may read it.
  const respondStage = new Uint32Array(2);
  c.respondStage(new Uint8Array(respondStage.buffer));
  const { respondTextStaged, respondBytesStaged, respondBytesSharedStaged, respondEmptyStaged, respondStreamStaged } =
    c;
  // Small binary sends are copied here, `[sid, length | flags]` then the bytes, and sent
  // with `wsSendStaged()`, which leaves the status in the first word: converting the
  // socket id, reading the typed array's bytes and making the returned number cost the
  // call about 380 instructions, the copy and its length read about 210 (callgrind). This
  // closure keeps the area alive for as long as the addon may read it.
  const stage = new ArrayBuffer(WS_STAGE_HEAD + WS_STAGE_BYTES);
  const stageHead = new Int32Array(stage, 0, 2);
  const stageBody = new Uint8Array(stage, WS_STAGE_HEAD);
  // `WS_STAGE_VIEW`'s word, where the bytes would be.
  const stageAt = new Int32Array(stage, WS_STAGE_HEAD, 1);
  c.wsStage(new Uint8Array(stage));
  const { wsSendBytes, wsSendStaged } = c;
  // What this server's last drain gave JS (`wsViewed`, new with each drain; none before).
  let viewed: Viewed = { view: null, at: 0, text: null, textAt: 0 };
  const { drain, wsSendText } = c;
  // `stageBody.set(data)` was a generic property load (a LoadIC call, about 60
  // instructions) in the optimized handlers that inline it; the method itself is not.
  const typedArraySet = Uint8Array.prototype.set;
  return {
    listen: (doorbell) => s.listen(doorbell),
    close: (graceMs) => s.close(graceMs),
    forceClose: () => s.forceClose(),
    shutdown: () => s.shutdown(),
    setRef: (on) => s.setRef(on),
    setTls: (entries) => s.setTls(entries),
    stats: () => s.stats(),
    drain: (records, texts) => {
      viewed = wsViewed = { view: null, at: 0, text: null, textAt: 0 };
      return drain(records, texts);
    },
    reschedule: c.reschedule,
    flush: c.flush,
    requestHead: c.requestHead,
    requestMethod: c.requestMethod,
    requestClientAddress: c.requestClientAddress,
    requestClientPort: c.requestClientPort,
    requestTimeout: c.requestTimeout,
    requestClientCertificate: c.requestClientCertificate,
    requestRelease: c.requestRelease,
    bodyCollect: c.bodyCollect,
    bodyResume: c.bodyResume,
    bodyPull: c.bodyPull,
    respondText: (id, status, ct, headers, body, release) => {
      respondStage[0] = id;
      respondStage[1] = respondFlags(status, ct, release);
      return headers === null ? respondTextStaged(body) : respondTextStaged(body, headers);
    },
    respondBytes: (id, status, ct, headers, body, release) => {
      respondStage[0] = id;
      respondStage[1] = respondFlags(status, ct, release);
      return headers === null ? respondBytesStaged(body) : respondBytesStaged(body, headers);
    },
    respondBytesShared: (id, status, ct, headers, body, release) => {
      respondStage[0] = id;
      respondStage[1] = respondFlags(status, ct, release);
      return headers === null ? respondBytesSharedStaged(body) : respondBytesSharedStaged(body, headers);
    },
    respondEmpty: (id, status, ct, headers, release) => {
      respondStage[0] = id;
      respondStage[1] = respondFlags(status, ct, release);
      return headers === null ? respondEmptyStaged() : respondEmptyStaged(headers);
    },
    respondStream: (id, status, ct, headers) => {
      respondStage[0] = id;
      respondStage[1] = respondFlags(status, ct, false);
      return headers === null ? respondStreamStaged() : respondStreamStaged(headers);
    },
    streamWrite: c.streamWrite,
    streamWriteShared: c.streamWriteShared,
    streamEnd: c.streamEnd,
    wsUpgrade: c.wsUpgrade,
    wsAccept: c.wsAccept,
    wsAbandon: c.wsAbandon,
    wsSendText: (sid, data, compress) => {
      const v = viewed;
      if (data !== v.text) return compress === false ? wsSendText(sid, data, false) : wsSendText(sid, data);
      const len = data.length;
      stageHead[0] = sid;
      stageHead[1] = (compress === false ? len | WS_STAGE_NO_COMPRESS : len) | WS_STAGE_VIEW | WS_STAGE_TEXT;
      stageAt[0] = v.textAt;
      wsSendStaged();
      return stageHead[0];
    },
    wsSendBytes: (sid, data, compress) => {
      const len = data.length;
      if (len > WS_STAGE_BYTES) return compress === false ? wsSendBytes(sid, data, false) : wsSendBytes(sid, data);
      stageHead[0] = sid;
      const word = compress === false ? len | WS_STAGE_NO_COMPRESS : len;
      // `len` is the view's length now: 0 once its ArrayBuffer is detached.
      const v = viewed;
      if (data === v.view) {
        stageHead[1] = word | WS_STAGE_VIEW;
        stageAt[0] = v.at;
      } else {
        stageHead[1] = word;
        typedArraySet.call(stageBody, data);
      }
      wsSendStaged();
      return stageHead[0];
    },
    wsHearDrain: c.wsHearDrain,
    wsOwnBuffers: c.wsOwnBuffers,
    wsClose: c.wsClose,
    wsPing: c.wsPing,
    wsBuffered: c.wsBuffered,
    wsRemoteAddress: c.wsRemoteAddress,
    wsSubscribe: c.wsSubscribe,
    wsIsSubscribed: c.wsIsSubscribed,
    wsTopics: c.wsTopics,
    wsSubscriberCount: c.wsSubscriberCount,
    wsPublishText: c.wsPublishText,
    wsPublishBytes: c.wsPublishBytes,
  };
}

/** @internal The small messages a drain gave JS last, each where the addon has its bytes.
 * Sent as they are (an echo, a relay), they are not read from JS: a binary one, a view of
 * one of the drain's ArrayBuffers, is read by the addon from the memory it views (without
 * the copy into the staging area, `TypedArray.set`, about 145 instructions for 64 bytes);
 * a string equal to a small ASCII text one is taken from the drain's text arena, which the
 * addon keeps until its next drain (without reading the string's UTF-16 and the socket id
 * through Node-API and making the returned number, about 300). */
export interface Viewed {
  /** The binary message, and its place: the offset in the drain's ArrayBuffers, with the
   * ArrayBuffer's number in bits 16 and up (`WS_STAGE_VIEW`). */
  view: Uint8Array | null;
  at: number;
  /** The text message, and its place in the drain's text arenas (`WS_STAGE_TEXT`). */
  text: string | null;
  textAt: number;
}

/**
 * @internal The `Viewed` of the drain under way, of whichever server, which the drain loop
 * and `ServerWebSocket` fill in; each server's sends compare with its own last drain's. A
 * new object each drain: one that lives longer is soon in V8's old generation, where each
 * store of a new message into it took the write barrier's slow path (about 50).
 */
export let wsViewed: Viewed = { view: null, at: 0, text: null, textAt: 0 };

// What Rust and JS agree on is declared in src/wire.rs and read here by name, once, at
// load: a name the addon does not define stops the load instead of becoming undefined.
function constant(name: string): number {
  const v = addon.constants[name];
  if (typeof v !== "number") throw new Error(`fetch-rs: the native addon defines no constant ${name}; rebuild it`);
  return v;
}

/** Words per drained record: `[kind, id, arg, urlLength]`. */
export const RECORD_WORDS = constant("RECORD_WORDS");
export const RECORD_REQUEST = constant("RECORD_REQUEST");
export const RECORD_BODY_DATA = constant("RECORD_BODY_DATA");
export const RECORD_BODY_END = constant("RECORD_BODY_END");
export const RECORD_BODY_FULL = constant("RECORD_BODY_FULL");
export const RECORD_BODY_ERROR = constant("RECORD_BODY_ERROR");
export const RECORD_ABORT = constant("RECORD_ABORT");
export const RECORD_WRITABLE = constant("RECORD_WRITABLE");
export const RECORD_CLOSED = constant("RECORD_CLOSED");
export const RECORD_WS_OPEN = constant("RECORD_WS_OPEN");
export const RECORD_WS_MESSAGE = constant("RECORD_WS_MESSAGE");
export const RECORD_WS_PONG = constant("RECORD_WS_PONG");
export const RECORD_WS_DRAIN = constant("RECORD_WS_DRAIN");
export const RECORD_WS_CLOSE = constant("RECORD_WS_CLOSE");
/** WS_MESSAGE kinds, the WS_CLOSE flag, and the WS_PONG arg of a ping. */
export const WS_TEXT = constant("WS_TEXT");
export const WS_POOLED = constant("WS_POOLED");
export const WS_POOLED_SAME = constant("WS_POOLED_SAME");
export const WS_TEXT_POOLED = constant("WS_TEXT_POOLED");
export const WS_TEXT_POOLED_SAME = constant("WS_TEXT_POOLED_SAME");
export const WS_CLEAN = constant("WS_CLEAN");
export const WS_PING = constant("WS_PING");
/** The staged send's layout and length flag (src/wire.rs). */
const WS_STAGE_HEAD = constant("WS_STAGE_HEAD");
const WS_STAGE_BYTES = constant("WS_STAGE_BYTES");
const WS_STAGE_NO_COMPRESS = constant("WS_STAGE_NO_COMPRESS");
const WS_STAGE_VIEW = constant("WS_STAGE_VIEW");
const WS_STAGE_TEXT = constant("WS_STAGE_TEXT");
/** The bits of a REQUEST record's `arg` that hold the method code; flags are above. */
export const METHOD_MASK = constant("METHOD_MASK");
export const FLAG_HAS_BODY = constant("FLAG_HAS_BODY");
/** REQUEST flag: a declared body of 256 KiB to 1 MiB, read into a Buffer of its own. */
export const FLAG_LARGE_BODY = constant("FLAG_LARGE_BODY");

/** `bodyPull` results other than a chunk. */
export const PULL_END = constant("PULL_END");
export const PULL_PENDING = constant("PULL_PENDING");
/** `bodyCollect` result: as PULL_PENDING, once `bodyResume` ran on a later turn. */
export const COLLECT_DEFERRED = constant("COLLECT_DEFERRED");

/** Abort reasons in ABORT records. */
export const ABORT_TIMEOUT = constant("ABORT_TIMEOUT");
/** The client half-closed: `request.signal` aborts, the answer is still sent. */
export const ABORT_HALF_CLOSED = constant("ABORT_HALF_CLOSED");

/** Body error kinds in BODY_ERROR records. */
export const BODY_TOO_LARGE = constant("BODY_TOO_LARGE");

/** Content-type codes understood by the respond calls. */
export const CT_NONE = constant("CT_NONE");
export const CT_TEXT = constant("CT_TEXT");
export const CT_JSON = constant("CT_JSON");
export const CT_FORM = constant("CT_FORM");
/** Respond call flag (with the content-type code): the reply also frees the request's slot. */
export const RESPOND_RELEASE = constant("RESPOND_RELEASE");
/** Respond calls carry the status in `flags` from this bit up. */
const RESPOND_STATUS_SHIFT = constant("RESPOND_STATUS_SHIFT");

/** A respond call's `flags`: the status (200-999), the content-type code, RESPOND_RELEASE. */
function respondFlags(status: number, ct: number, release: boolean): number {
  return (status << RESPOND_STATUS_SHIFT) | ct | (release ? RESPOND_RELEASE : 0);
}

/** The slot index bits of a request id (the generation is above them). */
export const INDEX_MASK = constant("INDEX_MASK");

/** Method names by their code in REQUEST records; a larger code means "ask". */
export const METHODS: readonly string[] = addon.constants.METHODS as readonly string[];

// The one place native failures become the public errors. A native error carries its
// stable `code` (src/error.rs); invalid input becomes a TypeError, as the Fetch standard
// raises for bad headers or statuses.
const TYPE_ERROR_CODES = new Set([
  "ERR_INVALID_HEADER",
  "ERR_INVALID_STATUS",
  "ERR_INVALID_OPTION",
  "ERR_WS_NOT_UPGRADE",
  "ERR_WS_BAD_KEY",
  "ERR_WS_BAD_VERSION",
  "ERR_WS_BAD_PROTOCOL",
]);

/** The public error for one a native call threw. */
export function nativeError(e: unknown): Error {
  if (!(e instanceof Error)) return new Error(String(e));
  const code = (e as Error & { code?: unknown }).code;
  if (typeof code === "string" && TYPE_ERROR_CODES.has(code)) return Object.assign(new TypeError(e.message), { code });
  return e;
}

/** The public error for a BODY_ERROR record's kind. */
export function bodyError(kind: number): Error {
  return kind === BODY_TOO_LARGE
    ? Object.assign(new Error("The request body is larger than maxBodySize"), { code: "ERR_BODY_TOO_LARGE" })
    : Object.assign(new Error("The client aborted the request body"), { code: "ERR_BODY_ABORTED" });
}
