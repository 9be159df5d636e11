// Node's own Request, Response, Headers and FormData, touched only when needed. Node
// defines them as lazy globals whose first read loads undici (about 9 MB of memory); a
// server that never uses them should not pay for that. Ours chain their prototypes to
// Node's (so `ours instanceof NodeResponse` holds) at the moment Node's are loaded.

export type NodeClassName = "Request" | "Response" | "Headers" | "FormData";
type Ctor = abstract new (...args: never[]) => object;

const getters = new Map<NodeClassName, () => unknown>();
const loaded = new Map<NodeClassName, Ctor>();
const links = new Map<NodeClassName, object>();

function resolved(name: NodeClassName, cls: unknown): void {
  if (typeof cls !== "function" || loaded.has(name)) return;
  loaded.set(name, cls as Ctor);
  const proto = links.get(name);
  if (proto !== undefined) Object.setPrototypeOf(proto, (cls as Ctor).prototype);
}

for (const name of ["Request", "Response", "Headers", "FormData"] as const) {
  const d = Object.getOwnPropertyDescriptor(globalThis, name);
  if (d === undefined) continue;
  if (d.get === undefined) {
    resolved(name, d.value);
    continue;
  }
  const get = d.get;
  getters.set(name, get);
  // Keep the global lazy, but learn when it is read.
  Object.defineProperty(globalThis, name, {
    configurable: true,
    enumerable: d.enumerable,
    get() {
      const cls = get.call(globalThis);
      resolved(name, cls);
      return cls;
    },
    set: d.set,
  });
}

/**
 * Makes `ourPrototype` inherit from Node's class of that name, now if Node's is loaded,
 * otherwise as soon as it is.
 */
export function linkPrototype(name: NodeClassName, ourPrototype: object): void {
  links.set(name, ourPrototype);
  const cls = loaded.get(name);
  if (cls !== undefined) Object.setPrototypeOf(ourPrototype, cls.prototype);
}

/** Node's class, loading undici if it is not loaded yet (the global stays as it is now). */
export function nodeClass(name: NodeClassName): Ctor | undefined {
  const known = loaded.get(name);
  if (known !== undefined) return known;
  const get = getters.get(name);
  if (get === undefined) return undefined;
  // Node's getter redefines the global as its class; put back what is there now.
  const current = Object.getOwnPropertyDescriptor(globalThis, name);
  const cls = get.call(globalThis);
  if (current !== undefined) Object.defineProperty(globalThis, name, current);
  resolved(name, cls);
  return loaded.get(name);
}

/**
 * Is `v` an instance of Node's class of that name? `looksLike` is a cheap shape check
 * run first, so a plain object never makes this load undici.
 */
export function isNodeInstance(name: NodeClassName, v: unknown, looksLike: (v: object) => boolean): boolean {
  if (typeof v !== "object" || v === null || !looksLike(v)) return false;
  const cls = nodeClass(name);
  return cls !== undefined && v instanceof cls;
}

export const looksLikeResponse = (v: object): boolean =>
  typeof (v as { status?: unknown }).status === "number" &&
  typeof (v as { arrayBuffer?: unknown }).arrayBuffer === "function";
export const looksLikeRequest = (v: object): boolean =>
  typeof (v as { url?: unknown }).url === "string" && typeof (v as { method?: unknown }).method === "string";
export const looksLikeHeaders = (v: object): boolean =>
  typeof (v as { get?: unknown }).get === "function" && typeof (v as { append?: unknown }).append === "function";
export const looksLikeFormData = (v: object): boolean =>
  typeof (v as { getAll?: unknown }).getAll === "function" && typeof (v as { append?: unknown }).append === "function";
