// ApacheBench (`ab`, apt package apache2-utils) against servers by name: HTTP/1.0 requests,
// with keep-alive (`ab -k`, `Connection: Keep-Alive`) unless --close. The server is pinned to
// core 0, ab to core 1; per server, per round: requests per second (ab's figure) and the
// server's CPU per request (user+system from /proc/PID/stat around the run). Servers run in
// turn, round after round; take /tmp/bench.lock around it. Linux only (/proc, taskset).
// Run with: flock /tmp/bench.lock node bench/ab.mjs [servers] [rounds] [requests] [path] [--close]
//   e.g.    flock /tmp/bench.lock node bench/ab.mjs fetch-rs,fetch-rs-base,node-http,bun,deno 3 300000 /text
import { execFileSync } from "node:child_process";
import { clockTicksPerSecond, readCpuTicks } from "./lib/cpu.mjs";
import { serverByName, startServer, stopServer } from "./lib/servers.mjs";

const args = process.argv.slice(2).filter((a) => a !== "--close");
const keepAlive = !process.argv.includes("--close");
const names = (args[0] ?? "fetch-rs,node-http").split(",");
const rounds = Number(args[1] ?? 3);
const requests = Number(args[2] ?? 300000);
const path = args[3] ?? "/text";
const root = new URL("..", import.meta.url).pathname;
const tick = clockTicksPerSecond();
const cpu = (pid) => readCpuTicks(`/proc/${pid}/stat`);

/** One ab run: its output (ab exits non-zero when a request fails). */
const ab = (url, n) =>
  execFileSync("taskset", ["-c", "1", "ab", ...(keepAlive ? ["-k"] : []), "-q", "-c", "50", "-n", String(n), url], {
    maxBuffer: 1 << 20,
  }).toString();

const res = {};
for (let r = 0; r < rounds; r++) {
  for (const n of names) {
    const entry = serverByName(n);
    const srv = await startServer(entry, { root, pinCore: 0 });
    const url = `http://127.0.0.1:${srv.port}${path}`;
    ab(url, Math.min(requests, 30000)); // warm-up
    const before = cpu(srv.pid);
    const out = ab(url, requests);
    const used = cpu(srv.pid) - before;
    const rps = Number(/Requests per second:\s+([\d.]+)/.exec(out)[1]);
    const failed = Number(/Failed requests:\s+(\d+)/.exec(out)[1]);
    const kept = Number(/Keep-Alive requests:\s+(\d+)/.exec(out)?.[1] ?? 0);
    if (failed > 0) throw new Error(`${n}: ${failed} failed\n${out}`);
    const us = ((used / tick) * 1e6) / requests;
    // A server that does not keep a 1.0 connection (no `connection: keep-alive`) makes ab
    // open one a request: said, as it is another benchmark.
    const note = keepAlive && kept < requests ? ` (${((kept / requests) * 100).toFixed(0)}% kept alive)` : "";
    (res[n] ??= []).push(`${Math.round(rps)} req/s ${us.toFixed(2)} us/req${note}`);
    await stopServer(srv);
  }
}
console.log(`ab ${keepAlive ? "-k " : ""}-c 50 -n ${requests} ${path}, ${rounds} rounds`);
for (const n of names) console.log(n.padEnd(16), res[n].join("  |  "));
process.exit(0);
