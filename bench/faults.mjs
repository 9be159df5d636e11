// CPU, page faults and peak RSS per request of one POST scenario, servers alternated, a fresh
// server per run: user and system time and minor faults from /proc/PID/stat over the measured
// run, peak RSS from VmHWM (reset before it), the other work on the server's core from
// /proc/stat. For the allocator's and V8's share of large request bodies, which bench/run.mjs
// does not report (docs/network-thread.md, "Large request bodies, round six").
// Run under the bench lock, e.g.:
//   flock /tmp/bench.lock node bench/faults.mjs --servers=fetch-rs,fetch-rs-base,node-http \
//     --path=/upload --body=1048576 --rounds=3
// Extra environment for every server: --env=NAME=VALUE (repeatable).

import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { SERVERS } from "./lib/servers.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const { values: o } = parseArgs({
  options: {
    servers: { type: "string", default: "fetch-rs,fetch-rs-base,node-http" },
    path: { type: "string", default: "/upload" },
    body: { type: "string", default: "1048576" },
    rounds: { type: "string", default: "3" },
    duration: { type: "string", default: "3" },
    warmup: { type: "string", default: "1" },
    connections: { type: "string", default: "50" },
    env: { type: "string", multiple: true, default: [] },
  },
});
const extraEnv = Object.fromEntries(o.env.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
const TICK_US = 1e6 / Number(execFileSync("getconf", ["CLK_TCK"]).toString());

function procStat(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  // Fields from the 3rd: state(3) ... minflt(10) majflt(12) utime(14) stime(15).
  return { minflt: Number(rest[7]), majflt: Number(rest[9]), utime: Number(rest[11]), stime: Number(rest[12]) };
}

function core0Busy() {
  const line = readFileSync("/proc/stat", "utf8")
    .split("\n")
    .find((l) => l.startsWith("cpu0 "));
  const v = line.split(/\s+/).slice(1).map(Number);
  return { busy: v[0] + v[1] + v[2] + v[5] + v[6] + v[7], total: v.reduce((a, b) => a + b, 0) };
}

async function start(entry, port) {
  const child = spawn("taskset", ["-c", "0", entry.command, ...entry.args], {
    cwd: ROOT,
    env: { ...process.env, ...(entry.env ?? {}), ...extraEnv, PORT: String(port) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("READY")) resolve();
    });
    child.on("exit", (c) => reject(new Error(`${entry.name} exited ${c}`)));
  });
  return child;
}

function wrk(port, seconds) {
  const out = execFileSync(
    "taskset",
    [
      "-c",
      "1",
      "wrk",
      "-t1",
      `-c${o.connections}`,
      `-d${seconds}s`,
      "-s",
      "bench/request.lua",
      `http://127.0.0.1:${port}/`,
      "--",
      "POST",
      o.path,
      o.body,
    ],
    { cwd: ROOT },
  ).toString();
  const m = /(\d+) requests in/.exec(out);
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(out);
  return { requests: Number(m[1]), errors: errors ? errors[0] : "" };
}

const entries = o.servers.split(",").map((n) => {
  const e = SERVERS.find((s) => s.name === n);
  if (!e) throw new Error(`no server ${n}`);
  return e;
});
const rows = new Map(entries.map((e) => [e.name, []]));
/** A port nothing listens on now. */
async function freePort() {
  const probe = createServer();
  await new Promise((res) => probe.listen(0, "127.0.0.1", res));
  const { port } = probe.address();
  await new Promise((res) => probe.close(res));
  return port;
}

for (let r = 0; r < Number(o.rounds); r++) {
  for (const e of r % 2 === 0 ? entries : [...entries].reverse()) {
    const port = await freePort();
    const child = await start(e, port);
    try {
      wrk(port, Number(o.warmup));
      execFileSync("sh", ["-c", `echo 5 > /proc/${child.pid}/clear_refs`]);
      const s0 = procStat(child.pid);
      const c0 = core0Busy();
      const { requests, errors } = wrk(port, Number(o.duration));
      const s1 = procStat(child.pid);
      const c1 = core0Busy();
      const hwm = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))[1]);
      const per = (d) => (d * TICK_US) / requests;
      const ownTicks = s1.utime + s1.stime - s0.utime - s0.stime;
      const other = Math.max(0, (c1.busy - c0.busy - ownTicks) / (c1.total - c0.total));
      const row = {
        requests,
        user: per(s1.utime - s0.utime),
        sys: per(s1.stime - s0.stime),
        faults: (s1.minflt - s0.minflt + s1.majflt - s0.majflt) / requests,
        peakMiB: hwm / 1024,
        other: other * 100,
        errors,
      };
      rows.get(e.name).push(row);
      console.log(
        `round ${r + 1} ${e.name}: ${requests} req, ${(row.user + row.sys).toFixed(0)} us/req ` +
          `(${row.user.toFixed(0)} user + ${row.sys.toFixed(0)} sys), ${row.faults.toFixed(1)} faults/req, ` +
          `peak ${row.peakMiB.toFixed(0)} MiB, other on core 0 ${row.other.toFixed(0)}% ${errors}`,
      );
    } finally {
      child.kill("SIGTERM");
      await new Promise((res) => child.on("exit", res));
    }
  }
}
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const span = (xs) => `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}`;
console.log(`\n| server | CPU us/req median (range) | faults/req | peak RSS MiB | other on core 0 % |`);
console.log(`|---|---:|---:|---:|---:|`);
for (const [name, rs] of rows) {
  const cpu = rs.map((x) => x.user + x.sys);
  console.log(
    `| ${name} | ${med(cpu).toFixed(0)} (${span(cpu)}) | ${med(rs.map((x) => x.faults)).toFixed(1)} ` +
      `(${rs.map((x) => x.faults.toFixed(1)).join(", ")}) | ${med(rs.map((x) => x.peakMiB)).toFixed(0)} (${span(rs.map((x) => x.peakMiB))}) ` +
      `| ${span(rs.map((x) => x.other))} |`,
  );
}
