// The Hono app of the benchmark servers (hono.mjs on @hono/node-server, fetch-rs-hono.mjs on
// fetch-rs): every scenario of ../lib/scenarios.mjs as Hono routes, and `/app`, the API handler
// of fetch-handler.mjs written as a Hono route (a callgrind path: the path, a query parameter,
// a request header, JSON with a header of its own).

import { Hono } from "hono";

const BIG = new Uint8Array(100 * 1024).fill(0x78); // the 100 KiB response, 'x' repeated
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export const app = new Hono();
app.get("/json", (c) => c.json({ ok: true }));
app.get("/text", (c) => c.text("Hello, World!"));
app.get("/download", (c) => c.body(BIG));
app.get("/app", (c) =>
  c.json({ path: c.req.path, q: c.req.query("q"), ua: c.req.header("user-agent") }, 200, {
    "cache-control": "no-store",
  }),
);
app.get("/async", async (c) => {
  await sleep(1);
  return c.json({ ok: true });
});
app.post("/echo", async (c) => c.body(await c.req.arrayBuffer()));
app.post("/upload", async (c) => c.json({ length: (await c.req.arrayBuffer()).byteLength }));
