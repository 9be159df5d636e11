// The Hono adapter (lib/hono.ts): Hono's upgradeWebSocket() helper on fetch-rs.
import assert from "node:assert/strict";
import { once } from "node:events";
import { test } from "node:test";
import { Hono } from "hono";
import WebSocket from "ws";
import { serve } from "../dist/index.js";
import { upgradeWebSocket } from "../dist/hono.js";

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
