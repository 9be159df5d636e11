// V8's garbage collections per request under one POST scenario: scavenges, mark-compacts,
// scavenges that start within 2 ms of the end of the one before (back to back: they promote
// whatever the first one found alive), and the collections' pause time, counted by a preload
// (a PerformanceObserver of `gc` entries) over the measured run only, with the highest
// `arrayBuffers` of process.memoryUsage() and the peak RSS (VmHWM, reset before the run).
// The same load as bench/faults.mjs (a fresh server per run on core 0, wrk -t1 -c50 on core 1,
// 1 s of warm-up), servers alternated. Node servers only. For large request bodies against
// node:http (docs/network-thread.md, "Large request bodies, round nine").
// Run under the bench lock, e.g.:
//   flock /tmp/bench.lock node bench/gc.mjs --servers=fetch-rs,fetch-rs-base,node-http \
//     --path=/upload --body=1048576 --rounds=3
// Extra environment for every server: --env=NAME=VALUE (repeatable).

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { readPeakRssKiB, resetPeakRss } from "./lib/cpu.mjs";
import { postLoad, serverEntries, startWith } from "./lib/post-load.mjs";
import { stopServer } from "./lib/servers.mjs";

const { values: o } = parseArgs({
  options: {
    servers: { type: "string", default: "fetch-rs,node-http" },
    path: { type: "string", default: "/upload" },
    body: { type: "string", default: "1048576" },
    rounds: { type: "string", default: "3" },
    duration: { type: "string", default: "3" },
    warmup: { type: "string", default: "1" },
    connections: { type: "string", default: "50" },
    env: { type: "string", multiple: true, default: [] },
  },
});
const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), "gc-"));
const preload = join(dir, "gc.mjs");
// Counts from the SIGUSR2 that starts the measured run; written at exit to $GC_OUT.
writeFileSync(
  preload,
  `import { writeFileSync } from "node:fs";
import { constants, PerformanceObserver } from "node:perf_hooks";
let c = null;
const reset = () => (c = { scavenges: 0, markCompacts: 0, backToBack: 0, pauseMs: 0, arrayBuffers: 0, lastEnd: -1e9 });
reset();
process.on("SIGUSR2", reset);
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = e.detail?.kind ?? e.kind;
    if (kind === constants.NODE_PERFORMANCE_GC_MINOR) {
      c.scavenges++;
      if (e.startTime - c.lastEnd <= 2) c.backToBack++;
    } else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) c.markCompacts++;
    c.pauseMs += e.duration;
    c.lastEnd = e.startTime + e.duration;
  }
}).observe({ entryTypes: ["gc"] });
setInterval(() => {
  const a = process.memoryUsage().arrayBuffers;
  if (a > c.arrayBuffers) c.arrayBuffers = a;
}, 10).unref();
process.on("exit", () => writeFileSync(process.env.GC_OUT, JSON.stringify(c)));
`,
);

async function measure(entry) {
  const out = join(dir, `${entry.name}.json`);
  const server = await startWith(entry, o.env, {
    GC_OUT: out,
    NODE_OPTIONS: `--import ${preload} ${process.env.NODE_OPTIONS ?? ""}`,
  });
  let requests;
  let hwm;
  try {
    await postLoad(server.port, o, Number(o.warmup));
    resetPeakRss(server.pid);
    process.kill(server.pid, "SIGUSR2");
    ({ requests } = await postLoad(server.port, o, Number(o.duration)));
    hwm = readPeakRssKiB(server.pid) / 1024;
  } finally {
    await stopServer(server);
  }
  return { requests, hwm, ...JSON.parse(readFileSync(out, "utf8")) };
}

const entries = serverEntries(o.servers);
const rows = [];
try {
  for (let r = 0; r < Number(o.rounds); r++) {
    for (const e of r % 2 === 0 ? entries : [...entries].reverse()) {
      const m = await measure(e);
      rows.push({ name: e.name, round: r + 1, ...m });
      console.error(`round ${r + 1} ${e.name}: ${m.requests} requests, ${m.markCompacts} mark-compacts`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`\nPOST ${o.path} with ${o.body} bytes, wrk -c${o.connections}, ${o.duration} s measured`);
console.log(
  `\n| server | round | requests | scavenges | back to back | mark-compacts | GC pause us/req | arrayBuffers max MiB | peak RSS MiB |`,
);
console.log(`|---|---:|---:|---:|---:|---:|---:|---:|---:|`);
for (const x of rows) {
  console.log(
    `| ${x.name} | ${x.round} | ${x.requests} | ${x.scavenges} | ${x.backToBack} | ${x.markCompacts} | ` +
      `${((x.pauseMs * 1000) / x.requests).toFixed(1)} | ${(x.arrayBuffers / MiB).toFixed(1)} | ${x.hwm.toFixed(0)} |`,
  );
}
