// Benchmark server: a Hono app on @hono/node-server (both from bench/node_modules), every
// scenario of ../lib/scenarios.mjs as Hono routes.
// Started by bench/run.mjs; prints "READY <port>" once listening, exits on SIGTERM.
// Run with: PORT=3000 node bench/servers/hono.mjs

import { serve } from "@hono/node-server";
import { Hono } from "hono";

const BIG = new Uint8Array(100 * 1024).fill(0x78); // the 100 KiB response, 'x' repeated
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const app = new Hono();
app.get("/json", (c) => c.json({ ok: true }));
app.get("/text", (c) => c.text("Hello, World!"));
app.get("/download", (c) => c.body(BIG));
app.get("/async", async (c) => {
  await sleep(1);
  return c.json({ ok: true });
});
app.post("/echo", async (c) => c.body(await c.req.arrayBuffer()));
app.post("/upload", async (c) => c.json({ length: (await c.req.arrayBuffer()).byteLength }));

const server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: Number(process.env.PORT ?? 3000) }, (info) => {
  console.log(`READY ${info.port}`);
});

process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
});
