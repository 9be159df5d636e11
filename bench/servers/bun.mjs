// Benchmark server: Bun.serve, every scenario of ../lib/scenarios.mjs answered by the shared
// Fetch handler (fetch-handler.mjs). Run by the bun binary from the bun npm package.
// Started by bench/run.mjs; prints "READY <port>" once listening, exits on SIGTERM.
// Run with: PORT=3000 bench/node_modules/.bin/bun bench/servers/bun.mjs

import { handle } from "./fetch-handler.mjs";

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.env.PORT ?? 3000),
  maxRequestBodySize: 16 * 1024 * 1024,
  fetch: handle,
  // With TLS_CERT_PEM / TLS_KEY_PEM: HTTPS (the bun-tls entry).
  tls: process.env.TLS_CERT_PEM ? { cert: process.env.TLS_CERT_PEM, key: process.env.TLS_KEY_PEM } : undefined,
});
console.log(`READY ${server.port}`);

process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
