// The `tls` option: its shapes (one entry or one per host name; PEM as a string, a
// Buffer/Uint8Array, or an array of them) normalized to the PEM text the addon parses.
// The addon checks the PEM itself (src/tls.rs) and names the entry in its errors.
import type { NativeTls } from "./native.js";

/** PEM data: text, bytes, or several of them (a chain, several CAs). */
export type PemInput = string | Uint8Array | ArrayBuffer | ReadonlyArray<string | Uint8Array | ArrayBuffer>;

export interface TlsOptions {
  /** The certificate chain, leaf first. */
  cert: PemInput;
  /** The private key: PKCS#8, PKCS#1 (RSA), SEC1 (EC), or encrypted PKCS#8 with `passphrase`. */
  key: PemInput;
  /** Certificates that sign client certificates; used with `requestCert`. */
  ca?: PemInput;
  /** Decrypts an encrypted private key. */
  passphrase?: string;
  /** The host name (SNI) this entry serves; `*.example.com` matches one label. The entry
   * without one is the default. */
  serverName?: string;
  /** Ask for a client certificate and require one that `ca` signed (mTLS). */
  requestCert?: boolean;
}

export function tlsError(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: "ERR_TLS_CONFIG" });
}

function pemText(v: unknown, name: string): string {
  if (typeof v === "string") return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("latin1");
  if (v instanceof ArrayBuffer) return Buffer.from(v).toString("latin1");
  if (Array.isArray(v)) return v.map((p, i) => pemText(p, `${name}[${i}]`)).join("\n");
  throw tlsError(`${name} must be PEM as a string, Buffer, Uint8Array or an array of them`);
}

function entry(v: unknown, name: string): NativeTls {
  if (v === null || typeof v !== "object") throw tlsError(`${name} must be an object with cert and key`);
  const o = v as Record<string, unknown>;
  if (o.cert === undefined) throw tlsError(`${name}.cert is required`);
  if (o.key === undefined) throw tlsError(`${name}.key is required`);
  const out: NativeTls = { cert: pemText(o.cert, `${name}.cert`), key: pemText(o.key, `${name}.key`) };
  if (o.ca !== undefined) out.ca = pemText(o.ca, `${name}.ca`);
  for (const s of ["passphrase", "serverName"] as const) {
    if (o[s] === undefined) continue;
    if (typeof o[s] !== "string") throw tlsError(`${name}.${s} must be a string`);
    out[s] = o[s] as string;
  }
  if (o.requestCert !== undefined) {
    if (typeof o.requestCert !== "boolean") throw tlsError(`${name}.requestCert must be a boolean`);
    out.requestCert = o.requestCert;
  }
  return out;
}

/** The addon's entries for a `tls` option (one object or an array of them). */
export function tlsEntries(tls: unknown): NativeTls[] {
  if (Array.isArray(tls)) {
    if (tls.length === 0) throw tlsError("tls must not be an empty array");
    return tls.map((t, i) => entry(t, `tls[${i}]`));
  }
  return [entry(tls, "tls")];
}

/** The entries for server options: `tls`, or the top-level `key`/`cert` of node:https
 * and Deno.serve; `undefined` for plain HTTP. */
export function tlsFromOptions(o: Record<string, unknown>): NativeTls[] | undefined {
  if (o.tls !== undefined && o.tls !== null && o.tls !== false) {
    if (o.key !== undefined || o.cert !== undefined)
      throw tlsError("give either tls or the top-level key and cert, not both");
    return tlsEntries(o.tls);
  }
  if (o.key !== undefined || o.cert !== undefined) {
    const top: Record<string, unknown> = {
      key: o.key,
      cert: o.cert,
      ca: o.ca,
      passphrase: o.passphrase,
      requestCert: o.requestCert,
    };
    return [entry(top, "options")];
  }
  return undefined;
}
