// Real frameworks, unchanged, on fetch-rs: a Hono app and an itty-router app, each
// served with serve({ fetch: app.fetch }), and the same apps on @hono/node-server as the
// reference. Every route goes to both; status, the headers that matter and the body
// must agree.
//
// The reference runs in a child process (this file again, with FETCH_RS_FRAMEWORK_REFERENCE
// set) so that each server has the globals its users would have: fetch-rs installs its
// Response as the global one, @hono/node-server installs its own.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Hono } from "hono";
import { cors } from "hono/cors";
import { setCookie, getCookie } from "hono/cookie";
import { streamText } from "hono/streaming";
import { HTTPException } from "hono/http-exception";
import { AutoRouter, cors as ittyCors, error, text } from "itty-router";
import { send, serveReference, startReference, stopReference } from "./helpers.mjs";

const NodeResponse = globalThis.Response;

function honoApp() {
  const app = new Hono();
  app.use(
    "/api/*",
    cors({
      origin: "http://client.test",
      allowMethods: ["GET", "POST", "PUT"],
      exposeHeaders: ["X-Total"],
      credentials: true,
      maxAge: 600,
    }),
  );
  app.get("/", (c) => c.text("hello from hono"));
  app.get("/users/:id", (c) =>
    c.json({ id: c.req.param("id"), q: c.req.query("q") ?? null, tags: c.req.queries("tag") ?? [] }),
  );
  app.get("/users/:id/posts/:post{[0-9]+}", (c) => c.json(c.req.param()));
  app.delete("/users/:id", (c) => c.body(null, 204));
  app.get("/api/items", (c) => {
    c.header("X-Total", "2");
    return c.json([{ id: 1 }, { id: 2 }]);
  });
  app.post("/api/items", async (c) => c.json({ created: await c.req.json() }, 201));
  app.put("/text", async (c) => c.text((await c.req.text()).toUpperCase(), 202, { "X-Len": "set" }));
  app.get("/html", (c) => c.html("<h1>héllo</h1>"));
  app.get("/redirect", (c) => c.redirect("/target"));
  app.get("/redirect-301", (c) => c.redirect("http://example.test/elsewhere", 301));
  app.get("/cookies", (c) => {
    setCookie(c, "session", "abc123", { path: "/", httpOnly: true, sameSite: "Lax" });
    setCookie(c, "theme", "dark", { maxAge: 3600, path: "/" });
    return c.text("two cookies");
  });
  app.get("/read-cookie", (c) => c.json(getCookie(c)));
  app.post("/upload", async (c) => {
    const body = await c.req.parseBody({ all: true });
    const out = {};
    for (const [k, v] of Object.entries(body)) {
      const one = async (x) =>
        typeof x === "string" ? x : { name: x.name, type: x.type, size: x.size, text: await x.text() };
      out[k] = Array.isArray(v) ? await Promise.all(v.map(one)) : await one(v);
    }
    return c.json(out);
  });
  app.post("/form", async (c) => c.json(await c.req.parseBody()));
  app.get("/stream", (c) =>
    streamText(c, async (stream) => {
      await stream.writeln("first line");
      await stream.sleep(5);
      await stream.write("second ");
      await stream.write("part");
    }),
  );
  app.get("/headers", (c) =>
    c.json({ custom: c.req.header("x-custom") ?? null, accept: c.req.header("accept") ?? null, method: c.req.method }),
  );
  app.get("/raw", (c) =>
    c.json({ isRequest: c.req.raw instanceof Request, url: new URL(c.req.url).pathname + new URL(c.req.url).search }),
  );
  app.get("/throw", () => {
    throw new Error("boom");
  });
  app.get("/teapot", () => {
    throw new HTTPException(418, { message: "short and stout" });
  });
  app.get("/bytes", (c) => c.body(new Uint8Array([0, 1, 2, 255]), 200, { "Content-Type": "application/octet-stream" }));
  app.notFound((c) => c.text("no such route", 404));
  app.onError((err, c) => (err instanceof HTTPException ? err.getResponse() : c.text(`error: ${err.message}`, 500)));
  return app;
}

function ittyApp() {
  const { preflight, corsify } = ittyCors({
    origin: "http://client.test",
    allowMethods: ["GET", "POST"],
    exposeHeaders: ["X-Total"],
  });
  const router = AutoRouter({ before: [preflight], finally: [corsify] });
  router.get("/", () => text("hello from itty"));
  router.get("/items/:id", ({ id, query }) => ({ id, q: query.q ?? null }));
  router.post("/echo", async (request) => ({ got: await request.json() }));
  router.get("/missing", () => error(404, "not here"));
  router.get("/empty", () => new Response(null, { status: 204 }));
  router.get("/redirect", () => Response.redirect("http://example.test/moved", 307));
  router.get(
    "/custom",
    () =>
      new Response("custom body", {
        status: 299,
        statusText: "Custom",
        headers: { "x-total": "9", "content-type": "text/x-custom" },
      }),
  );
  router.get("/throw", () => {
    throw new Error("itty boom");
  });
  return router;
}

const APPS = { hono: () => honoApp().fetch, itty: () => ittyApp().fetch };

if (process.env.FETCH_RS_FRAMEWORK_REFERENCE === "1") {
  // The reference: both apps on @hono/node-server, as its users run it.
  await serveReference(APPS);
} else {
  defineTests();
}

// The headers an application decides; Date, Connection, Keep-Alive and framing are the
// server's own business (framing is checked apart).
const COMPARED = [
  "content-type",
  "location",
  "set-cookie",
  "access-control-allow-origin",
  "access-control-allow-methods",
  "access-control-allow-headers",
  "access-control-allow-credentials",
  "access-control-expose-headers",
  "access-control-max-age",
  "vary",
  "x-total",
  "x-len",
];

// @hono/node-server answers a bare `new Response("text")` with its own
// "text/plain; charset=UTF-8" where the standard's default is "text/plain;charset=UTF-8";
// the two mean the same, so media types are compared without spaces and case.
const mediaType = (v) => v.replace(/\s*;\s*/g, ";").toLowerCase();

function picked(headers) {
  const out = {};
  for (const name of COMPARED)
    if (headers[name] !== undefined) out[name] = name === "content-type" ? mediaType(headers[name]) : headers[name];
  return out;
}

/** A multipart body with Node's own FormData encoder. */
async function multipartBody(entries) {
  const form = new FormData();
  for (const [k, v] of entries) form.append(k, v);
  const r = new NodeResponse(form);
  return { type: r.headers.get("content-type"), body: Buffer.from(await r.arrayBuffer()) };
}

function defineTests() {
  // Loaded only here: the reference child must not touch fetch-rs at all.
  let serve;
  let ours = {};
  let reference;

  before(async () => {
    ({ serve } = await import("../dist/index.js"));
    reference = await startReference(import.meta.url, { FETCH_RS_FRAMEWORK_REFERENCE: "1" });
    for (const [name, make] of Object.entries(APPS))
      ours[name] = serve({ fetch: make(), port: 0, hostname: "127.0.0.1" });
  });

  after(async () => {
    for (const s of Object.values(ours)) await s.close();
    stopReference(reference);
  });

  /** Sends `req` to both servers of `app`; asserts they agree and returns ours. */
  async function compare(app, req, { framing = true } = {}) {
    const a = await send(ours[app].port, req);
    const b = await send(reference.ports[app], req);
    const label = `${req.method ?? "GET"} ${req.path}`;
    assert.equal(a.status, b.status, `${label}: status`);
    assert.deepEqual(picked(a.headers), picked(b.headers), `${label}: headers`);
    assert.equal(a.body.toString("latin1"), b.body.toString("latin1"), `${label}: body`);
    // How a body is framed is the server's choice; for a body, fixed length or chunked
    // should still agree (an empty body may be either).
    if (framing && b.body.length > 0) {
      assert.equal(a.headers["transfer-encoding"], b.headers["transfer-encoding"], `${label}: transfer-encoding`);
      assert.equal(a.headers["content-length"], b.headers["content-length"], `${label}: content-length`);
    }
    return a;
  }

  const json = (obj) => ({ headers: { "content-type": "application/json" }, body: Buffer.from(JSON.stringify(obj)) });
  const ORIGIN = { origin: "http://client.test" };

  describe("Hono on fetch-rs and on @hono/node-server", () => {
    test("text", async () => {
      const r = await compare("hono", { path: "/" });
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), "hello from hono");
      // Hono leaves this one to `new Response(text)`: the standard's default type.
      assert.equal(r.headers["content-type"], "text/plain;charset=UTF-8");
      assert.equal(r.headers["content-length"], "15");
    });

    test("routing with params, query and repeated query", async () => {
      const r = await compare("hono", { path: "/users/42?q=x%20y&tag=a&tag=b" });
      assert.deepEqual(JSON.parse(r.body), { id: "42", q: "x y", tags: ["a", "b"] });
      const p = await compare("hono", { path: "/users/7/posts/99" });
      assert.deepEqual(JSON.parse(p.body), { id: "7", post: "99" });
      const miss = await compare("hono", { path: "/users/7/posts/abc" });
      assert.equal(miss.status, 404);
    });

    test("JSON in and out, 201", async () => {
      const r = await compare("hono", { method: "POST", path: "/api/items", ...json({ name: "widget", n: [1, 2] }) });
      assert.equal(r.status, 201);
      assert.deepEqual(JSON.parse(r.body), { created: { name: "widget", n: [1, 2] } });
    });

    test("PUT with a text body, custom status and header", async () => {
      const r = await compare("hono", {
        method: "PUT",
        path: "/text",
        headers: { "content-type": "text/plain" },
        body: Buffer.from("shout"),
      });
      assert.equal(r.status, 202);
      assert.equal(r.body.toString(), "SHOUT");
      assert.equal(r.headers["x-len"], "set");
    });

    test("DELETE answered 204 with no body", async () => {
      const r = await compare("hono", { method: "DELETE", path: "/users/9" });
      assert.equal(r.status, 204);
      assert.equal(r.body.length, 0);
    });

    test("HEAD of a GET route: headers, no body", async () => {
      const r = await compare("hono", { method: "HEAD", path: "/" }, { framing: false });
      assert.equal(r.status, 200);
      assert.equal(r.body.length, 0);
    });

    test("html", async () => {
      const r = await compare("hono", { path: "/html" });
      assert.equal(r.headers["content-type"], "text/html; charset=UTF-8");
      assert.equal(r.body.toString(), "<h1>héllo</h1>");
    });

    test("bytes", async () => {
      const r = await compare("hono", { path: "/bytes" });
      assert.deepEqual([...r.body], [0, 1, 2, 255]);
    });

    test("redirect, relative and absolute", async () => {
      const r = await compare("hono", { path: "/redirect" });
      assert.equal(r.status, 302);
      assert.equal(r.headers.location, "/target");
      const p = await compare("hono", { path: "/redirect-301" });
      assert.equal(p.status, 301);
      assert.equal(p.headers.location, "http://example.test/elsewhere");
    });

    test("two cookies stay two Set-Cookie headers", async () => {
      const r = await compare("hono", { path: "/cookies" });
      assert.deepEqual(r.headers["set-cookie"], [
        "session=abc123; Path=/; HttpOnly; SameSite=Lax",
        "theme=dark; Max-Age=3600; Path=/",
      ]);
    });

    test("cookies are read from the request", async () => {
      const r = await compare("hono", { path: "/read-cookie", headers: { cookie: "a=1; b=two" } });
      assert.deepEqual(JSON.parse(r.body), { a: "1", b: "two" });
    });

    test("cors: simple request with an Origin", async () => {
      const r = await compare("hono", { path: "/api/items", headers: ORIGIN });
      assert.equal(r.headers["access-control-allow-origin"], "http://client.test");
      assert.equal(r.headers["access-control-allow-credentials"], "true");
      assert.equal(r.headers["access-control-expose-headers"], "X-Total");
      assert.equal(r.headers["x-total"], "2");
    });

    test("cors: preflight", async () => {
      const r = await compare("hono", {
        method: "OPTIONS",
        path: "/api/items",
        headers: {
          ...ORIGIN,
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type,x-custom",
        },
      });
      assert.equal(r.status, 204);
      assert.equal(r.headers["access-control-allow-methods"], "GET,POST,PUT");
      assert.equal(r.headers["access-control-allow-headers"], "content-type,x-custom");
      assert.equal(r.headers["access-control-max-age"], "600");
    });

    test("multipart parseBody: fields and files", async () => {
      const { type, body } = await multipartBody([
        ["title", "Quarterly report"],
        ["file", new File(["alpha,beta\n1,2\n"], "data.csv", { type: "text/csv" })],
        ["file", new File([new Uint8Array([1, 2, 3])], "raw.bin", { type: "application/octet-stream" })],
      ]);
      const r = await compare("hono", { method: "POST", path: "/upload", headers: { "content-type": type }, body });
      assert.deepEqual(JSON.parse(r.body), {
        title: "Quarterly report",
        file: [
          { name: "data.csv", type: "text/csv", size: 15, text: "alpha,beta\n1,2\n" },
          { name: "raw.bin", type: "application/octet-stream", size: 3, text: "\u0001\u0002\u0003" },
        ],
      });
    });

    test("urlencoded parseBody", async () => {
      const r = await compare("hono", {
        method: "POST",
        path: "/form",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: Buffer.from("a=1&b=two+words&c=%C3%A9"),
      });
      assert.deepEqual(JSON.parse(r.body), { a: "1", b: "two words", c: "é" });
    });

    test("streamText arrives whole, chunked", async () => {
      const r = await compare("hono", { path: "/stream" });
      assert.equal(r.body.toString(), "first line\nsecond part");
      assert.equal(r.headers["transfer-encoding"], "chunked");
      assert.equal(r.headers["content-type"], "text/plain; charset=UTF-8");
    });

    test("request headers and method reach the handler; c.req.raw is a Request", async () => {
      const r = await compare("hono", { path: "/headers", headers: { "x-custom": "yes", accept: "text/x" } });
      assert.deepEqual(JSON.parse(r.body), { custom: "yes", accept: "text/x", method: "GET" });
      const raw = await compare("hono", { path: "/raw?x=1" });
      assert.deepEqual(JSON.parse(raw.body), { isRequest: true, url: "/raw?x=1" });
    });

    test("not found, a thrown error and an HTTPException", async () => {
      assert.equal((await compare("hono", { path: "/nowhere" })).status, 404);
      const e = await compare("hono", { path: "/throw" });
      assert.equal(e.status, 500);
      assert.equal(e.body.toString(), "error: boom");
      const t = await compare("hono", { path: "/teapot" });
      assert.equal(t.status, 418);
      assert.equal(t.body.toString(), "short and stout");
    });
  });

  describe("itty-router on fetch-rs and on @hono/node-server", () => {
    test("text, with corsify on every response", async () => {
      const r = await compare("itty", { path: "/", headers: ORIGIN });
      assert.equal(r.body.toString(), "hello from itty");
      assert.equal(r.headers["access-control-allow-origin"], "http://client.test");
    });

    test("params and query, returned as JSON", async () => {
      const r = await compare("itty", { path: "/items/7?q=abc" });
      assert.deepEqual(JSON.parse(r.body), { id: "7", q: "abc" });
      assert.match(r.headers["content-type"], /^application\/json/);
    });

    test("JSON body echo", async () => {
      const r = await compare("itty", { method: "POST", path: "/echo", ...json({ deep: { x: [true] } }) });
      assert.deepEqual(JSON.parse(r.body), { got: { deep: { x: [true] } } });
    });

    test("error(404), unknown route, thrown error", async () => {
      const m = await compare("itty", { path: "/missing" });
      assert.equal(m.status, 404);
      assert.deepEqual(JSON.parse(m.body), { status: 404, error: "not here" });
      assert.equal((await compare("itty", { path: "/nothing/here" })).status, 404);
      assert.equal((await compare("itty", { path: "/throw" })).status, 500);
    });

    test("204, redirect and a custom status with headers", async () => {
      assert.equal((await compare("itty", { path: "/empty" })).status, 204);
      const r = await compare("itty", { path: "/redirect", headers: ORIGIN });
      assert.equal(r.status, 307);
      assert.equal(r.headers.location, "http://example.test/moved");
      const c = await compare("itty", { path: "/custom", headers: ORIGIN });
      assert.equal(c.status, 299);
      assert.equal(c.headers["x-total"], "9");
      assert.equal(c.body.toString(), "custom body");
    });

    test("cors preflight", async () => {
      const r = await compare("itty", {
        method: "OPTIONS",
        path: "/items/1",
        headers: { ...ORIGIN, "access-control-request-method": "POST" },
      });
      assert.equal(r.headers["access-control-allow-origin"], "http://client.test");
      assert.match(r.headers["access-control-allow-methods"] ?? "", /POST/);
    });
  });
}
