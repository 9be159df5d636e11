// WebSocket on the server: `upgradeWebSocket(request)` (Deno's shape) and the socket it
// returns, an EventTarget shaped as the WHATWG WebSocket (https://websockets.spec.whatwg.org/)
// with Bun's server extensions (send statuses, drain, ping/pong, pub/sub). Frames, queues
// and topics live in Rust (src/websocket.rs, src/pubsub.rs); this file is the JS face.
import { Buffer } from "node:buffer";
import type { Request } from "./request.js";
import { incomingSlot } from "./request.js";
import type { Response } from "./response.js";
import { wsViewed } from "./native.js";
import { fastEvents, MessageListeners } from "./websocket-events.js";

/** Options of `upgradeWebSocket`. */
export interface UpgradeWebSocketOptions<T = unknown> {
  /** The subprotocol to agree on; must be one the client offered in Sec-WebSocket-Protocol. */
  protocol?: string;
  /** Seconds a socket may be silent before it is pinged, and closed if silent as long
   * again (default: the server's `websocket.idleTimeout`; 0: never). */
  idleTimeout?: number;
  /** Largest message in bytes; a larger one closes the socket with 1009 (default: the
   * server's `websocket.maxPayloadLength`). */
  maxPayload?: number;
  /** Agree on permessage-deflate if the client offers it (default: the server's
   * `websocket.perMessageDeflate`). */
  compress?: boolean;
  /** User data, kept as `socket.data`. */
  data?: T;
}

export type BinaryType = "arraybuffer" | "blob" | "nodebuffer" | "uint8array";

/**
 * Bun's socket handlers, given in the server's `websocket` option. Each is called with the
 * socket first, before the socket's own event listeners (if it has any). A handler that
 * throws, or whose promise rejects, is reported as a listener error is; the socket and
 * its later messages are not affected.
 */
export interface WebSocketHandlers<T = unknown> {
  /** The socket is open (its 101 was sent). */
  open?(ws: ServerWebSocket<T>): unknown;
  /** A message: a string for text; for binary, what `ws.binaryType` says (a Buffer for
   * sockets made by `server.upgrade`, an ArrayBuffer for those of `upgradeWebSocket`). */
  message?(ws: ServerWebSocket<T>, message: string | Buffer): unknown;
  /** The socket closed; `code` 1005 when the peer's close frame had none, 1006 when the
   * connection ended without one. */
  close?(ws: ServerWebSocket<T>, code: number, reason: string): unknown;
  /** The send queue, after a `send` returned -1, is low again. */
  drain?(ws: ServerWebSocket<T>): unknown;
  /** A ping arrived (it is answered with a pong before this is called). */
  ping?(ws: ServerWebSocket<T>, data: Buffer): unknown;
  /** A pong arrived. */
  pong?(ws: ServerWebSocket<T>, data: Buffer): unknown;
}

type AnyHandler = (ws: ServerWebSocket, a?: unknown, b?: unknown) => unknown;

/** @internal The server's handlers as each socket holds them: one shape for all, with
 * `target` as `this` (the options object they came from, as a method call on it). */
export interface SocketHandlers {
  target: object;
  open: AnyHandler | undefined;
  message: AnyHandler | undefined;
  close: AnyHandler | undefined;
  drain: AnyHandler | undefined;
  ping: AnyHandler | undefined;
  pong: AnyHandler | undefined;
}

// A Buffer made straight over a drain's ArrayBuffer: `Buffer.from(arrayBuffer, offset,
// length)` first asks C++ whether it was given an ArrayBuffer (about 450 instructions); a
// subclass of Uint8Array whose prototype is Buffer's (as Node's own FastBuffer is) is made
// as cheaply as a plain Uint8Array, and is a Buffer in every way (`Buffer.isBuffer`,
// `instanceof`, `constructor`, the methods).
const PooledBuffer = class Buffer extends Uint8Array {};
Object.setPrototypeOf(PooledBuffer.prototype, Buffer.prototype);
Object.defineProperty(PooledBuffer.prototype, "constructor", { value: Buffer, writable: true, configurable: true });

/** `view`, noted as the drain's last small binary message, `at` where the addon has its bytes
 * (`wsViewed`): sent on as it is, it is not copied from JS. */
function viewedAt(view: Uint8Array, at: number): Uint8Array {
  const viewed = wsViewed;
  viewed.view = view;
  viewed.at = at;
  return view;
}

/** @internal What a socket needs from its server (bound native calls). */
export interface WebSocketHost {
  sendText(sid: number, data: string, compress: boolean): number;
  sendBytes(sid: number, data: Uint8Array, compress: boolean): number;
  close(sid: number, code: number, reason: string): void;
  /** The socket has a `drain` listener or handler: DRAIN records are posted for it. */
  hearDrain(sid: number): void;
  /** Binary messages above 1 KiB each come in an ArrayBuffer of their own (`on`, for
   * binaryType "arraybuffer"), not as views of one shared by the batch's. */
  ownBuffers(sid: number, on: boolean): void;
  abandon(sid: number): void;
  ping(sid: number, data: Uint8Array): boolean;
  buffered(sid: number): number;
  remoteAddress(sid: number): string;
  subscribe(sid: number, topic: string, on: boolean): boolean;
  isSubscribed(sid: number, topic: string): boolean;
  topics(sid: number): string[];
  publishText(sid: number, topic: string, data: string, compress: boolean): number;
  publishBytes(sid: number, topic: string, data: Uint8Array, compress: boolean): number;
  report(error: unknown): void;
}

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

// Close codes 1005 and 1006 are never sent: they say "no code" and "no close frame".
const NO_STATUS = 1005;
const ABNORMAL = 1006;

/** Codes `close()` accepts: the WHATWG ones (1000, 3000-4999), and, as a server may
 * need them (a policy violation, an internal error), the other codes RFC 6455 and its
 * registry let an endpoint send. */
function sendableCode(code: number): boolean {
  return (
    code === 1000 || (code >= 3000 && code <= 4999) || (code >= 1001 && code <= 1003) || (code >= 1007 && code <= 1014)
  );
}

const encoder = new TextEncoder();

// The close event, where Node has none of its own (Node 20 has no global CloseEvent).
class WsCloseEvent extends Event {
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;
  constructor(type: string, init: { code?: number; reason?: string; wasClean?: boolean } = {}) {
    super(type);
    this.code = init.code ?? 0;
    this.reason = init.reason ?? "";
    this.wasClean = init.wasClean ?? false;
  }
}

const CloseEventClass: typeof WsCloseEvent =
  (globalThis as unknown as { CloseEvent?: typeof WsCloseEvent }).CloseEvent ?? WsCloseEvent;

/** The `error` event: a plain Event with the error, as `ErrorEvent` has it. */
class WsErrorEvent extends Event {
  readonly error: unknown;
  readonly message: string;
  constructor(error: unknown) {
    super("error");
    this.error = error;
    this.message = error instanceof Error ? error.message : String(error);
  }
}

/** A `pong` event: `data` is the pong's payload. */
class PongEvent extends Event {
  readonly data: Uint8Array;
  constructor(data: Uint8Array) {
    super("pong");
    this.data = data;
  }
}

type Handler = ((this: ServerWebSocket, ev: Event) => unknown) | null;

/** @internal */
export let socketInternals: {
  create<T>(
    host: WebSocketHost,
    sid: number,
    url: string,
    protocol: string,
    data: T,
    handlers: SocketHandlers | null,
    binaryType: BinaryType,
  ): ServerWebSocket<T>;
  open(ws: ServerWebSocket, extensions: string): void;
  message(ws: ServerWebSocket, text: boolean, payload: string | Buffer): void;
  /** A small binary message: `length` bytes at `offset` of a drain's shared ArrayBuffer,
   * `at` in the addon's count (`wsViewed`). */
  pooled(ws: ServerWebSocket, arena: ArrayBuffer, offset: number, length: number, at: number): void;
  pong(ws: ServerWebSocket, payload: Buffer): void;
  ping(ws: ServerWebSocket, payload: Buffer): void;
  drain(ws: ServerWebSocket): void;
  closed(ws: ServerWebSocket, code: number, reason: string, clean: boolean): void;
  /** The request was answered without the upgrade response: the socket never opens. */
  abandon(ws: ServerWebSocket): void;
};

const INTERNAL = Symbol("internal");

/**
 * A server-side WebSocket, as `upgradeWebSocket` returns it: the WHATWG `WebSocket`
 * members and events, plus `send` statuses, `drain`, `ping`/`pong`, pub/sub,
 * `remoteAddress` and `data`.
 */
export class ServerWebSocket<T = unknown> extends EventTarget {
  static readonly CONNECTING = CONNECTING;
  static readonly OPEN = OPEN;
  static readonly CLOSING = CLOSING;
  static readonly CLOSED = CLOSED;
  readonly CONNECTING = CONNECTING;
  readonly OPEN = OPEN;
  readonly CLOSING = CLOSING;
  readonly CLOSED = CLOSED;

  /** User data given to `upgradeWebSocket` (`options.data`). */
  data: T;
  #host: WebSocketHost;
  #sid: number;
  #state = CONNECTING;
  #url: string;
  #protocol: string;
  #extensions = "";
  #binaryType: BinaryType;
  /** The server's handlers (Bun's API), or null. */
  #handlers: SocketHandlers | null;
  /** The event types a listener was added for at some time (L_* bits): events of
   * the others are not made, as they would reach no one. */
  #listened = 0;
  #onopen: Handler = null;
  #onmessage: Handler = null;
  #onclose: Handler = null;
  #onerror: Handler = null;
  /** The handler attributes whose listener is added (HANDLER_BITS). */
  #listening = 0;
  /** The `message` listeners, kept beside EventTarget's list to dispatch without it. */
  #messageListeners: MessageListeners | null = null;
  // Sends waiting for a Blob ahead of them to be read, so messages keep their order.
  #later: Array<{ data: string | Uint8Array | Blob; compress: boolean }> | null = null;
  #laterBytes = 0;

  /** @internal */
  constructor(
    key: typeof INTERNAL,
    host: WebSocketHost,
    sid: number,
    url: string,
    protocol: string,
    data: T,
    handlers: SocketHandlers | null,
    binaryType: BinaryType,
  ) {
    if (key !== INTERNAL) throw new TypeError("Illegal constructor: use upgradeWebSocket(request)");
    super();
    this.#host = host;
    this.#sid = sid;
    this.#url = url;
    this.#protocol = protocol;
    this.data = data;
    this.#handlers = handlers;
    this.#binaryType = binaryType;
    if (handlers?.drain !== undefined) host.hearDrain(sid);
    if (binaryType === "arraybuffer") host.ownBuffers(sid, true);
  }

  static {
    socketInternals = {
      create: (host, sid, url, protocol, data, handlers, binaryType) =>
        new ServerWebSocket(INTERNAL, host, sid, url, protocol, data, handlers, binaryType),
      open: (ws, extensions) => {
        if (ws.#state !== CONNECTING) return;
        ws.#state = OPEN;
        ws.#extensions = extensions;
        const h = ws.#handlers?.open;
        if (h !== undefined) ws.#call(h);
        if ((ws.#listened & L_OPEN) !== 0) ws.#fire(new Event("open"));
      },
      message: (ws, text, payload) => {
        if (ws.#state !== OPEN) return;
        const data = text ? payload : ws.#binary(payload as Buffer);
        ws.#deliver(data);
      },
      pooled: (ws, arena, offset, length, at) => {
        if (ws.#state !== OPEN) return;
        // Made straight from the shared ArrayBuffer in the form asked for: no Buffer first.
        let data: unknown;
        switch (ws.#binaryType) {
          case "nodebuffer":
            data = viewedAt(new PooledBuffer(arena, offset, length), at);
            break;
          case "uint8array":
            data = viewedAt(new Uint8Array(arena, offset, length), at);
            break;
          case "blob":
            data = new Blob([new Uint8Array(arena, offset, length)]);
            break;
          default:
            data = offset === 0 && length === arena.byteLength ? arena : arena.slice(offset, offset + length);
        }
        ws.#deliver(data);
      },
      pong: (ws, payload) => {
        const h = ws.#handlers?.pong;
        if (h !== undefined) ws.#call(h, payload);
        if ((ws.#listened & L_PONG) !== 0)
          ws.#fire(new PongEvent(new Uint8Array(payload.buffer, payload.byteOffset, payload.length)));
      },
      ping: (ws, payload) => {
        const h = ws.#handlers?.ping;
        if (h !== undefined) ws.#call(h, payload);
      },
      // DRAIN records come only for sockets with a `drain` handler or listener
      // (`hearDrain`): each send queued behind another asks for one (most sends of a
      // batch to one socket do).
      drain: (ws) => {
        const h = ws.#handlers?.drain;
        if (h !== undefined) ws.#call(h);
        if ((ws.#listened & L_DRAIN) !== 0) ws.#fire(new Event("drain"));
      },
      closed: (ws, code, reason, clean) => {
        if (ws.#state === CLOSED) return;
        const opened = ws.#state !== CONNECTING;
        ws.#state = CLOSED;
        ws.#later = null;
        // A socket that never opened was never the handlers' to see.
        const h = opened ? ws.#handlers?.close : undefined;
        if (h !== undefined) ws.#call(h, code, reason);
        if (!clean && code !== ABNORMAL && (ws.#listened & L_ERROR) !== 0) {
          const err = Object.assign(new Error(`WebSocket closed with ${code}${reason ? ": " + reason : ""}`), {
            code: "ERR_WS_CLOSED",
            closeCode: code,
          });
          ws.#fire(new WsErrorEvent(err));
        }
        if ((ws.#listened & L_CLOSE) !== 0) ws.#fire(new CloseEventClass("close", { code, reason, wasClean: clean }));
      },
      abandon: (ws) => {
        if (ws.#state !== CONNECTING) return;
        ws.#host.abandon(ws.#sid);
      },
    };
  }

  /** A message to the `message` handler, then to the socket's listeners: no event is
   * made for a socket without listeners of its own. */
  #deliver(data: unknown): void {
    const h = this.#handlers?.message;
    if (h !== undefined) this.#call(h, data);
    if ((this.#listened & L_MESSAGE) === 0) return;
    const own = this.#messageListeners;
    if (fastEvents === null) this.#fire(new MessageEvent("message", { data }));
    else if (own !== null && own.exact) own.dispatch(fastEvents, this, data);
    // Listeners with options (`once`, `signal`, capture): Node's dispatchEvent, with the event
    // made as above (one like `new MessageEvent`'s in every way, for about 500 instructions
    // less).
    else this.#fire(fastEvents.message(data));
  }

  /** Calls a handler; what it throws or rejects with is reported. */
  #call(f: AnyHandler, a?: unknown, b?: unknown): void {
    try {
      const r = f.call(this.#handlers!.target, this, a, b);
      if (r !== undefined) this.#watch(r);
    } catch (e) {
      this.#host.report(e);
    }
  }

  /** An async handler's promise: its rejection is reported, as a throw is. */
  #watch(r: unknown): void {
    if (r !== null && typeof (r as PromiseLike<unknown>).then === "function")
      (r as PromiseLike<unknown>).then(undefined, (e: unknown) => this.#host.report(e));
  }

  #fire(ev: Event): void {
    try {
      this.dispatchEvent(ev);
    } catch (e) {
      this.#host.report(e);
    }
  }

  #binary(b: Buffer): unknown {
    switch (this.#binaryType) {
      case "nodebuffer":
        return b;
      case "uint8array":
        return new Uint8Array(b.buffer, b.byteOffset, b.length);
      case "blob":
        return new Blob([b as Uint8Array<ArrayBuffer>]);
      default:
        return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength
          ? b.buffer
          : b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
    }
  }

  /** The URL of the upgrade request. */
  get url(): string {
    return this.#url;
  }
  /** CONNECTING (0) until the 101 is sent and the connection handed over, then OPEN (1),
   * CLOSING (2) once `close()` was called, CLOSED (3). */
  get readyState(): number {
    return this.#state;
  }
  get protocol(): string {
    return this.#protocol;
  }
  /** The agreed extensions ("permessage-deflate; …" or ""). */
  get extensions(): string {
    return this.#extensions;
  }
  /** How binary messages arrive: "arraybuffer" (the default for sockets of
   * `upgradeWebSocket`, as WHATWG's), "blob", "nodebuffer" (a Buffer; the default for
   * sockets of `server.upgrade`, as Bun's) or "uint8array". */
  get binaryType(): BinaryType {
    return this.#binaryType;
  }
  set binaryType(v: BinaryType) {
    // https://websockets.spec.whatwg.org/#dom-websocket-binarytype: other values are ignored.
    if (v !== "arraybuffer" && v !== "blob" && v !== "nodebuffer" && v !== "uint8array") return;
    // An "arraybuffer" message must be its own ArrayBuffer: one made for it, where one
    // shared with others would be copied out here (messages of a batch already made
    // arrive either way).
    if ((v === "arraybuffer") !== (this.#binaryType === "arraybuffer") && this.#state !== CLOSED)
      this.#host.ownBuffers(this.#sid, v === "arraybuffer");
    this.#binaryType = v;
  }
  /** Bytes of messages queued and not yet written to the connection. */
  get bufferedAmount(): number {
    return (this.#state === CLOSED ? 0 : this.#host.buffered(this.#sid)) + this.#laterBytes;
  }
  /** The client's IP address. */
  get remoteAddress(): string {
    return this.#host.remoteAddress(this.#sid);
  }

  /**
   * https://websockets.spec.whatwg.org/#dom-websocket-send. Returns, as Bun's does, the
   * bytes handed to the connection, -1 when the message is queued behind others (a
   * `drain` event follows once the queue is low), or 0 when it was dropped (the socket
   * is closing, or its queue is at `backpressureLimit`). `compress` (default true) lets
   * a message be compressed where permessage-deflate was agreed.
   */
  send(data: string | ArrayBufferLike | ArrayBufferView | Blob, compress = true): number {
    if (this.#state === CONNECTING) throw new DOMException("The WebSocket is not open yet", "InvalidStateError");
    if (this.#state !== OPEN) return 0;
    const c = compress !== false;
    if (this.#later === null) {
      // A string or a Uint8Array (a message received, sent on) before the Blob test: in
      // optimized code each `instanceof` walks the value's prototype chain, a Buffer's to
      // its end for Blob (about 40 instructions a send).
      if (typeof data === "string") return this.#host.sendText(this.#sid, data, c);
      if (data instanceof Uint8Array) return this.#host.sendBytes(this.#sid, data, c);
      if (!(data instanceof Blob)) return this.#sendNow(data, c);
    }
    return this.#sendLater(data, c);
  }

  /** Bun's: `send` of a string. */
  sendText(data: string, compress = true): number {
    return this.send(String(data), compress);
  }

  /** Bun's: `send` of bytes. */
  sendBinary(data: ArrayBufferLike | ArrayBufferView, compress = true): number {
    if (toBytes(data) === null) throw new TypeError("sendBinary() takes an ArrayBuffer or a view of one");
    return this.send(data, compress);
  }

  /** Bun's: runs `callback` and returns what it returns. The sends of a batch already go
   * out together at its end (one write per socket), so there is nothing more to gather. */
  cork<R>(callback: (ws: this) => R): R {
    return callback(this);
  }

  /** Bun's name for `bufferedAmount`. */
  getBufferedAmount(): number {
    return this.bufferedAmount;
  }

  #sendNow(data: unknown, compress: boolean): number {
    if (typeof data === "string") return this.#host.sendText(this.#sid, data, compress);
    const bytes = toBytes(data);
    if (bytes !== null) return this.#host.sendBytes(this.#sid, bytes, compress);
    return this.#host.sendText(this.#sid, String(data), compress);
  }

  #sendLater(data: string | ArrayBufferLike | ArrayBufferView | Blob, compress: boolean): number {
    const item = {
      data: typeof data === "string" || data instanceof Blob ? data : (toBytes(data) ?? String(data)),
      compress,
    };
    // A view's bytes are copied now: the caller may reuse its buffer after send() returns.
    if (item.data instanceof Uint8Array) item.data = item.data.slice();
    const d = item.data;
    const size = typeof d === "string" ? encoder.encode(d).length : d instanceof Blob ? d.size : d.length;
    this.#laterBytes += size;
    if (this.#later !== null) {
      this.#later.push(item);
      return -1;
    }
    this.#later = [item];
    void this.#flushLater();
    return -1;
  }

  async #flushLater(): Promise<void> {
    while (this.#later !== null && this.#later.length > 0) {
      const item = this.#later[0];
      let payload: string | Uint8Array;
      let size: number;
      if (item.data instanceof Blob) {
        size = item.data.size;
        payload = new Uint8Array(await item.data.arrayBuffer());
      } else {
        payload = item.data as string | Uint8Array;
        size = typeof payload === "string" ? encoder.encode(payload).length : payload.length;
      }
      if (this.#later === null) return;
      this.#later.shift();
      this.#laterBytes -= size;
      if (this.#state === OPEN) this.#sendNow(payload, item.compress);
    }
    this.#later = null;
  }

  /** https://websockets.spec.whatwg.org/#dom-websocket-close */
  close(code?: number, reason?: string): void {
    let c = NO_STATUS;
    if (code !== undefined) {
      c = Math.trunc(Number(code));
      if (!Number.isFinite(c) || !sendableCode(c))
        throw new DOMException(
          `close(): code must be 1000 or between 3000 and 4999, got ${String(code)}`,
          "InvalidAccessError",
        );
    }
    // USVString: lone surrogates become U+FFFD, as TextEncoder encodes them.
    const r = reason === undefined ? "" : new TextDecoder().decode(encoder.encode(String(reason)));
    if (encoder.encode(r).length > 123)
      throw new DOMException("close(): the reason must be at most 123 bytes of UTF-8", "SyntaxError");
    if (this.#state === CLOSING || this.#state === CLOSED) return;
    if (this.#state === CONNECTING) {
      this.#state = CLOSING;
      this.#host.abandon(this.#sid);
      return;
    }
    this.#state = CLOSING;
    // A reason needs a code; WHATWG sends 1000 then.
    this.#host.close(this.#sid, c === NO_STATUS && r !== "" ? 1000 : c, r);
  }

  /** Sends a ping (payload up to 125 bytes); a `pong` event brings the answer. Returns
   * false when the socket is not open. */
  ping(data?: string | ArrayBufferLike | ArrayBufferView): boolean {
    if (this.#state !== OPEN) return false;
    const bytes =
      data === undefined ? new Uint8Array(0) : typeof data === "string" ? encoder.encode(data) : toBytes(data);
    if (bytes === null) throw new TypeError("ping() takes a string, an ArrayBuffer or a view of one");
    if (bytes.length > 125) throw new RangeError("ping(): the payload must be at most 125 bytes");
    return this.#host.ping(this.#sid, bytes);
  }

  /** Receives what is published to `topic` (Bun's pub/sub). */
  subscribe(topic: string): void {
    this.#host.subscribe(this.#sid, topicName(topic), true);
  }
  unsubscribe(topic: string): void {
    this.#host.subscribe(this.#sid, topicName(topic), false);
  }
  isSubscribed(topic: string): boolean {
    return this.#host.isSubscribed(this.#sid, topicName(topic));
  }
  /** The topics this socket is subscribed to. */
  get subscriptions(): string[] {
    return this.#state === CLOSED ? [] : this.#host.topics(this.#sid);
  }
  /** Sends to every subscriber of `topic` except this socket; returns how many took it. */
  publish(topic: string, data: string | ArrayBufferLike | ArrayBufferView, compress = true): number {
    return publishWith(this.#host, this.#sid, topic, data, compress);
  }

  // https://dom.spec.whatwg.org/#dom-eventtarget-addeventlistener, as EventTarget's own
  // (its arguments passed on as given); it also notes the type, as events of a type no
  // listener was added for are not made, and the first `drain` listener asks for DRAIN
  // records. A type that is not a string is taken as maybe any.
  addEventListener(...args: Parameters<EventTarget["addEventListener"]>): void {
    const type: unknown = args[0];
    const bits = typeof type !== "string" ? L_ALL : listenedBit(type);
    if ((bits & L_DRAIN & ~this.#listened) !== 0 && this.#state !== CLOSED) this.#host.hearDrain(this.#sid);
    this.#listened |= bits;
    super.addEventListener(...args);
    if ((bits & L_MESSAGE) !== 0) (this.#messageListeners ??= new MessageListeners()).added(type, args[1], args[2]);
  }

  // https://dom.spec.whatwg.org/#dom-eventtarget-removeeventlistener, as EventTarget's own;
  // the socket's own list of `message` listeners follows.
  removeEventListener(...args: Parameters<EventTarget["removeEventListener"]>): void {
    super.removeEventListener(...args);
    this.#messageListeners?.removed(args[0], args[1], args[2]);
  }

  get onopen(): Handler {
    return this.#onopen;
  }
  set onopen(f: Handler) {
    this.#onopen = this.#handler("open", f);
  }
  get onmessage(): Handler {
    return this.#onmessage;
  }
  set onmessage(f: Handler) {
    this.#onmessage = this.#handler("message", f);
    // The attribute's listener is called from there without its closure.
    if (this.#messageListeners !== null)
      this.#messageListeners.onmessage = this.#onmessage as MessageListeners["onmessage"];
  }
  get onclose(): Handler {
    return this.#onclose;
  }
  set onclose(f: Handler) {
    this.#onclose = this.#handler("close", f);
  }
  get onerror(): Handler {
    return this.#onerror;
  }
  set onerror(f: Handler) {
    this.#onerror = this.#handler("error", f);
  }

  // https://html.spec.whatwg.org/#event-handler-attributes: one listener per handler,
  // added when first set, which calls whatever the attribute holds at the time. Each
  // attribute has a field and a listener of its own (a lookup by type was a keyed load
  // per message).
  #handler(type: "open" | "message" | "close" | "error", f: Handler): Handler {
    const bit = HANDLER_BITS[type];
    if ((this.#listening & bit) === 0) {
      this.#listening |= bit;
      const listener =
        type === "open"
          ? (ev: Event) => this.#onopen?.call(this, ev)
          : type === "message"
            ? (ev: Event) => this.#onmessage?.call(this, ev)
            : type === "close"
              ? (ev: Event) => this.#onclose?.call(this, ev)
              : (ev: Event) => this.#onerror?.call(this, ev);
      this.addEventListener(type, listener);
      if (type === "message") this.#messageListeners?.attribute(listener);
    }
    return typeof f === "function" ? f : null;
  }
}

const HANDLER_BITS = { open: 1, message: 2, close: 4, error: 8 } as const;
// The `#listened` bits, one per event type. Plain constants: a lookup table made with
// `Object.create(null)` is a dictionary, and reading it from optimized code was a generic
// property load (a LoadIC call, about 70 instructions) per message.
const L_OPEN = 1;
const L_MESSAGE = 2;
const L_CLOSE = 4;
const L_ERROR = 8;
const L_DRAIN = 16;
const L_PONG = 32;
const L_ALL = 63;

function listenedBit(type: string): number {
  switch (type) {
    case "open":
      return L_OPEN;
    case "message":
      return L_MESSAGE;
    case "close":
      return L_CLOSE;
    case "error":
      return L_ERROR;
    case "drain":
      return L_DRAIN;
    case "pong":
      return L_PONG;
    default:
      return 0;
  }
}

function toBytes(data: unknown): Uint8Array | null {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer || data instanceof SharedArrayBuffer) return new Uint8Array(data);
  return null;
}

function topicName(topic: unknown): string {
  if (typeof topic !== "string") throw new TypeError("A topic must be a string");
  return topic;
}

/** @internal A publish from socket `sid` (0: from the server). */
export function publishWith(
  host: WebSocketHost,
  sid: number,
  topic: string,
  data: string | ArrayBufferLike | ArrayBufferView,
  compress: boolean,
): number {
  const t = topicName(topic);
  if (typeof data === "string") return host.publishText(sid, t, data, compress !== false);
  const bytes = toBytes(data);
  if (bytes === null) throw new TypeError("publish() takes a string, an ArrayBuffer or a view of one");
  return host.publishBytes(sid, t, bytes, compress !== false);
}

/** @internal What a request's server does for `upgradeWebSocket`. */
export interface UpgradeSource {
  webSocket(id: number, options: UpgradeWebSocketOptions): { socket: ServerWebSocket; response: Response };
}

function upgradeError(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: "ERR_WS_NOT_UPGRADE" });
}

/**
 * Upgrades a request this server received to a WebSocket (Deno's `upgradeWebSocket`):
 * returns the socket and the response to answer with (`event.respondWith(response)`, or
 * return it from a `serve()` handler). The socket opens once that response is sent.
 * Throws a TypeError with `code` ERR_WS_NOT_UPGRADE, ERR_WS_BAD_KEY, ERR_WS_BAD_VERSION or
 * ERR_WS_BAD_PROTOCOL when the request is not a valid upgrade.
 */
export function upgradeWebSocket<T = unknown>(
  request: Request,
  options: UpgradeWebSocketOptions<T> = {},
): { socket: ServerWebSocket<T>; response: Response } {
  if (options === null || typeof options !== "object")
    throw new TypeError("upgradeWebSocket() options must be an object");
  const slot = incomingSlot(request);
  if (slot === null) throw upgradeError("upgradeWebSocket() needs a request this server received");
  const source = slot.source as Partial<UpgradeSource>;
  if (typeof source.webSocket !== "function")
    throw upgradeError("upgradeWebSocket() needs a request this server received");
  const { protocol, idleTimeout, maxPayload, compress } = options;
  if (protocol !== undefined && typeof protocol !== "string") throw new TypeError("protocol must be a string");
  if (idleTimeout !== undefined && (typeof idleTimeout !== "number" || !(idleTimeout >= 0)))
    throw new TypeError("idleTimeout must be a non-negative number of seconds");
  if (maxPayload !== undefined && (!Number.isInteger(maxPayload) || maxPayload < 1))
    throw new TypeError("maxPayload must be a positive integer");
  if (compress !== undefined && typeof compress !== "boolean") throw new TypeError("compress must be a boolean");
  return source.webSocket(slot.id, options) as { socket: ServerWebSocket<T>; response: Response };
}
