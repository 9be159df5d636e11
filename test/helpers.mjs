// Shared helpers for the behaviour suites: servers on port 0, raw sockets, node:http
// clients that can send bodies with any method, a child process for a script, a reference
// server in a child process, and the Fetch classes' IDL.
import { spawn } from "node:child_process";
import { once } from "node:events";
import http from "node:http";
import net from "node:net";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

/** Starts a server on 127.0.0.1:0 with `listener`; returns it and its base URL. (fetch-rs is
 * loaded here, not on import, so that a reference server in a child process can use the
 * clients below without loading it.) */
export async function start(listener, options = {}) {
  const { Server } = await import("../dist/index.js");
  const server = new Server({ port: 0, host: "127.0.0.1", ...options });
  if (listener) server.addEventListener("fetch", listener);
  await server.listen();
  return { server, base: `http://127.0.0.1:${server.port}` };
}

/** Sends raw bytes (`data`, or an array of parts written `gapMs` apart) and collects
 * everything until the server closes or `idleMs` passes. `dial` makes the socket instead of a
 * TCP connection to 127.0.0.1 (a TLS one, say), with the name of its connect event. */
export function raw(port, data, { idleMs = 300, end = false, gapMs = 0, dial } = {}) {
  return new Promise((resolve, reject) => {
    const [sock, ready] = dial ? dial() : [net.connect(port, "127.0.0.1"), "connect"];
    sock.setNoDelay(true);
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
    sock.on(ready, async () => {
      for (const part of Array.isArray(data) ? data : [data]) {
        if (sock.destroyed) return;
        sock.write(part);
        if (gapMs) await sleep(gapMs);
      }
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
    // A write after the server closed may fail as a reset does.
    sock.on("error", (e) => (e.code === "ECONNRESET" || e.code === "EPIPE" ? ((closed = true), finish()) : reject(e)));
  });
}

/** Reads a node:http(s) response whole; resolves with status, headers and body bytes. */
export function readResponse(res) {
  return new Promise((resolve, reject) => {
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
}

/** Ends a node:http ClientRequest with `body` (and its Content-Length) or with `chunks`
 * (sent chunked, in those pieces); resolves with the response as `readResponse` gives it. */
function exchange(req, { body, chunks }) {
  return new Promise((resolve, reject) => {
    req.on("response", (res) => readResponse(res).then(resolve, reject));
    req.on("error", reject);
    if (chunks !== undefined) {
      for (const c of chunks) req.write(c);
      req.end();
      return;
    }
    // Node sends no framing for a GET/DELETE/OPTIONS body unless told its length.
    if (body !== undefined) req.setHeader("content-length", Buffer.byteLength(body));
    req.end(body);
  });
}

/** node:http request with an optional body; resolves with status, headers and body bytes. */
export async function request(base, path, { method = "GET", headers = {}, body, agent = false } = {}) {
  return exchange(http.request(new URL(path, base), { method, headers, agent }), { body });
}

/** node:http request to 127.0.0.1:`port` with `path` sent as written (no URL parsing) and
 * `body` or `chunks` as `exchange` sends them; no connection reuse. (Both are async so that
 * node:http's own throws, on a header it refuses, reject.) */
export async function send(port, { method = "GET", path, headers = {}, body, chunks }) {
  return exchange(http.request({ host: "127.0.0.1", port, method, path, headers, agent: false }), { body, chunks });
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

/** Runs `source` as an ES module in a child Node process, killed after `timeoutMs`;
 * resolves with its exit code, signal and output (stdout and stderr together). */
export async function runModule(source, timeoutMs) {
  const child = spawn(process.execPath, ["--input-type=module", "-e", source], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const [code, signal] = await once(child, "exit");
  clearTimeout(timer);
  return { code, signal, out };
}

// A reference server for comparisons: the test file at `url` run again in a child process
// (with `env` set, so it knows to be the reference), where `serveReference` serves each app on
// @hono/node-server with the globals that server's users have, and reports the ports.

/** Starts the reference child; resolves with it and its ports (app name to port). */
export function startReference(url, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(url)], {
      env: { ...process.env, ...env },
      stdio: ["pipe", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /PORTS (.+)\n/.exec(out);
      if (m) resolve({ child, ports: JSON.parse(m[1]) });
    });
    child.on("exit", (code) => reject(new Error(`reference server exited (${code}): ${out}`)));
    child.on("error", reject);
  });
}

/** Stops a reference that `startReference` started (if it did). */
export function stopReference(reference) {
  if (!reference) return;
  reference.child.removeAllListeners("exit");
  reference.child.stdin.end();
  reference.child.kill();
}

/** In the reference child: serves each of `apps` (name to a function making a fetch handler)
 * on @hono/node-server, reports the ports and lives until the parent closes its stdin. */
export async function serveReference(apps) {
  const { serve } = await import("@hono/node-server");
  const ports = {};
  for (const [name, make] of Object.entries(apps)) {
    ports[name] = await new Promise((resolve) => {
      serve({ fetch: make(), port: 0, hostname: "127.0.0.1" }, (info) => resolve(info.port));
    });
  }
  process.stdout.write(`PORTS ${JSON.stringify(ports)}\n`);
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(0));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves once `pred()` is true, checking every 5 ms; throws after `ms`. */
export async function waitFor(pred, ms = 10_000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await sleep(5);
  }
}

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

export const BODY_OPS = { arrayBuffer: 0, blob: 0, bytes: 0, formData: 0, json: 0, text: 0 };

// The Fetch classes' IDL (https://fetch.spec.whatwg.org/#headers-class, #request-class,
// #response-class): the constructor's required arguments, attributes, regular operations with
// their required-argument counts, static operations likewise; `make` builds an instance from
// one implementation's classes.
export const IDL = {
  Headers: {
    length: 0,
    attributes: [],
    operations: {
      append: 2,
      delete: 1,
      get: 1,
      getSetCookie: 0,
      has: 1,
      set: 2,
      entries: 0,
      forEach: 1,
      keys: 0,
      values: 0,
    },
    statics: {},
    make: (C) => new C.Headers([["a", "1"]]),
  },
  Request: {
    length: 1,
    attributes: [
      "method",
      "url",
      "headers",
      "destination",
      "referrer",
      "referrerPolicy",
      "mode",
      "credentials",
      "cache",
      "redirect",
      "integrity",
      "keepalive",
      "isReloadNavigation",
      "isHistoryNavigation",
      "signal",
      "duplex",
      "body",
      "bodyUsed",
    ],
    operations: { clone: 0, ...BODY_OPS },
    statics: {},
    make: (C) => new C.Request("http://example.test/", { method: "POST", body: "x" }),
  },
  Response: {
    length: 0,
    attributes: ["type", "url", "redirected", "status", "ok", "statusText", "headers", "body", "bodyUsed"],
    operations: { clone: 0, ...BODY_OPS },
    statics: { error: 0, redirect: 1, json: 1 },
    make: (C) => new C.Response("x"),
  },
};

/**
 * A keep-alive connection over a raw socket that sends one POST at a time (`post(path, body,
 * extraHeaderLines)`) and resolves with its answer's status and body (answers with a
 * Content-Length only).
 */
export function postConnection(port) {
  const sock = net.connect(port, "127.0.0.1");
  let buf = Buffer.alloc(0);
  let waiting = null;
  const check = () => {
    if (waiting === null) return;
    const end = buf.indexOf("\r\n\r\n", 0, "latin1");
    if (end === -1) return;
    const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
    const cl = lines.find((l) => /^content-length:/i.test(l));
    if (cl === undefined) return waiting.reject(new Error(`no content-length: ${lines.join(" | ")}`));
    const n = Number(cl.split(":")[1]);
    if (buf.length < end + 4 + n) return;
    const res = { status: Number(lines[0].split(" ")[1]), body: Buffer.from(buf.subarray(end + 4, end + 4 + n)) };
    buf = buf.subarray(end + 4 + n);
    const w = waiting;
    waiting = null;
    w.resolve(res);
  };
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    check();
  });
  const fail = (e) => waiting?.reject(e ?? new Error("the server closed the connection"));
  sock.on("error", fail);
  sock.on("close", () => fail());
  const ready = new Promise((resolve, reject) => {
    sock.once("connect", resolve);
    sock.once("error", reject);
  });
  return {
    async post(path, body, extra = "") {
      await ready;
      const p = new Promise((resolve, reject) => (waiting = { resolve, reject }));
      sock.write(`POST ${path} HTTP/1.1\r\nHost: x\r\n${extra}Content-Length: ${body.length}\r\n\r\n`);
      sock.write(body);
      return p;
    },
    close: () => sock.destroy(),
  };
}
