// Benchmark server: fastify (from bench/node_modules), every scenario of ../lib/scenarios.mjs
// as fastify routes. Request bodies arrive as Buffers (application/octet-stream parser).
// Started by bench/run.mjs; prints "READY <port>" once listening, exits on SIGTERM.
// Run with: PORT=3000 node bench/servers/fastify.mjs

import Fastify from "fastify";

const BIG = Buffer.alloc(100 * 1024, 0x78); // the 100 KiB response, 'x' repeated
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// 16 MiB: room for the 1 MiB upload (fastify's default limit is exactly 1 MiB).
const app = Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024 });
app.addContentTypeParser("application/octet-stream", { parseAs: "buffer" }, (req, body, done) => done(null, body));

app.get("/json", (req, reply) => {
  reply.send({ ok: true });
});
app.get("/text", (req, reply) => {
  reply.type("text/plain;charset=UTF-8").send("Hello, World!");
});
app.get("/download", (req, reply) => {
  reply.send(BIG);
});
app.get("/async", async () => {
  await sleep(1);
  return { ok: true };
});
app.post("/echo", (req, reply) => {
  reply.send(req.body);
});
app.post("/upload", (req, reply) => {
  reply.send({ length: req.body.length });
});

const address = await app.listen({ host: "127.0.0.1", port: Number(process.env.PORT ?? 3000) });
console.log(`READY ${new URL(address).port}`);

process.on("SIGTERM", async () => {
  await app.close();
  process.exit(0);
});
