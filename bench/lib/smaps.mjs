// A process's mappings from /proc/PID/smaps, for the memory tools (regions.mjs, rest.mjs).

import { readFileSync } from "node:fs";

/** What a mapping is by its path: "anon", "[heap]", "addon", "node binary" or "other". */
export function mappingKind(path) {
  if (path === "") return "anon";
  if (path === "[heap]") return "[heap]";
  if (path.endsWith(".node") || (path.endsWith(".so") && path.includes("fetch_rs"))) return "addon";
  if (/\/node$/.test(path)) return "node binary";
  return "other";
}

/** Every mapping of `pid`: its permissions, file offset, kind and resident KiB. */
export function mappings(pid) {
  const out = [];
  let current = null;
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const m = /^[0-9a-f]+-[0-9a-f]+ (\S+) (\S+) \S+ \S+\s*(.*)$/.exec(line);
    if (m) {
      current = { perm: m[1], offset: m[2], kind: mappingKind(m[3]), rssKiB: 0 };
      out.push(current);
      continue;
    }
    const r = /^Rss:\s+(\d+) kB/.exec(line);
    if (r && current) current.rssKiB += Number(r[1]);
  }
  return out;
}
