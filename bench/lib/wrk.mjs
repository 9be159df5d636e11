// Runs wrk (the load generator) and parses its report: requests/s, request count, latency
// percentiles, socket errors and non-2xx/3xx responses.
// Used by bench/run.mjs. Run with: node bench/run.mjs (not run on its own)

import { execFileSync } from "node:child_process";
import { spawnTracked } from "./servers.mjs";

// wrk's own timeout on top of the duration: start-up, connection close and reporting.
const WRK_SLACK_MS = 15_000;

/** wrk's version string ("4.1.0-3+b2"), or null when wrk is not installed. */
export function wrkVersion() {
  try {
    // `wrk -v` prints its banner and exits with status 1, so read the output of the failure too.
    return parseVersion(execFileSync("wrk", ["-v"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }));
  } catch (err) {
    if (err.code === "ENOENT") return null;
    return parseVersion(`${err.stdout ?? ""}${err.stderr ?? ""}`);
  }
}

function parseVersion(banner) {
  const match = /^wrk\s+(\S+)/m.exec(banner);
  return match ? match[1].replace(/^debian\//, "") : "unknown";
}

/**
 * Runs one wrk measurement and resolves with its parsed report.
 * { url, headers (extra request header lines), durationS, connections, threads (default 1), script (path or null), scriptArgs (strings),
 *   pinCore (taskset cpu list or null), cwd, onSpawn (called with the pid once wrk runs) }
 */
export function runWrk({ url, headers = [], durationS, connections, threads = 1, script = null, scriptArgs = [], pinCore, cwd, onSpawn }) {
  const args = [`-t${threads}`, `-c${connections}`, `-d${durationS}s`, "--latency"];
  for (const h of headers) args.push("-H", h);
  if (script) args.push("-s", script);
  args.push(url);
  if (script && scriptArgs.length > 0) args.push("--", ...scriptArgs); // reach the script's init(args)
  return new Promise((resolve, reject) => {
    const child = spawnTracked("wrk", args, { pinCore, cwd, stdio: ["ignore", "pipe", "pipe"] });
    if (child.pid !== undefined) onSpawn?.(child.pid);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), durationS * 1000 + WRK_SLACK_MS);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run wrk: ${err.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`wrk failed (code ${code}, signal ${signal}): ${(stderr || stdout).trim()}`));
        return;
      }
      try {
        resolve(parseWrkReport(stdout));
      } catch (err) {
        reject(new Error(`${err.message}\n--- wrk output ---\n${stdout}${stderr}`));
      }
    });
  });
}

/** Parses wrk's text report (with --latency). Throws when the essential lines are missing. */
export function parseWrkReport(text) {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  const total = /^\s*(\d+) requests in ([\d.]+\w+),/m.exec(text);
  if (!rps || !total) throw new Error("cannot parse wrk output (no Requests/sec or request count)");
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  return {
    requestsPerSec: Number(rps[1]),
    requests: Number(total[1]),
    p50Ms: latencyPercentileMs(text, "50%"),
    p99Ms: latencyPercentileMs(text, "99%"),
    socketErrors: socket
      ? { connect: Number(socket[1]), read: Number(socket[2]), write: Number(socket[3]), timeout: Number(socket[4]) }
      : { connect: 0, read: 0, write: 0, timeout: 0 },
    non2xx: non2xx ? Number(non2xx[1]) : 0,
  };
}

// wrk prints durations with the unit that keeps the number short.
const MS_PER_UNIT = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A percentile line of the "Latency Distribution" block ("     99%    3.45ms"), in ms. */
function latencyPercentileMs(text, label) {
  const block = text.split("Latency Distribution")[1] ?? "";
  const match = new RegExp(`^\\s*${label}\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, "m").exec(block);
  const ms = match ? Number(match[1]) * MS_PER_UNIT[match[2]] : NaN;
  // wrk prints 0.00us when its coordinated-omission correction put samples below the minimum it
  // scans from (it happens with pipelining, see bench/README.md): no real latency is zero.
  return ms > 0 ? ms : NaN;
}
