// Benchmark server: fetch-rs in the addEventListener style, every scenario of
// ../lib/scenarios.mjs answered by the shared Fetch handler (fetch-handler.mjs).
// Needs the built package (npm run build: dist/index.js and fetch-rs.node).
// Started by bench/run.mjs; prints "READY <port>" once listening, exits on SIGTERM.
// Run with: PORT=3000 node bench/servers/fetch-rs.mjs

// FETCH_RS_PACKAGE: another build's dist/index.js, relative to this file (the fetch-rs-base entry).
const { Server } = await import(process.env.FETCH_RS_PACKAGE ?? "../../dist/index.js");
import { handle } from "./fetch-handler.mjs";

const port = Number(process.env.PORT ?? 3000);
// 16 MiB: room for the 1 MiB upload, pipelined 16 deep.
const server = new Server({ host: "127.0.0.1", port, maxBodySize: 16 * 1024 * 1024 });
server.addEventListener("fetch", (event) => event.respondWith(handle(event.request)));
await server.listen();
console.log(`READY ${server.port ?? port}`);

process.on("SIGTERM", async () => {
  await server.close();
  process.exit(0);
});
