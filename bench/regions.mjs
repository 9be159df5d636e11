// Where a server's peak RSS is, by region, under one POST scenario: /proc/PID/smaps read at
// each new highest RSS (sampled every 50 ms) under wrk -t1 -c50, and the highest
// process.memoryUsage() fields the server saw (a preload samples them every 10 ms), servers
// alternated, a fresh server per run. For large request bodies against node:http
// (docs/network-thread.md, "Large request bodies, round seven").
// Run under the bench lock, e.g.:
//   flock /tmp/bench.lock node bench/regions.mjs --servers=fetch-rs,node-http \
//     --path=/echo --body=102400 --rounds=2
// Extra environment for every server: --env=NAME=VALUE (repeatable). HTTP/2 cleartext with
// h2load instead of wrk: --h2c=STREAMS (streams per connection, e.g. 16), with node-http2 as
// the node:http2 server.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { readPeakRssKiB, readRssKiB } from "./lib/cpu.mjs";
import { postLoad, serverEntries, startWith } from "./lib/post-load.mjs";
import { stopServer } from "./lib/servers.mjs";
import { mappings } from "./lib/smaps.mjs";

const { values: o } = parseArgs({
  options: {
    servers: { type: "string", default: "fetch-rs,node-http" },
    path: { type: "string", default: "/upload" },
    body: { type: "string", default: "1048576" },
    rounds: { type: "string", default: "2" },
    duration: { type: "string", default: "4" },
    connections: { type: "string", default: "50" },
    env: { type: "string", multiple: true, default: [] },
    h2c: { type: "string" },
  },
});
const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), "regions-"));
const preload = join(dir, "usage.mjs");
// The highest of each process.memoryUsage() field, written at exit to $REGIONS_OUT.
writeFileSync(
  preload,
  `import { writeFileSync } from "node:fs";
const max = {};
setInterval(() => {
  for (const [k, v] of Object.entries(process.memoryUsage())) if (!(v <= max[k])) max[k] = v;
}, 10).unref();
process.on("exit", () => writeFileSync(process.env.REGIONS_OUT, JSON.stringify(max)));
`,
);

/** Resident MiB per kind of mapping, and the largest anonymous mapping's. */
function regions(pid) {
  const out = { "node binary": 0, "[heap]": 0, anon: 0, addon: 0, other: 0, "largest anon": 0 };
  for (const { kind, rssKiB } of mappings(pid)) {
    const mib = rssKiB / 1024;
    out[kind] += mib;
    if (kind === "anon") out["largest anon"] = Math.max(out["largest anon"], mib);
  }
  return out;
}

async function measure(entry) {
  const usageFile = join(dir, `${entry.name}.json`);
  const isNode = entry.command === "node" || entry.command === process.execPath;
  const server = await startWith(entry, o.env, {
    REGIONS_OUT: usageFile,
    ...(isNode ? { NODE_OPTIONS: `--import ${preload} ${process.env.NODE_OPTIONS ?? ""}` } : {}),
  });
  const atRest = regions(server.pid);
  let peak = { rss: 0 };
  const timer = setInterval(() => {
    const rss = readRssKiB(server.pid) / 1024;
    if (rss > peak.rss) peak = { rss, ...regions(server.pid) };
  }, 50);
  let requests;
  try {
    ({ requests } = await postLoad(server.port, o, Number(o.duration)));
  } finally {
    clearInterval(timer);
  }
  const hwm = readPeakRssKiB(server.pid) / 1024;
  await stopServer(server);
  let usage = {};
  try {
    usage = JSON.parse(readFileSync(usageFile, "utf8"));
  } catch {}
  return { requests, hwm, atRest, peak, usage };
}

const entries = serverEntries(o.servers);
const f = (v) => (v === undefined ? "-" : v.toFixed(1));
const rows = [];
try {
  for (let r = 0; r < Number(o.rounds); r++) {
    for (const e of r % 2 === 0 ? entries : [...entries].reverse()) {
      const m = await measure(e);
      rows.push({ name: e.name, round: r + 1, ...m });
      console.error(`round ${r + 1} ${e.name}: ${m.requests} requests, VmHWM ${f(m.hwm)} MiB`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(
  `\nPOST ${o.path} with ${o.body} bytes, ${o.h2c ? `h2load -c${o.connections} -m${o.h2c}` : `wrk -c${o.connections}`}, ` +
    `${o.duration} s; MiB resident at the highest RSS sampled`,
);
console.log(
  `\n| server | round | VmHWM | at rest | node binary | [heap] | anon (largest) | addon | other | arrayBuffers max | heapTotal max |`,
);
console.log(`|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|`);
for (const x of rows) {
  const p = x.peak;
  const rest = Object.entries(x.atRest)
    .filter(([k]) => k !== "largest anon")
    .reduce((a, [, v]) => a + v, 0);
  console.log(
    `| ${x.name} | ${x.round} | ${f(x.hwm)} | ${f(rest)} | ${f(p["node binary"])} | ${f(p["[heap]"])} | ` +
      `${f(p.anon)} (${f(p["largest anon"])}) | ${f(p.addon)} | ${f(p.other)} | ` +
      `${f(x.usage.arrayBuffers && x.usage.arrayBuffers / MiB)} | ${f(x.usage.heapTotal && x.usage.heapTotal / MiB)} |`,
  );
}
