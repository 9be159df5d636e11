// The POST load of bench/faults.mjs and bench/regions.mjs: a server entry started on core 0 with
// extra environment, and wrk -t1 on core 1 sending bodies of a given size to one path (or, with
// `h2c` set to a number of streams per connection, h2load over HTTP/2 cleartext).
// Used by those scripts (not run on its own).

import { fileURLToPath } from "node:url";
import { LOADGENS } from "./loadgen.mjs";
import { SERVERS, startServer } from "./servers.mjs";
import { runWrk } from "./wrk.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** The SERVERS entries named in a comma-separated list; throws on an unknown name. */
export function serverEntries(list) {
  return list.split(",").map((name) => {
    const entry = SERVERS.find((s) => s.name === name);
    if (!entry) throw new Error(`no server ${name}`);
    return entry;
  });
}

/** Starts an entry on core 0, its environment given `pairs` ("NAME=VALUE") and then `env`. */
export function startWith(entry, pairs, env = {}) {
  const extra = Object.fromEntries(pairs.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
  return startServer({ ...entry, env: { ...entry.env, ...extra, ...env } }, { root: ROOT, pinCore: 0 });
}

/**
 * `seconds` of wrk POSTing `body` bytes to `path` over `connections`: { requests, errors }.
 * With `h2c` (streams per connection, a string or number), h2load -c`connections` -m`h2c`.
 */
export async function postLoad(port, { connections, path, body, h2c }, seconds) {
  const report = h2c
    ? await h2Load(port, { connections, path, body, h2c }, seconds)
    : await runWrk({
        url: `http://127.0.0.1:${port}/`,
        durationS: seconds,
        connections: Number(connections),
        script: "bench/request.lua",
        scriptArgs: ["POST", path, String(body)],
        pinCore: 1,
        cwd: ROOT,
      });
  const s = report.socketErrors;
  const errors = [
    report.non2xx > 0 ? `non-2xx or 3xx responses: ${report.non2xx}` : "",
    s.connect + s.read + s.write + s.timeout > 0 ? `socket errors: ${JSON.stringify(s)}` : "",
  ];
  return { requests: report.requests, errors: errors.filter(Boolean).join(", ") };
}

function h2Load(port, { connections, path, body, h2c }, seconds) {
  return LOADGENS.h2load.run({
    port,
    scenario: { method: "POST", path, bodyBytes: Number(body) },
    mode: { depth: Number(h2c) },
    durationS: seconds,
    connections: Number(connections),
    threads: 1,
    pinCore: 1,
    cwd: ROOT,
  });
}
