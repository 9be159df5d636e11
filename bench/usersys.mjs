// User and system CPU per request, read from /proc/PID/stat around a wrk run: the server pinned
// to core 0, `wrk -t1 -c50` (keep-alive, one request at a time per connection) on core 1. The
// split tells user-space work (the server's own code) from the kernel's (the syscalls and the
// loopback path, about the same for every server), which `bench/run.mjs`'s process CPU sums.
// Servers run in turn, round after round (alternated A/B); take /tmp/bench.lock around it.
// Linux only (needs /proc, taskset and wrk).
// A TLS server (an entry with `tls`, or a name with a "-tls" suffix, as bench/instructions.mjs
// derives them: fetch-rs-base-inthread-tls) is loaded over HTTPS/1.1 (wrk, keep-alive).
// Run with: flock /tmp/bench.lock node bench/usersys.mjs [servers] [rounds] [path]
//   e.g.    flock /tmp/bench.lock node bench/usersys.mjs fetch-rs-inthread,fetch-rs-inthread-base,deno 5 /json
// Prints per server, per round: user+system=total microseconds per request, and [other: the
// percentage of core 0 that other processes used meanwhile (its busy time in /proc/stat less
// the server's)].
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { serverByName, startServer, stopServer } from "./lib/servers.mjs";

const names = (process.argv[2] ?? "fetch-rs,deno,hyper").split(",");
const rounds = Number(process.argv[3] ?? 3);
const path = process.argv[4] ?? "/json";
const root = new URL("..", import.meta.url).pathname;
// Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ).
const tick = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

/** Busy ticks of core 0 (all but idle and iowait). */
function core0() {
  const line = readFileSync("/proc/stat", "utf8")
    .split("\n")
    .find((l) => l.startsWith("cpu0 "));
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  return v.reduce((a, b) => a + b, 0) - v[3] - v[4];
}

function cpu(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return { u: Number(f[11]), s: Number(f[12]) };
}


const res = {};
for (let r = 0; r < rounds; r++) {
  for (const n of names) {
    const entry = serverByName(n);
    const srv = await startServer(entry, { root, pinCore: 0 });
    const url = `${entry.tls ? "https" : "http"}://127.0.0.1:${srv.port}${path}`;
    execFileSync("taskset", ["-c", "1", "wrk", "-t1", "-c50", "-d1s", url]); // warm-up
    const a = cpu(srv.pid);
    const c0 = core0();
    const t0 = performance.now();
    const out = execFileSync("taskset", ["-c", "1", "wrk", "-t1", "-c50", "-d4s", url]).toString();
    const b = cpu(srv.pid);
    const other = ((core0() - c0 - (b.u - a.u) - (b.s - a.s)) / tick / ((performance.now() - t0) / 1000)) * 100;
    const reqs = Number(/(\d+) requests in/.exec(out)[1]);
    const u = (((b.u - a.u) / tick) * 1e6) / reqs;
    const s = (((b.s - a.s) / tick) * 1e6) / reqs;
    (res[n] ??= []).push(`${u.toFixed(2)}+${s.toFixed(2)}=${(u + s).toFixed(2)} [${Math.max(0, other).toFixed(0)}%]`);
    await stopServer(srv);
  }
}
for (const n of names) console.log(n.padEnd(24), res[n].join("  "));
process.exit(0);
