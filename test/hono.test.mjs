// The Hono adapter (lib/hono.ts): Hono's upgradeWebSocket() helper on fetch-rs.
import assert from "node:assert/strict";
import { once } from "node:events";
import { test } from "node:test";
import { Hono } from "hono";
import WebSocket from "ws";
import { Headers, serve } from "../dist/index.js";
import { upgradeWebSocket } from "../dist/hono.js";

// Read before any server installs fetch-rs's classes.
const NodeHeaders = globalThis.Headers;

test("a Hono app's replies build their headers with fetch-rs's Headers (overrideGlobals)", async () => {
  const app = new Hono();
  const seen = [];
  app.get("/app", (c) => {
    c.header("set-cookie", "a=1", { append: true });
    c.header("set-cookie", "b=2", { append: true });
    const res = c.json({ q: c.req.query("q") }, 200, { "cache-control": "no-store" });
    seen.push(Object.getPrototypeOf(res.headers) === Headers.prototype);
    return res;
  });
  app.get("/echo-header", (c) => c.text(c.req.header("x-from-ours") ?? "missing"));
  const server = serve({ port: 0, host: "127.0.0.1", fetch: app.fetch });
  try {
    assert.equal(globalThis.Headers, Headers, "serve() installs fetch-rs's Headers");
    const ours = new globalThis.Headers({ "x-from-ours": "yes" });
    // Both ways across the two classes.
    assert.ok(ours instanceof NodeHeaders);
    assert.ok(new NodeHeaders() instanceof globalThis.Headers);
    const res = await fetch(`http://127.0.0.1:${server.port}/app?q=1`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { q: "1" });
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.match(res.headers.get("content-type"), /^application\/json/);
    assert.deepEqual(res.headers.getSetCookie(), ["a=1", "b=2"]);
    assert.deepEqual(seen, [true], "Hono's context built its Headers from the global class");
    // Node's fetch takes fetch-rs's Headers as its init.
    const echoed = await fetch(`http://127.0.0.1:${server.port}/echo-header`, { headers: ours });
    assert.equal(await echoed.text(), "yes");
  } finally {
    await server.close();
  }
});

test("Hono's upgradeWebSocket() runs a socket on fetch-rs", async () => {
  const events = [];
  const app = new Hono();
  app.get(
    "/ws",
    upgradeWebSocket((c) => ({
      onOpen(_e, ws) {
        events.push(["open", ws.readyState]);
        ws.send(`hello ${c.req.query("name")}`);
      },
      onMessage(e, ws) {
        events.push(["message", e.data]);
        ws.send(`echo:${e.data}`);
      },
      onClose(e) {
        events.push(["close", e.code, e.reason]);
      },
    })),
  );
  app.get("/ws", (c) => c.text("not an upgrade", 426));
  const server = serve({ port: 0, host: "127.0.0.1", fetch: app.fetch });
  try {
    const c = new WebSocket(`ws://127.0.0.1:${server.port}/ws?name=hono`);
    const got = [];
    c.on("message", (d) => got.push(String(d)));
    await once(c, "open");
    c.send("ping");
    while (got.length < 2) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(got, ["hello hono", "echo:ping"]);
    c.close(4000, "done");
    await once(c, "close");
    while (events.length < 3) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(events, [
      ["open", 1],
      ["message", "ping"],
      ["close", 4000, "done"],
    ]);
    // A plain GET goes on to the next handler.
    const r = await fetch(`http://127.0.0.1:${server.port}/ws`);
    assert.equal(r.status, 426);
    assert.equal(await r.text(), "not an upgrade");
  } finally {
    await server.close();
  }
});
