// Shared helpers for the behaviour suites: servers on port 0, raw sockets, and a
// node:http client that can send bodies with any method.
import http from "node:http";
import net from "node:net";
import { test } from "node:test";
import { Server } from "../dist/index.js";

/** Starts a server on 127.0.0.1:0 with `listener`; returns it and its base URL. */
export async function start(listener, options = {}) {
  const server = new Server({ port: 0, host: "127.0.0.1", ...options });
  if (listener) server.addEventListener("fetch", listener);
  await server.listen();
  return { server, base: `http://127.0.0.1:${server.port}` };
}

/** Sends raw bytes and collects everything until the server closes or `idleMs` passes. */
export function raw(port, data, { idleMs = 300, end = false } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    const chunks = [];
    let timer;
    let closed = false;
    const finish = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ text: Buffer.concat(chunks).toString("latin1"), closed });
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(finish, idleMs);
    };
    sock.on("connect", () => {
      sock.write(data);
      if (end) sock.end();
      arm();
    });
    sock.on("data", (d) => {
      chunks.push(d);
      arm();
    });
    sock.on("end", () => {
      closed = true;
      finish();
    });
    sock.on("close", () => {
      closed = true;
      finish();
    });
    sock.on("error", (e) => (e.code === "ECONNRESET" ? ((closed = true), finish()) : reject(e)));
  });
}

/** node:http request with an optional body; resolves with status, headers and body bytes. */
export function request(base, path, { method = "GET", headers = {}, body, agent = false } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, base), { method, headers, agent }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks),
        }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    // Node sends no framing for a GET/DELETE/OPTIONS body unless told its length.
    if (body !== undefined) req.setHeader("content-length", Buffer.byteLength(body));
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

/** Deterministic bytes of a given size, so both ends can check content. */
export function pattern(size, seed = 1) {
  const b = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** Splits a raw HTTP/1.1 response text into status, header lines and body. */
export function parseRaw(text) {
  const end = text.indexOf("\r\n\r\n");
  const head = end === -1 ? text : text.slice(0, end);
  const [statusLine, ...lines] = head.split("\r\n");
  const status = Number(statusLine.split(" ")[1]);
  return { status, lines, body: end === -1 ? "" : text.slice(end + 4) };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A `both(name, fn)` that defines `name` as one test per implementation of a class, ours
 * and Node's (`fn` gets the class), so each behaviour is checked against the reference. */
export function bothImpls(ours, node) {
  return (name, fn) => {
    for (const [impl, C] of [
      ["fetch-rs", ours],
      ["node", node],
    ])
      test(`${name} [${impl}]`, () => fn(C));
  };
}
