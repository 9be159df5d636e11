// Benchmark server: fetch-rs in the serve({ fetch }) style (the shape Bun, Deno and Hono use),
// every scenario of ../lib/scenarios.mjs answered by the shared Fetch handler (fetch-handler.mjs).
// Needs the built package (npm run build: dist/index.js and fetch-rs.node).
// Started by bench/run.mjs; prints "READY <port>" once listening, exits on SIGTERM.
// Run with: PORT=3000 node bench/servers/fetch-rs-serve.mjs

import { serve } from "../../dist/index.js";
import { handle } from "./fetch-handler.mjs";

const port = Number(process.env.PORT ?? 3000);
const server = serve({ hostname: "127.0.0.1", port, maxBodySize: 16 * 1024 * 1024, fetch: handle });
console.log(`READY ${server.port ?? port}`);

process.on("SIGTERM", async () => {
  await server.close();
  process.exit(0);
});
