// One behaviour suite run over every protocol the server speaks: HTTP/1.1, h2c (prior
// knowledge), HTTPS/1.1 and HTTP/2 over TLS (ALPN). Limits, timeouts and errors must be
// the same whichever the client uses.
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { describe, test } from "node:test";
import { Response, Server } from "../dist/index.js";
import { A, CA } from "./tls-helpers.mjs";

/** A client for one protocol: `request({ method, path, headers, body })` resolves with
 * `{ status, headers, body }`; `close()` ends its connection. */
function h1Client(port, secure) {
  const mod = secure ? https : http;
  return {
    request: ({ method = "GET", path = "/", headers = {}, body } = {}) =>
      new Promise((resolve, reject) => {
        const opts = { host: "127.0.0.1", port, method, path, headers, agent: false, ca: CA, servername: "localhost" };
        const req = mod.request(opts, (res) => {
          const chunks = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on("error", reject);
        });
        req.on("error", reject);
        if (body !== undefined) req.setHeader("content-length", Buffer.byteLength(body));
        req.end(body);
      }),
    close: () => {},
  };
}

function h2Client(port, secure) {
  const session = http2.connect(secure ? `https://localhost:${port}` : `http://127.0.0.1:${port}`, {
    ca: CA,
    host: "127.0.0.1",
  });
  session.on("error", () => {});
  return {
    request: ({ method = "GET", path = "/", headers = {}, body } = {}) =>
      new Promise((resolve, reject) => {
        const h = { ":method": method, ":path": path, ...headers };
        if (body !== undefined) h["content-length"] = Buffer.byteLength(body);
        const req = session.request(h);
        const chunks = [];
        let head = {};
        req.on("response", (r) => (head = r));
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => resolve({ status: head[":status"], headers: head, body: Buffer.concat(chunks) }));
        req.on("error", reject);
        req.end(body);
      }),
    close: () => session.close(),
  };
}

/** One keep-alive request, then nothing: resolves when the server closes the connection. */
function idleAfterOneRequest(port, secure, h2) {
  return new Promise((resolve, reject) => {
    if (h2) {
      const session = http2.connect(secure ? `https://localhost:${port}` : `http://127.0.0.1:${port}`, {
        ca: CA,
        host: "127.0.0.1",
      });
      session.on("error", () => {});
      session.on("close", resolve);
      const req = session.request({ ":path": "/" });
      req.on("error", reject);
      req.resume();
      req.end();
      return;
    }
    const sock = secure
      ? tls.connect({ host: "127.0.0.1", port, ca: CA, servername: "localhost", ALPNProtocols: ["http/1.1"] })
      : net.connect(port, "127.0.0.1");
    sock.on(secure ? "secureConnect" : "connect", () => sock.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    sock.on("data", () => {});
    sock.on("error", () => {});
    sock.on("close", resolve);
  });
}

const protocols = [
  { name: "HTTP/1.1", tls: false, h2: false, client: (port) => h1Client(port, false) },
  { name: "h2c", tls: false, h2: true, client: (port) => h2Client(port, false) },
  { name: "HTTPS/1.1", tls: true, h2: false, client: (port) => h1Client(port, true) },
  { name: "HTTP/2 over TLS", tls: true, h2: true, client: (port) => h2Client(port, true) },
];

/** Starts a server for `protocol`, runs `fn(client, server)`, and closes both. */
async function withServer(protocol, listener, options, fn) {
  const server = new Server({ port: 0, host: "127.0.0.1", ...(protocol.tls ? { tls: A } : {}), ...options });
  server.addEventListener("fetch", listener);
  server.addEventListener("error", () => {});
  await server.listen();
  const client = protocol.client(server.port);
  try {
    await fn(client, server);
  } finally {
    client.close();
    await server.close({ force: true });
  }
}

for (const protocol of protocols) {
  const scheme = protocol.tls ? "https" : "http";
  describe(protocol.name, () => {
    test("serves a request with the right scheme, method and headers", async () => {
      await withServer(
        protocol,
        (e) =>
          e.respondWith(
            Response.json({ url: e.request.url, method: e.request.method, x: e.request.headers.get("x-test") }),
          ),
        {},
        async (client, server) => {
          const r = await client.request({ path: "/p?q=1", headers: { "x-test": "yes" } });
          assert.equal(r.status, 200);
          const j = JSON.parse(r.body);
          assert.match(j.url, new RegExp(`^${scheme}://(127\\.0\\.0\\.1|localhost):${server.port}/p\\?q=1$`));
          assert.equal(j.method, "GET");
          assert.equal(j.x, "yes");
        },
      );
    });

    test("echoes a 300 KB request body", async () => {
      const body = "z".repeat(300_000);
      await withServer(
        protocol,
        async (e) => e.respondWith(new Response(await e.request.text())),
        {},
        async (client) => {
          const r = await client.request({ method: "POST", body });
          assert.equal(r.status, 200);
          assert.equal(r.body.toString(), body);
        },
      );
    });

    test("a declared body over maxBodySize gets 413", async () => {
      await withServer(
        protocol,
        (e) => e.respondWith(new Response("ran")),
        { maxBodySize: 1000 },
        async (client) => {
          const r = await client.request({ method: "POST", body: "x".repeat(5000) });
          assert.equal(r.status, 413);
        },
      );
    });

    test("header fields over maxHeaderSize get 431", async () => {
      await withServer(
        protocol,
        (e) => e.respondWith(new Response("ran")),
        { maxHeaderSize: 4096 },
        async (client, server) => {
          const r = await client.request({ headers: { "x-big": "b".repeat(6000) } });
          assert.equal(r.status, 431);
          const fresh = protocol.client(server.port);
          const ok = await fresh.request({ headers: { "x-small": "s".repeat(1000) } });
          fresh.close();
          assert.equal(ok.status, 200);
        },
      );
    });

    test("a listener that does not respond within timeout gets 503", async () => {
      await withServer(
        protocol,
        () => new Promise(() => {}),
        { timeout: 200 },
        async (client) => {
          const r = await client.request();
          assert.equal(r.status, 503);
        },
      );
    });

    test("a listener that throws gets 500 and the server goes on", async () => {
      let n = 0;
      await withServer(
        protocol,
        (e) => {
          if (n++ === 0) throw new Error("boom");
          e.respondWith(new Response("fine"));
        },
        {},
        async (client) => {
          assert.equal((await client.request()).status, 500);
          const r = await client.request();
          assert.equal(r.status, 200);
          assert.equal(r.body.toString(), "fine");
        },
      );
    });

    test("a keep-alive connection left idle is closed after idleTimeout", async () => {
      await withServer(
        protocol,
        (e) => e.respondWith(new Response("ok")),
        { idleTimeout: 300 },
        async (_client, server) => {
          const started = Date.now();
          await idleAfterOneRequest(server.port, protocol.tls, protocol.h2);
          const took = Date.now() - started;
          // One to two idle periods, with room for a slow machine.
          assert.ok(took >= 250 && took < 5000, `closed after ${took} ms`);
        },
      );
    });

    test("a streamed response of 4 MiB arrives whole", async () => {
      const chunk = new Uint8Array(64 * 1024).fill(7);
      await withServer(
        protocol,
        (e) => {
          let sent = 0;
          const stream = new ReadableStream({
            pull(c) {
              if (sent++ === 64) c.close();
              else c.enqueue(chunk);
            },
          });
          e.respondWith(new Response(stream));
        },
        {},
        async (client) => {
          const r = await client.request();
          assert.equal(r.status, 200);
          assert.equal(r.body.length, 64 * chunk.length);
        },
      );
    });
  });
}
