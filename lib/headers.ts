// Headers (https://fetch.spec.whatwg.org/#headers-class), with a lazy mode in which
// an incoming request's headers are looked up natively until someone iterates.

const GlobalHeaders = globalThis.Headers;

/** Where an incoming request's headers live until they are materialized. */
export interface HeaderSource {
  get(name: string): string | null;
  list(): string[];
}

export type HeadersInitLike =
  | Headers
  | globalThis.Headers
  | Record<string, string>
  | Iterable<readonly [string, string]>
  | Iterable<Iterable<string>>;

// https://fetch.spec.whatwg.org/#header-name (an RFC 9110 token)
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// https://fetch.spec.whatwg.org/#header-value: no NUL, CR or LF; bytes only.
const BAD_VALUE = /[\0\r\n\u0100-\uffff]/;
const LEADING_WS = /^[\t\n\r ]+/;
const TRAILING_WS = /[\t\n\r ]+$/;

export function normalizeName(name: unknown): string {
  const s = typeof name === "string" ? name : String(name);
  if (!TOKEN.test(s)) throw new TypeError(`Invalid header name: ${JSON.stringify(s)}`);
  return s.toLowerCase();
}

// https://fetch.spec.whatwg.org/#concept-header-value-normalize
export function normalizeValue(value: unknown): string {
  let s = typeof value === "string" ? value : String(value);
  if (s.length > 0) {
    const c0 = s.charCodeAt(0);
    const cl = s.charCodeAt(s.length - 1);
    if (c0 <= 32 || cl <= 32) s = s.replace(LEADING_WS, "").replace(TRAILING_WS, "");
  }
  if (BAD_VALUE.test(s)) throw new TypeError(`Invalid header value: ${JSON.stringify(s)}`);
  return s;
}

let getList: (h: Headers) => string[];
let isImmutable: (h: Headers) => boolean;

export class Headers {
  // Flat [lowercase name, value, …] in insertion order; null while lazily sourced.
  #list: string[] | null = [];
  #source: HeaderSource | null = null;
  #immutable = false;

  constructor(init?: HeadersInitLike) {
    if (init !== undefined && init !== null) fill(this, init);
  }

  /** @internal Request headers backed by a native source; immutable. */
  static fromSource(source: HeaderSource): Headers {
    const h = new Headers();
    h.#list = null;
    h.#source = source;
    h.#immutable = true;
    return h;
  }

  /** @internal */
  static freeze(h: Headers): Headers {
    h.#immutable = true;
    return h;
  }

  static {
    getList = (h) => h.#materialize();
    isImmutable = (h) => h.#immutable;
  }

  #materialize(): string[] {
    if (this.#list === null) {
      this.#list = this.#source!.list();
      this.#source = null;
    }
    return this.#list;
  }

  #checkMutable(): void {
    if (this.#immutable) throw new TypeError("Headers are immutable");
  }

  // https://fetch.spec.whatwg.org/#dom-headers-append
  append(name: string, value: string): void {
    const n = normalizeName(name);
    const v = normalizeValue(value);
    this.#checkMutable();
    this.#materialize().push(n, v);
  }

  // https://fetch.spec.whatwg.org/#dom-headers-delete
  delete(name: string): void {
    const n = normalizeName(name);
    this.#checkMutable();
    const list = this.#materialize();
    let w = 0;
    for (let i = 0; i < list.length; i += 2) {
      if (list[i] !== n) {
        list[w++] = list[i];
        list[w++] = list[i + 1];
      }
    }
    list.length = w;
  }

  // https://fetch.spec.whatwg.org/#dom-headers-get
  get(name: string): string | null {
    const n = normalizeName(name);
    if (this.#list === null) return this.#source!.get(n);
    const list = this.#list;
    let out: string | null = null;
    for (let i = 0; i < list.length; i += 2) {
      if (list[i] === n) out = out === null ? list[i + 1] : out + ", " + list[i + 1];
    }
    return out;
  }

  // https://fetch.spec.whatwg.org/#dom-headers-getsetcookie
  getSetCookie(): string[] {
    const list = this.#materialize();
    const out: string[] = [];
    for (let i = 0; i < list.length; i += 2) if (list[i] === "set-cookie") out.push(list[i + 1]);
    return out;
  }

  // https://fetch.spec.whatwg.org/#dom-headers-has
  has(name: string): boolean {
    const n = normalizeName(name);
    if (this.#list === null) return this.#source!.get(n) !== null;
    const list = this.#list;
    for (let i = 0; i < list.length; i += 2) if (list[i] === n) return true;
    return false;
  }

  // https://fetch.spec.whatwg.org/#dom-headers-set
  set(name: string, value: string): void {
    const n = normalizeName(name);
    const v = normalizeValue(value);
    this.#checkMutable();
    const list = this.#materialize();
    let found = false;
    let w = 0;
    for (let i = 0; i < list.length; i += 2) {
      if (list[i] === n) {
        if (found) continue;
        found = true;
        list[w++] = n;
        list[w++] = v;
      } else {
        list[w++] = list[i];
        list[w++] = list[i + 1];
      }
    }
    list.length = w;
    if (!found) list.push(n, v);
  }

  // https://fetch.spec.whatwg.org/#concept-header-list-sort-and-combine
  #sorted(): [string, string][] {
    const list = this.#materialize();
    const names: string[] = [];
    for (let i = 0; i < list.length; i += 2) if (!names.includes(list[i])) names.push(list[i]);
    names.sort();
    const out: [string, string][] = [];
    for (const n of names) {
      if (n === "set-cookie") {
        for (let i = 0; i < list.length; i += 2) if (list[i] === n) out.push([n, list[i + 1]]);
      } else {
        out.push([n, this.get(n)!]);
      }
    }
    return out;
  }

  forEach(callback: (value: string, name: string, parent: Headers) => void, thisArg?: unknown): void {
    if (typeof callback !== "function") throw new TypeError("Headers.forEach needs a function");
    for (const [n, v] of this.#sorted()) callback.call(thisArg, v, n, this);
  }

  *keys(): IterableIterator<string> {
    for (const [n] of this.#sorted()) yield n;
  }

  *values(): IterableIterator<string> {
    for (const [, v] of this.#sorted()) yield v;
  }

  *entries(): IterableIterator<[string, string]> {
    yield* this.#sorted();
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return "Headers";
  }

  static [Symbol.hasInstance](v: unknown): boolean {
    return (
      (typeof v === "object" && v !== null && Headers.prototype.isPrototypeOf(v)) ||
      (GlobalHeaders !== undefined && v instanceof GlobalHeaders)
    );
  }
}

// Frameworks test `headers instanceof Headers` against Node's global class.
if (GlobalHeaders !== undefined) Object.setPrototypeOf(Headers.prototype, GlobalHeaders.prototype);

function fill(h: Headers, init: HeadersInitLike): void {
  if (typeof init !== "object") throw new TypeError("Headers init must be an object");
  if (init instanceof Headers && !(GlobalHeaders !== undefined && isForeign(init))) {
    const list = getList(init as Headers);
    for (let i = 0; i < list.length; i += 2) h.append(list[i], list[i + 1]);
    return;
  }
  const iter = (init as Iterable<unknown>)[Symbol.iterator];
  if (typeof iter === "function") {
    for (const pair of init as Iterable<Iterable<string>>) {
      if (typeof pair !== "object" || pair === null || typeof (pair as Iterable<string>)[Symbol.iterator] !== "function")
        throw new TypeError("Each header pair must be an iterable [name, value]");
      const items = Array.from(pair);
      if (items.length !== 2) throw new TypeError(`Header pair must have exactly two items, got ${items.length}`);
      h.append(items[0], items[1]);
    }
    return;
  }
  for (const key of Reflect.ownKeys(init)) {
    const desc = Reflect.getOwnPropertyDescriptor(init, key);
    if (desc === undefined || !desc.enumerable) continue;
    if (typeof key === "symbol") throw new TypeError("Header names cannot be symbols");
    h.append(key, (init as Record<string, string>)[key]);
  }
}

function isForeign(h: object): boolean {
  return !Headers.prototype.isPrototypeOf(h);
}

/** @internal The flat list of a Headers (ours) or of any iterable headers object. */
export function flatHeaders(h: Headers | globalThis.Headers): string[] {
  if (!isForeign(h)) return getList(h as Headers).slice();
  const out: string[] = [];
  const g = h as globalThis.Headers;
  for (const [n, v] of g as unknown as Iterable<[string, string]>) if (n !== "set-cookie") out.push(n, v);
  const cookies = typeof g.getSetCookie === "function" ? g.getSetCookie() : [];
  for (const c of cookies) out.push("set-cookie", c);
  return out;
}

/** @internal */
export function headersAreImmutable(h: Headers): boolean {
  return isImmutable(h);
}

/** @internal Loads a lazily sourced Headers now (before its source goes away). */
export function materializeHeaders(h: Headers): void {
  getList(h);
}
