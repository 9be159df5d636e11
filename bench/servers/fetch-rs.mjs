// Benchmark server, scenario S1: fetch-rs answering every request with Response.json({ ok: true }).
// Needs the built package (npm run build: dist/index.js and fetch-rs.node).
// Started by bench/run.mjs; prints "READY <port>" once listening, exits on SIGTERM.
// Run with: PORT=3000 node bench/servers/fetch-rs.mjs

import { Server, Response } from "../../dist/index.js";

const port = Number(process.env.PORT ?? 3000);
const server = new Server({ host: "127.0.0.1", port });
server.addEventListener("fetch", (event) => event.respondWith(Response.json({ ok: true })));
await server.listen();
console.log(`READY ${server.port ?? port}`);

process.on("SIGTERM", async () => {
  await server.close();
  process.exit(0);
});
