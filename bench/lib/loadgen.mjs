// The load generators, as a table: wrk (default, HTTP/1.1 plain and pipelined), h2load (the h2c
// mode), autocannon (npm, --loadgen=autocannon) and oha (--loadgen=oha, plain mode only: it does
// not pipeline). Each turns one (scenario, mode, port) into one measured run and parses its report
// into { requestsPerSec, requests, p50Ms, p99Ms, socketErrors, non2xx }.
// A missing generator is reported with how to install it; the runner skips what needs it.
// Used by bench/run.mjs. Run with: node bench/run.mjs (not run on its own)

import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { requestBody } from "./scenarios.mjs";
import { spawnTracked } from "./servers.mjs";
import { runWrk, wrkVersion } from "./wrk.mjs";

// A run's own timeout on top of its duration: start-up, connection close and reporting.
const SLACK_MS = 15_000;

const AUTOCANNON_DIR = fileURLToPath(new URL("../node_modules/autocannon/", import.meta.url));

/** The first line of a command's output matching `pattern` (group 1), "unknown", or null when absent. */
function probeVersion(command, args, pattern) {
  let text;
  try {
    text = execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 });
  } catch (err) {
    if (err.code === "ENOENT") return null;
    text = `${err.stdout ?? ""}${err.stderr ?? ""}`;
  }
  return pattern.exec(text)?.[1] ?? "unknown";
}

// Request bodies go to files for the tools that read them from one (h2load -d, oha -D, autocannon -i).
let bodyDir = null;
function bodyFile(scenario) {
  const body = requestBody(scenario);
  if (!body) return null;
  bodyDir ??= mkdtempSync(join(tmpdir(), "fetch-rs-bench-"));
  const file = join(bodyDir, `body-${body.length}`);
  if (!existsSync(file)) writeFileSync(file, body);
  return file;
}

/** Removes the request body files; safe to call on any exit path. */
export function removeBodyFiles() {
  if (bodyDir) rmSync(bodyDir, { recursive: true, force: true });
  bodyDir = null;
}

/** Runs a load generator to completion, bounded in time: { stdout, stderr }; rejects on failure. */
function runTool(name, command, args, { pinCore, cwd, durationS, onSpawn }) {
  return new Promise((resolve, reject) => {
    const child = spawnTracked(command, args, { pinCore, cwd, stdio: ["ignore", "pipe", "pipe"] });
    if (child.pid !== undefined) onSpawn?.(child.pid);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk) => (stderr = (stderr + chunk).slice(-16_384)));
    const timer = setTimeout(() => child.kill("SIGKILL"), durationS * 1000 + SLACK_MS);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${name}: ${err.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`${name} failed (code ${code}, signal ${signal}): ${(stderr || stdout).trim().slice(-2000)}`));
      else resolve({ stdout, stderr });
    });
  });
}

const noSocketErrors = () => ({ connect: 0, read: 0, write: 0, timeout: 0 });

/** The p-th percentile (0-100) of an ascending array, nearest rank. */
function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/**
 * name, version() (string or null when missing), missingHint, modes (the modes it can run), run(options).
 * run options: { port, scenario, mode, durationS, connections, threads, pinCore, cwd, onSpawn }.
 */
export const LOADGENS = {
  wrk: {
    name: "wrk",
    version: () => wrkVersion(),
    missingHint: "apt-get install -y wrk",
    modes: ["plain", "pipelined", "https", "handshake"],
    run({ port, scenario, mode, durationS, connections, threads, pinCore, cwd, onSpawn }) {
      const url = `${mode.scheme ?? "http"}://127.0.0.1:${port}${scenario.path}`;
      // Connection: close makes wrk reconnect after every response: one TLS handshake per request.
      const headers = mode.newConnection ? ["Connection: close"] : [];
      const base = { url, headers, durationS, connections, threads, pinCore, cwd, onSpawn };
      const request = [scenario.method, scenario.path, String(scenario.bodyBytes)];
      if (mode.depth > 1) return runWrk({ ...base, script: "bench/pipeline.lua", scriptArgs: [String(mode.depth), ...request] });
      // A plain GET needs no script: wrk's static request from the URL is its fastest path.
      if (scenario.method === "GET" && scenario.bodyBytes === 0) return runWrk(base);
      return runWrk({ ...base, script: "bench/request.lua", scriptArgs: request });
    },
  },

  h2load: {
    name: "h2load",
    version: () => probeVersion("h2load", ["--version"], /nghttp2\/(\S+)/),
    missingHint: "apt-get install -y nghttp2-client",
    modes: ["h2c", "h2"],
    async run({ port, scenario, mode, durationS, connections, threads, pinCore, cwd, onSpawn }) {
      // Per-request durations come from the log file: h2load prints no percentiles itself.
      const logDir = mkdtempSync(join(tmpdir(), "fetch-rs-h2load-"));
      const logFile = join(logDir, "requests.log");
      try {
        const args = [`-c${connections}`, `-m${mode.depth}`, `-t${threads}`, `-D${durationS}`, `--log-file=${logFile}`];
        const file = bodyFile(scenario);
        if (file) args.push("-d", file, "-H", "content-type: application/octet-stream");
        args.push(`${mode.scheme ?? "http"}://127.0.0.1:${port}${scenario.path}`);
        const { stdout } = await runTool("h2load", "h2load", args, { pinCore, cwd, durationS, onSpawn });
        return parseH2load(stdout, readFileSync(logFile, "utf8"));
      } finally {
        rmSync(logDir, { recursive: true, force: true });
      }
    },
  },

  autocannon: {
    name: "autocannon",
    version: () => {
      try {
        return JSON.parse(readFileSync(join(AUTOCANNON_DIR, "package.json"), "utf8")).version;
      } catch {
        return null;
      }
    },
    missingHint: "npm --prefix bench install",
    modes: ["plain", "pipelined"],
    async run({ port, scenario, mode, durationS, connections, pinCore, cwd, onSpawn }) {
      const args = [join(AUTOCANNON_DIR, "autocannon.js"), "-c", String(connections), "-d", String(durationS), "-p", String(mode.depth), "-m", scenario.method, "-j"];
      const file = bodyFile(scenario);
      if (file) args.push("-i", file, "-H", "content-type=application/octet-stream");
      args.push(`http://127.0.0.1:${port}${scenario.path}`);
      const { stdout } = await runTool("autocannon", process.execPath, args, { pinCore, cwd, durationS, onSpawn });
      return parseAutocannon(stdout);
    },
  },

  oha: {
    name: "oha",
    version: () => probeVersion("oha", ["--version"], /oha\s+(\S+)/),
    missingHint: "cargo install oha --locked (about 8 minutes to build on 2 cores)",
    // oha sends one request at a time per connection: no pipelined mode.
    modes: ["plain"],
    async run({ port, scenario, durationS, connections, pinCore, cwd, onSpawn }) {
      const args = ["-z", `${durationS}s`, "-c", String(connections), "--no-tui", "--output-format", "json", "-m", scenario.method];
      const file = bodyFile(scenario);
      if (file) args.push("-D", file, "-T", "application/octet-stream");
      args.push(`http://127.0.0.1:${port}${scenario.path}`);
      const { stdout } = await runTool("oha", "oha", args, { pinCore, cwd, durationS, onSpawn });
      return parseOha(stdout);
    },
  },
};

/** h2load's text report plus its --log-file (start us, status, duration us per line). */
export function parseH2load(text, log) {
  const finished = /^finished in ([\d.]+)(\w+), ([\d.]+) req\/s/m.exec(text);
  const requests = /^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m.exec(text);
  const codes = /^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/m.exec(text);
  if (!finished || !requests) throw new Error(`cannot parse h2load output:\n${text.slice(-2000)}`);
  const durations = [];
  for (const line of log.split("\n")) {
    const tab = line.lastIndexOf("\t");
    if (tab > 0) durations.push(Number(line.slice(tab + 1)));
  }
  durations.sort((a, b) => a - b);
  return {
    requestsPerSec: Number(finished[3]),
    requests: Number(requests[3]),
    p50Ms: percentile(durations, 50) / 1000,
    p99Ms: percentile(durations, 99) / 1000,
    socketErrors: { ...noSocketErrors(), read: Number(requests[6]), timeout: Number(requests[7]) },
    non2xx: codes ? Number(codes[3]) + Number(codes[4]) : 0,
  };
}

/** autocannon -j: one JSON object (latency in ms). */
export function parseAutocannon(text) {
  const r = JSON.parse(text.slice(text.indexOf("{")));
  return {
    requestsPerSec: r.requests.total / r.duration,
    requests: r.requests.total,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    socketErrors: { ...noSocketErrors(), read: r.errors - r.timeouts, timeout: r.timeouts },
    non2xx: r.non2xx,
  };
}

/** oha --output-format json (durations in seconds). */
export function parseOha(text) {
  const r = JSON.parse(text.slice(text.indexOf("{")));
  const codes = Object.entries(r.statusCodeDistribution ?? {});
  const requests = codes.reduce((sum, [, n]) => sum + n, 0);
  const errors = Object.values(r.errorDistribution ?? {}).reduce((sum, n) => sum + n, 0);
  return {
    requestsPerSec: r.summary.requestsPerSec,
    requests,
    p50Ms: (r.latencyPercentiles?.p50 ?? NaN) * 1000,
    p99Ms: (r.latencyPercentiles?.p99 ?? NaN) * 1000,
    socketErrors: { ...noSocketErrors(), read: errors },
    non2xx: codes.filter(([code]) => !/^[23]/.test(code)).reduce((sum, [, n]) => sum + n, 0),
  };
}
