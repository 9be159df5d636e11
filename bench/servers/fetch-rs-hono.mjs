// Benchmark server: the Hono app of hono-app.mjs on fetch-rs (`serve({ fetch: app.fetch })`),
// to compare what a Hono route costs on fetch-rs with the same handler written plainly
// (`node bench/instructions.mjs --servers=fetch-rs-inthread,fetch-rs-hono-inthread '--path=/app?q=1'`).
// Needs the built package (npm run build) and the peers (npm --prefix bench install).
// Prints "READY <port>" once listening, exits on SIGTERM.
// Run with: PORT=3000 node bench/servers/fetch-rs-hono.mjs

import { app } from "./hono-app.mjs";

// FETCH_RS_PACKAGE: another build's dist/index.js, relative to this file (the -base entry).
const { serve } = await import(process.env.FETCH_RS_PACKAGE ?? "../../dist/index.js");

// FETCH_RS_OPTIONS: extra options as JSON (the -inthread entries: `workerThreads: 0`).
const extra = process.env.FETCH_RS_OPTIONS ? JSON.parse(process.env.FETCH_RS_OPTIONS) : {};
const port = Number(process.env.PORT ?? 3000);
const server = serve({ hostname: "127.0.0.1", port, maxBodySize: 16 * 1024 * 1024, ...extra, fetch: app.fetch });
console.log(`READY ${server.port ?? port}`);

process.on("SIGTERM", async () => {
  await server.close();
  process.exit(0);
});
