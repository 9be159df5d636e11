// Benchmark server: a Hono app on fetch-rs (`serve({ fetch: app.fetch })`), the routes of
// hono.mjs plus `/app`, the API handler of fetch-handler.mjs written as a Hono route, to
// compare what a Hono route costs on fetch-rs with the same handler written plainly
// (`node bench/instructions.mjs --servers=fetch-rs-inthread,fetch-rs-hono-inthread '--path=/app?q=1'`).
// Needs the built package (npm run build) and the peers (npm --prefix bench install).
// Prints "READY <port>" once listening, exits on SIGTERM.
// Run with: PORT=3000 node bench/servers/fetch-rs-hono.mjs

import { Hono } from "hono";

// FETCH_RS_PACKAGE: another build's dist/index.js, relative to this file (the -base entry).
const { serve } = await import(process.env.FETCH_RS_PACKAGE ?? "../../dist/index.js");

const BIG = new Uint8Array(100 * 1024).fill(0x78); // the 100 KiB response, 'x' repeated
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const app = new Hono();
app.get("/json", (c) => c.json({ ok: true }));
app.get("/text", (c) => c.text("Hello, World!"));
app.get("/download", (c) => c.body(BIG));
// fetch-handler.mjs's `/app` in Hono's words: the path, a query parameter, a request header,
// JSON with a header of its own.
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

// FETCH_RS_OPTIONS: extra options as JSON (the -inthread entries: `workerThreads: 0`).
const extra = process.env.FETCH_RS_OPTIONS ? JSON.parse(process.env.FETCH_RS_OPTIONS) : {};
const port = Number(process.env.PORT ?? 3000);
const server = serve({ hostname: "127.0.0.1", port, maxBodySize: 16 * 1024 * 1024, ...extra, fetch: app.fetch });
console.log(`READY ${server.port ?? port}`);

process.on("SIGTERM", async () => {
  await server.close();
  process.exit(0);
});
