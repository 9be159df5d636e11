// The shape Web IDL's JavaScript binding gives an interface
// (https://webidl.spec.whatwg.org/#es-interfaces), applied to our classes after they are
// defined: a class body makes members non-enumerable and counts optional parameters in
// `length`, where Web IDL makes attributes and operations enumerable and counts only the
// required arguments.

/** Applies Web IDL's property shapes to `cls` (https://webidl.spec.whatwg.org/#es-interface-call). */
export function defineInterface(
  cls: Function,
  name: string,
  length: number,
  lengths: Record<string, number> = {},
  staticLengths: Record<string, number> = {},
): void {
  // https://webidl.spec.whatwg.org/#es-interface-object: `length` counts the constructor's
  // required arguments.
  Object.defineProperty(cls, "length", { value: length });
  for (const [target, counts] of [
    [cls.prototype as object, lengths],
    [cls, staticLengths],
  ] as const) {
    for (const key of Object.getOwnPropertyNames(target)) {
      if (key === "constructor" || key === "length" || key === "name" || key === "prototype") continue;
      const d = Object.getOwnPropertyDescriptor(target, key)!;
      // https://webidl.spec.whatwg.org/#es-attributes, #es-operations: enumerable.
      d.enumerable = true;
      Object.defineProperty(target, key, d);
      const fn = d.value;
      if (typeof fn === "function" && counts[key] !== undefined)
        Object.defineProperty(fn, "length", { value: counts[key] });
    }
  }
  // https://webidl.spec.whatwg.org/#es-interface-prototype-object: @@toStringTag is a
  // plain value, neither writable nor enumerable.
  Object.defineProperty(cls.prototype, Symbol.toStringTag, {
    value: name,
    writable: false,
    enumerable: false,
    configurable: true,
  });
}

/** Web IDL's "too few arguments" check for an operation named `what`. */
export function requireArgs(given: number, needed: number, what: string): void {
  if (given < needed)
    throw new TypeError(`${what}: ${needed} argument${needed === 1 ? "" : "s"} required, but only ${given} present`);
}

/**
 * https://webidl.spec.whatwg.org/#dfn-create-operation-function: an operation that
 * returns a promise rejects, rather than throws, when called on an object that is not
 * an instance of its interface.
 */
export function brandRejection(iface: string, op: string): Promise<never> {
  return Promise.reject(new TypeError(`${iface}.prototype.${op} called on an object that is not a ${iface}`));
}
