// Apps built on other Fetch API implementations, unchanged, on fetch-rs and on
// @hono/node-server (the reference, in a child process as in frameworks.test.mjs):
// graphql-yoga, whose responses are @whatwg-node/fetch's PonyfillResponse; a plain
// @whatwg-node/server adapter; and a proxy that answers with what Node's fetch() gives it.
// Beside them, the serve() handler's third argument and the option errors.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { inspect } from "node:util";
import zlib from "node:zlib";
import { createYoga, createSchema } from "graphql-yoga";
import { createServerAdapter, Response as PonyfillResponse } from "@whatwg-node/server";
import { Hono } from "hono";
import { send, serveReference, startReference, stopReference, waitFor } from "./helpers.mjs";

const NodeResponse = globalThis.Response;
const GZIP_TEXT = "compressed upstream text, ".repeat(40);

function yogaApp() {
  const schema = createSchema({
    typeDefs: /* GraphQL */ `
      scalar File
      type Query {
        hello(name: String): String!
      }
      type Mutation {
        add(a: Int!, b: Int!): Int!
        readFile(file: File!): String!
      }
      type Subscription {
        countdown(from: Int!): Int!
      }
    `,
    resolvers: {
      Query: { hello: (_, { name }) => `hello ${name ?? "world"}` },
      Mutation: {
        add: (_, { a, b }) => a + b,
        readFile: async (_, { file }) => `${file.name}:${file.type}:${await file.text()}`,
      },
      Subscription: {
        countdown: {
          async *subscribe(_, { from }) {
            for (let i = from; i >= 0; i--) yield { countdown: i };
          },
        },
      },
    },
  });
  // Fixed-size output, no logging: the same bytes from both servers.
  return createYoga({ schema, logging: false, landingPage: false });
}

function adapterApp() {
  return createServerAdapter((request) => {
    const url = new URL(request.url);
    if (url.pathname === "/stream") {
      const parts = ["one ", "two ", "three"];
      return new PonyfillResponse(
        new ReadableStream({
          pull(c) {
            if (parts.length === 0) c.close();
            else c.enqueue(new TextEncoder().encode(parts.shift()));
          },
        }),
        { headers: { "content-type": "text/plain", "x-adapter": "yes" } },
      );
    }
    return PonyfillResponse.json(
      { method: request.method, path: url.pathname },
      { status: 201, headers: { "set-cookie": "a=1" } },
    );
  });
}

/** The upstream of the proxy: gzip, a streamed body, an echo of an upload, hop-by-hop headers. */
function startUpstream() {
  const gz = zlib.gzipSync(GZIP_TEXT);
  const server = http.createServer((req, res) => {
    if (req.url === "/gzip") {
      res.writeHead(200, {
        "content-type": "text/plain",
        "content-encoding": "gzip",
        "content-length": gz.length,
        vary: "accept-encoding",
      });
      res.end(req.method === "HEAD" ? undefined : gz);
    } else if (req.url === "/stream") {
      res.writeHead(200, {
        "content-type": "text/plain",
        connection: "x-hop, keep-alive",
        "x-hop": "1",
        "keep-alive": "timeout=5",
        "proxy-thing": "p",
        "x-end": "kept",
      });
      let n = 0;
      const tick = () => {
        if (n === 3) return res.end("end");
        res.write(`chunk ${n++}\n`);
        setTimeout(tick, 5);
      };
      tick();
    } else if (req.url === "/echo") {
      const hash = createHash("sha256");
      let size = 0;
      req.on("data", (c) => {
        hash.update(c);
        size += c.length;
      });
      req.on("end", () => {
        const body = JSON.stringify({
          method: req.method,
          size,
          sha: hash.digest("hex"),
          type: req.headers["content-type"] ?? null,
        });
        res.writeHead(200, { "content-type": "application/json" });
        res.end(body);
      });
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// The request headers that describe the client's connection are not forwarded (and
// Node's fetch refuses some of them).
const NOT_FORWARDED = ["host", "connection", "keep-alive", "transfer-encoding", "te", "upgrade", "content-length"];

function proxyApp(upstream) {
  return async (request) => {
    const url = new URL(request.url);
    const headers = new Headers();
    for (const [k, v] of request.headers) if (!NOT_FORWARDED.includes(k)) headers.append(k, v);
    return fetch(upstream + url.pathname + url.search, {
      method: request.method,
      headers,
      body: request.body,
      duplex: "half",
    });
  };
}

const APPS = { yoga: () => yogaApp().fetch, adapter: () => adapterApp().fetch };

if (process.env.FETCH_RS_INTEROP_REFERENCE === "1") {
  await serveReference({ ...APPS, proxy: () => proxyApp(process.env.UPSTREAM) });
} else {
  defineTests();
}

const mediaType = (v) => v?.replace(/\s*;\s*/g, ";").toLowerCase();

function defineTests() {
  let serve;
  let Server;
  const ours = {};
  let reference;
  let upstreamServer;

  before(async () => {
    ({ serve, Server } = await import("../dist/index.js"));
    upstreamServer = await startUpstream();
    const upstream = `http://127.0.0.1:${upstreamServer.address().port}`;
    reference = await startReference(import.meta.url, { FETCH_RS_INTEROP_REFERENCE: "1", UPSTREAM: upstream });
    const apps = { ...APPS, proxy: () => proxyApp(upstream) };
    for (const [name, make] of Object.entries(apps))
      ours[name] = serve({ fetch: make(), port: 0, hostname: "127.0.0.1" });
  });

  after(async () => {
    for (const s of Object.values(ours)) await s.close();
    upstreamServer?.close();
    stopReference(reference);
  });

  /** Sends `req` to both servers of `app`; asserts status, content type and body agree. */
  async function compare(app, req, { body = true } = {}) {
    const a = await send(ours[app].port, req);
    const b = await send(reference.ports[app], req);
    const label = `${app}: ${req.method ?? "GET"} ${req.path}`;
    assert.equal(a.status, b.status, `${label}: status`);
    assert.equal(mediaType(a.headers["content-type"]), mediaType(b.headers["content-type"]), `${label}: content-type`);
    if (body) assert.equal(a.body.toString("latin1"), b.body.toString("latin1"), `${label}: body`);
    return { a, b };
  }

  describe("graphql-yoga (PonyfillResponse) on fetch-rs and on @hono/node-server", () => {
    test("a query over GET", async () => {
      const { a } = await compare("yoga", {
        path: "/graphql?query=%7Bhello%7D",
        headers: { accept: "application/json" },
      });
      assert.equal(a.status, 200);
      assert.deepEqual(JSON.parse(a.body), { data: { hello: "hello world" } });
      assert.equal(a.headers["content-length"], String(a.body.length));
    });

    test("a mutation over POST with variables", async () => {
      const body = Buffer.from(
        JSON.stringify({ query: "mutation($a: Int!) { add(a: $a, b: 5) }", variables: { a: 37 } }),
      );
      const { a } = await compare("yoga", {
        method: "POST",
        path: "/graphql",
        headers: { "content-type": "application/json", accept: "application/json" },
        body,
      });
      assert.deepEqual(JSON.parse(a.body), { data: { add: 42 } });
    });

    test("GraphiQL's page for a browser", async () => {
      const { a } = await compare("yoga", { path: "/graphql", headers: { accept: "text/html" } });
      assert.equal(a.status, 200);
      assert.match(a.headers["content-type"], /^text\/html/);
      assert.match(a.body.toString(), /graphiql/i);
    });

    test("a malformed query is a 400 with errors", async () => {
      const body = Buffer.from(JSON.stringify({ query: "{ hello(" }));
      const { a } = await compare("yoga", {
        method: "POST",
        path: "/graphql",
        headers: { "content-type": "application/json", accept: "application/graphql-response+json" },
        body,
      });
      assert.equal(a.status, 400);
      const parsed = JSON.parse(a.body);
      assert.ok(Array.isArray(parsed.errors) && parsed.errors.length > 0);
      assert.match(parsed.errors[0].message, /Syntax Error/);
    });

    test("a subscription as server-sent events, streamed", async () => {
      const body = Buffer.from(JSON.stringify({ query: "subscription { countdown(from: 2) }" }));
      const { a } = await compare("yoga", {
        method: "POST",
        path: "/graphql",
        headers: { "content-type": "application/json", accept: "text/event-stream" },
        body,
      });
      assert.equal(a.status, 200);
      assert.match(a.headers["content-type"], /^text\/event-stream/);
      assert.equal(a.headers["transfer-encoding"], "chunked");
      const events = a.body
        .toString()
        .split("\n\n")
        .filter((e) => e.startsWith("event: next"));
      assert.deepEqual(
        events.map((e) => JSON.parse(e.split("data: ")[1]).data.countdown),
        [2, 1, 0],
      );
      assert.match(a.body.toString(), /event: complete/);
    });

    test("a multipart upload (GraphQL multipart request)", async () => {
      const form = new FormData();
      form.append(
        "operations",
        JSON.stringify({ query: "mutation($f: File!) { readFile(file: $f) }", variables: { f: null } }),
      );
      form.append("map", JSON.stringify({ 0: ["variables.f"] }));
      form.append("0", new File(["file contents"], "notes.txt", { type: "text/plain" }));
      const r = new NodeResponse(form);
      const body = Buffer.from(await r.arrayBuffer());
      const headers = {
        "content-type": r.headers.get("content-type"),
        accept: "application/json",
        "apollo-require-preflight": "1",
      };
      const { a } = await compare("yoga", { method: "POST", path: "/graphql", headers, body });
      assert.deepEqual(JSON.parse(a.body), { data: { readFile: "notes.txt:text/plain:file contents" } });
    });
  });

  describe("@whatwg-node/server's adapter on fetch-rs and on @hono/node-server", () => {
    test("JSON with a status and a cookie", async () => {
      const { a, b } = await compare("adapter", { method: "PUT", path: "/x" });
      assert.equal(a.status, 201);
      assert.deepEqual(JSON.parse(a.body), { method: "PUT", path: "/x" });
      assert.deepEqual(a.headers["set-cookie"], b.headers["set-cookie"]);
    });

    test("a streamed body", async () => {
      const { a, b } = await compare("adapter", { path: "/stream" });
      assert.equal(a.body.toString(), "one two three");
      assert.equal(a.headers["x-adapter"], "yes");
      assert.equal(a.headers["transfer-encoding"], b.headers["transfer-encoding"]);
    });
  });

  describe("proxying Node's fetch() with request.body, duplex: 'half'", () => {
    test("a gzip response from upstream arrives decoded, without Content-Encoding or its length", async () => {
      const a = await send(ours.proxy.port, { path: "/gzip", headers: { "accept-encoding": "gzip" } });
      assert.equal(a.status, 200);
      assert.equal(a.body.toString(), GZIP_TEXT);
      assert.equal(a.headers["content-encoding"], undefined);
      assert.equal(a.headers["content-type"], "text/plain");
      assert.equal(a.headers.vary, "accept-encoding");
      // The framing is the decoded body's own: never the upstream's compressed length.
      assert.notEqual(a.headers["content-length"], String(zlib.gzipSync(GZIP_TEXT).length));
      if (a.headers["content-length"] !== undefined)
        assert.equal(a.headers["content-length"], String(GZIP_TEXT.length));
      // @hono/node-server passes Content-Encoding and the compressed length on with the
      // decoded bytes, which no client can parse or gunzip: the two differ on purpose
      // (README, "Proxying").
      const b = (
        await rawRequest(reference.ports.proxy, "GET /gzip HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
      ).toLowerCase();
      assert.match(b, /\r\ncontent-encoding: gzip\r\n/);
      assert.ok(b.includes(GZIP_TEXT.slice(0, 40)));
    });

    test("a HEAD keeps the upstream's Content-Encoding (there is no body to decode)", async () => {
      const { a, b } = await compare("proxy", { method: "HEAD", path: "/gzip" });
      assert.equal(a.status, 200);
      assert.equal(a.body.length, 0);
      assert.equal(a.headers["content-encoding"], "gzip");
      assert.equal(a.headers["content-encoding"], b.headers["content-encoding"]);
    });

    test("a streamed upstream body streams through; its hop-by-hop headers do not", async () => {
      const { a, b } = await compare("proxy", { path: "/stream" });
      assert.equal(a.body.toString(), "chunk 0\nchunk 1\nchunk 2\nend");
      assert.equal(a.headers["transfer-encoding"], "chunked");
      assert.equal(a.headers["x-end"], "kept");
      for (const name of ["x-hop", "keep-alive", "proxy-thing"]) assert.equal(a.headers[name], undefined, name);
      assert.notEqual(a.headers.connection, "x-hop, keep-alive");
      // The reference sends the upstream's hop-by-hop fields on.
      assert.equal(b.headers["x-hop"], "1");
    });

    test("a chunked upload streams to the upstream", async () => {
      const chunks = [Buffer.alloc(20_000, 1), Buffer.alloc(30_000, 2), Buffer.from("tail")];
      const expected = createHash("sha256").update(Buffer.concat(chunks)).digest("hex");
      const { a } = await compare("proxy", {
        method: "POST",
        path: "/echo",
        headers: { "content-type": "application/x-test" },
        chunks,
      });
      assert.deepEqual(JSON.parse(a.body), { method: "POST", size: 50_004, sha: expected, type: "application/x-test" });
    });
  });

  describe("Response-shaped objects from elsewhere", () => {
    let server;
    let base;
    let errors;
    const routes = {
      "/forEach": () => ({
        status: 203,
        headers: {
          forEach: (cb) =>
            [
              ["x-a", "1"],
              ["content-type", "text/x"],
            ].forEach(([n, v]) => cb(v, n)),
        },
        body: null,
      }),
      "/record": () => ({ status: 200, headers: { "x-b": "2", "set-cookie": ["a=1", "b=2"] }, body: "whole string" }),
      "/iterable-body": () => ({
        status: 200,
        headers: new Map([["content-type", "text/plain"]]),
        body: (async function* () {
          yield "async ";
          yield new TextEncoder().encode("iterable");
        })(),
      }),
      "/entries-only": () => ({
        status: 202,
        headers: { entries: () => [["x-c", "3"]][Symbol.iterator]() },
        body: new ReadableStream({ start: (c) => (c.enqueue(new TextEncoder().encode("stream")), c.close()) }),
      }),
      "/reader-only": () => {
        const parts = ["read", "er"];
        return {
          status: 200,
          headers: {},
          body: {
            getReader: () => ({
              read: async () =>
                parts.length ? { done: false, value: new TextEncoder().encode(parts.shift()) } : { done: true },
              cancel: async () => {},
            }),
          },
        };
      },
      "/not-a-response": () => ({ status: "200", headers: {}, body: null }),
      "/bad-body": () => ({ status: 200, headers: {}, body: 42 }),
    };

    before(async () => {
      errors = [];
      server = serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => routes[new URL(req.url).pathname]() });
      server.addEventListener("error", (e) => errors.push(e.error));
      base = server.port;
    });
    after(() => server.close());

    test("headers through forEach, no body", async () => {
      const r = await send(base, { path: "/forEach" });
      assert.equal(r.status, 203);
      assert.equal(r.headers["x-a"], "1");
      assert.equal(r.headers["content-type"], "text/x");
    });

    test("headers as a plain record, arrays as repeated fields; a string body", async () => {
      const r = await send(base, { path: "/record" });
      assert.equal(r.headers["x-b"], "2");
      assert.deepEqual(r.headers["set-cookie"], ["a=1", "b=2"]);
      assert.equal(r.body.toString(), "whole string");
    });

    test("an iterable of pairs as headers; an async iterable as the body", async () => {
      const r = await send(base, { path: "/iterable-body" });
      assert.equal(r.headers["content-type"], "text/plain");
      assert.equal(r.body.toString(), "async iterable");
    });

    test("headers with entries() only; a ReadableStream body", async () => {
      const r = await send(base, { path: "/entries-only" });
      assert.equal(r.status, 202);
      assert.equal(r.headers["x-c"], "3");
      assert.equal(r.body.toString(), "stream");
    });

    test("a body with nothing but getReader()", async () => {
      const r = await send(base, { path: "/reader-only" });
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), "reader");
    });

    test("a status that is not a number, or a body of no known kind, is a 500 and a TypeError", async () => {
      errors.length = 0;
      assert.equal((await send(base, { path: "/not-a-response" })).status, 500);
      assert.equal((await send(base, { path: "/bad-body" })).status, 500);
      assert.equal(errors.length, 2);
      assert.ok(errors.every((e) => e instanceof TypeError));
      assert.match(errors[0].message, /needs a Response, got Object/);
      assert.match(errors[1].message, /got number/);
    });
  });

  describe("a patched Object.prototype.then", () => {
    test("cannot change the bytes of a streamed response", async () => {
      const enc = new TextEncoder();
      let intercepted = 0;
      // Answers every {value, done} a reader's read() would resolve with as "done"; any
      // other object resolves as if there were no `then`.
      function then(onFulfilled) {
        delete Object.prototype.then;
        try {
          if (Object.hasOwn(this, "done") && Object.hasOwn(this, "value")) {
            intercepted++;
            onFulfilled({ done: true, value: undefined });
          } else onFulfilled(this);
        } finally {
          // eslint-disable-next-line no-extend-native
          Object.prototype.then = then;
        }
      }
      const server = serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch: () =>
          new Response(
            new ReadableStream({
              start(c) {
                c.enqueue(enc.encode("hel"));
                c.enqueue(enc.encode("lo"));
                c.close();
                // Patched only while this response is sent (its microtasks), so that the
                // rest of the process keeps a sane Object.prototype.
                // eslint-disable-next-line no-extend-native
                Object.prototype.then = then;
                setImmediate(() => delete Object.prototype.then);
              },
            }),
          ),
      });
      let text;
      try {
        text = await rawRequest(server.port, "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
      } finally {
        delete Object.prototype.then;
        await server.close();
      }
      assert.match(text, /\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n$/);
      assert.equal(intercepted, 0);
    });
  });

  describe("hop-by-hop headers a handler sets are never sent", () => {
    test("Connection, the fields it names, Keep-Alive, TE, Upgrade, Proxy-*", async () => {
      const server = serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch: () =>
          new Response("body", {
            headers: {
              "x-named": "1",
              connection: "x-named, X-Later",
              "keep-alive": "timeout=99",
              te: "trailers",
              upgrade: "websocket",
              "proxy-authorization": "Basic eA==",
              "proxy-connection": "keep-alive",
              "x-later": "2",
              "x-kept": "3",
            },
          }),
      });
      try {
        const head = await rawHead(server.port);
        const lines = head.toLowerCase().split("\r\n");
        assert.ok(lines.includes("x-kept: 3"), head);
        for (const bad of [
          "x-named",
          "x-later",
          "keep-alive",
          "te",
          "upgrade",
          "proxy-authorization",
          "proxy-connection",
        ])
          assert.ok(!lines.some((l) => l.startsWith(`${bad}:`)), `${bad} in ${head}`);
        assert.ok(!lines.some((l) => l.startsWith("connection:") && l.includes("x-named")), head);
      } finally {
        await server.close();
      }
    });

    test("Proxy-Authenticate stays on a 407", async () => {
      const server = serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch: () => new Response(null, { status: 407, headers: { "proxy-authenticate": 'Basic realm="p"' } }),
      });
      try {
        const r = await send(server.port, { path: "/" });
        assert.equal(r.status, 407);
        assert.equal(r.headers["proxy-authenticate"], 'Basic realm="p"');
      } finally {
        await server.close();
      }
    });
  });

  describe("serve(): the handler's second and third arguments", () => {
    test("Hono's c.executionCtx.waitUntil keeps work alive, and close() waits for it", async () => {
      let finished = false;
      const app = new Hono();
      app.get("/", (c) => {
        c.executionCtx.waitUntil(
          new Promise((resolve) =>
            setTimeout(() => {
              finished = true;
              resolve();
            }, 50),
          ),
        );
        c.executionCtx.passThroughOnException();
        return c.json({
          env: c.env.clientAddress,
          props: c.executionCtx.props,
          sameObject: c.env === c.executionCtx,
          json: JSON.parse(JSON.stringify(c.env)),
          shown: inspect(c.env),
        });
      });
      const server = serve({ port: 0, hostname: "127.0.0.1", fetch: app.fetch });
      const r = await send(server.port, { path: "/" });
      assert.equal(r.status, 200);
      const got = JSON.parse(r.body);
      assert.deepEqual(
        { ...got, shown: undefined },
        { env: "127.0.0.1", props: {}, sameObject: true, json: { clientAddress: "127.0.0.1" }, shown: undefined },
      );
      // console.log(c.env) shows what is there, not an empty-looking object.
      assert.match(got.shown, /clientAddress: '127\.0\.0\.1'/);
      assert.match(got.shown, /waitUntil: \[Function/);
      assert.equal(finished, false);
      await server.close();
      assert.equal(finished, true);
    });

    test("the context's methods work detached, as Cloudflare's do", async () => {
      let settled = false;
      const server = serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch: (_req, _info, { waitUntil, passThroughOnException }) => {
          passThroughOnException();
          waitUntil(new Promise((r) => setTimeout(r, 20)).then(() => (settled = true)));
          return new Response("ok");
        },
      });
      assert.equal((await send(server.port, { path: "/" })).body.toString(), "ok");
      await server.close();
      assert.equal(settled, true);
    });
  });

  describe("serve(): Bun's and Deno's server members and options", () => {
    test("requestIP (Bun) and info.remoteAddr (Deno) give the client's address and port", async () => {
      let kept;
      const server = serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch(req, info) {
          kept = req;
          return Response.json({
            viaServer: server.requestIP(req),
            viaInfo: info.requestIP(req),
            remoteAddr: info.remoteAddr,
            // Node's own Request (the global one) is not this server's: null and false,
            // not a TypeError from its missing fields.
            foreign: server.requestIP(new Request("http://127.0.0.1/")),
            foreignUpgrade: server.upgrade(new Request("http://127.0.0.1/", { headers: { upgrade: "websocket" } })),
            notRequest: server.requestIP({}),
          });
        },
      });
      const other = serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("x") });
      const r = await getFrom(server.port, "/");
      assert.equal(r.status, 200);
      const want = { address: "127.0.0.1", family: "IPv4", port: r.localPort };
      assert.deepEqual(JSON.parse(r.body), {
        viaServer: want,
        viaInfo: want,
        remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: r.localPort },
        foreign: null,
        foreignUpgrade: false,
        notRequest: null,
      });
      // Another server's request, and one whose exchange is over, give null too.
      assert.equal(other.requestIP(kept), null);
      assert.equal(server.requestIP(kept), null);
      await Promise.all([server.close(), other.close()]);
    });

    test("requestIP over IPv6 says IPv6", async (t) => {
      let server;
      try {
        server = serve({ port: 0, hostname: "::1", fetch: (req) => Response.json(server.requestIP(req)) });
      } catch (e) {
        t.skip(`no IPv6 loopback here: ${e.message}`);
        return;
      }
      const r = await getFrom(server.port, "/", "::1");
      assert.deepEqual(JSON.parse(r.body), { address: "::1", family: "IPv6", port: r.localPort });
      await server.close();
    });

    test("info.completed (Deno) resolves once the exchange is over: after a stream's end, after waitUntil work, and when the client leaves", async () => {
      const log = [];
      let leftStream;
      const server = serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch(req, info) {
          const path = new URL(req.url).pathname;
          // Asked for twice: the same promise.
          const completed = info.completed;
          assert.equal(info.completed, completed);
          completed.then(() => log.push(`completed ${path}`));
          if (path === "/plain") return new Response("plain");
          if (path === "/wait") {
            info.waitUntil(new Promise((r) => setTimeout(r, 50)).then(() => log.push("work settled")));
            return new Response("wait");
          }
          let n = 0;
          const stream = new ReadableStream({
            async pull(c) {
              await new Promise((r) => setTimeout(r, 10));
              if (path === "/leave") {
                c.enqueue(new Uint8Array(64 * 1024));
                return;
              }
              if (++n > 3) {
                log.push("stream ended");
                c.close();
              } else c.enqueue(new TextEncoder().encode(`part ${n};`));
            },
          });
          if (path === "/leave") leftStream = completed;
          return new Response(stream);
        },
      });
      assert.equal((await send(server.port, { path: "/plain" })).body.toString(), "plain");
      await waitFor(() => log.includes("completed /plain"));
      assert.equal((await send(server.port, { path: "/stream" })).body.toString(), "part 1;part 2;part 3;");
      await waitFor(() => log.includes("completed /stream"));
      assert.ok(log.indexOf("stream ended") < log.indexOf("completed /stream"), log.join());
      assert.equal((await send(server.port, { path: "/wait" })).body.toString(), "wait");
      await waitFor(() => log.includes("completed /wait"));
      assert.ok(log.indexOf("work settled") < log.indexOf("completed /wait"), log.join());
      // A client that reads the start of an endless stream and leaves.
      await new Promise((resolve) => {
        const sock = net.connect(server.port, "127.0.0.1", () => sock.write("GET /leave HTTP/1.1\r\nhost: x\r\n\r\n"));
        sock.once("data", () => {
          sock.destroy();
          resolve();
        });
      });
      await leftStream;
      await waitFor(() => log.includes("completed /leave"));
      await server.close();
    });

    for (const name of ["error", "onError"]) {
      test(`${name}: answers for a handler that throws or rejects; if it throws too, 500 and reported`, async () => {
        const reported = [];
        const server = serve({
          port: 0,
          hostname: "127.0.0.1",
          fetch(req) {
            const path = new URL(req.url).pathname;
            if (path === "/throw") throw new Error("thrown");
            if (path === "/reject") return Promise.reject(new Error("rejected"));
            if (path === "/both") throw new Error("first");
            return new Response("fine");
          },
          [name](error) {
            if (error.message === "first") throw new Error("handler failed too");
            return new Response(`handled ${error.message}`, { status: 503 });
          },
        });
        server.addEventListener("error", ({ error }) => reported.push(error.message));
        const thrown = await send(server.port, { path: "/throw" });
        assert.deepEqual([thrown.status, thrown.body.toString()], [503, "handled thrown"]);
        const rejected = await send(server.port, { path: "/reject" });
        assert.deepEqual([rejected.status, rejected.body.toString()], [503, "handled rejected"]);
        const fine = await send(server.port, { path: "/" });
        assert.deepEqual([fine.status, fine.body.toString()], [200, "fine"]);
        const both = await send(server.port, { path: "/both" });
        assert.equal(both.status, 500);
        // Only the error the error handler could not answer is reported.
        assert.deepEqual(reported, ["handler failed too"]);
        await server.close();
      });
    }

    test("error and onError are checked", () => {
      const fetch = () => new Response("x");
      for (const [options, message] of [
        [{ error: "nope" }, /error must be a function, got the string "nope"/],
        [{ onError: 1 }, /onError must be a function, got the number 1/],
        [{ onListen: {} }, /onListen must be a function, got an object/],
        [{ error: fetch, onError: fetch }, /error and onError are the same option/],
        [{ signal: {} }, /signal must be an AbortSignal, got an object/],
        [{ signal: null }, /signal must be an AbortSignal, got null/],
      ])
        assert.throws(
          () => serve({ port: 0, hostname: "127.0.0.1", fetch, ...options }),
          (e) => e.code === "ERR_INVALID_OPTION" && message.test(e.message),
        );
    });

    test("onListen gets the address once the server listens; one that throws closes it", async () => {
      const calls = [];
      const server = serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch: () => new Response("x"),
        onListen: (addr) => calls.push({ ...addr, accepts: addr.port > 0 }),
      });
      assert.deepEqual(calls, [{ transport: "tcp", hostname: "127.0.0.1", port: server.port, accepts: true }]);
      assert.deepEqual(server.addr, { transport: "tcp", hostname: "127.0.0.1", port: server.port });
      assert.equal(server.hostname, "127.0.0.1");
      await server.close();

      let port = 0;
      assert.throws(
        () =>
          serve({
            port: 0,
            hostname: "127.0.0.1",
            fetch: () => new Response("x"),
            onListen: (addr) => {
              port = addr.port;
              throw new Error("listen hook failed");
            },
          }),
        /listen hook failed/,
      );
      assert.ok(port > 0);
      await untilRefused(port);
    });

    test("signal: aborting it closes the server gracefully; an aborted one closes it at once", async () => {
      const controller = new AbortController();
      let release;
      const server = serve({
        port: 0,
        hostname: "127.0.0.1",
        signal: controller.signal,
        fetch: () => new Promise((resolve) => (release = () => resolve(new Response("late but whole")))),
      });
      const inFlight = send(server.port, { path: "/" });
      await waitFor(() => release !== undefined);
      controller.abort();
      await untilRefused(server.port);
      release();
      const r = await inFlight;
      assert.deepEqual([r.status, r.body.toString()], [200, "late but whole"]);
      await server.finished;

      const early = serve({
        port: 0,
        hostname: "127.0.0.1",
        signal: AbortSignal.abort(),
        fetch: () => new Response("x"),
      });
      await early.finished;
      assert.equal(await refused(early.port), true);
    });

    test("stop(), shutdown() and finished", async () => {
      const a = serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("a") });
      let done = false;
      void a.finished.then(() => (done = true));
      assert.equal((await send(a.port, { path: "/" })).body.toString(), "a");
      assert.equal(done, false);
      await a.shutdown();
      assert.equal(done, true);
      assert.equal(await refused(a.port), true);

      // stop(true) closes connections with a request in progress instead of waiting.
      const b = serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Promise(() => {}) });
      const hung = send(b.port, { path: "/" }).then(
        () => "answered",
        () => "cut",
      );
      await waitFor(() => b.pendingRequests === 1);
      assert.equal(b.pendingWebSockets, 0);
      await b.stop(true);
      assert.equal(await hung, "cut");
      await b.finished;

      // A server never listened to finishes when closed.
      const c = new Server({ port: 0 });
      await c.close();
      await c.finished;
    });
  });

  describe("options as users write them", () => {
    test("port as a string of digits, as process.env.PORT gives it", async () => {
      const s = new Server({ port: "0", host: "127.0.0.1" });
      await s.listen();
      assert.ok(s.port > 0);
      await s.close();
      const t = serve({ port: " 0 ", hostname: "127.0.0.1", fetch: () => new Response("x") });
      assert.ok(t.port > 0);
      await t.close();
    });

    test("Bun's maxRequestBodySize limits request bodies as maxBodySize does", async () => {
      const s = serve({
        port: 0,
        hostname: "127.0.0.1",
        maxRequestBodySize: 16,
        fetch: async (r) => new Response(await r.text()),
      });
      try {
        const at = (body) => fetch(s.url, { method: "POST", body }).then((r) => r.status);
        assert.equal(await at("x".repeat(16)), 200);
        assert.equal(await at("x".repeat(17)), 413);
      } finally {
        await s.close();
      }
    });

    const cases = [
      [{ port: "abc" }, TypeError, /port must be an integer \(or a string of decimal digits\), got the string "abc"/],
      [{ port: "" }, TypeError, /got the string ""/],
      [{ port: "3.5" }, TypeError, /got the string "3\.5"/],
      [{ port: 3.5 }, TypeError, /got the number 3\.5/],
      [{ port: "70000" }, RangeError, /port must be between 0 and 65535, got the string "70000"/],
      [{ port: -1 }, RangeError, /got the number -1/],
      [{ port: null }, TypeError, /got null/],
      [{ port: {} }, TypeError, /got an object \(Object\)/],
      [{ maxBodySize: "10mb" }, TypeError, /maxBodySize must be an integer, got the string "10mb"/],
      [{ maxBodySize: "1024" }, TypeError, /maxBodySize must be an integer, got the string "1024"/],
      [{ maxRequestBodySize: "1kb" }, TypeError, /maxRequestBodySize must be an integer, got the string "1kb"/],
      [{ maxBodySize: 1, maxRequestBodySize: 2 }, TypeError, /maxBodySize and maxRequestBodySize are the same option/],
      [{ timeout: true }, TypeError, /timeout must be an integer, got the boolean true/],
      [{ host: 5 }, TypeError, /host must be a non-empty string, got the number 5/],
      [{ hostname: "" }, TypeError, /hostname must be a non-empty string, got the string ""/],
      [{ reusePort: "yes" }, TypeError, /reusePort must be a boolean, got the string "yes"/],
      [{ overrideGlobals: 1 }, TypeError, /overrideGlobals must be a boolean, got the number 1/],
    ];
    for (const [options, type, message] of cases) {
      test(`${JSON.stringify(options)} is refused with the value it got`, () => {
        assert.throws(
          () => new Server(options),
          (e) => e instanceof type && e.code === "ERR_INVALID_OPTION" && message.test(e.message),
        );
      });
    }

    test("the options object and fetch themselves", () => {
      assert.throws(() => new Server(42), /Server options must be an object, got the number 42/);
      assert.throws(() => serve(null), /got null/);
      assert.throws(
        () => serve({ fetch: "app" }),
        (e) => e.code === "ERR_INVALID_OPTION" && /fetch must be a function, got the string "app"/.test(e.message),
      );
    });
  });
}

/** One GET over a new connection: status, body text and the client's local port. */
function getFrom(port, path, host = "127.0.0.1") {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, body, localPort: req.socket.localPort }));
    });
    req.on("error", reject);
  });
}

/** Whether a connection to the port is refused (nothing listens there). */
function refused(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1");
    sock.on("connect", () => {
      sock.destroy();
      resolve(false);
    });
    sock.on("error", () => resolve(true));
  });
}

/** Resolves once connections to the port are refused; throws after 5 s. */
async function untilRefused(port) {
  const end = Date.now() + 5000;
  while (!(await refused(port))) {
    if (Date.now() > end) throw new Error(`port ${port} still accepts`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Everything a server sends for `head` until it closes, as latin1 text. */
function rawRequest(port, head) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1", () => sock.write(head));
    let text = "";
    sock.on("data", (d) => (text += d.toString("latin1")));
    sock.on("end", () => resolve(text));
    sock.on("error", reject);
  });
}

/** The response head of one GET / over a raw socket. */
async function rawHead(port) {
  const text = await rawRequest(port, "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
  return text.slice(0, text.indexOf("\r\n\r\n"));
}
