// Headers (https://fetch.spec.whatwg.org/#headers-class), with a lazy mode in which an
// incoming request's headers stay one packed string until first read.
import { types } from "node:util";
import { TOKEN } from "./mime-type.js";
import { isNodeInstance, linkPrototype, looksLikeHeaders } from "./node-classes.js";
import { defineInterface, requireArgs } from "./webidl.js";

/** A header list packed as one string, `name\nvalue\nname\nvalue…` ("" when empty; a
 * newline occurs in no name or value; src/request.rs `HeadText`), as the flat
 * [name, value, …] list. */
function unpackHeaders(packed: string): string[] {
  return packed === "" ? [] : packed.split("\n");
}

// A lookup in a packed list walks its lines instead of splitting them: one `get` on a head
// of 2 fields cost about 3,000 instructions as a split (V8's runtime split, an array and a
// string a line) and a few hundred as a walk; on a browser's 15 fields about a third of the
// split's time. Past this many lookups the list is split once, as the walks add up.
const PACKED_LOOKUPS = 4;

/** The values of `name` (lowercase) in the packed list `packed` from index `at`, joined
 * with ", " (null when absent). Each name's values come together (the order of a
 * `HeaderMap`: src/request.rs `head_text`, src/fast_h1.rs `write_fields`), so the walk ends
 * with the first group. */
function packedGet(packed: string, at: number, name: string): string | null {
  const end = packed.length;
  const len = name.length;
  let out: string | null = null;
  for (let i = at; i < end;) {
    // A name is always followed by a newline and its value.
    const j = packed.indexOf("\n", i);
    if (j < 0) break;
    let k = packed.indexOf("\n", j + 1);
    if (k < 0) k = end;
    if (j - i === len && packed.startsWith(name, i)) {
      const v = packed.slice(j + 1, k);
      out = out === null ? v : out + ", " + v;
    } else if (out !== null) break;
    i = k + 1;
  }
  return out;
}

/** Whether `name` (lowercase) is in the packed list `packed` from index `at`. */
function packedHas(packed: string, at: number, name: string): boolean {
  const end = packed.length;
  const len = name.length;
  for (let i = at; i < end;) {
    const j = packed.indexOf("\n", i);
    if (j < 0) break;
    if (j - i === len && packed.startsWith(name, i)) return true;
    const k = packed.indexOf("\n", j + 1);
    if (k < 0) break;
    i = k + 1;
  }
  return false;
}

export type HeadersInitLike =
  | Headers
  | globalThis.Headers
  | Record<string, string>
  | Iterable<readonly [string, string]>
  | Iterable<Iterable<string>>;

// https://fetch.spec.whatwg.org/#header-value: no NUL, CR or LF; and a ByteString, so no
// code unit above 0xFF.
const BAD_VALUE = /[\0\r\n\u0100-\uffff]/;
// https://fetch.spec.whatwg.org/#http-whitespace
const LEADING_WS = /^[\t\n\r ]+/;
const TRAILING_WS = /[\t\n\r ]+$/;

// WebIDL ToString: a template literal throws a TypeError for a symbol, as WebIDL does
// (String(symbol) would not).
function toStr(v: unknown): string {
  return typeof v === "string" ? v : `${v as string}`;
}

// Valid names seen so far and their lowercase form: an application uses a few dozen
// names over and over, and a Map hit costs less than the regex and toLowerCase. Bounded,
// since names can come from clients.
const NAME_CACHE_MAX = 512;
const nameCache = new Map<string, string>();

export function normalizeName(name: unknown): string {
  const s = toStr(name);
  const hit = nameCache.get(s);
  if (hit !== undefined) return hit;
  if (!TOKEN.test(s)) throw new TypeError(`Invalid header name: ${JSON.stringify(s)}`);
  const lower = s.toLowerCase();
  if (nameCache.size < NAME_CACHE_MAX) nameCache.set(s, lower);
  return lower;
}

// Valid values seen so far, each already normalized (no whitespace at either end, no NUL,
// CR or LF, nothing above U+00FF): most values an application sets are constants
// ("no-store", a content type), and a Set hit costs less than the regular expression (about
// 270 instructions a test). Bounded, as the name cache is, in count and in each value's
// length (long values are rarely constants, and 512 of them would stay in memory for good).
const VALUE_CACHE_MAX = 512;
const VALUE_CACHE_LEN = 128;
const valueCache = new Set<string>();

// https://fetch.spec.whatwg.org/#concept-header-value-normalize, then validation.
export function normalizeValue(value: unknown): string {
  let s = toStr(value);
  if (valueCache.has(s)) return s;
  if (s.length > 0) {
    const c0 = s.charCodeAt(0);
    const cl = s.charCodeAt(s.length - 1);
    if (c0 <= 32 || cl <= 32) s = s.replace(LEADING_WS, "").replace(TRAILING_WS, "");
  }
  if (BAD_VALUE.test(s)) throw new TypeError(`Invalid header value: ${JSON.stringify(s)}`);
  if (valueCache.size < VALUE_CACHE_MAX && s.length <= VALUE_CACHE_LEN) valueCache.add(s);
  return s;
}

let getList: (h: Headers) => string[];
let isImmutable: (h: Headers) => boolean;
let sortedOf: (h: Headers) => [string, string][];
let setList: (h: Headers, list: string[]) => void;
let isOwnHeaders: (v: object) => v is Headers;
/** @internal An incoming request's headers: immutable, kept packed (see `unpackHeaders`)
 * in `head` from index `at` until iterated or often looked up. */
export let headersFromPacked: (head: string, at: number) => Headers;
/** @internal Gives `h` the "immutable" guard. */
export let freezeHeaders: (h: Headers) => Headers;

export class Headers {
  // Flat [lowercase name, value, …] in insertion order; null while `#packed` holds it.
  #list: string[] | null = [];
  // An incoming request's head text; its packed list starts at `#packedAt` (see
  // `unpackHeaders`).
  #packed = "";
  #packedAt = 0;
  // Lookups answered from `#packed` so far (see PACKED_LOOKUPS).
  #lookups = 0;
  #immutable = false;
  // The sorted and combined pairs iteration walks; dropped on every change.
  #sorted: [string, string][] | null = null;

  // https://fetch.spec.whatwg.org/#dom-headers
  constructor(init?: HeadersInitLike) {
    if (init !== undefined) fill(this, init);
  }

  static {
    isOwnHeaders = (v): v is Headers => #list in v;
    headersFromPacked = (head, at) => {
      const h = new Headers();
      h.#list = null;
      h.#packed = head;
      h.#packedAt = at;
      h.#immutable = true;
      return h;
    };
    freezeHeaders = (h) => {
      h.#immutable = true;
      return h;
    };
    getList = (h) => h.#materialize();
    isImmutable = (h) => h.#immutable;
    sortedOf = (h) => h.#sortAndCombine();
    setList = (h, list) => {
      h.#list = list;
    };
  }

  #materialize(): string[] {
    if (this.#list === null) {
      this.#list = unpackHeaders(this.#packed.slice(this.#packedAt));
      this.#packed = "";
    }
    return this.#list;
  }

  // Whether a lookup is to walk the packed list rather than split it (PACKED_LOOKUPS).
  #walks(): boolean {
    return this.#list === null && this.#lookups++ < PACKED_LOOKUPS;
  }

  #mutable(): string[] {
    if (this.#immutable) throw new TypeError("Headers are immutable");
    this.#sorted = null;
    return this.#materialize();
  }

  // https://fetch.spec.whatwg.org/#dom-headers-append
  append(name: string, value: string): void {
    requireArgs(arguments.length, 2, "Headers.append");
    const n = normalizeName(name);
    const v = normalizeValue(value);
    this.#mutable().push(n, v);
  }

  // https://fetch.spec.whatwg.org/#dom-headers-delete
  delete(name: string): void {
    requireArgs(arguments.length, 1, "Headers.delete");
    const n = normalizeName(name);
    const list = this.#mutable();
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
    requireArgs(arguments.length, 1, "Headers.get");
    const n = normalizeName(name);
    if (this.#walks()) return packedGet(this.#packed, this.#packedAt, n);
    const list = this.#materialize();
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
    requireArgs(arguments.length, 1, "Headers.has");
    const n = normalizeName(name);
    if (this.#walks()) return packedHas(this.#packed, this.#packedAt, n);
    const list = this.#materialize();
    for (let i = 0; i < list.length; i += 2) if (list[i] === n) return true;
    return false;
  }

  // https://fetch.spec.whatwg.org/#dom-headers-set
  set(name: string, value: string): void {
    requireArgs(arguments.length, 2, "Headers.set");
    const n = normalizeName(name);
    const v = normalizeValue(value);
    const list = this.#mutable();
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

  // https://fetch.spec.whatwg.org/#concept-header-list-sort-and-combine: names sorted,
  // values of a repeated name joined with ", ", except Set-Cookie, which stays apart.
  #sortAndCombine(): [string, string][] {
    if (this.#sorted !== null) return this.#sorted;
    const list = this.#materialize();
    const combined = new Map<string, string>();
    const cookies: string[] = [];
    for (let i = 0; i < list.length; i += 2) {
      const n = list[i];
      if (n === "set-cookie") {
        cookies.push(list[i + 1]);
        continue;
      }
      const prev = combined.get(n);
      combined.set(n, prev === undefined ? list[i + 1] : prev + ", " + list[i + 1]);
    }
    const names = [...combined.keys()];
    if (cookies.length > 0) names.push("set-cookie");
    // Names are lowercase ASCII tokens, so code-unit order is byte order.
    names.sort();
    const out: [string, string][] = [];
    for (const n of names) {
      if (n === "set-cookie") for (const c of cookies) out.push([n, c]);
      else out.push([n, combined.get(n)!]);
    }
    return (this.#sorted = out);
  }

  // https://webidl.spec.whatwg.org/#es-forEach: walks the live list by index, so changes
  // made by the callback are seen.
  forEach(callback: (value: string, name: string, parent: Headers) => void, thisArg?: unknown): void {
    if (typeof callback !== "function") throw new TypeError("Headers.forEach needs a function");
    let pairs = this.#sortAndCombine();
    for (let i = 0; i < pairs.length; i++) {
      const [n, v] = pairs[i];
      callback.call(thisArg, v, n, this);
      pairs = this.#sortAndCombine();
    }
  }

  keys(): HeadersIterator<string> {
    if (!isOwnHeaders(this)) throw new TypeError("Illegal invocation: not a Headers");
    return new HeadersIterator(this, KEYS);
  }

  values(): HeadersIterator<string> {
    if (!isOwnHeaders(this)) throw new TypeError("Illegal invocation: not a Headers");
    return new HeadersIterator(this, VALUES);
  }

  entries(): HeadersIterator<[string, string]> {
    if (!isOwnHeaders(this)) throw new TypeError("Illegal invocation: not a Headers");
    return new HeadersIterator(this, ENTRIES);
  }

  static [Symbol.hasInstance](v: unknown): boolean {
    return (
      (typeof v === "object" && v !== null && Headers.prototype.isPrototypeOf(v)) ||
      isNodeInstance("Headers", v, looksLikeHeaders)
    );
  }
}

export interface Headers {
  [Symbol.iterator](): HeadersIterator<[string, string]>;
}

// WebIDL: @@iterator is the same function object as entries.
Object.defineProperty(Headers.prototype, Symbol.iterator, {
  value: Headers.prototype.entries,
  writable: true,
  enumerable: false,
  configurable: true,
});

defineInterface(Headers, "Headers", 0, { forEach: 1 });

// Frameworks test `headers instanceof Headers` against Node's global class.
linkPrototype("Headers", Headers.prototype);

const KEYS = 0;
const VALUES = 1;
const ENTRIES = 2;

// https://webidl.spec.whatwg.org/#es-default-iterator-object: an index into the live
// sorted list, so a header added or removed while iterating is seen.
class HeadersIterator<T> {
  #headers: Headers;
  #kind: number;
  #index = 0;

  constructor(headers: Headers, kind: number) {
    this.#headers = headers;
    this.#kind = kind;
  }

  next(): IteratorResult<T, undefined> {
    const pairs = sortedOf(this.#headers);
    if (this.#index >= pairs.length) return { value: undefined, done: true };
    const [n, v] = pairs[this.#index++];
    const value = this.#kind === KEYS ? n : this.#kind === VALUES ? v : [n, v];
    return { value: value as T, done: false };
  }
}

// https://webidl.spec.whatwg.org/#es-iterator-prototype-object: its prototype is
// %IteratorPrototype%, `next` is enumerable, @@toStringTag a plain value; the @@iterator it
// needs comes from %IteratorPrototype%.
Object.setPrototypeOf(HeadersIterator.prototype, Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]())));
delete (HeadersIterator.prototype as { [Symbol.iterator]?: unknown })[Symbol.iterator];
delete (HeadersIterator.prototype as { constructor?: unknown }).constructor;
Object.defineProperty(HeadersIterator.prototype, "next", { enumerable: true });
Object.defineProperty(HeadersIterator.prototype, Symbol.toStringTag, {
  value: "Headers Iterator",
  writable: false,
  enumerable: false,
  configurable: true,
});

// The @@iterator each iterator has (from %IteratorPrototype%), for the type checker.
interface HeadersIterator<T> {
  [Symbol.iterator](): HeadersIterator<T>;
}

export type { HeadersIterator };

// https://fetch.spec.whatwg.org/#concept-headers-fill, with WebIDL's conversion of the
// (sequence<sequence<ByteString>> or record<ByteString, ByteString>) union.
function fill(h: Headers, init: HeadersInitLike): void {
  if ((typeof init !== "object" && typeof init !== "function") || init === null)
    throw new TypeError("Headers init must be an object: a Headers, a record or a sequence of pairs");
  // A brand check, which (unlike a prototype walk) runs no Proxy trap.
  if (isOwnHeaders(init)) {
    // One of ours: already validated, so its list is copied as is.
    setList(h, getList(init as Headers).slice());
    return;
  }
  // https://webidl.spec.whatwg.org/#js-union: GetMethod(init, @@iterator), read once.
  const method = (init as Iterable<unknown>)[Symbol.iterator];
  if (method !== undefined && method !== null) {
    if (typeof method !== "function") throw new TypeError("Headers init's Symbol.iterator is not a function");
    // https://webidl.spec.whatwg.org/#js-sequence, through the method read above.
    const it = (method as () => Iterator<unknown>).call(init);
    if ((typeof it !== "object" && typeof it !== "function") || it === null)
      throw new TypeError("Headers init's iterator is not an object");
    const next = it.next;
    for (;;) {
      const step = next.call(it);
      if ((typeof step !== "object" && typeof step !== "function") || step === null)
        throw new TypeError("An iterator result is not an object");
      if (step.done) break;
      const pair = step.value;
      let items: unknown[];
      if (Array.isArray(pair)) items = pair;
      else if (
        (typeof pair === "object" || typeof pair === "function") &&
        pair !== null &&
        typeof (pair as Iterable<unknown>)[Symbol.iterator] === "function"
      )
        items = Array.from(pair as Iterable<unknown>);
      else throw new TypeError("Each header must be a [name, value] sequence");
      if (items.length !== 2) throw new TypeError(`A header pair must have exactly two items, got ${items.length}`);
      h.append(items[0] as string, items[1] as string);
    }
    return;
  }
  // https://webidl.spec.whatwg.org/#js-record: the own keys through the object's own
  // [[OwnPropertyKeys]], then per key [[GetOwnProperty]] and, when enumerable, ToString of
  // the key (a TypeError for a Symbol) and [[Get]] of the value, in that order. The
  // record is complete before the first header is appended.
  const record = init as Record<PropertyKey, unknown>;
  const pairs: string[] = [];
  if (!isProxy(record)) {
    // The same steps through cheaper calls (Reflect.ownKeys and a descriptor a key were
    // about 2,300 instructions for a two-key literal): without a Proxy, reading keys and
    // enumerability runs no code of the caller's, and [[OwnPropertyKeys]] lists the string
    // keys, then the symbol ones (ordinary and built-in exotic objects alike).
    const names = ownNames(record);
    const symbols = ownSymbols(record);
    for (let i = 0; i < names.length; i++) {
      const key = names[i];
      // Enumerability is read when the key's turn comes, as a getter before may change it.
      if (propertyIsEnumerable.call(record, key)) pairs.push(key, byteString(record[key]));
    }
    for (let i = 0; i < symbols.length; i++)
      if (propertyIsEnumerable.call(record, symbols[i])) throw new TypeError("A header name cannot be a symbol");
  } else {
    for (const key of Reflect.ownKeys(record)) {
      const d = Reflect.getOwnPropertyDescriptor(record, key);
      if (d === undefined || !d.enumerable) continue;
      if (typeof key === "symbol") throw new TypeError("A header name cannot be a symbol");
      pairs.push(key, byteString(record[key]));
    }
  }
  for (let i = 0; i < pairs.length; i += 2) h.append(pairs[i], pairs[i + 1]);
}

// Taken at load, as the spec's internal methods cannot be patched.
const isProxy = types.isProxy;
const ownNames = Object.getOwnPropertyNames;
const ownSymbols = Object.getOwnPropertySymbols;
const propertyIsEnumerable = Object.prototype.propertyIsEnumerable;

// WebIDL ByteString: ToString, then no code unit above 0xFF (known for a valid value seen
// before, `valueCache`).
function byteString(v: unknown): string {
  const s = toStr(v);
  if (!valueCache.has(s) && /[^\x00-\xff]/.test(s))
    throw new TypeError(`Invalid header value: ${JSON.stringify(s)} is not a ByteString`);
  return s;
}

function isForeign(h: object): boolean {
  return !isOwnHeaders(h);
}

/** @internal The flat list of a Headers (ours) or of any iterable headers object. */
export function flatHeaders(h: Headers | globalThis.Headers): string[] {
  if (!isForeign(h)) return getList(h as Headers).slice();
  const out: string[] = [];
  const g = h as globalThis.Headers;
  // Iteration joins nothing but Set-Cookie's values apart; where getSetCookie is missing
  // (a Headers-like object) the iterated ones are all there is.
  const separateCookies = typeof g.getSetCookie === "function";
  for (const [n, v] of g as unknown as Iterable<[string, string]>) {
    if (!separateCookies || String(n).toLowerCase() !== "set-cookie") out.push(String(n), String(v));
  }
  if (separateCookies) for (const c of g.getSetCookie()) out.push("set-cookie", c);
  return out;
}

/** @internal The list of one of our own Headers packed as `unpackHeaders` reads it, for the
 * addon to read as Latin-1 (src/response.rs `HeaderList`): its names are tokens and its values
 * ByteStrings without NUL, CR or LF, so a newline separates them and each character is a byte. */
export function packHeaders(h: Headers): string {
  // Concatenated, not `join`ed: a join of four strings is about 750 instructions (V8's
  // generic builtin), these concatenations a few dozen, and the addon reads the rope flat.
  const list = getList(h);
  let packed = list.length === 0 ? "" : list[0];
  for (let i = 1; i < list.length; i++) packed += "\n" + list[i];
  return packed;
}

/** @internal A copy of `h` with the same guard (https://fetch.spec.whatwg.org/#dom-request-clone). */
export function cloneHeaders(h: Headers): Headers {
  const copy = new Headers(h);
  return isImmutable(h) ? freezeHeaders(copy) : copy;
}
