// Memory an idle keep-alive connection costs a server: opens N connections, one request
// each, leaves them open and idle, and reports the server's RSS growth per connection,
// for fetch-rs and node:http, each in its own child process.
// Run with: node scripts/idle-memory.mjs [--connections 10000] [--only fetch-rs|node]
// (built dist/ and fetch-rs.node; needs N + 100 file descriptors: `ulimit -n`.)
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import net from "node:net";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { connections: { type: "string", default: "10000" }, only: { type: "string" } },
});
const N = Number(values.connections);
const dist = JSON.stringify(new URL("../dist/index.js", import.meta.url).href);

// Both servers answer "ok" and never close an idle connection themselves.
const servers = {
  "fetch-rs": `
    import { Server, Response } from ${dist};
    const server = new Server({ port: 0, host: "127.0.0.1", headerTimeout: 0, idleTimeout: 0, maxConnections: 1e6 });
    server.addEventListener("fetch", (e) => e.respondWith(new Response("ok")));
    await server.listen();
    console.log("listening " + server.port);
  `,
  node: `
    import http from "node:http";
    const server = http.createServer((req, res) => res.end("ok"));
    server.keepAliveTimeout = 0;
    server.headersTimeout = 0;
    server.requestTimeout = 0;
    server.listen(0, "127.0.0.1", () => console.log("listening " + server.address().port));
  `,
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);

/** Opens a connection, sends one request and resolves once the response has arrived. */
function idleConnection(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    let got = "";
    s.setEncoding("latin1");
    const onData = (d) => {
      got += d;
      if (got.endsWith("ok")) {
        s.off("data", onData);
        resolve(s);
      }
    };
    s.on("data", onData);
    s.on("error", reject);
  });
}

async function measure(name) {
  const child = spawn(process.execPath, ["--input-type=module", "-e", servers[name]], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  while (!/listening \d+/.test(out)) {
    if (child.exitCode !== null) throw new Error(`${name} did not start`);
    await sleep(20);
  }
  const port = Number(/listening (\d+)/.exec(out)[1]);
  // Warm up (JIT, allocator pools, runtime threads) with short-lived connections first.
  for (let i = 0; i < 200; i++) (await idleConnection(port)).destroy();
  await sleep(500);
  const before = rssKiB(child.pid);
  const sockets = [];
  for (let i = 0; i < N; i += 200) {
    const batch = Array.from({ length: Math.min(200, N - i) }, () => idleConnection(port));
    sockets.push(...(await Promise.all(batch)));
  }
  // fetch-rs releases an idle connection's hyper buffers after 2-3 s of quiet.
  await sleep(4000);
  const after = rssKiB(child.pid);
  for (const s of sockets) s.destroy();
  child.kill();
  await once(child, "exit");
  return { name, before, after, perConnection: (after - before) / N };
}

const results = [];
for (const name of Object.keys(servers)) {
  if (values.only && values.only !== name) continue;
  results.push(await measure(name));
}
console.log(`${N} idle keep-alive connections, one request each (RSS of the server process)`);
console.log("| server | RSS before (MiB) | RSS with the connections (MiB) | growth per connection (KiB) |");
console.log("|---|---:|---:|---:|");
for (const r of results) {
  console.log(`| ${r.name} | ${(r.before / 1024).toFixed(1)} | ${(r.after / 1024).toFixed(1)} | ${r.perConnection.toFixed(1)} |`);
}
