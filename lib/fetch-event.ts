// FetchEvent (RFC 00001 section 3.3; https://w3c.github.io/ServiceWorker/#fetchevent):
// one per request, tracking respondWith, waitUntil and async listeners until the
// request's native record can be released.
import type { Request } from "./request.js";

/** The certificate an HTTPS client presented and the server verified (`requestCert`). */
export interface ClientCertificate {
  /** RFC 4514 distinguished name, e.g. `CN=alice,O=Example`. */
  subject: string;
  issuer: string;
  validFrom: Date;
  validTo: Date;
  /** SHA-256 of the DER certificate as `AB:CD:…`, as node:tls writes it. */
  fingerprint256: string;
  /** Upper-case hexadecimal. */
  serialNumber: string;
  /** The certificate, DER-encoded. */
  raw: Uint8Array;
}

/** @internal What a FetchEvent needs from its server. */
export interface EventHost {
  request(ev: FetchEvent, id: number, flags: number, head: string, urlLength: number): Request;
  clientAddress(id: number): string;
  clientCertificate(id: number): ClientCertificate | null;
  /** Sends a response; with `release`, also frees the request's record when the reply
   * is queued at once. Returns a promise while a body is still read or streamed (the
   * record is then kept, and `finish` frees it). */
  send(ev: FetchEvent, id: number, response: unknown, release: boolean): Promise<void> | void;
  /** Answers with an error status; `unanswered`: because no listener called respondWith()
   * (the other causes were reported with their error already). */
  fail(ev: FetchEvent, id: number, status: number, unanswered: boolean): void;
  report(error: unknown, ev: FetchEvent): void;
  track(p: Promise<unknown>): void;
  /** The event is done; `released`: its record was freed with the reply already. */
  finish(ev: FetchEvent, released: boolean): void;
}

const NONE = Symbol("none");

const DISPATCHING = 0;
const WAITING = 1;
const SENT = 2;
const DONE = 3;

/** @internal */
export let eventInternals: {
  create(host: EventHost, id: number, flags: number, head: string, urlLength: number): FetchEvent;
  afterDispatch(ev: FetchEvent): void;
  listenerThrew(ev: FetchEvent, error: unknown): void;
  listenerPromise(ev: FetchEvent, p: PromiseLike<unknown>): void;
  aborted(ev: FetchEvent): void;
  requestIfCreated(ev: FetchEvent): Request | null;
  id(ev: FetchEvent): number;
  /** Whether the event can still be answered with a WebSocket's 101. */
  upgradable(ev: FetchEvent): boolean;
  /** Answers the event with `response` (a WebSocket's 101): see `#upgrade`. */
  upgrade(ev: FetchEvent, response: unknown): void;
  /** A promise that resolves once the event is done (answered and its work settled, or
   * the client gone): Deno's `info.completed`. Once an event: the caller keeps it. */
  completed(ev: FetchEvent): Promise<void>;
};

export class FetchEvent {
  #host: EventHost;
  #id: number;
  // The REQUEST record's method code and flags.
  #flags: number;
  // The URL (its first urlLength characters), then the headers, packed (see
  // `unpackHeaders`): cut apart only when the Request is made (the URL) and its headers
  // are read.
  #head: string;
  #urlLength: number;
  #request: Request | null = null;
  #phase = DISPATCHING;
  #respondCalled = false;
  // What respondWith() was given during dispatch (NONE: nothing yet; `undefined` is a
  // value a handler can give, and is answered 500 with its error).
  #syncResponse: unknown = NONE;
  #pending = 0;
  #aborted = false;
  // The 101 of `server.upgrade()`: the answer, whatever respondWith() is given.
  #upgraded: unknown = undefined;

  private constructor(host: EventHost, id: number, flags: number, head: string, urlLength: number) {
    this.#host = host;
    this.#id = id;
    this.#flags = flags;
    this.#head = head;
    this.#urlLength = urlLength;
  }

  static {
    eventInternals = {
      create: (host, id, flags, head, urlLength) => new FetchEvent(host, id, flags, head, urlLength),
      afterDispatch: (ev) => ev.#afterDispatch(),
      listenerThrew: (ev, e) => ev.#listenerThrew(e),
      listenerPromise: (ev, p) => ev.#listenerPromise(p),
      aborted: (ev) => ev.#abort(),
      requestIfCreated: (ev) => ev.#request,
      id: (ev) => ev.#id,
      upgradable: (ev) => ev.#phase < SENT && ev.#upgraded === undefined && ev.#syncResponse === NONE,
      upgrade: (ev, response) => ev.#upgrade(response),
      completed: (ev) =>
        ev.#phase === DONE ? Promise.resolve() : new Promise<void>((resolve) => ev.#finishThen(resolve)),
    };
  }

  get type(): "fetch" {
    return "fetch";
  }

  /** The incoming request. */
  get request(): Request {
    return (this.#request ??= this.#host.request(this, this.#id, this.#flags, this.#head, this.#urlLength));
  }

  /** The client's IP address. */
  get clientAddress(): string {
    return this.#host.clientAddress(this.#id);
  }

  /** The client's verified certificate over HTTPS with `requestCert`; otherwise `null`. */
  get clientCertificate(): ClientCertificate | null {
    return this.#host.clientCertificate(this.#id);
  }

  /**
   * Provides the response: a Response, or a promise of one. Call it once; a second
   * call throws an InvalidStateError.
   */
  respondWith(response: unknown): void {
    if (this.#upgraded !== undefined) return this.#afterUpgrade(response);
    if (this.#respondCalled || (this.#phase >= SENT && !this.#aborted))
      throw new DOMException("respondWith() was already called for this request", "InvalidStateError");
    this.#respondCalled = true;
    // The client is gone or the request timed out: there is no one to answer.
    if (this.#aborted) return;
    // The promise case is a method of its own, so that this stays small enough for V8 to
    // inline into the listener that calls it.
    if (
      response !== null &&
      typeof response === "object" &&
      typeof (response as PromiseLike<unknown>).then === "function"
    )
      this.#respondLater(response as PromiseLike<unknown>);
    else if (this.#phase === DISPATCHING) this.#syncResponse = response;
    else this.#send(response);
  }

  /**
   * Bun's `server.upgrade()`: the event is answered with the 101, and a handler may then
   * return nothing (Bun's `if (server.upgrade(req)) return;`). Called before respondWith()
   * (a handler that upgrades at once), the 101 is the answer as respondWith(101) would
   * make it; after respondWith() was given a promise (an async handler that upgrades after
   * an await), the 101 is sent when that promise settles, whatever it gives.
   */
  #upgrade(response: unknown): void {
    this.#upgraded = response;
    if (this.#respondCalled) return;
    this.#respondCalled = true;
    if (this.#phase === DISPATCHING) this.#syncResponse = response;
    else this.#send(response);
  }

  /** respondWith() after an upgrade: its value is not sent, but a rejection is reported. */
  #afterUpgrade(response: unknown): void {
    if (
      response !== null &&
      typeof response === "object" &&
      typeof (response as PromiseLike<unknown>).then === "function"
    )
      (response as PromiseLike<unknown>).then(undefined, (e: unknown) => this.#host.report(e, this));
  }

  #respondLater(response: PromiseLike<unknown>): void {
    this.#pending++;
    if (this.#phase === DISPATCHING) this.#phase = WAITING;
    response.then(
      (r) => {
        this.#pending--;
        this.#send(r);
      },
      (e) => {
        this.#pending--;
        this.#host.report(e, this);
        // An upgrade made before the handler failed still opens its socket.
        if (this.#upgraded !== undefined) this.#send(undefined);
        else this.#fail(500);
      },
    );
  }

  /** Keeps the request's work alive after the response: `close()` waits for it. */
  waitUntil(promise: unknown): void {
    if (this.#phase === DONE)
      throw new DOMException("waitUntil() called after the event finished", "InvalidStateError");
    this.#pending++;
    const p = Promise.resolve(promise).then(
      () => this.#settle(),
      (e) => {
        this.#host.report(e, this);
        this.#settle();
      },
    );
    this.#host.track(p);
  }

  #afterDispatch(): void {
    if (this.#syncResponse !== NONE) {
      const r = this.#syncResponse;
      this.#syncResponse = NONE;
      this.#send(r);
      return;
    }
    if (this.#phase === DISPATCHING) this.#phase = WAITING;
    if (!this.#respondCalled && this.#pending === 0) this.#fail(500, true);
  }

  #listenerThrew(e: unknown): void {
    this.#host.report(e, this);
    if (!this.#respondCalled) {
      this.#respondCalled = true;
      this.#syncResponse = NONE;
      this.#fail(500);
    }
  }

  #listenerPromise(p: PromiseLike<unknown>): void {
    this.#pending++;
    p.then(
      () => {
        this.#pending--;
        if (!this.#respondCalled) this.#fail(500, true);
        else this.#maybeFinish();
      },
      (e) => {
        this.#pending--;
        this.#listenerThrew(e);
        this.#maybeFinish();
      },
    );
  }

  #send(r: unknown): void {
    // Aborted (client gone, timed out) or already answered: only the bookkeeping is left.
    if (this.#phase >= SENT) return this.#maybeFinish();
    this.#phase = SENT;
    if (this.#upgraded !== undefined) r = this.#upgraded;
    // With nothing left to wait for, the reply also frees the record (a Request object
    // keeps working: its URL and headers came with the event): one native call.
    const release = this.#pending === 0;
    let streaming: Promise<void> | void;
    try {
      streaming = this.#host.send(this, this.#id, r, release);
    } catch (e) {
      this.#host.report(e, this);
      this.#phase = WAITING;
      this.#fail(500);
      return;
    }
    if (streaming !== undefined) {
      this.#pending++;
      streaming.then(
        () => this.#settle(),
        (e) => {
          this.#host.report(e, this);
          this.#settle();
        },
      );
    } else if (release) {
      this.#phase = DONE;
      this.#host.finish(this, true);
      return;
    }
    this.#maybeFinish();
  }

  #fail(status: number, unanswered = false): void {
    if (this.#phase >= SENT) return this.#maybeFinish();
    this.#phase = SENT;
    this.#host.fail(this, this.#id, status, unanswered);
    this.#maybeFinish();
  }

  /**
   * Calls `f` once the event is done. This event's host becomes one whose `finish` also
   * calls `f`, so that the path every other request takes has no check for it (a field or
   * a test there cost about 40 instructions a request, by callgrind).
   */
  #finishThen(f: () => void): void {
    const host = this.#host;
    const wrapped: EventHost = Object.create(host);
    wrapped.finish = (ev, released) => {
      host.finish(ev, released);
      f();
    };
    this.#host = wrapped;
  }

  #abort(): void {
    this.#aborted = true;
    if (this.#phase < SENT) this.#phase = SENT;
    this.#maybeFinish();
  }

  #settle(): void {
    this.#pending--;
    this.#maybeFinish();
  }

  #maybeFinish(): void {
    if (this.#phase === SENT && this.#pending === 0) {
      this.#phase = DONE;
      this.#host.finish(this, false);
    }
  }
}
