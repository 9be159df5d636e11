// Benchmark server, scenario S1: node:http answering every request with {"ok":true}.
// Started by bench/run.mjs; prints "READY <port>" once listening, exits on SIGTERM.
// Run with: PORT=3000 node bench/servers/node-http.mjs

import http from "node:http";

const port = Number(process.env.PORT ?? 3000);
// Serialized once: the benchmark measures the server, not JSON.stringify.
const body = Buffer.from(JSON.stringify({ ok: true }));
const headers = { "content-type": "application/json", "content-length": body.length };

const server = http.createServer((req, res) => {
  res.writeHead(200, headers);
  res.end(body);
});

server.listen(port, "127.0.0.1", () => {
  console.log(`READY ${server.address().port}`);
});

process.on("SIGTERM", () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
