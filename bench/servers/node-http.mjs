// Benchmark server: node:http, every scenario of ../lib/scenarios.mjs in node:http's own idiom
// (req/res, Buffer bodies). The baseline every other server's req/s is divided by. With --h2c
// the same handler runs on node:http2's createServer (HTTP/2 prior knowledge, compatibility API):
// the baseline of the h2c mode.
// Started by bench/run.mjs; prints "READY <port>" once listening, exits on SIGTERM.
// --https: node:https (HTTP/1.1 over TLS), --h2: node:http2 createSecureServer (HTTP/2 over TLS),
// both with the certificate in TLS_CERT_PEM / TLS_KEY_PEM: the baselines of the TLS modes.
// Run with: PORT=3000 node bench/servers/node-http.mjs [--h2c | --https | --h2]

import http from "node:http";
import http2 from "node:http2";
import https from "node:https";

const port = Number(process.env.PORT ?? 3000);
const BIG = Buffer.alloc(100 * 1024, 0x78); // the 100 KiB response, 'x' repeated
const TEXT = "Hello, World!";

function send(res, status, type, body) {
  const headers = { "content-length": Buffer.byteLength(body) };
  if (type) headers["content-type"] = type;
  res.writeHead(status, headers);
  res.end(body);
}

function readBody(req, done) {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => done(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
}

function onRequest(req, res) {
  const url = req.url;
  const query = url.indexOf("?");
  const path = query < 0 ? url : url.slice(0, query);
  if (req.method === "GET") {
    switch (path) {
      case "/json":
        return send(res, 200, "application/json", JSON.stringify({ ok: true }));
      case "/text":
        return send(res, 200, "text/plain;charset=UTF-8", TEXT);
      case "/download":
        return send(res, 200, null, BIG);
      case "/async":
        return void setTimeout(() => send(res, 200, "application/json", JSON.stringify({ ok: true })), 1);
    }
  } else if (req.method === "POST") {
    switch (path) {
      case "/echo":
        return readBody(req, (body) => send(res, 200, null, body));
      case "/upload":
        return readBody(req, (body) => send(res, 200, "application/json", JSON.stringify({ length: body.length })));
    }
  }
  send(res, 404, "text/plain;charset=UTF-8", "Not Found");
}

const h2c = process.argv.includes("--h2c");
const tls = { cert: process.env.TLS_CERT_PEM, key: process.env.TLS_KEY_PEM };
const server = process.argv.includes("--https")
  ? https.createServer(tls, onRequest)
  : process.argv.includes("--h2")
    ? http2.createSecureServer(tls, onRequest)
    : h2c
      ? http2.createServer(onRequest)
      : http.createServer(onRequest);

server.listen(port, "127.0.0.1", () => {
  console.log(`READY ${server.address().port}`);
});

process.on("SIGTERM", () => {
  server.closeAllConnections?.(); // node:http2 servers have no such method
  server.close(() => process.exit(0));
  // node:http2 waits for open sessions to end: do not wait for the load generator.
  setTimeout(() => process.exit(0), 500).unref();
});
