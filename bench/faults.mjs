// CPU, page faults and peak RSS per request of one POST scenario, servers alternated, a fresh
// server per run: user and system time and minor faults from /proc/PID/stat over the measured
// run, peak RSS from VmHWM (reset before it), the other work on the server's core from
// /proc/stat. For the allocator's and V8's share of large request bodies, which bench/run.mjs
// does not report (docs/network-thread.md, "Large request bodies, round six").
// Run under the bench lock, e.g.:
//   flock /tmp/bench.lock node bench/faults.mjs --servers=fetch-rs,fetch-rs-base,node-http \
//     --path=/upload --body=1048576 --rounds=3
// Extra environment for every server: --env=NAME=VALUE (repeatable).

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { clockTicksPerSecond, readPeakRssKiB, resetPeakRss } from "./lib/cpu.mjs";
import { postLoad, serverEntries, startWith } from "./lib/post-load.mjs";
import { stopServer } from "./lib/servers.mjs";

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
const TICK_US = 1e6 / clockTicksPerSecond();

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

const entries = serverEntries(o.servers);
const rows = new Map(entries.map((e) => [e.name, []]));
for (let r = 0; r < Number(o.rounds); r++) {
  for (const e of r % 2 === 0 ? entries : [...entries].reverse()) {
    const server = await startWith(e, o.env);
    const pid = server.pid;
    try {
      await postLoad(server.port, o, Number(o.warmup));
      resetPeakRss(pid);
      const s0 = procStat(pid);
      const c0 = core0Busy();
      const { requests, errors } = await postLoad(server.port, o, Number(o.duration));
      const s1 = procStat(pid);
      const c1 = core0Busy();
      const hwm = readPeakRssKiB(pid);
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
      await stopServer(server);
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
