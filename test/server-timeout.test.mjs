// Bun's `server.timeout(request, seconds)`: the listener's time limit of one request set
// again from inside its handler (longer, shorter, or none), over HTTP/1.1 (the fast path and
// hyper's), h2c and HTTPS, with raw sockets and node:http2; and its argument errors.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { raw, parseRaw, sleep, waitFor } from "./helpers.mjs";
import { A, httpsRequest } from "./tls-helpers.mjs";

const { serve, Server, Response } = await import("../dist/index.js");

/** What each handler saw of its request's signal, by path. */
const aborted = new Map();

/**
 * A server whose `timeout` is 150 ms. Paths: /longer sets 1 s, /none 0, /shorter (with the
 * option at 30 s in `slow`) 0.15 s, /twice 0.05 then 1 s; each then answers after `?ms=`.
 */
function timed(options) {
  return serve({
    port: 0,
    hostname: "127.0.0.1",
    ...options,
    fetch(request, server) {
      const url = new URL(request.url);
      const path = url.pathname;
      request.signal.addEventListener("abort", () => aborted.set(path, request.signal.reason?.name));
      if (path === "/longer") server.timeout(request, 1);
      else if (path === "/none") server.timeout(request, 0);
      else if (path === "/shorter") server.timeout(request, 0.15);
      else if (path === "/twice") {
        server.timeout(request, 0.05);
        server.timeout(request, 1);
      } else if (path === "/after") {
        // Answered first: setting a limit then changes nothing.
        const r = new Response("answered");
        queueMicrotask(() => server.timeout(request, 0.001));
        return r;
      }
      const ms = Number(url.searchParams.get("ms") ?? "-1");
      if (ms < 0) return new Promise(() => {});
      return sleep(ms).then(() => new Response(`${path} after ${ms}`));
    },
  });
}

/**
 * One raw HTTP/1.1 request; resolves with the status, the body and how long it took, once one
 * whole answer (its Content-Length's worth of body) has come, whether or not the connection ends.
 */
function timedRaw(port, request) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const sock = net.connect(port, "127.0.0.1", () => sock.write(request));
    let text = "";
    sock.setEncoding("latin1");
    sock.on("data", (d) => {
      text += d;
      const parsed = parseRaw(text);
      const length = parsed.lines.find((l) => /^content-length:/i.test(l));
      if (text.includes("\r\n\r\n") && parsed.body.length >= Number(length?.split(":")[1] ?? 0)) {
        sock.destroy();
        resolve({ status: parsed.status, body: parsed.body, ms: performance.now() - t0 });
      }
    });
    sock.on("error", reject);
    sock.on("close", () => reject(new Error(`closed after ${JSON.stringify(text)}`)));
  });
}

const get = (path) => `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`;
// A chunked body: hyper's path, not the fast one (which takes bodies of declared length).
const post = (path) =>
  `POST ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n`;

describe("server.timeout(request, seconds) over HTTP/1.1", () => {
  let fast;
  let slow;
  before(() => {
    fast = timed({ timeout: 150 });
    slow = timed({ timeout: 30_000 });
  });
  after(async () => {
    await fast.close();
    await slow.close();
  });

  for (const [how, make] of [
    ["a GET", get],
    ["a chunked POST", post],
  ]) {
    test(`${how}: a longer limit lets a late answer through`, async () => {
      const r = await timedRaw(fast.port, make("/longer?ms=400"));
      assert.equal(r.status, 200, r.body);
      assert.equal(r.body, "/longer after 400");
    });

    test(`${how}: 0 takes the limit away`, async () => {
      const r = await timedRaw(fast.port, make("/none?ms=400"));
      assert.equal(r.status, 200, r.body);
      assert.equal(r.body, "/none after 400");
    });

    test(`${how}: a shorter limit answers 503 on time and aborts the signal`, async () => {
      aborted.delete("/shorter");
      const r = await timedRaw(slow.port, make("/shorter"));
      assert.equal(r.status, 503);
      // Not before the new limit, and well before the option's 30 s (and the 1 s tick).
      assert.ok(r.ms >= 140 && r.ms < 900, `503 after ${r.ms.toFixed(0)} ms`);
      // The abort reaches JS as an event of its own, which may come after the 503 is out.
      await waitFor(() => aborted.has("/shorter"));
      assert.equal(aborted.get("/shorter"), "TimeoutError");
    });
  }

  test("the last call wins", async () => {
    const r = await timedRaw(fast.port, get("/twice?ms=300"));
    assert.equal(r.status, 200, r.body);
  });

  test("without it the option's limit holds (the control)", async () => {
    const r = await timedRaw(fast.port, get("/plain?ms=400"));
    assert.equal(r.status, 503);
  });

  test("on a request already answered it changes nothing, and the connection goes on", async () => {
    const r = await raw(
      fast.port,
      "GET /after HTTP/1.1\r\nHost: x\r\n\r\n" + "GET /plain?ms=10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      { idleMs: 5000 },
    );
    assert.match(r.text, /^HTTP\/1\.1 200[^]*answered[^]*HTTP\/1\.1 200[^]*\/plain after 10$/);
  });
});

describe("server.timeout over h2c and HTTPS", () => {
  let server;
  let tlsServer;
  before(() => {
    server = timed({ timeout: 150 });
    tlsServer = timed({ timeout: 150, tls: A });
  });
  after(async () => {
    await server.close();
    await tlsServer.close();
  });

  async function h2(path) {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      const t0 = performance.now();
      const stream = session.request({ ":path": path });
      let body = "";
      stream.setEncoding("utf8");
      stream.on("data", (d) => (body += d));
      const [headers] = await Promise.all([
        new Promise((resolve) => stream.on("response", resolve)),
        new Promise((resolve) => stream.on("end", resolve)),
      ]);
      return { status: headers[":status"], body, ms: performance.now() - t0 };
    } finally {
      session.close();
    }
  }

  test("h2c: longer, none, and the control", async () => {
    const [longer, none, control] = await Promise.all([h2("/longer?ms=400"), h2("/none?ms=400"), h2("/plain?ms=400")]);
    assert.equal(longer.status, 200);
    assert.equal(longer.body, "/longer after 400");
    assert.equal(none.status, 200);
    assert.equal(control.status, 503);
  });

  test("h2c: a shorter limit answers 503 on time", async () => {
    const slow = timed({ timeout: 30_000 });
    try {
      const session = http2.connect(`http://127.0.0.1:${slow.port}`);
      try {
        const t0 = performance.now();
        const stream = session.request({ ":path": "/shorter" });
        const headers = await new Promise((resolve) => stream.on("response", resolve));
        const ms = performance.now() - t0;
        assert.equal(headers[":status"], 503);
        assert.ok(ms >= 140 && ms < 900, `503 after ${ms.toFixed(0)} ms`);
        stream.resume();
      } finally {
        session.close();
      }
    } finally {
      await slow.close();
    }
  });

  test("HTTPS/1.1: a longer limit lets a late answer through; the control gets 503", async () => {
    const [longer, control] = await Promise.all([
      httpsRequest(tlsServer.port, "/longer?ms=400"),
      httpsRequest(tlsServer.port, "/plain?ms=400"),
    ]);
    assert.equal(longer.status, 200);
    assert.equal(longer.body, "/longer after 400");
    assert.equal(control.status, 503);
  });
});

test("a fetch listener's request (new Server): a longer limit, and the control", async () => {
  const server = new Server({ port: 0, host: "127.0.0.1", timeout: 150 });
  server.addEventListener("fetch", (event) => {
    if (new URL(event.request.url).pathname === "/longer") server.timeout(event.request, 1);
    event.respondWith(sleep(400).then(() => new Response("late")));
  });
  await server.listen();
  try {
    const [longer, control] = await Promise.all([
      timedRaw(server.port, get("/longer")),
      timedRaw(server.port, get("/plain")),
    ]);
    assert.equal(longer.status, 200);
    assert.equal(longer.body, "late");
    assert.equal(control.status, 503);
  } finally {
    await server.close();
  }
});

test("a serve() handler's second argument has Bun's timeout and subscriberCount, detached", async () => {
  const server = serve({
    port: 0,
    hostname: "127.0.0.1",
    timeout: 150,
    fetch(request, { timeout, subscriberCount }) {
      timeout(request, 1);
      return sleep(400).then(() => Response.json({ subscribers: subscriberCount("room") }));
    },
  });
  try {
    const r = await timedRaw(server.port, get("/"));
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), { subscribers: 0 });
  } finally {
    await server.close();
  }
});

describe("server.timeout's arguments", () => {
  let server;
  before(() => {
    server = serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("ok") });
  });
  after(() => server.close());

  test("seconds must be a number, 0 or more", () => {
    const request = new Request("http://example.com/");
    for (const bad of [-1, NaN, "1", undefined, null, 1n]) {
      assert.throws(
        () => server.timeout(request, bad),
        (e) => e instanceof RangeError && e.code === "ERR_INVALID_ARG_VALUE",
        String(bad),
      );
    }
  });

  test("a request that is not the server's is left alone", () => {
    assert.equal(server.timeout(new Request("http://example.com/"), 1), undefined);
    assert.equal(server.timeout({}, 1), undefined);
    assert.equal(server.timeout(null, Infinity), undefined);
  });
});
