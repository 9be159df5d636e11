// A server's memory at rest, mapping by mapping: each server started as bench/regions.mjs starts
// it (pinned to core 0, so fetch-rs's default is the network on the JS thread), left alone for
// --wait milliseconds after READY, then /proc/PID/smaps read, servers alternated, a fresh server
// per round. Resident KiB per segment of the node binary and of the addon (by permissions and
// file offset), and in all for anonymous mappings, `[heap]` and other files; the addon's
// relocated data shows as its dirty read-only segment. For where the memory before the first
// request goes (docs/network-thread.md, "Memory at rest and at peak, round eighteen").
// No load is sent, so it needs no lock, but a busy machine does not change what is resident:
//   node bench/rest.mjs --servers=fetch-rs,fetch-rs-base,node-http --rounds=3

import { parseArgs } from "node:util";
import { readRssKiB } from "./lib/cpu.mjs";
import { serverEntries, startWith } from "./lib/post-load.mjs";
import { stopServer } from "./lib/servers.mjs";
import { mappings } from "./lib/smaps.mjs";

const { values: o } = parseArgs({
  options: {
    servers: { type: "string", default: "fetch-rs,node-http" },
    rounds: { type: "string", default: "3" },
    wait: { type: "string", default: "1500" },
  },
});

/** Resident KiB by row: node binary and addon segments, anonymous, [heap], other files, VmRSS. */
function rest(pid) {
  const rows = {};
  for (const { perm, offset, kind, rssKiB } of mappings(pid)) {
    const row =
      kind === "node binary" || kind === "addon" ? `${kind} ${perm} ${offset}` : kind === "anon" ? "anonymous" : kind;
    rows[row] = (rows[row] ?? 0) + rssKiB;
  }
  rows.VmRSS = readRssKiB(pid);
  return rows;
}

const entries = serverEntries(o.servers);
const results = entries.map(() => []);
for (let r = 0; r < Number(o.rounds); r++) {
  const order = entries.map((_, i) => i);
  for (const i of r % 2 === 0 ? order : order.reverse()) {
    const server = await startWith(entries[i], []);
    try {
      await new Promise((done) => setTimeout(done, Number(o.wait)));
      results[i].push(rest(server.pid));
    } finally {
      await stopServer(server);
    }
    console.error(`round ${r + 1} ${entries[i].name}: VmRSS ${results[i].at(-1).VmRSS} KiB`);
  }
}

// The addon's segments differ in offset between builds: numbered in order instead.
const named = (rows) => {
  const out = {};
  let n = 0;
  for (const [k, v] of Object.entries(rows)) {
    if (k.startsWith("addon ")) out[`addon segment ${++n} (${k.split(" ")[1]})`] = v;
    else out[k] = v;
  }
  return out;
};
const all = results.map((rounds) => rounds.map(named));
const keys = [...new Set(all.flat().flatMap((rows) => Object.keys(rows)))].sort((a, b) =>
  a === "VmRSS" ? -1 : b === "VmRSS" ? 1 : a.localeCompare(b),
);
const range = (vs) => {
  const lo = Math.min(...vs);
  const hi = Math.max(...vs);
  return lo === hi ? String(lo) : `${lo}-${hi}`;
};
console.log(`\nResident KiB at rest, ${o.wait} ms after READY, ${o.rounds} rounds (lowest-highest)\n`);
console.log(`| mapping | ${entries.map((e) => e.name).join(" | ")} |`);
console.log(`|---|${entries.map(() => "---:").join("|")}|`);
for (const k of keys) {
  const cells = all.map((rounds) =>
    rounds.some((rows) => k in rows) ? range(rounds.map((rows) => rows[k] ?? 0)) : "-",
  );
  if (cells.every((c) => c === "0" || c === "-")) continue;
  console.log(`| ${k} | ${cells.join(" | ")} |`);
}
