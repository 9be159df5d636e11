// TLS test helpers: the fixture certificates (scripts/gen-test-certs.sh) and clients
// that report what they negotiated.
import { readFileSync } from "node:fs";
import https from "node:https";
import http2 from "node:http2";
import tls from "node:tls";
import { readResponse } from "./helpers.mjs";

const dir = new URL("./fixtures/tls/", import.meta.url);
/** A fixture file's PEM text. */
export const pem = (name) => readFileSync(new URL(name, dir), "utf8");
export const CA = pem("ca.pem");
/** The default test certificate: a.test, localhost, 127.0.0.1. */
export const A = { cert: pem("a.pem"), key: pem("a.key") };
export const B = { cert: pem("b.pem"), key: pem("b.key") };

/** Opens a TLS connection and resolves once it is secure (or rejects on a handshake error). */
export function tlsConnect(port, options = {}) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, ca: CA, servername: "localhost", ...options });
    s.once("secureConnect", () => resolve(s));
    s.once("error", reject);
  });
}

/**
 * An HTTP/1.1 connection over TLS that keeps what it reads as text: { s, text() (all read so
 * far), ended (resolves at the end of the stream) }.
 */
export async function h1TextClient(port) {
  const s = await tlsConnect(port, { ALPNProtocols: ["http/1.1"] });
  let text = "";
  s.setEncoding("latin1");
  s.on("data", (d) => (text += d));
  return { s, text: () => text, ended: new Promise((resolve) => s.on("end", resolve)) };
}

/** The CN of the certificate a server presents for `servername`. */
export async function peerName(port, servername) {
  const s = await tlsConnect(port, { servername, rejectUnauthorized: false });
  const cn = s.getPeerCertificate().subject.CN;
  s.destroy();
  return cn;
}

/** node:https request; resolves with status, headers, body text, ALPN and the socket. */
export function httpsRequest(port, path = "/", options = {}) {
  const { body, ...rest } = options;
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: "127.0.0.1", port, path, ca: CA, servername: "localhost", agent: false, ...rest },
      (res) =>
        readResponse(res).then(
          (r) => resolve({ ...r, body: r.body.toString(), alpn: res.socket?.alpnProtocol, socket: res.socket }),
          reject,
        ),
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** A node:http2 session over TLS, connected (ALPN checked by the caller). */
export function h2Session(port, options = {}) {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`https://localhost:${port}`, { ca: CA, host: "127.0.0.1", ...options });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

/** One request on an HTTP/2 session; resolves with status, headers and body text. */
export function h2Request(session, headers = {}, body) {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":path": "/", ...headers });
    const chunks = [];
    let head;
    req.on("response", (h) => (head = h));
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve({ status: head?.[":status"], headers: head, body: Buffer.concat(chunks).toString() }));
    req.on("error", reject);
    req.end(body);
  });
}
