// Behaviour of the core server over real sockets: methods and bodies, concurrency,
// framing, errors from listeners, close(), and the RFC's API.
import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { FetchEvent, Request, Response, Server, serve } from "../dist/index.js";
import { parseRaw, pattern, raw, request, runModule, sleep, start } from "./helpers.mjs";

const MiB = 1024 * 1024;

describe("methods and bodies", () => {
  let ctx;
  before(async () => {
    ctx = await start(async (event) => {
      const { request: req } = event;
      const url = new URL(req.url);
      const received = new Uint8Array(await req.arrayBuffer());
      const size = Number(url.searchParams.get("size") ?? 0);
      const out = received.byteLength > 0 ? received : pattern(size, size + 7);
      event.respondWith(
        new Response(out.byteLength === 0 ? null : out, {
          headers: { "x-method": req.method, "x-received": String(received.byteLength) },
        }),
      );
    });
  });
  after(() => ctx.server.close());

  for (const method of ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]) {
    for (const size of [0, 1024, MiB, 8 * MiB]) {
      test(`${method} with a ${size}-byte body each way is byte-exact`, async () => {
        const body = pattern(size, size + 3);
        const sent = await request(ctx.base, `/?size=${size}`, { method, body: size > 0 ? body : undefined });
        assert.equal(sent.status, 200);
        assert.equal(sent.headers["x-method"], method);
        assert.equal(sent.headers["x-received"], String(size));
        if (method === "HEAD") {
          assert.equal(sent.body.length, 0);
        } else {
          assert.equal(sent.body.length, size);
          assert.ok(sent.body.equals(body), "echoed body differs");
        }
        const fetched = await request(ctx.base, `/?size=${size}`, { method });
        assert.equal(fetched.status, 200);
        assert.equal(fetched.headers["x-received"], "0");
        if (method !== "HEAD") assert.ok(fetched.body.equals(pattern(size, size + 7)), "generated body differs");
        if (size > 0) assert.equal(fetched.headers["content-length"], String(size));
      });
    }
  }
});

describe("concurrency", () => {
  test("500 concurrent requests with random delays each get their own response, twice over", async () => {
    const { server, base } = await start(async (event) => {
      const id = new URL(event.request.url).searchParams.get("id");
      await sleep(Math.random() * 30);
      event.respondWith(Response.json({ id }));
    });
    try {
      for (let wave = 0; wave < 2; wave++) {
        const ids = Array.from({ length: 500 }, (_, i) => `${wave}-${i}`);
        const results = await Promise.all(ids.map((id) => fetch(`${base}/?id=${id}`).then((r) => r.json())));
        assert.deepEqual(
          results.map((r) => r.id),
          ids,
        );
      }
      assert.equal(server.stats().pendingRequests, 0);
      assert.equal(server.stats().totalRequests, 1000);
    } finally {
      await server.close();
    }
  });
});

describe("framing on the wire", () => {
  let ctx;
  before(async () => {
    ctx = await start((event) => {
      const path = new URL(event.request.url).pathname;
      if (path === "/204") return event.respondWith(new Response(null, { status: 204 }));
      if (path === "/304") return event.respondWith(new Response(null, { status: 304, headers: { etag: '"a"' } }));
      if (path === "/cookies") {
        const h = new Headers();
        h.append("set-cookie", "a=1; Path=/");
        h.append("set-cookie", "b=2; HttpOnly");
        return event.respondWith(new Response("ok", { headers: h }));
      }
      event.respondWith(new Response("hello"));
    });
  });
  after(() => ctx.server.close());

  test("HEAD carries Content-Length but no body", async () => {
    const r = await raw(ctx.server.port, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    const p = parseRaw(r.text);
    assert.equal(p.status, 200);
    assert.ok(p.lines.includes("content-length: 5"), p.lines.join("|"));
    assert.equal(p.body, "");
  });

  test("204 and 304 carry no body", async () => {
    for (const path of ["/204", "/304"]) {
      const r = await raw(ctx.server.port, `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      const p = parseRaw(r.text);
      assert.equal(p.status, Number(path.slice(1)));
      assert.equal(p.body, "");
      assert.ok(!p.lines.some((l) => l.startsWith("transfer-encoding")));
    }
  });

  test("a fixed body carries Content-Length, not chunked", async () => {
    const r = await raw(ctx.server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const p = parseRaw(r.text);
    assert.ok(p.lines.includes("content-length: 5"));
    assert.equal(p.body, "hello");
  });

  test("two Set-Cookie headers stay two header lines", async () => {
    const r = await raw(ctx.server.port, "GET /cookies HTTP/1.1\r\nHost: x\r\n\r\n");
    const cookies = parseRaw(r.text).lines.filter((l) => l.toLowerCase().startsWith("set-cookie:"));
    assert.deepEqual(cookies, ["set-cookie: a=1; Path=/", "set-cookie: b=2; HttpOnly"]);
  });

  test("responses of 0.8 to 1.2 KiB, head and body, arrive whole one after another on a keep-alive connection", async () => {
    // Each goes to the socket from hyper's head and body buffers at once; up to 1 KiB of
    // them as one copy (cork.rs, `write_flat`), more as they are.
    const { server, base } = await start((event) => {
      const n = Number(new URL(event.request.url).searchParams.get("n"));
      event.respondWith(new Response(pattern(n, n)));
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let n = 800; n <= 1200; n++) {
        const res = await request(base, `/?n=${n}`, { agent });
        assert.equal(res.status, 200);
        assert.ok(res.body.equals(pattern(n, n)), `a body of ${n} bytes`);
      }
    } finally {
      agent.destroy();
      await server.close();
    }
  });

  test("pipelined requests on one connection are answered in order", async () => {
    const r = await raw(
      ctx.server.port,
      "GET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nGET /304 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    const statuses = [...r.text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [204, 200, 304]);
  });

  test("each request of a batch gets its own URL, Host and target alike", async () => {
    // Requests of many connections, pipelined, arrive in batches whose URLs cross in one
    // string; bodies read in between add records of other kinds to the same batches.
    const { server } = await start(async (event) => {
      const req = event.request;
      const body = req.method === "POST" ? await req.text() : "";
      event.respondWith(new Response(`${req.method} ${req.url} ${body}`));
    });
    try {
      const conns = Array.from({ length: 8 }, async (_, c) => {
        const expected = [];
        let wire = "";
        for (let i = 0; i < 30; i++) {
          const path = `/c${c}/r${i}${"x".repeat((i * 7 + c) % 50)}?q=${i}`;
          const host = i % 5 === 0 ? `h${c}.example:${8000 + i}` : "x";
          if (i % 4 === 1) {
            const body = `b${c}.${i}`;
            wire += `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
            expected.push(`POST http://${host}${path} ${body}`);
          } else {
            wire += `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
            expected.push(`GET http://${host}${path} `);
          }
        }
        const r = await raw(server.port, wire, { idleMs: 500 });
        const bodies = r.text
          .split(/HTTP\/1\.1 200 OK\r\n/)
          .slice(1)
          .map((part) => part.split("\r\n\r\n")[1]);
        assert.deepEqual(bodies, expected);
      });
      await Promise.all(conns);
      const noHost = await raw(server.port, "GET /old HTTP/1.0\r\n\r\n", { idleMs: 300 });
      assert.ok(noHost.text.endsWith(`GET http://127.0.0.1:${server.port}/old `), noHost.text);
    } finally {
      await server.close();
    }
  });

  test("garbage on the wire gets 400 and the server keeps serving", async () => {
    const r = await raw(ctx.server.port, "\x00\x01 NOT HTTP \r\n\r\n");
    assert.match(r.text, /^HTTP\/1\.1 400/);
    const ok = await fetch(`http://127.0.0.1:${ctx.server.port}/`);
    assert.equal(await ok.text(), "hello");
  });
});

describe("HEAD and Content-Length", () => {
  let ctx;
  let upstream;
  const errors = [];
  before(async () => {
    // An upstream that answers HEAD as GET would, with its length and no body.
    const http = await import("node:http");
    upstream = http.createServer((req, res) => {
      res.setHeader("content-type", "text/plain");
      res.setHeader("content-length", "777");
      res.end(req.method === "HEAD" ? undefined : "u".repeat(777));
    });
    await new Promise((r) => upstream.listen(0, "127.0.0.1", r));
    const up = `http://127.0.0.1:${upstream.address().port}/`;
    ctx = await start((event) => {
      const path = new URL(event.request.url).pathname;
      const declared = { headers: { "content-length": "12345", "x-kind": "declared" } };
      if (path === "/declared") return event.respondWith(new Response(null, declared));
      if (path === "/declared-node") return event.respondWith(new globalThis.Response(null, declared));
      if (path === "/declared-zero")
        return event.respondWith(new Response(null, { headers: { "content-length": "0" } }));
      if (path === "/wrong") return event.respondWith(new Response("abc", { headers: { "content-length": "12345" } }));
      if (path === "/proxy") return event.respondWith(fetch(up, { method: event.request.method }));
      event.respondWith(new Response("hello"));
    });
    ctx.server.addEventListener("error", (e) => errors.push(e.error));
  });
  after(async () => {
    await ctx.server.close();
    upstream.close();
  });

  test("a HEAD response keeps the Content-Length its headers declare, and the connection stays in step", async () => {
    for (const path of ["/declared", "/declared-node"]) {
      const r = await raw(ctx.server.port, `HEAD ${path} HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n`);
      const [first, second] = r.text.split(/(?=HTTP\/1\.1 )/);
      const p = parseRaw(first);
      assert.equal(p.status, 200, path);
      assert.ok(p.lines.includes("content-length: 12345"), p.lines.join("|"));
      assert.ok(p.lines.includes("x-kind: declared"));
      assert.equal(p.body, "");
      assert.equal(parseRaw(second).body, "hello", r.text);
    }
  });

  test("a HEAD response with a body gets the body's length, as GET would", async () => {
    const r = await raw(ctx.server.port, "HEAD /wrong HTTP/1.1\r\nHost: x\r\n\r\n");
    const p = parseRaw(r.text);
    assert.ok(p.lines.includes("content-length: 3"), p.lines.join("|"));
    assert.equal(p.body, "");
  });

  test("HEAD proxied through Node's fetch keeps the upstream's Content-Length", async () => {
    const r = await raw(ctx.server.port, "HEAD /proxy HTTP/1.1\r\nHost: x\r\n\r\n");
    const p = parseRaw(r.text);
    assert.equal(p.status, 200);
    assert.ok(p.lines.includes("content-length: 777"), p.lines.join("|"));
    assert.equal(p.body, "");
    const g = await fetch(ctx.base + "/proxy");
    assert.equal(g.headers.get("content-length"), "777");
    assert.equal((await g.text()).length, 777);
  });

  test("over h2c too: HEAD keeps the declared length, GET without the body gets 500", async () => {
    const http2 = await import("node:http2");
    const session = http2.connect(ctx.base);
    const ask = (method, path) =>
      new Promise((resolve, reject) => {
        const req = session.request({ ":method": method, ":path": path });
        let headers;
        let body = "";
        req.on("response", (h) => (headers = h));
        req.setEncoding("latin1");
        req.on("data", (d) => (body += d));
        req.on("end", () => resolve({ headers, body }));
        req.on("error", reject);
        req.end();
      });
    try {
      const head = await ask("HEAD", "/declared");
      assert.equal(head.headers[":status"], 200);
      assert.equal(head.headers["content-length"], "12345");
      assert.equal(head.body, "");
      const get = await ask("GET", "/declared");
      assert.equal(get.headers[":status"], 500);
    } finally {
      session.close();
    }
  });

  test("GET with a declared length and no body is a reported error (500), not content-length: 0", async () => {
    errors.length = 0;
    for (const path of ["/declared", "/declared-node"]) {
      const r = await raw(ctx.server.port, `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      const p = parseRaw(r.text);
      assert.equal(p.status, 500, r.text);
      assert.ok(!p.lines.includes("content-length: 12345"));
    }
    assert.equal(errors.length, 2);
    for (const e of errors) assert.equal(e.code, "ERR_CONTENT_LENGTH_WITHOUT_BODY");
    const zero = parseRaw((await raw(ctx.server.port, "GET /declared-zero HTTP/1.1\r\nHost: x\r\n\r\n")).text);
    assert.equal(zero.status, 200);
    assert.ok(zero.lines.includes("content-length: 0"));
    assert.equal(errors.length, 2);
  });
});

describe("response and request body kinds", () => {
  let ctx;
  before(async () => {
    ctx = await start(async (event) => {
      const path = new URL(event.request.url).pathname;
      if (path === "/stream") {
        let i = 0;
        const stream = new ReadableStream({
          pull(c) {
            if (i === 3) return c.close();
            c.enqueue(new TextEncoder().encode(`chunk${i++};`));
          },
        });
        return event.respondWith(new Response(stream, { headers: { "content-type": "text/plain" } }));
      }
      if (path === "/blob") return event.respondWith(new Response(new Blob(["blob body"], { type: "text/x-blob" })));
      if (path === "/foreign-json")
        return event.respondWith(globalThis.Response === Response ? new Response("x") : null);
      if (path === "/body-stream") {
        const reader = event.request.body.getReader();
        let total = 0;
        let chunks = 0;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          total += value.byteLength;
          chunks++;
        }
        return event.respondWith(Response.json({ total, chunks: chunks > 0 }));
      }
      if (path === "/search") return event.respondWith(new Response(new URLSearchParams({ a: "1", b: "two words" })));
      event.respondWith(new Response(null, { status: 404 }));
    });
  });
  after(() => ctx.server.close());

  test("a ReadableStream body is sent chunked, in order", async () => {
    const r = await raw(ctx.server.port, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    const p = parseRaw(r.text);
    assert.equal(p.status, 200);
    assert.ok(p.lines.includes("transfer-encoding: chunked"), p.lines.join("|"));
    assert.equal(await (await fetch(ctx.base + "/stream")).text(), "chunk0;chunk1;chunk2;");
  });

  test("a Blob body is sent with its type and length", async () => {
    const r = await fetch(ctx.base + "/blob");
    assert.equal(r.headers.get("content-type"), "text/x-blob");
    assert.equal(r.headers.get("content-length"), "9");
    assert.equal(await r.text(), "blob body");
  });

  test("URLSearchParams bodies are form-encoded", async () => {
    const r = await fetch(ctx.base + "/search");
    assert.equal(r.headers.get("content-type"), "application/x-www-form-urlencoded;charset=UTF-8");
    assert.equal(await r.text(), "a=1&b=two+words");
  });

  test("request.body streams a large upload", async () => {
    const body = pattern(3 * MiB);
    const r = await request(ctx.base, "/body-stream", { method: "POST", body });
    assert.deepEqual(JSON.parse(r.body), { total: 3 * MiB, chunks: true });
  });

  test("a body over maxBodySize gets 413", async () => {
    const small = await start(async (event) => event.respondWith(new Response(await event.request.text())), {
      maxBodySize: 1000,
    });
    try {
      const declared = await request(small.base, "/", { method: "POST", body: "x".repeat(1001) });
      assert.equal(declared.status, 413);
      const ok = await request(small.base, "/", { method: "POST", body: "x".repeat(1000) });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.length, 1000);
    } finally {
      await small.server.close();
    }
  });
});

describe("errors from listeners", () => {
  test("a throwing listener gives 500, is reported, and the server keeps serving", async () => {
    const errors = [];
    const { server, base } = await start((event) => {
      if (event.request.url.endsWith("/throw")) throw new Error("boom");
      if (event.request.url.endsWith("/reject")) return event.respondWith(Promise.reject(new Error("nope")));
      if (event.request.url.endsWith("/async-throw"))
        return (async () => {
          await sleep(1);
          throw new Error("late boom");
        })();
      if (event.request.url.endsWith("/nothing")) return;
      if (event.request.url.endsWith("/not-a-response")) return event.respondWith({ status: 200 });
      if (event.request.url.endsWith("/bad-header")) return event.respondWith(new globalThis.Response("x"));
      event.respondWith(new Response("fine"));
    });
    server.addEventListener("error", (e) => errors.push(e.error));
    try {
      for (const path of ["/throw", "/reject", "/async-throw", "/nothing", "/not-a-response"]) {
        const r = await fetch(base + path);
        assert.equal(r.status, 500, path);
        assert.equal((await fetch(base + "/")).status, 200);
      }
      assert.equal(errors.length, 5);
      assert.equal(errors[0].message, "boom");
      assert.equal(errors[1].message, "nope");
      assert.equal(errors[2].message, "late boom");
      assert.equal(errors[3].code, "ERR_NO_RESPONSE");
      assert.match(errors[3].message, /respondWith/);
      assert.ok(errors[4] instanceof TypeError);
    } finally {
      await server.close();
    }
  });

  test("respondWith twice throws InvalidStateError", async () => {
    let second;
    const { server, base } = await start((event) => {
      event.respondWith(new Response("first"));
      try {
        event.respondWith(new Response("second"));
      } catch (e) {
        second = e;
      }
    });
    try {
      assert.equal(await (await fetch(base)).text(), "first");
      assert.equal(second?.name, "InvalidStateError");
    } finally {
      await server.close();
    }
  });

  test("a header value with CR/LF never reaches the wire", async () => {
    const { server } = await start((event) => {
      const r = new Response("x");
      try {
        r.headers.set("x-evil", "a\r\nInjected: yes");
      } catch {
        // Our Headers refuses it; Node's global class as well. Force it through a list.
      }
      event.respondWith(new Response("x", { headers: [["x-ok", "1"]] }));
    });
    try {
      const r = await raw(server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      assert.doesNotMatch(r.text, /Injected/i);
      assert.equal(parseRaw(r.text).status, 200);
    } finally {
      await server.close();
    }
  });
});

describe("the RFC's API", () => {
  test("an async listener reads the body, then responds (RFC 8)", async () => {
    const { server, base } = await start(async (event) => {
      const { request: req } = event;
      const data = await req.json();
      event.respondWith(Response.json({ received: data, method: req.method }));
    });
    try {
      const r = await fetch(base + "/api/json", {
        method: "POST",
        body: JSON.stringify({ a: [1, 2] }),
        headers: { "content-type": "application/json" },
      });
      assert.deepEqual(await r.json(), { received: { a: [1, 2] }, method: "POST" });
    } finally {
      await server.close();
    }
  });

  test("a Response from Node's global class works with respondWith", async () => {
    const { server, base } = await start(
      (event) => event.respondWith(new globalThis.Response("from undici", { status: 201, headers: { "x-a": "b" } })),
      { overrideGlobals: false },
    );
    try {
      const r = await fetch(base);
      assert.equal(r.status, 201);
      assert.equal(r.headers.get("x-a"), "b");
      assert.equal(await r.text(), "from undici");
    } finally {
      await server.close();
    }
  });

  test("the FetchEvent exposes request and clientAddress", async () => {
    let seen;
    const { server, base } = await start((event) => {
      seen = {
        isEvent: event instanceof FetchEvent,
        isRequest: event.request instanceof Request,
        addr: event.clientAddress,
        type: event.type,
      };
      event.respondWith(new Response(event.request.headers.get("x-probe")));
    });
    try {
      const r = await fetch(base, { headers: { "x-probe": "yes" } });
      assert.equal(await r.text(), "yes");
      assert.deepEqual(seen, { isEvent: true, isRequest: true, addr: "127.0.0.1", type: "fetch" });
    } finally {
      await server.close();
    }
  });

  test("request.url, method and headers after the response was sent, inside waitUntil", async () => {
    let later;
    const { server, base } = await start((event) => {
      event.respondWith(Response.json({ status: "accepted" }, { status: 202 }));
      event.waitUntil(
        (async () => {
          await sleep(20);
          later = { url: event.request.url, method: event.request.method, ua: event.request.headers.get("x-ua") };
        })(),
      );
    });
    const r = await fetch(base + "/p?q=1", { headers: { "x-ua": "t" } });
    assert.equal(r.status, 202);
    await server.close();
    assert.deepEqual(later, { url: `${base}/p?q=1`, method: "GET", ua: "t" });
  });

  test("a request kept past its response keeps its headers, read first then or before", async () => {
    const kept = [];
    const { server, base } = await start((event) => {
      const req = event.request;
      // The second request reads one header now (answered natively), the rest later; the
      // third streams its reply, so its record is freed only once the stream ends.
      if (req.url.endsWith("/b")) assert.equal(req.headers.get("x-a"), "1");
      kept.push(req);
      const body = req.url.endsWith("/c") ? new Blob(["ok"]).stream() : "ok";
      event.respondWith(new Response(body));
    });
    try {
      for (const path of ["/a", "/b", "/c"]) {
        const r = await fetch(base + path, { headers: { "x-a": "1", "x-b": "two, three", "x-empty": "" } });
        assert.equal(await r.text(), "ok");
      }
      await sleep(50);
      for (const req of kept) {
        assert.equal(req.headers.get("x-a"), "1");
        assert.equal(req.headers.get("x-b"), "two, three");
        assert.equal(req.headers.get("x-empty"), "");
        assert.equal(req.headers.has("x-missing"), false);
        const entries = [...req.headers].filter(([n]) => n.startsWith("x-"));
        assert.deepEqual(entries, [
          ["x-a", "1"],
          ["x-b", "two, three"],
          ["x-empty", ""],
        ]);
        assert.throws(() => req.headers.set("x-a", "2"), TypeError);
      }
    } finally {
      await server.close();
    }
  });

  test("serve({ fetch }) returns a listening server; fetch gets the request and info", async () => {
    let info;
    const server = serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch(req, i) {
        info = i.clientAddress;
        return new Response(`${req.method} ${new URL(req.url).pathname}`);
      },
    });
    try {
      assert.ok(server.port > 0);
      const r = await fetch(new URL("/x", server.url));
      assert.equal(await r.text(), "GET /x");
      assert.equal(info, "127.0.0.1");
      const p = serve({ port: 0, hostname: "127.0.0.1", fetch: async () => Response.json({ a: 1 }) });
      assert.deepEqual(await (await fetch(p.url)).json(), { a: 1 });
      await p.close();
    } finally {
      await server.close();
    }
  });

  test("removeEventListener stops a listener from running", async () => {
    const a = (event) => event.respondWith(new Response("a"));
    const b = (event) => event.respondWith(new Response("b"));
    const { server, base } = await start(null);
    server.addEventListener("fetch", a);
    server.addEventListener("fetch", b);
    server.removeEventListener("fetch", a);
    try {
      assert.equal(await (await fetch(base)).text(), "b");
    } finally {
      await server.close();
    }
  });

  test("stats() counts connections and requests", async () => {
    const { server, base } = await start((event) => event.respondWith(new Response("ok")));
    try {
      const sockets = [];
      for (let i = 0; i < 3; i++) {
        const s = net.connect(server.port, "127.0.0.1");
        await once(s, "connect");
        sockets.push(s);
      }
      await sleep(50);
      assert.equal(server.stats().activeConnections, 3);
      for (let i = 0; i < 7; i++) await (await fetch(base, { keepalive: false })).text();
      const st = server.stats();
      assert.equal(st.totalRequests, 7);
      assert.ok(st.requestsPerSecond > 0);
      assert.ok(st.avgLatencyMs >= 0);
      for (const s of sockets) s.destroy();
    } finally {
      await server.close();
    }
  });

  test("constructor options are validated with clear errors", () => {
    assert.throws(() => new Server({ port: 70000 }), { name: "RangeError", code: "ERR_INVALID_OPTION" });
    assert.throws(() => new Server({ port: -1 }), { code: "ERR_INVALID_OPTION" });
    assert.throws(() => new Server({ port: 1.5 }), { name: "TypeError", code: "ERR_INVALID_OPTION" });
    assert.throws(() => new Server({ port: 0, maxBodySize: -5 }), { code: "ERR_INVALID_OPTION" });
    assert.throws(() => new Server({ port: 0, maxConnections: 0 }), { code: "ERR_INVALID_OPTION" });
    assert.throws(() => new Server({ port: 0, host: "not a host" }), { code: "ERR_INVALID_OPTION" });
    assert.throws(() => new Server({ port: 0, timeout: "5" }), { code: "ERR_INVALID_OPTION" });
    assert.throws(() => new Server({ port: 0, reusePort: "yes" }), { code: "ERR_INVALID_OPTION" });
    assert.throws(() => new Server({ port: 0, ipv6Only: 1 }), { code: "ERR_INVALID_OPTION" });
    assert.throws(() => new Server({ unix: "/tmp/fetch-rs-v6.sock", ipv6Only: true }), {
      code: "ERR_INVALID_OPTION",
      message: /ipv6Only does not apply to a Unix socket/,
    });
  });

  test("listening on a taken port rejects with ERR_LISTEN", async () => {
    const { server } = await start((e) => e.respondWith(new Response("")));
    try {
      const other = new Server({ port: server.port, host: "127.0.0.1" });
      await assert.rejects(other.listen(), { code: "ERR_LISTEN" });
    } finally {
      await server.close();
    }
  });

  // `::` takes IPv4 clients too unless ipv6Only (node:net's and Bun's option) says otherwise.
  for (const ipv6Only of [false, true]) {
    test(`host "::" with ipv6Only: ${ipv6Only}`, async (t) => {
      if (!(await canListenOn("::1"))) return t.skip("no IPv6 loopback on this machine");
      const server = new Server({ port: 0, host: "::", ipv6Only });
      server.addEventListener("fetch", (e) => e.respondWith(new Response(e.clientAddress)));
      await server.listen();
      try {
        assert.equal(await (await fetch(`http://[::1]:${server.port}/`)).text(), "::1");
        const v4 = fetch(`http://127.0.0.1:${server.port}/`).then((r) => r.text());
        if (ipv6Only) await assert.rejects(v4, (e) => e.cause?.code === "ECONNREFUSED");
        else assert.match(await v4, /^(::ffff:)?127\.0\.0\.1$/);
      } finally {
        await server.close();
      }
    });
  }

  test("reusePort lets two servers share a port", async () => {
    const a = new Server({ port: 0, host: "127.0.0.1", reusePort: true });
    a.addEventListener("fetch", (e) => e.respondWith(new Response("a")));
    await a.listen();
    const b = new Server({ port: a.port, host: "127.0.0.1", reusePort: true });
    b.addEventListener("fetch", (e) => e.respondWith(new Response("b")));
    await b.listen();
    try {
      assert.equal(b.port, a.port);
      assert.match(await (await fetch(`http://127.0.0.1:${a.port}/`)).text(), /^[ab]$/);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe("close()", () => {
  test("stops accepting, lets in-flight requests finish, then resolves", async () => {
    let release;
    const gate = new Promise((r) => (release = r));
    const { server, base } = await start(async (event) => {
      await gate;
      event.respondWith(new Response("finished"));
    });
    const inflight = fetch(base).then((r) => r.text());
    await sleep(50);
    let closed = false;
    const closing = server.close().then(() => (closed = true));
    await sleep(50);
    assert.equal(closed, false, "close() resolved with a request in flight");
    await assert.rejects(fetch(base), "a new connection was accepted while closing");
    release();
    assert.equal(await inflight, "finished");
    await closing;
    assert.equal(closed, true);
  });

  test("close() waits for waitUntil work and is safe to call twice", async () => {
    let done = false;
    const { server, base } = await start((event) => {
      event.respondWith(new Response("ok"));
      event.waitUntil(sleep(100).then(() => (done = true)));
    });
    await (await fetch(base)).text();
    await Promise.all([server.close(), server.close()]);
    assert.equal(done, true);
  });

  test("close({ force: true }) drops requests that never finish", async () => {
    const { server, base } = await start(() => new Promise(() => {}));
    const hung = fetch(base).catch((e) => e);
    await sleep(50);
    await server.close({ force: true });
    assert.ok((await hung) instanceof Error);
  });

  const script = (body) =>
    `import { Server, Response } from ${JSON.stringify(new URL("../dist/index.js", import.meta.url).href)};\n${body}`;
  const runScript = (source, timeoutMs = 8000) => runModule(source, timeoutMs);

  test("after close() nothing keeps the event loop alive", async () => {
    const r = await runScript(
      script(`
        const server = new Server({ port: 0, host: "127.0.0.1" });
        server.addEventListener("fetch", (e) => e.respondWith(new Response("hi")));
        await server.listen();
        const res = await fetch("http://127.0.0.1:" + server.port + "/");
        console.log(await res.text());
        await server.close();
        console.log("closed");
      `),
    );
    assert.equal(r.signal, null, `the process had to be killed: ${r.out}`);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /hi\nclosed/);
  });

  test("a script that never calls listen() exits", async () => {
    const r = await runScript(
      script(`const s = new Server({ port: 0 }); s.addEventListener("fetch", () => {}); console.log("made");`),
    );
    assert.equal(r.signal, null);
    assert.equal(r.code, 0, r.out);
  });
});

test("servers in worker threads share a port with reusePort, each with its own bridge", async () => {
  const { Worker } = await import("node:worker_threads");
  const dist = JSON.stringify(new URL("../dist/index.js", import.meta.url).href);
  const code = `
    const { parentPort, workerData, threadId } = await import("node:worker_threads");
    const { Server, Response } = await import(${dist});
    const server = new Server({ port: workerData.port, host: "127.0.0.1", reusePort: true, workerThreads: 1 });
    server.addEventListener("fetch", (e) => e.respondWith(Response.json({ thread: threadId })));
    await server.listen();
    parentPort.postMessage(server.port);
    parentPort.once("message", async () => { await server.close(); parentPort.postMessage("closed"); });
  `;
  const first = new Worker(code, { eval: true, workerData: { port: 0 } });
  const [port] = await once(first, "message");
  const second = new Worker(code, { eval: true, workerData: { port } });
  await once(second, "message");
  try {
    const threads = new Set();
    for (let i = 0; i < 40 && threads.size < 2; i++) {
      const r = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: "close" } });
      threads.add((await r.json()).thread);
    }
    assert.equal(threads.size, 2, "connections never reached the second worker");
  } finally {
    for (const w of [first, second]) {
      w.postMessage("close");
      await once(w, "message");
      await w.terminate();
    }
  }
});

test("the examples directory has the RFC's four examples", async () => {
  const { readdir } = await import("node:fs/promises");
  const files = await readdir(fileURLToPath(new URL("../examples/", import.meta.url)));
  for (const f of ["hello-world.mjs", "json-api.mjs", "echo-body.mjs", "wait-until.mjs"])
    assert.ok(files.includes(f), f);
});

/** Whether this machine can listen on `host` (an IPv6 loopback may be turned off). */
function canListenOn(host) {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once("error", () => resolve(false));
    probe.listen(0, host, () => probe.close(() => resolve(true)));
  });
}
