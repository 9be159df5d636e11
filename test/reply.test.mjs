// lib/reply.ts over a real socket: each reply path (text, bytes, empty; with a header list or
// without one; the request's record freed with the reply or after it) sends what the Response
// says, and the fast paths skip no check (a subclass, headers changed after construction, a
// body already used, an init on Response.json).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { raw, start } from "./helpers.mjs";

describe("replies as sent", () => {
  let ctx;
  // Per path: what the listener does with the event (returns what respondWith gets).
  const routes = new Map();
  const errors = [];
  before(async () => {
    ctx = await start((event) => {
      const route = routes.get(new URL(event.request.url).pathname);
      event.respondWith(route(event));
    });
    ctx.server.addEventListener("error", (e) => errors.push(e.error));
  });
  after(() => ctx.server.close());

  async function get(path, route, init) {
    routes.set(new URL(path, ctx.base).pathname, route);
    const res = await fetch(ctx.base + path, init);
    return { res, body: Buffer.from(await res.arrayBuffer()) };
  }

  test("a Response subclass is sent with its status, headers and body", async () => {
    class Greeting extends Response {
      constructor() {
        super("hello from a subclass", { status: 201, headers: { "x-kind": "subclass" } });
      }
    }
    const { res, body } = await get("/subclass", () => new Greeting());
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("x-kind"), "subclass");
    assert.equal(res.headers.get("content-type"), "text/plain;charset=UTF-8");
    assert.equal(body.toString(), "hello from a subclass");
  });

  test("Response.json with an init keeps its status, headers and JSON type; non-ASCII text is UTF-8", async () => {
    const data = { text: "caf\u00e9 \u20ac \u{1f600}", n: 1 };
    const { res, body } = await get("/json-init", () =>
      Response.json(data, { status: 202, statusText: "Accepted Here", headers: { "x-json": "yes" } }),
    );
    assert.equal(res.status, 202);
    assert.equal(res.headers.get("x-json"), "yes");
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.ok(body.equals(Buffer.from(JSON.stringify(data), "utf8")));
  });

  test("headers changed after construction are the ones sent", async () => {
    const { res, body } = await get("/changed", () => {
      const r = Response.json({ ok: true });
      r.headers.set("x-added", "later");
      r.headers.set("content-type", "application/vnd.example+json");
      return r;
    });
    assert.equal(res.headers.get("x-added"), "later");
    assert.equal(res.headers.get("content-type"), "application/vnd.example+json");
    assert.equal(body.toString(), '{"ok":true}');
  });

  test("byte bodies with and without a header list", async () => {
    const plain = await get("/bytes", () => new Response(new Uint8Array([1, 2, 3])));
    assert.equal(plain.res.status, 200);
    assert.equal(plain.res.headers.get("content-type"), null);
    assert.deepEqual([...plain.body], [1, 2, 3]);
    const listed = await get("/bytes-headers", () => new Response(new Uint8Array([4, 5]), { headers: { "x-b": "4" } }));
    assert.equal(listed.res.headers.get("x-b"), "4");
    assert.deepEqual([...listed.body], [4, 5]);
  });

  test("empty bodies with and without a header list", async () => {
    const plain = await get("/empty", () => new Response(null, { status: 204 }));
    assert.equal(plain.res.status, 204);
    assert.equal(plain.body.length, 0);
    const listed = await get("/empty-headers", () => new Response(null, { status: 204, headers: { "x-e": "5" } }));
    assert.equal(listed.res.status, 204);
    assert.equal(listed.res.headers.get("x-e"), "5");
    const status = await get("/599", () => new Response("edge", { status: 599 }));
    assert.equal(status.res.status, 599);
    assert.equal(status.body.toString(), "edge");
  });

  // Our own Headers cross as one packed string read as Latin-1, any other list as strings
  // (src/response.rs `HeaderList`): both give the same bytes on the wire, field for field.
  test("header lists arrive byte for byte, packed or as strings, on every body kind", async () => {
    const fields = [
      ["x-latin1", "caf\u00e9 \u00ff"],
      ["x-empty", ""],
      ["set-cookie", "a=1"],
      ["set-cookie", "b=2; Path=/"],
      ["x-inner", "a  b\tc"],
      ...Array.from({ length: 120 }, (_, i) => [`x-many-${i}`, "v".repeat(i)]),
    ];
    // Sorted: a Headers iterates its fields by name, so the order on the wire is not the one above.
    const expected = fields.map(([n, v]) => `${n}: ${v}`).sort();
    const own = () => {
      const h = new Headers();
      for (const [n, v] of fields) h.append(n, v);
      return h;
    };
    // A Response from another implementation: its headers cross as a list of strings.
    const foreign = (status, body) => ({ status, headers: own(), body });
    const cases = {
      "/h-text": () => new Response("text", { headers: own() }),
      "/h-bytes": () => new Response(new Uint8Array([1, 2, 3]), { headers: own() }),
      "/h-empty": () => new Response(null, { status: 202, headers: own() }),
      "/h-stream": () => new Response(new Blob(["blob"]).stream(), { headers: own() }),
      "/h-foreign": () => foreign(200, "text"),
    };
    for (const [path, route] of Object.entries(cases)) routes.set(path, route);
    for (const path of Object.keys(cases)) {
      const { text } = await raw(ctx.server.port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      const head = text.slice(0, text.indexOf("\r\n\r\n")).split("\r\n");
      const got = head.filter((l) => /^(x-|set-cookie)/.test(l)).sort();
      assert.deepEqual(got, expected, path);
    }
    // The bytes themselves: é and ÿ as one byte each (Latin-1), not UTF-8.
    const { text } = await raw(ctx.server.port, "GET /h-text HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert.ok(Buffer.from(text, "latin1").includes(Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0xff, 0x0d])));
    assert.deepEqual(errors, []);
  });

  // A guard of the reply's hand-over (made where it is returned, bridge.rs `Ticket::take`) and of
  // the slot's (`RequestSlab::insert` and `remove_record`): every kind of reply, one after the
  // other on one connection, each slot freed and used again.
  test("pipelined replies of every kind on one connection come back whole and in order", async () => {
    routes.set("/p-plain", () => new Response("plain-one"));
    routes.set("/p-list", () => new Response("listed", { headers: { "x-list": "1" } }));
    routes.set("/p-unread", () => Response.json({ unread: true }));
    routes.set(
      "/p-stream",
      () =>
        new Response(
          new ReadableStream({
            start(c) {
              c.enqueue(new TextEncoder().encode("streamed"));
              c.close();
            },
          }),
        ),
    );
    routes.set("/p-empty", () => new Response(null, { status: 204 }));
    routes.set("/p-last", () => new Response("plain-two"));
    const head = (method, path, extra = "") => `${method} ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;
    const requests =
      head("GET", "/p-plain") +
      head("GET", "/p-list") +
      // A body the listener never reads: its slot holds it until the reply frees the slot.
      head("POST", "/p-unread", "Content-Length: 5\r\n") +
      "abcde" +
      head("GET", "/p-stream") +
      head("GET", "/p-empty") +
      head("GET", "/p-last");
    const { text, closed } = await raw(ctx.server.port, requests, { idleMs: 500 });
    assert.equal(closed, false, text);
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [200, 200, 200, 200, 204, 200], text);
    const order = ["plain-one", "x-list: 1", "listed", '{"unread":true}', "streamed", "HTTP/1.1 204", "plain-two"];
    const at = order.map((s) => text.indexOf(s));
    assert.ok(
      at.every((i, n) => i >= 0 && (n === 0 || i > at[n - 1])),
      `${at} in ${JSON.stringify(text)}`,
    );
  });

  test("a Response whose body was already used is answered 500 and reported", async () => {
    errors.length = 0;
    const { res } = await get("/used", async () => {
      const r = new Response("read already");
      await r.text();
      return r;
    });
    assert.equal(res.status, 500);
    assert.ok(
      errors.some((e) => e instanceof TypeError && /already used|locked/.test(e.message)),
      String(errors),
    );
  });

  test("a reply sent while waitUntil work is pending (the record freed after it) is complete", async () => {
    let finish;
    const pending = new Promise((resolve) => (finish = resolve));
    const { res, body } = await get("/wait-until", (event) => {
      event.waitUntil(pending);
      return new Response("sent before the work ended", { headers: { "x-w": "1" } });
    });
    finish();
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-w"), "1");
    assert.equal(body.toString(), "sent before the work ended");
  });

  test("a body read in waitUntil after the reply was sent is still there (the record outlives the reply)", async () => {
    let got;
    const read = new Promise((resolve) => (got = resolve));
    const { res } = await get(
      "/body-later",
      (event) => {
        const request = event.request;
        const later = new Promise((resolve) => setTimeout(resolve, 5)).then(() => request.text());
        event.waitUntil(later.then(got, got));
        return new Response("answered first");
      },
      { method: "POST", body: "the body, read after the answer" },
    );
    assert.equal(res.status, 200);
    assert.equal(await read, "the body, read after the answer");
  });

  test("a request's URL and headers read after its reply are the ones it came with", async () => {
    let seen;
    const read = new Promise((resolve) => (seen = resolve));
    const { res } = await get(
      "/read-later?q=1",
      (event) => {
        const request = event.request;
        setTimeout(() => seen({ url: request.url, header: request.headers.get("x-late"), method: request.method }), 5);
        return new Response("ok");
      },
      { headers: { "x-late": "still here" } },
    );
    assert.equal(res.status, 200);
    assert.deepEqual(await read, { url: `${ctx.base}/read-later?q=1`, header: "still here", method: "GET" });
  });
});
