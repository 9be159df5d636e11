// A server socket's `message` events, made and dispatched without Node's generic paths where
// that changes nothing a listener can see. `new MessageEvent("message", { data })` reads its
// init dictionary with defaults, formats `origin` and `lastEventId` as strings and copies the
// `ports` array; `dispatchEvent` makes two closures, looks the type up in a Map and walks
// Node's listener list (about 1,000 instructions a message between them). Here the event is
// made by Event's own constructor with MessageEvent as `new.target` (so its `timeStamp` and
// every other field are Node's), MessageEvent's fields set directly, and a socket keeps its
// own list of `message` listeners beside the EventTarget's, which it walks as DOM's "inner
// invoke" does.
//
// Both rest on Node's internal symbols for an event's fields (`kData`, `kTarget`, …), found
// by their descriptions on a probe event and checked once against Node's own getters at
// load. Where they are not found, or do not behave as expected (another Node), `fastEvents`
// is null and every message goes through `new MessageEvent` and `dispatchEvent` as before.

/** @internal How a MessageEvent is made and dispatched without Node's generic paths. */
export interface FastEvents {
  /** A MessageEvent of type "message" with `data`, not yet dispatched. */
  message(data: unknown): MessageEvent;
  /** Marks `ev` as being dispatched at `target` (`target`, `currentTarget`, `eventPhase`). */
  begin(ev: Event, target: EventTarget): void;
  /** Whether a listener called `stopImmediatePropagation()`. */
  stopped(ev: Event): boolean;
  /** The dispatch is over: `currentTarget` null, `eventPhase` NONE; `target` stays. */
  end(ev: Event): void;
}

type Fields = Record<symbol, unknown>;

function probe(): FastEvents | null {
  try {
    // Each one is needed: a missing one throws, and so makes this null.
    const symbolOf = (o: object, name: string): symbol => {
      const s = Object.getOwnPropertySymbols(o).find((k) => k.description === name);
      if (s === undefined) throw new Error(`no ${name}`);
      return s;
    };
    const sample = new MessageEvent("message", { data: 1 });
    const stoppedSample = new Event("message");
    stoppedSample.stopImmediatePropagation();
    const kData = symbolOf(sample, "kData");
    const kOrigin = symbolOf(sample, "kOrigin");
    const kLastEventId = symbolOf(sample, "kLastEventId");
    const kSource = symbolOf(sample, "kSource");
    const kPorts = symbolOf(sample, "kPorts");
    const kTarget = symbolOf(sample, "kTarget");
    const kDispatching = symbolOf(sample, "kIsBeingDispatched");
    const kStop = symbolOf(stoppedSample, "kStop");

    // Event's constructor (the clock read for `timeStamp`, the private fields, `type`,
    // `target`) with MessageEvent as `new.target`, then MessageEvent's fields as its
    // constructor sets them for `{ data }`: the event is one in every way (its prototype and
    // `constructor`, `instanceof`, the getters' brand checks, the order of its fields and so
    // its hidden class, shared with Node's own). As `Reflect.construct(Event, arguments,
    // …)`, TurboFan makes it a construct of Event (a global data property: a constant) and
    // inlines Event's constructor and the allocation, about 325 instructions an echo less
    // (callgrind) than the generic construct that an array literal for the arguments, or a
    // subclass's `super()`, stays (Event has class fields, and V8 11's reduction of
    // `FindNonDefaultConstructorOrConstruct` gives up on those). The global `MessageEvent`
    // is an accessor: read once here, not at every event (about 120 more).
    const messageEventClass = MessageEvent;
    const construct = function (_type: "message"): Event {
      return Reflect.construct(Event, arguments, messageEventClass) as Event;
    };
    const message = (data: unknown): MessageEvent => {
      const f = construct("message") as unknown as Fields;
      f[kData] = data;
      f[kOrigin] = "";
      f[kLastEventId] = "";
      f[kSource] = null;
      f[kPorts] = [];
      return f as unknown as MessageEvent;
    };

    const fast: FastEvents = {
      message,
      begin: (ev, target) => {
        (ev as unknown as Fields)[kTarget] = target;
        (ev as unknown as Fields)[kDispatching] = true;
      },
      stopped: (ev) => (ev as unknown as Fields)[kStop] === true,
      end: (ev) => {
        (ev as unknown as Fields)[kDispatching] = false;
      },
    };

    // The check: what Node's getters and methods say of such an event, against a real one.
    const data = {};
    const ev = fast.message(data);
    const target = new EventTarget();
    const same =
      ev instanceof MessageEvent &&
      Object.getPrototypeOf(ev) === MessageEvent.prototype &&
      ev.constructor === MessageEvent &&
      ev.data === data &&
      ev.type === "message" &&
      ev.origin === sample.origin &&
      ev.lastEventId === sample.lastEventId &&
      ev.source === sample.source &&
      Array.isArray(ev.ports) &&
      ev.ports.length === 0 &&
      typeof ev.timeStamp === "number" &&
      ev.isTrusted === sample.isTrusted &&
      ev.target === null &&
      ev.currentTarget === null &&
      ev.eventPhase === Event.NONE &&
      ev.bubbles === sample.bubbles &&
      ev.cancelable === sample.cancelable &&
      !fast.stopped(ev);
    if (!same) return null;
    fast.begin(ev, target);
    const during = ev.target === target && ev.currentTarget === target && (ev.eventPhase as number) === Event.AT_TARGET;
    ev.stopImmediatePropagation();
    const stops = fast.stopped(ev);
    fast.end(ev);
    const after = ev.target === target && ev.currentTarget === null && (ev.eventPhase as number) === Event.NONE;
    return during && stops && after ? fast : null;
  } catch {
    return null;
  }
}

/** @internal Null where Node's events are not as expected: then nothing here is used. */
export const fastEvents: FastEvents | null = probe();

/** One `message` listener as the socket holds it, in a list in the order they were added. */
interface MessageListener {
  listener: EventListenerOrEventListenerObject;
  next: MessageListener | null;
  /** Removed: a dispatch under way that holds it skips it (`removed` in DOM). */
  removed: boolean;
  /** The `onmessage` attribute's listener: calls `MessageListeners.onmessage`. */
  attribute: boolean;
}

/**
 * @internal A socket's `message` listeners as EventTarget holds them, for listeners added
 * without options (or with `false`, capture off): those are called the same in any phase,
 * and `once`, `signal` and `passive` are not there to honour. A listener added or removed any
 * other way makes the list `exact = false` for good, and the socket dispatches with
 * `dispatchEvent` from then on.
 */
export class MessageListeners {
  #head: MessageListener | null = null;
  #tail: MessageListener | null = null;
  /** The list is the EventTarget's list of `message` listeners. */
  exact = true;
  /** What the socket's `onmessage` attribute holds, which its listener calls. */
  onmessage: ((this: EventTarget, ev: Event) => unknown) | null = null;

  /** `listener`, just added, is the `onmessage` attribute's, which calls what the attribute
   * holds: the dispatch calls that itself. */
  attribute(listener: unknown): void {
    for (let l = this.#head; l !== null; l = l.next) if (l.listener === listener) l.attribute = true;
  }

  /** After EventTarget's `addEventListener(type, listener, options)` returned. */
  added(type: unknown, listener: unknown, options: unknown): void {
    if (!this.exact) return;
    if (typeof type !== "string") {
      // Converted by `String(type)`, which may run user code: not done twice.
      this.exact = false;
      return;
    }
    if (type !== "message") return;
    if (options !== undefined && options !== false) {
      this.exact = false;
      return;
    }
    // EventTarget ignores null and undefined (with a warning), and a listener already there.
    if (listener === null || listener === undefined) return;
    for (let l = this.#head; l !== null; l = l.next) if (l.listener === listener) return;
    const entry: MessageListener = {
      listener: listener as EventListenerOrEventListenerObject,
      next: null,
      removed: false,
      attribute: false,
    };
    if (this.#tail === null) this.#head = entry;
    else this.#tail.next = entry;
    this.#tail = entry;
  }

  /** After EventTarget's `removeEventListener(type, listener, options)` returned. */
  removed(type: unknown, listener: unknown, options: unknown): void {
    if (!this.exact) return;
    if (typeof type !== "string") {
      this.exact = false;
      return;
    }
    if (type !== "message") return;
    if (options !== undefined && options !== false) {
      this.exact = false;
      return;
    }
    let prev: MessageListener | null = null;
    for (let l = this.#head; l !== null; prev = l, l = l.next) {
      if (l.listener !== listener) continue;
      // Unlinked, its own `next` kept: a dispatch standing on it goes on to the rest.
      l.removed = true;
      if (prev === null) this.#head = l.next;
      else prev.next = l.next;
      if (this.#tail === l) this.#tail = prev;
      return;
    }
  }

  /**
   * https://dom.spec.whatwg.org/#concept-event-listener-inner-invoke, for an event at its
   * target, as Node's `dispatchEvent` runs it: listeners in order, a removed one skipped,
   * one added meanwhile called too (Node walks its live list), `stopImmediatePropagation`
   * ending the walk; what a listener throws, or its returned promise rejects with, is an
   * uncaught exception on a later tick and the next listener is still called. Unlike
   * Node's, `currentTarget` stays the socket for every listener, not only the first.
   */
  dispatch(fast: FastEvents, target: EventTarget, data: unknown): void {
    // Made here, where optimized code can inline its constructor (not in the drain loop,
    // whose inlining budget is spent).
    const ev = fast.message(data);
    fast.begin(ev, target);
    let l = this.#head;
    // The common socket: one listener, `onmessage` or a function. Called as the walk below
    // would call it, without the walk's tests of the entry (`removed`, the listener's kind)
    // and with the attribute's value read once; listeners it adds are then walked from its
    // entry's `next`, as the loop would have gone on.
    if (l !== null && l.next === null && (l.attribute || typeof l.listener === "function")) {
      const f = l.attribute ? this.onmessage : (l.listener as (this: EventTarget, ev: Event) => unknown);
      if (f !== null) {
        try {
          const r: unknown = f.call(target, ev);
          if (r !== undefined && r !== null) watchResult(r);
        } catch (e) {
          uncaught(e);
        }
      }
      if (l.next === null || fast.stopped(ev)) {
        fast.end(ev);
        return;
      }
      l = l.next;
    }
    for (; l !== null; l = l.next) {
      if (l.removed) continue;
      const listener = l.listener;
      try {
        const r: unknown = l.attribute
          ? this.onmessage?.call(target, ev)
          : typeof listener === "function"
            ? listener.call(target, ev)
            : Reflect.apply((listener as EventListenerObject).handleEvent, listener, [ev]);
        if (r !== undefined && r !== null) watchResult(r);
      } catch (e) {
        uncaught(e);
      }
      if (fast.stopped(ev)) break;
    }
    fast.end(ev);
  }
}

function uncaught(e: unknown): void {
  process.nextTick(() => {
    throw e;
  });
}

/** A listener's returned promise: its rejection is an uncaught exception, as Node's is. */
function watchResult(r: unknown): void {
  const then = (r as { then?: unknown }).then;
  if (typeof then === "function") then.call(r, undefined, uncaught);
}
