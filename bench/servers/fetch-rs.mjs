// Benchmark server: fetch-rs in the addEventListener style, every scenario of
// ../lib/scenarios.mjs answered by the shared Fetch handler (fetch-handler.mjs).
// Needs the built package (npm run build: dist/index.js and fetch-rs.node).
// Started by bench/run.mjs; prints "READY <port>" once listening, exits on SIGTERM.
// With TLS_CERT_PEM and TLS_KEY_PEM in the environment it serves HTTPS (h2 and HTTP/1.1 by ALPN).
// Run with: PORT=3000 node bench/servers/fetch-rs.mjs

// FETCH_RS_PACKAGE: another build's dist/index.js, relative to this file (the fetch-rs-base entry).
const { Server } = await import(process.env.FETCH_RS_PACKAGE ?? "../../dist/index.js");
import { handle } from "./fetch-handler.mjs";

const port = Number(process.env.PORT ?? 3000);
// 16 MiB: room for the 1 MiB upload, pipelined 16 deep.
const tls = process.env.TLS_CERT_PEM ? { cert: process.env.TLS_CERT_PEM, key: process.env.TLS_KEY_PEM } : undefined;
// FETCH_RS_OPTIONS: extra Server options as JSON, to measure one option against the default.
const extra = process.env.FETCH_RS_OPTIONS ? JSON.parse(process.env.FETCH_RS_OPTIONS) : {};
// UNIX_PATH: listen on that Unix domain socket instead (bench/instructions.mjs --unix).
const where = process.env.UNIX_PATH ? { unix: process.env.UNIX_PATH } : { host: "127.0.0.1", port };
const server = new Server({ ...where, maxBodySize: 16 * 1024 * 1024, tls, ...extra });
server.addEventListener("fetch", (event) => event.respondWith(handle(event.request)));
await server.listen();
console.log(`READY ${server.port ?? port}`);

process.on("SIGTERM", async () => {
  await server.close();
  process.exit(0);
});
