// Benchmark server: the Hono app of hono-app.mjs (every scenario of ../lib/scenarios.mjs as
// Hono routes) on @hono/node-server (both from bench/node_modules).
// Started by bench/run.mjs; prints "READY <port>" once listening, exits on SIGTERM.
// Run with: PORT=3000 node bench/servers/hono.mjs

import { serve } from "@hono/node-server";
import { app } from "./hono-app.mjs";

const server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: Number(process.env.PORT ?? 3000) }, (info) => {
  console.log(`READY ${info.port}`);
});

process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
});
