// Bun's `server.fetch(request)`: a request given to the server's listeners without a
// connection (for tests and in-process calls), through serve()'s fetch, routes and error
// handler and through fetch listeners, with what a client would get when things go wrong.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sleep } from "./helpers.mjs";

const { serve, Server, Request, Response } = await import("../dist/index.js");

describe("server.fetch() on a serve() server", () => {
  /** What the handlers saw, by path. */
  const seen = new Map();
  const errors = [];
  let server;
  let release;
  const held = new Promise((r) => (release = r));

  before(() => {
    server = serve({
      port: 0,
      hostname: "127.0.0.1",
      routes: {
        "/users/:id": (request) => Response.json({ id: request.params.id, method: request.method }),
      },
      async fetch(request, info) {
        const url = new URL(request.url);
        seen.set(url.pathname, {
          url: request.url,
          clientAddress: info.clientAddress,
          requestIP: info.requestIP(request),
          remoteAddr: info.remoteAddr,
          header: request.headers.get("x-test"),
          request,
        });
        switch (url.pathname) {
          case "/echo":
            return new Response(await request.text(), { status: 201, headers: { "x-method": request.method } });
          case "/throw":
            throw new Error("handler failed");
          case "/not-a-response":
            return "a string";
          case "/later":
            info.waitUntil(held);
            return new Response("answered before the work ends");
          case "/stream":
            return new Response(
              new ReadableStream({
                start(c) {
                  c.enqueue(new TextEncoder().encode("one "));
                  c.enqueue(new TextEncoder().encode("two"));
                  c.close();
                },
              }),
            );
          default:
            return new Response(`hello ${url.pathname}${url.search}`);
        }
      },
    });
    server.addEventListener("error", (e) => errors.push(e));
  });
  after(() => server.close({ force: true }));

  test("a relative URL is resolved against server.url, and no connection is made", async () => {
    const before = server.stats().totalRequests;
    const res = await server.fetch("/hello?x=1", { headers: { "x-test": "yes" } });
    assert.ok(res instanceof Response);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello /hello?x=1");
    const s = seen.get("/hello");
    assert.equal(s.url, `http://127.0.0.1:${server.port}/hello?x=1`);
    assert.equal(s.header, "yes");
    assert.equal(s.request.constructor, Request);
    // No client: no address, and requestIP() knows nothing of this request.
    assert.equal(s.clientAddress, "");
    assert.equal(s.requestIP, null);
    assert.deepEqual(s.remoteAddr, { transport: "tcp", hostname: "", port: 0 });
    assert.equal(server.stats().totalRequests, before);
  });

  test("a Request is used as it is, with its method, headers and body", async () => {
    const req = new Request("http://example.test/echo", { method: "PUT", body: "the body" });
    const res = await server.fetch(req);
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("x-method"), "PUT");
    assert.equal(await res.text(), "the body");
    assert.equal(seen.get("/echo").request, req);
  });

  test("Node's own Request is taken too", async () => {
    const req = new globalThis.Request("http://example.test/echo", { method: "POST", body: "x" });
    assert.notEqual(req.constructor, Request);
    const res = await server.fetch(req);
    assert.equal(await res.text(), "x");
    assert.equal(seen.get("/echo").request, req);
  });

  test("a URL object and init make the request", async () => {
    const res = await server.fetch(new URL("http://example.test/echo"), { method: "POST", body: "from init" });
    assert.equal(res.headers.get("x-method"), "POST");
    assert.equal(await res.text(), "from init");
  });

  test("routes answer before fetch, with their params", async () => {
    const res = await server.fetch("/users/42", { method: "DELETE" });
    assert.deepEqual(await res.json(), { id: "42", method: "DELETE" });
  });

  test("a streamed body comes back as the handler made it", async () => {
    const res = await server.fetch("/stream");
    assert.equal(await res.text(), "one two");
  });

  test("a handler that throws gives a 500 and its error is reported with the request", async () => {
    errors.length = 0;
    const res = await server.fetch("/throw");
    assert.equal(res.status, 500);
    assert.equal(errors.length, 1);
    assert.equal(errors[0].error.message, "handler failed");
    assert.equal(new URL(errors[0].request.url).pathname, "/throw");
  });

  test("something other than a Response gives a 500 and a TypeError reported", async () => {
    errors.length = 0;
    const res = await server.fetch("/not-a-response");
    assert.equal(res.status, 500);
    assert.equal(errors.length, 1);
    assert.ok(errors[0].error instanceof TypeError);
    assert.match(errors[0].error.message, /needs a Response, got string/);
  });

  test("a bad URL rejects with the Request constructor's TypeError", async () => {
    await assert.rejects(server.fetch("http://[bad"), TypeError);
    await assert.rejects(server.fetch(new URL("http://example.test/"), { method: "GET", body: "x" }), TypeError);
  });

  test("close() waits for waitUntil work of a request it answered", async () => {
    const res = await server.fetch("/later");
    assert.equal(await res.text(), "answered before the work ends");
    let closed = false;
    const closing = server.close().then(() => (closed = true));
    await sleep(50);
    assert.equal(closed, false, "close() must wait for the waitUntil promise");
    release();
    await closing;
    assert.equal(closed, true);
  });
});

describe("server.fetch() with fetch listeners", () => {
  test("respondWith() with a promise, and no respondWith() at all", async () => {
    const server = new Server({ port: 0, hostname: "127.0.0.1" });
    const errors = [];
    server.addEventListener("error", (e) => errors.push(e.error));
    server.addEventListener("fetch", (ev) => {
      if (new URL(ev.request.url).pathname === "/silent") return;
      ev.respondWith(sleep(5).then(() => new Response(`late ${ev.request.method}`)));
    });
    await server.listen();
    try {
      const res = await server.fetch("/", { method: "POST", body: "" });
      assert.equal(await res.text(), "late POST");
      const silent = await server.fetch("/silent");
      assert.equal(silent.status, 500);
      assert.equal(errors.length, 1);
      assert.equal(errors[0].code, "ERR_NO_RESPONSE");
    } finally {
      await server.close();
    }
  });

  test("serve()'s error handler answers for a fetch that throws", async () => {
    const server = serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch() {
        throw new Error("nope");
      },
      error: (e) => new Response(`handled: ${e.message}`, { status: 503 }),
    });
    try {
      const res = await server.fetch("/");
      assert.equal(res.status, 503);
      assert.equal(await res.text(), "handled: nope");
    } finally {
      await server.close();
    }
  });

  test("on a Unix socket a relative URL is resolved against http://localhost/", async () => {
    const path = join(tmpdir(), `fetch-rs-server-fetch-${process.pid}.sock`);
    const server = serve({ unix: path, fetch: (request) => new Response(request.url) });
    try {
      assert.equal(await (await server.fetch("/a?b")).text(), "http://localhost/a?b");
    } finally {
      await server.close();
    }
  });
});
