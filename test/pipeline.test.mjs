// Pipelined HTTP/1.1 requests on the fast path (src/fast_h1.rs, `read_ahead`): the requests
// read together go to JS together, up to 16 a connection, and their answers go out in request
// order (RFC 9112 9.3.2), whatever order the handlers finish in. Around it: a throwing handler,
// a streamed answer, a POST body, `Connection: close`, a head hyper takes, a client that
// leaves, `server.close()`, a client that sends 1,000 and reads nothing, and TLS.
//
// Run with: node --test test/pipeline.test.mjs (and FETCH_RS_IN_THREAD=1 for the in-thread mode)
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { after, before, describe, test } from "node:test";
import { Response } from "../dist/index.js";
import { raw, sleep, start, waitFor } from "./helpers.mjs";
import { A, CA } from "./tls-helpers.mjs";

const enc = new TextEncoder();
const get = (path, more = "") => `GET ${path} HTTP/1.1\r\nHost: x\r\n${more}\r\n`;
const post = (path, body) => `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
const maskDate = (text) => text.replace(/\r\ndate: [^\r]*\r\n/g, "\r\ndate: -\r\n");
/** The answer to `new Response(body)` as written, its `Date` masked. */
const textAnswer = (body, more = "") =>
  `HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\n${more}content-length: ${body.length}\r\ndate: -\r\n\r\n${body}`;

/** What the handlers saw: how many were in JS at once, and each request's path. */
function tracker() {
  const t = { active: 0, max: 0, seen: [], aborted: [], held: [] };
  t.enter = (path) => {
    t.seen.push(path);
    t.max = Math.max(t.max, ++t.active);
  };
  t.leave = () => t.active--;
  return t;
}

/** The handler of every test: `/d/N` answers after N ms, `/hold/N` when released (its signal's
 * abort is recorded), `/throw` throws, `/stream` streams, `/echo` echoes, `/big` is 32 KiB. */
function handler(t) {
  return (event) => {
    const req = event.request;
    const path = new URL(req.url).pathname;
    const [, kind, arg] = path.split("/");
    t.enter(path);
    const done = (r) => {
      t.leave();
      return r;
    };
    switch (kind) {
      case "d":
        return event.respondWith(sleep(Number(arg)).then(() => done(new Response(path))));
      case "hold": {
        req.signal.addEventListener("abort", () => t.aborted.push(path));
        return event.respondWith(new Promise((resolve) => t.held.push(() => resolve(done(new Response(path))))));
      }
      case "throw":
        t.leave();
        throw new Error("thrown on purpose (pipeline test)");
      case "stream":
        return event.respondWith(
          done(
            new Response(
              new ReadableStream({
                async start(c) {
                  c.enqueue(enc.encode("s1"));
                  await sleep(5);
                  c.enqueue(enc.encode("s2"));
                  c.close();
                },
              }),
            ),
          ),
        );
      case "echo":
        return event.respondWith(req.text().then((b) => done(new Response(`echo:${b}`))));
      case "big":
        return event.respondWith(sleep(0).then(() => done(new Response(`${path}:`.padEnd(32 * 1024, "b")))));
      default:
        return event.respondWith(done(new Response(path)));
    }
  };
}

let server;
let port;
let t;
/** Errors the server reported (the throwing handler's). */
const errors = [];
before(async () => {
  t = tracker();
  ({ server } = await start((e) => handler(t)(e)));
  server.addEventListener("error", (e) => errors.push(e.error));
  port = server.port;
});
after(() => server?.close({ force: true }));

/** A fresh tracker for the next test (the handler reads `t` at each request). */
const fresh = () => (t = tracker());

describe("pipelined requests", () => {
  test("16 async handlers finishing in reverse order run together and answer in order", async () => {
    fresh();
    const paths = Array.from({ length: 16 }, (_, i) => `/d/${16 - i}`);
    const { text, closed } = await raw(port, paths.map((p) => get(p)).join(""));
    assert.equal(closed, false);
    assert.equal(maskDate(text), paths.map((p) => textAnswer(p)).join(""));
    assert.equal(t.max, 16, "all 16 were with JS at once");
  });

  test("a throwing handler in the middle is answered 500 in its place", async () => {
    fresh();
    const { text } = await raw(port, get("/d/10") + get("/throw") + get("/d/1"));
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d+) /g)].map((m) => m[1]);
    assert.deepEqual(statuses, ["200", "500", "200"]);
    assert.match(String(errors.at(-1)), /thrown on purpose/);
    assert.ok(maskDate(text).startsWith(textAnswer("/d/10")));
    assert.ok(maskDate(text).endsWith(textAnswer("/d/1")));
    assert.equal(t.max, 2, "the request after the throw was with JS beside the first");
  });

  test("a streamed answer in the middle", async () => {
    fresh();
    const { text } = await raw(port, get("/d/10") + get("/stream") + get("/d/1"));
    const stream = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ndate: -\r\n\r\n2\r\ns1\r\n2\r\ns2\r\n0\r\n\r\n";
    assert.equal(maskDate(text), textAnswer("/d/10") + stream + textAnswer("/d/1"));
    assert.equal(t.seen.length, 3);
    assert.ok(t.max >= 2);
  });

  test("a POST with a body in the middle", async () => {
    fresh();
    const { text } = await raw(port, get("/d/10") + post("/echo", "a=1&b=2") + get("/d/1"));
    assert.equal(maskDate(text), textAnswer("/d/10") + textAnswer("echo:a=1&b=2") + textAnswer("/d/1"));
    assert.equal(t.max, 3);
  });

  test("Connection: close in the middle: nothing after it reaches the handler", async () => {
    fresh();
    const { text, closed } = await raw(port, get("/d/10") + get("/d/1", "Connection: close\r\n") + get("/never"));
    assert.equal(closed, true);
    assert.equal(maskDate(text), textAnswer("/d/10") + textAnswer("/d/1", "connection: close\r\n"));
    assert.deepEqual(t.seen, ["/d/10", "/d/1"]);
    assert.equal(t.max, 2);
  });

  test("a head the fast path leaves to hyper waits for the answers before it", async () => {
    fresh();
    const chunked = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    const { text } = await raw(port, get("/d/10") + get("/d/5") + chunked + get("/d/1"));
    assert.equal(
      maskDate(text),
      [textAnswer("/d/10"), textAnswer("/d/5"), textAnswer("echo:abc"), textAnswer("/d/1")].join(""),
    );
    assert.deepEqual(t.seen.slice(0, 2), ["/d/10", "/d/5"]);
    assert.equal(t.max, 2, "the two before the chunked one together, then one at a time");
  });

  test("answers before a held one go out while it waits, with a head waiting behind it", async () => {
    fresh();
    const sock = net.connect(port, "127.0.0.1");
    let text = "";
    sock.setEncoding("latin1");
    sock.on("data", (d) => (text += d));
    await new Promise((r) => sock.on("connect", r));
    // The chunked POST is hyper's: it stays in the read buffer until the answers before it are out.
    const chunked = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n";
    sock.write(get("/d/0") + get("/d/1") + get("/hold/h") + chunked);
    await waitFor(() => maskDate(text) === textAnswer("/d/0") + textAnswer("/d/1"));
    t.held[0]();
    await waitFor(() => maskDate(text).endsWith(textAnswer("echo:z")));
    sock.destroy();
    assert.equal(
      maskDate(text),
      textAnswer("/d/0") + textAnswer("/d/1") + textAnswer("/hold/h") + textAnswer("echo:z"),
    );
  });

  test("a client that leaves with answers pending aborts every pending request's signal", async () => {
    fresh();
    const sock = net.connect(port, "127.0.0.1");
    await new Promise((r) => sock.on("connect", r));
    sock.on("error", () => {});
    const paths = Array.from({ length: 8 }, (_, i) => `/hold/${i}`);
    sock.write(paths.map((p) => get(p)).join(""));
    await waitFor(() => t.seen.length === 8);
    sock.destroy();
    await waitFor(() => t.aborted.length === 8);
    assert.deepEqual([...t.aborted].sort(), [...paths].sort());
    for (const release of t.held) release();
  });

  test("server.close() answers the requests with JS, the last with connection: close", async () => {
    fresh();
    const { server: s } = await start((e) => handler(t)(e));
    const sock = net.connect(s.port, "127.0.0.1");
    let text = "";
    sock.setEncoding("latin1");
    sock.on("data", (d) => (text += d));
    const ended = new Promise((r) => sock.on("close", r));
    await new Promise((r) => sock.on("connect", r));
    const paths = ["/hold/a", "/hold/b", "/hold/c"];
    sock.write(paths.map((p) => get(p)).join(""));
    await waitFor(() => t.seen.length === 3);
    const closing = s.close();
    // Sent after the close began: never taken.
    sock.write(get("/late"));
    for (const release of t.held.reverse()) release();
    await ended;
    await closing;
    assert.equal(
      maskDate(text),
      textAnswer("/hold/a") + textAnswer("/hold/b") + textAnswer("/hold/c", "connection: close\r\n"),
    );
    assert.deepEqual(t.seen, paths);
    assert.deepEqual(t.aborted, []);
  });

  test("requests beyond maxPendingRequests are not read ahead: they wait their turn, no 503", async () => {
    fresh();
    const { server: s } = await start((e) => handler(t)(e), { maxPendingRequests: 2 });
    try {
      const sock = net.connect(s.port, "127.0.0.1");
      let text = "";
      sock.setEncoding("latin1");
      sock.on("data", (d) => (text += d));
      await new Promise((r) => sock.on("connect", r));
      sock.write(get("/hold/a") + get("/hold/b") + get("/c") + get("/d"));
      await waitFor(() => t.held.length === 2);
      for (const release of t.held) release();
      await waitFor(() => (text.match(/HTTP\/1\.1 /g) ?? []).length === 4);
      sock.destroy();
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d+) /g)].map((m) => m[1]);
      // One at a time, each would be taken below the limit: reading ahead must not turn a
      // client's own pipeline into 503s.
      assert.deepEqual(statuses, ["200", "200", "200", "200"]);
      assert.deepEqual(t.seen, ["/hold/a", "/hold/b", "/c", "/d"]);
      assert.ok(
        text.indexOf("/hold/a") < text.indexOf("/hold/b") && text.indexOf("/hold/b") < text.indexOf("\r\n\r\n/c"),
      );
    } finally {
      await s.close({ force: true });
    }
  });

  test("the listener's timeout in the middle: 503 in its place, and the connection ends there", async () => {
    fresh();
    const { server: s } = await start((e) => handler(t)(e), { timeout: 100 });
    try {
      const { text, closed } = await raw(s.port, get("/d/1") + get("/hold/x") + get("/c"), { idleMs: 2000 });
      assert.equal(closed, true);
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d+) /g)].map((m) => m[1]);
      assert.deepEqual(statuses, ["200", "503"]);
      assert.match(text, /503 Service Unavailable\r\nconnection: close\r\n/);
      // The abort reaches JS through the doorbell, maybe after the 503 reached the client.
      await waitFor(() => t.aborted.length === 1);
      assert.deepEqual(t.aborted, ["/hold/x"]);
    } finally {
      for (const release of t.held) release();
      await s.close({ force: true });
    }
  });

  test("1,000 pipelined requests from a client that reads nothing: at most 16 with JS at a time", async () => {
    fresh();
    const n = 1000;
    const sock = net.connect(port, "127.0.0.1");
    await new Promise((r) => sock.on("connect", r));
    sock.pause();
    sock.write(Array.from({ length: n }, (_, i) => get(`/big/${i}`)).join(""));
    // The answers (32 MiB) fill the sockets' buffers: the server stops taking requests.
    let last = -1;
    while (t.seen.length !== last) {
      last = t.seen.length;
      await sleep(200);
    }
    assert.ok(t.seen.length < n, `${t.seen.length} taken while the client read nothing`);
    assert.ok(t.max <= 16 && t.max > 1, `at most 16 at once (${t.max})`);
    const bodies = Array.from({ length: n }, (_, i) => `/big/${i}:`.padEnd(32 * 1024, "b"));
    const expected = bodies.map((b) => textAnswer(b)).join("");
    // Each `date: -` stands for 29 characters.
    const want = expected.length + n * 28;
    const chunks = [];
    let size = 0;
    await new Promise((resolve) => {
      sock.on("data", (d) => {
        chunks.push(d);
        size += d.length;
        if (size >= want) resolve();
      });
      sock.resume();
    });
    sock.destroy();
    assert.equal(maskDate(Buffer.concat(chunks).toString("latin1")), expected);
    assert.ok(t.max <= 16, `at most 16 at once (${t.max})`);
  });
});

describe("pipelined requests over TLS", () => {
  let secure;
  before(async () => {
    ({ server: secure } = await start((e) => handler(t)(e), { tls: A }));
  });
  after(() => secure?.close({ force: true }));

  test("16 async handlers finishing in reverse order run together and answer in order", async () => {
    fresh();
    const paths = Array.from({ length: 16 }, (_, i) => `/d/${16 - i}`);
    const dial = () => [
      tls.connect({
        host: "127.0.0.1",
        port: secure.port,
        ca: CA,
        servername: "localhost",
        ALPNProtocols: ["http/1.1"],
      }),
      "secureConnect",
    ];
    const { text } = await raw(secure.port, paths.map((p) => get(p)).join(""), { dial });
    assert.equal(maskDate(text), paths.map((p) => textAnswer(p)).join(""));
    assert.equal(t.max, 16);
  });
});
