// serve()'s `routes` (Bun's): precedence, parameters, per-method answers with HEAD from
// GET, fixed Responses with their ETag and 304, `false`, the fallback to fetch and the 404,
// the option errors, the error handler, and `server.reload()`; over real sockets with
// Node's fetch and raw requests.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { raw, parseRaw, runModule } from "./helpers.mjs";

// Node's own Response (undici's), kept before a server installs fetch-rs's as the global one.
const NodeResponse = globalThis.Response;
const { serve, Server, Response } = await import("../dist/index.js");

/** serve() on a free port of 127.0.0.1. */
const local = (options) => serve({ port: 0, hostname: "127.0.0.1", ...options });

async function get(server, path, init) {
  const r = await fetch(new URL(path, server.url), init);
  return { status: r.status, headers: r.headers, text: await r.text() };
}

describe("routes: matching", () => {
  let server;
  before(() => {
    server = local({
      routes: {
        // Declared against their precedence: the table's order does not decide.
        "/*": () => new Response("root wildcard"),
        "/api/*": () => new Response("api wildcard"),
        "/api/users/:id/posts": (r) => new Response(`posts of ${r.params.id}`),
        "/api/users/:id": (r) => Response.json(r.params),
        "/api/users/me": (r) => Response.json({ me: true, params: r.params }),
        "/api/:kind/:id": (r) => Response.json({ kind: r.params.kind, id: r.params.id }),
        "/files/:name": (r) => new Response(r.params.name),
        "/caf\u00e9": () => new Response("with an accent"),
        "/skip": false,
      },
      fetch: (r) => new Response(`fetch ${new URL(r.url).pathname}`),
    });
  });
  after(() => server.close());

  test("a path without parameters before one with them, literal segments before parameters, wildcards last", async () => {
    assert.deepEqual(JSON.parse((await get(server, "/api/users/me")).text), { me: true, params: {} });
    assert.deepEqual(JSON.parse((await get(server, "/api/users/42")).text), { id: "42" });
    assert.equal((await get(server, "/api/users/42/posts")).text, "posts of 42");
    assert.deepEqual(JSON.parse((await get(server, "/api/orders/7")).text), { kind: "orders", id: "7" });
    // Nothing but a wildcard matches three segments under /api/orders.
    assert.equal((await get(server, "/api/orders/7/lines")).text, "api wildcard");
    assert.equal((await get(server, "/api/")).text, "api wildcard");
    assert.equal((await get(server, "/elsewhere/deep")).text, "root wildcard");
  });

  test("a wildcard needs its prefix's slash; `false` leaves a path to fetch", async () => {
    const noRoot = local({
      routes: { "/api/*": () => new Response("api wildcard"), "/gone": false },
      fetch: (r) => new Response(`fetch ${new URL(r.url).pathname}`),
    });
    try {
      assert.equal((await get(noRoot, "/api")).text, "fetch /api");
      assert.equal((await get(noRoot, "/api/x")).text, "api wildcard");
      assert.equal((await get(noRoot, "/gone")).text, "fetch /gone");
    } finally {
      await noRoot.close();
    }
    // `false` makes no route of the path: under a root wildcard, the wildcard answers it.
    assert.equal((await get(server, "/skip")).text, "root wildcard");
  });

  test("parameters are percent-decoded as UTF-8, an invalid byte as U+FFFD; a parameter is never empty", async () => {
    assert.equal((await get(server, "/files/%F0%9F%A6%8A")).text, "\u{1f98a}");
    assert.equal((await get(server, "/files/\u00e9t\u00e9")).text, "\u00e9t\u00e9");
    assert.equal((await get(server, "/files/a%2Fb")).text, "a/b");
    // %E9 alone is not UTF-8.
    const { text } = await raw(server.port, "GET /files/x%E9y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert.equal(Buffer.from(parseRaw(text).body, "latin1").toString(), "x\ufffdy");
    // `/files/` has an empty last segment: not the parameter route.
    assert.equal((await get(server, "/files/")).text, "root wildcard");
    // A key is written as the URL parser writes the path it matches.
    assert.equal((await get(server, "/caf\u00e9")).text, "with an accent");
  });

  test("dot segments are resolved before matching, so a parameter never holds `..`", async () => {
    const { text } = await raw(
      server.port,
      "GET /files/../api/users/5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert.deepEqual(JSON.parse(parseRaw(text).body), { id: "5" });
    const back = await raw(server.port, "GET /files/a/%2e%2e/b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert.equal(parseRaw(back.text).body, "b");
  });

  test("the query does not take part; the handler gets the request and the serve() info", async () => {
    const s = local({
      routes: {
        "/who/:n": (r, info, ctx) =>
          Response.json({ n: r.params.n, q: new URL(r.url).search, ip: info.requestIP(r).address, same: info === ctx }),
      },
    });
    try {
      assert.deepEqual(JSON.parse((await get(s, "/who/x?y=1")).text), {
        n: "x",
        q: "?y=1",
        ip: "127.0.0.1",
        same: true,
      });
    } finally {
      await s.close();
    }
  });
});

describe("routes: per-method answers", () => {
  let server;
  before(() => {
    server = local({
      routes: {
        "/m": {
          GET: (r) => new Response("got", { headers: { "x-method": r.method } }),
          POST: new Response("fixed post"),
        },
        "/explicit": {
          GET: () => new Response("get body"),
          HEAD: () => new Response(null, { headers: { "x-head": "1" } }),
        },
        "/post-only": { POST: () => new Response("p") },
        "/m/*": () => new Response("m wildcard"),
      },
    });
  });
  after(() => server.close());

  test("each method its own answer; HEAD is GET's without the body, unless HEAD has its own", async () => {
    assert.equal((await get(server, "/m")).text, "got");
    assert.equal((await get(server, "/m", { method: "POST", body: "x" })).text, "fixed post");
    const head = await get(server, "/m", { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.text, "");
    assert.equal(head.headers.get("content-length"), "3");
    assert.equal(head.headers.get("x-method"), "HEAD");
    const own = await get(server, "/explicit", { method: "HEAD" });
    assert.equal(own.headers.get("x-head"), "1");
  });

  test("a method a route does not answer goes to the next match, then fetch, else 404", async () => {
    // No fetch handler here: nothing else matches /post-only.
    assert.equal((await get(server, "/post-only")).status, 404);
    assert.equal((await get(server, "/post-only", { method: "HEAD" })).status, 404);
    assert.equal((await get(server, "/nothing")).status, 404);
    const withFetch = local({
      routes: { "/m": { GET: () => new Response("got") }, "/*": { POST: () => new Response("root post") } },
      fetch: (r) => new Response(`fetch ${r.method}`),
    });
    try {
      assert.equal((await get(withFetch, "/m", { method: "PUT", body: "x" })).text, "fetch PUT");
      assert.equal((await get(withFetch, "/m", { method: "POST", body: "x" })).text, "root post");
    } finally {
      await withFetch.close();
    }
  });
});

describe("routes: fixed Responses", () => {
  let server;
  const shared = Response.json({ shared: true });
  before(() => {
    server = local({
      routes: {
        "/health": new Response("OK", { headers: { "x-ready": "1", "cache-control": "max-age=60" } }),
        "/a": shared,
        "/b": shared,
        "/old": Response.redirect("http://127.0.0.1/new", 301),
        "/tagged": new Response("v2", { headers: { etag: 'W/"two"' } }),
        "/missing": new Response("nope", { status: 404 }),
        "/empty": new Response(null, { status: 204 }),
        // Node's own Response, as a route value too.
        "/node": new NodeResponse("from undici", { headers: { "content-type": "text/x-undici" } }),
      },
    });
  });
  after(() => server.close());

  test("served again and again with its status, headers and bytes", async () => {
    for (let i = 0; i < 3; i++) {
      const r = await get(server, "/health");
      assert.equal(r.status, 200);
      assert.equal(r.text, "OK");
      assert.equal(r.headers.get("x-ready"), "1");
    }
    assert.deepEqual(JSON.parse((await get(server, "/a")).text), { shared: true });
    assert.deepEqual(JSON.parse((await get(server, "/b")).text), { shared: true });
    assert.equal((await get(server, "/a")).headers.get("content-type"), "application/json");
    const moved = await get(server, "/old", { redirect: "manual" });
    assert.equal(moved.status, 301);
    assert.equal(moved.headers.get("location"), "http://127.0.0.1/new");
    assert.equal((await get(server, "/missing")).status, 404);
    assert.equal((await get(server, "/empty")).status, 204);
    const node = await get(server, "/node");
    assert.equal(node.text, "from undici");
    assert.equal(node.headers.get("content-type"), "text/x-undici");
    // The user's own Response objects are not consumed.
    assert.equal(shared.bodyUsed, false);
  });

  test("a 200 gets a strong ETag of its bytes; If-None-Match answers 304 (RFC 9110 13.1.2)", async () => {
    const first = await get(server, "/health");
    const etag = first.headers.get("etag");
    assert.match(etag, /^"[A-Za-z0-9_-]+"$/);
    assert.equal((await get(server, "/a")).headers.get("etag"), (await get(server, "/b")).headers.get("etag"));
    assert.notEqual((await get(server, "/a")).headers.get("etag"), etag);
    for (const field of [etag, `W/${etag}`, `"other", ${etag}`, "*", `"a,b", ${etag}`]) {
      const r = await get(server, "/health", { headers: { "if-none-match": field } });
      assert.equal(r.status, 304, field);
      assert.equal(r.text, "");
      assert.equal(r.headers.get("etag"), etag);
      assert.equal(r.headers.get("cache-control"), "max-age=60");
      assert.equal(r.headers.get("x-ready"), null);
    }
    for (const field of ['"other"', "garbage", `"${etag}"`]) {
      const r = await get(server, "/health", { headers: { "if-none-match": field } });
      assert.equal(r.status, 200, field);
      assert.equal(r.text, "OK");
    }
    // Only GET and HEAD are answered 304; HEAD's is checked raw (fetch would hide nothing).
    assert.equal(
      (await get(server, "/health", { method: "POST", body: "", headers: { "if-none-match": "*" } })).status,
      200,
    );
    const head = await raw(
      server.port,
      `HEAD /health HTTP/1.1\r\nHost: a\r\nIf-None-Match: ${etag}\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(parseRaw(head.text).status, 304);
  });

  test("a Response's own ETag is kept and compared weakly; no ETag on other statuses", async () => {
    const r = await get(server, "/tagged");
    assert.equal(r.headers.get("etag"), 'W/"two"');
    assert.equal((await get(server, "/tagged", { headers: { "if-none-match": '"two"' } })).status, 304);
    assert.equal((await get(server, "/missing")).headers.get("etag"), null);
  });
});

describe("routes: errors", () => {
  const bad = [
    [{ "no-slash": () => {} }, /must start with "\/"/],
    [{ "/a/:1x": () => {} }, /parameter's name/],
    [{ "/a/:x/:x": () => {} }, /named twice/],
    [{ "/a/*/b": () => {} }, /may only end/],
    [{ "/a": 123 }, /must be a function, a Response/],
    [{ "/a": null }, /must be a function, a Response/],
    [{ "/a": { GET: "text" } }, /GET must be a function or a Response/],
    [{ "/a": { "G ET": () => {} } }, /not a method name/],
    [{ "/a/:x": () => {}, "/a/:y": () => {} }, /the same pattern as routes\["\/a\/:x"\]/],
  ];
  for (const [routes, message] of bad)
    test(`refuses ${JSON.stringify(Object.keys(routes))}: ${message}`, () => {
      assert.throws(
        () => serve({ port: 0, routes, fetch: () => new Response("x") }),
        (e) => e.code === "ERR_INVALID_OPTION" && message.test(e.message),
      );
    });

  test("neither fetch nor a route, or a used body: refused before listening", () => {
    for (const options of [{}, { routes: {} }, { routes: { "/a": false } }])
      assert.throws(() => serve({ port: 0, ...options }), {
        code: "ERR_INVALID_OPTION",
        message: /needs a fetch function or routes/,
      });
    const used = new Response("x");
    void used.text();
    assert.throws(() => serve({ port: 0, routes: { "/a": used } }), { code: "ERR_INVALID_OPTION" });
  });

  test("a route that throws or rejects is answered by `error`, else 500, and the server goes on", async () => {
    const routes = {
      "/sync": () => {
        throw new Error("sync boom");
      },
      "/async": async () => {
        throw new Error("async boom");
      },
      "/ok": () => new Response("ok"),
    };
    const withError = local({
      routes,
      error: (e) => new Response(`caught ${e.message}`, { status: 503 }),
    });
    const plain = local({ routes });
    plain.addEventListener("error", () => {});
    try {
      for (const p of ["/sync", "/async"]) {
        const r = await get(withError, p);
        assert.equal(r.status, 503);
        assert.equal(r.text, `caught ${p.slice(1)} boom`);
        assert.equal((await get(plain, p)).status, 500);
      }
      assert.equal((await get(plain, "/ok")).text, "ok");
    } finally {
      await withError.close();
      await plain.close();
    }
  });
});

describe("server.reload()", () => {
  test("replaces the routes, fetch and error it names and keeps the rest", async () => {
    const server = local({
      routes: { "/a": () => new Response("a1") },
      fetch: () => new Response("fetch1"),
    });
    try {
      assert.equal((await get(server, "/a")).text, "a1");
      assert.equal(server.reload({ routes: { "/a": new Response("a2"), "/b": () => new Response("b2") } }), server);
      assert.equal((await get(server, "/a")).text, "a2");
      assert.equal((await get(server, "/b")).text, "b2");
      assert.equal((await get(server, "/c")).text, "fetch1");
      server.reload({ fetch: () => new Response("fetch2") });
      assert.equal((await get(server, "/b")).text, "b2");
      assert.equal((await get(server, "/c")).text, "fetch2");
      server.reload({ routes: {}, error: () => new Response("handled", { status: 502 }) });
      assert.equal((await get(server, "/a")).text, "fetch2");
      server.reload({
        fetch: () => {
          throw new Error("x");
        },
      });
      assert.equal((await get(server, "/a")).status, 502);
    } finally {
      await server.close();
    }
  });

  test("bad options throw and the old handlers go on serving", async () => {
    const server = local({ routes: { "/": () => new Response("routes") } });
    try {
      assert.throws(() => server.reload({ routes: {} }), {
        code: "ERR_INVALID_OPTION",
        message: /reload\(\) needs a fetch function or routes/,
      });
      assert.throws(() => server.reload({ routes: { "/x/:1": () => {} } }), { code: "ERR_INVALID_OPTION" });
      assert.throws(() => server.reload({ fetch: "no" }), { code: "ERR_INVALID_OPTION" });
      assert.throws(() => server.reload(null), { code: "ERR_INVALID_OPTION" });
      assert.equal((await get(server, "/")).text, "routes");
    } finally {
      await server.close();
    }
  });

  test("a server made with new Server() has fetch listeners, not serve()'s handlers: reload() throws", () => {
    const s = new Server({ port: 0 });
    assert.throws(() => s.reload({ fetch: () => new Response("x") }), { code: "ERR_INVALID_STATE", name: "TypeError" });
  });
});

describe("serve(): Deno's forms", () => {
  test("serve(options, handler) and serve({ handler })", async () => {
    const servers = [
      serve({ port: 0, hostname: "127.0.0.1" }, (r, info) => new Response(`second ${info.remoteAddr.hostname}`)),
      local({ handler: () => new Response("handler option") }),
    ];
    try {
      assert.equal((await get(servers[0], "/")).text, "second 127.0.0.1");
      assert.equal((await get(servers[1], "/")).text, "handler option");
    } finally {
      for (const s of servers) await s.close();
    }
  });

  test("serve(handler) alone listens on the default port with it", async (t) => {
    // In a child process, as the port (3000) is the machine's: skipped when it is taken.
    const dist = new URL("../dist/index.js", import.meta.url).href;
    const { code, out } = await runModule(
      `import { serve, Response } from ${JSON.stringify(dist)};
       let s;
       try { s = serve(() => new Response("only a handler")); }
       catch (e) { console.log(e.code); process.exit(0); }
       const r = await fetch("http://127.0.0.1:" + s.port + "/");
       console.log(s.port, await r.text());
       await s.close();`,
      10_000,
    );
    assert.equal(code, 0, out);
    if (out.trim() === "ERR_LISTEN") return t.skip("port 3000 is taken here");
    assert.equal(out.trim(), "3000 only a handler");
  });

  test("a handler given twice, or one that is not a function, is refused", () => {
    const f = () => new Response("x");
    for (const [args, message] of [
      [[{ port: 0, fetch: f }, f], /handler twice/],
      [[{ port: 0, handler: f, fetch: f }], /handler twice/],
      [[{ port: 0 }, "nope"], /second argument must be a function, got the string "nope"/],
      [[{ port: 0, handler: 1 }], /handler must be a function, got the number 1/],
    ])
      assert.throws(
        () => serve(...args),
        (e) => e.code === "ERR_INVALID_OPTION" && message.test(e.message),
      );
  });
});

test("examples/routes.mjs serves what its comments say", async () => {
  const { spawn } = await import("node:child_process");
  const { once } = await import("node:events");
  const child = spawn(process.execPath, [new URL("../examples/routes.mjs", import.meta.url).pathname], {
    env: { ...process.env, PORT: "0" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    let out = "";
    for await (const d of child.stdout) {
      out += d;
      if (out.includes("\n")) break;
    }
    const base = out.match(/listening on (\S+)/)[1];
    const json = async (path, init) => {
      const r = await fetch(new URL(path, base), init);
      return [r.status, await r.json()];
    };
    assert.deepEqual(await json("/posts"), [200, [{ id: 1, title: "Routes in fetch-rs" }]]);
    assert.deepEqual(await json("/posts", { method: "POST", body: '{"title":"hi"}' }), [201, { id: 2, title: "hi" }]);
    assert.deepEqual(await json("/posts/2"), [200, { id: 2, title: "hi" }]);
    assert.deepEqual(await json("/posts/9"), [404, { error: "no such post" }]);
    assert.equal((await json("/posts", { method: "POST", body: "not json" }))[0], 400);
    assert.deepEqual(await json("/api/x"), [404, { error: "no such API" }]);
    assert.deepEqual(await json("/health"), [200, { status: "ok" }]);
    assert.equal((await fetch(new URL("/nothing", base))).status, 404);
  } finally {
    child.kill("SIGTERM");
    await once(child, "exit");
  }
});
