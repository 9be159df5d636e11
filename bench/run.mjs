// Benchmark runner: fetch-rs against node:http (and later other peers) on the same handler,
// load from wrk, server and load generator pinned to separate cores, medians over rounds,
// CPU per request from /proc. Prints a Markdown table and writes it to bench/results/latest.md.
// Run with: npm run bench            (3 rounds, 5 s measured after 2 s warm-up)
//           npm run bench -- --quick (1 round of 2 s)
//           npm run bench -- --servers=node-http --duration=10 --rounds=5 --modes=plain
// See bench/README.md.

import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { clockTicksPerSecond, processName, sampleCpu, threadAffinities } from "./lib/cpu.mjs";
import { fmt, machineHeader, runProblems, runsTable, summarize, summaryTable } from "./lib/report.mjs";
import { killAllNow, missingRequirements, SERVERS, startServer, stopAll, stopServer } from "./lib/servers.mjs";
import { runWrk, wrkVersion } from "./lib/wrk.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const RESULTS_FILE = join(ROOT, "bench", "results", "latest.md");
const BASELINE = "node-http";
const SERVER_CORE = 0;
const LOAD_CORE = 1;
// One wrk thread is enough to saturate one server core on loopback and leaves the load core to itself.
const CONNECTIONS = 50;
// Deep enough that per-request cost, not round trips, sets the pace: the server's batching shows.
const PIPELINE_DEPTH = 16;

// A server that saturates its core runs it at ~100%; below this, the run did not measure the server alone.
const BUSY_ENOUGH_PERCENT = 90;

const PIPELINED_LATENCY_NOTE =
  `Pipelined latencies are per batch of ${PIPELINE_DEPTH} and skewed by wrk's coordinated-omission ` +
  "correction, which assumes one response per request (n/a: wrk printed 0); for that mode compare req/s and CPU/req.";

const MODES = [
  { name: "plain", script: null },
  { name: "pipelined", script: "bench/pipeline.lua", scriptArgs: [String(PIPELINE_DEPTH)] },
];

const USAGE = `Usage: node bench/run.mjs [options]
  --servers=a,b     servers to run (default: ${SERVERS.map((s) => s.name).join(",")}; known: ${SERVERS.map((s) => s.name).join(", ")})
  --modes=a,b       plain, pipelined (default: both)
  --duration=N      seconds per measured run (default 5)
  --warmup=N        seconds of warm-up before each measured run (default 2)
  --rounds=N        rounds, servers alternated within each (default 3)
  --quick           1 round, 2 s warm-up, 2 s measured
  --help`;

/** Command-line options, validated; exits with usage on a bad option. */
function readOptions() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        servers: { type: "string" },
        modes: { type: "string" },
        duration: { type: "string" },
        warmup: { type: "string" },
        rounds: { type: "string" },
        quick: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    }));
  } catch (err) {
    usageError(err.message);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const defaults = values.quick ? { duration: 2, warmup: 2, rounds: 1 } : { duration: 5, warmup: 2, rounds: 3 };
  return {
    servers: pickByName(values.servers, SERVERS, "server"),
    modes: pickByName(values.modes, MODES, "mode"),
    durationS: positiveInt(values.duration, defaults.duration, "--duration"),
    warmupS: positiveInt(values.warmup, defaults.warmup, "--warmup"),
    rounds: positiveInt(values.rounds, defaults.rounds, "--rounds"),
  };
}

function usageError(message) {
  console.error(`${message}\n\n${USAGE}`);
  process.exit(1);
}

function positiveInt(text, fallback, flag) {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) usageError(`${flag} must be a positive whole number of seconds/rounds, got ${text}`);
  return n;
}

/** Entries of `table` named in a comma list (all of them when the list is absent). */
function pickByName(list, table, what) {
  if (list === undefined) return table;
  return list.split(",").map((name) => {
    const entry = table.find((e) => e.name === name.trim());
    if (!entry) usageError(`unknown ${what} ${JSON.stringify(name)}`);
    return entry;
  });
}

/** Whether to pin: needs two cores, one for the server and one for wrk. */
function pinningPlan() {
  const cores = os.availableParallelism();
  if (cores < 2) {
    return {
      cores,
      serverCore: null,
      loadCore: null,
      text: "NONE: only 1 core, so the server and wrk share it and the numbers are indicative only",
    };
  }
  const extra = cores > 2 ? ` (cores 2-${cores - 1} left idle)` : "";
  return {
    cores,
    serverCore: SERVER_CORE,
    loadCore: LOAD_CORE,
    text: `server on core ${SERVER_CORE}, wrk on core ${LOAD_CORE} (taskset; every server thread checked)${extra}`,
  };
}

/**
 * Checks that the pid is the server itself (taskset exec'd it, so the pid is the same) and that
 * all its threads are pinned. Returns the number of threads checked.
 */
function verifyPinning(server, core) {
  const name = processName(server.pid);
  if (name === "taskset") throw new Error(`${server.entry.name}: pid ${server.pid} is still taskset, not the server`);
  if (core === null) return 0;
  const affinities = threadAffinities(server.pid);
  const stray = affinities.filter((a) => a !== String(core));
  if (stray.length > 0) {
    throw new Error(`${server.entry.name}: ${stray.length} of ${affinities.length} threads not pinned to core ${core}: ${stray}`);
  }
  return affinities.length;
}

/** One GET / to check the server answers S1 as specified before it is measured. */
function checkResponse(server) {
  return new Promise((resolve, reject) => {
    const name = server.entry.name;
    // agent: false sends "Connection: close", so no idle keep-alive connection lingers during the run.
    const req = http.get({ host: "127.0.0.1", port: server.port, path: "/", agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (chunk) => (body += chunk));
      res.on("end", () => {
        const type = res.headers["content-type"] ?? "";
        if (res.statusCode !== 200 || !type.startsWith("application/json") || body !== '{"ok":true}') {
          reject(new Error(`${name} answered ${res.statusCode} ${JSON.stringify(type)} ${JSON.stringify(body)}, expected 200 application/json {"ok":true}`));
        } else {
          resolve();
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error(`${name} did not answer GET / within 5 s`)));
    req.on("error", reject);
  });
}

/** Starts every selected server, checks its pinning and its answer. */
async function startAll(entries, plan) {
  const servers = [];
  for (const entry of entries) {
    const server = await startServer(entry, { root: ROOT, pinCore: plan.serverCore });
    servers.push(server);
    const threads = verifyPinning(server, plan.serverCore);
    await checkResponse(server);
    const pinned = threads ? `, all ${threads} threads pinned to core ${plan.serverCore}` : "";
    log(`started ${entry.name}: pid ${server.pid} (${processName(server.pid)}), port ${server.port}${pinned}`);
  }
  return servers;
}

function assertAlive(server) {
  const { exitCode, signalCode } = server.child;
  if (exitCode !== null || signalCode !== null) {
    // A native addon is mapped from its file: rewriting the file under a running process kills it so.
    const hint = signalCode === "SIGBUS" ? "; SIGBUS usually means its native addon was rebuilt while it ran" : "";
    throw new Error(`${server.entry.name} exited during the benchmark (code ${exitCode}, signal ${signalCode})${hint}`);
  }
}

/** One warm-up run, then one measured run with the server's CPU time read around it. */
async function measure(server, mode, opts, plan, ticksPerSecond) {
  const wrkOptions = {
    url: `http://127.0.0.1:${server.port}/`,
    connections: CONNECTIONS,
    script: mode.script,
    scriptArgs: mode.scriptArgs,
    pinCore: plan.loadCore,
    cwd: ROOT,
  };
  await runWrk({ ...wrkOptions, durationS: opts.warmupS });
  assertAlive(server);
  const before = sampleCpu(server.pid);
  const startedAt = performance.now();
  const report = await runWrk({ ...wrkOptions, durationS: opts.durationS });
  const wallS = (performance.now() - startedAt) / 1000;
  assertAlive(server);
  const after = sampleCpu(server.pid);
  const processS = (after.process - before.process) / ticksPerSecond;
  const jsThreadS = (after.jsThread - before.jsThread) / ticksPerSecond;
  const usPerRequest = (seconds) => (report.requests > 0 ? (seconds * 1e6) / report.requests : NaN);
  return {
    server: server.entry.name,
    mode: mode.name,
    ...report,
    cpuUsPerReqProcess: usPerRequest(processS),
    cpuUsPerReqJsThread: usPerRequest(jsThreadS),
    // How busy the server kept its core: well under 100% means wrk was the limit or something else took the core.
    serverCpuPercent: (processS / wallS) * 100,
  };
}

/** All rounds; within a round, for each mode, the servers one after the other (A, B, A, B, ...). */
async function measureAll(servers, opts, plan) {
  const ticksPerSecond = clockTicksPerSecond();
  const runs = [];
  for (let round = 1; round <= opts.rounds; round++) {
    for (const mode of opts.modes) {
      for (const server of servers) {
        const run = { round, ...(await measure(server, mode, opts, plan, ticksPerSecond)) };
        runs.push(run);
        logRun(run);
      }
    }
  }
  return runs;
}

function logRun(run) {
  const problems = runProblems(run);
  log(
    `round ${run.round} ${run.server} ${run.mode}: ${fmt.int(run.requestsPerSec)} req/s, ` +
      `p50 ${fmt.ms(run.p50Ms)} ms, p99 ${fmt.ms(run.p99Ms)} ms, ` +
      `${fmt.us(run.cpuUsPerReqProcess)} us/req process, ${fmt.us(run.cpuUsPerReqJsThread)} us/req JS thread, ` +
      `server CPU ${fmt.int(run.serverCpuPercent)}%` +
      (problems ? `  <-- ${problems}` : ""),
  );
  if (run.non2xx > 0) warnLoudly(`${run.server} ${run.mode} round ${run.round}: ${run.non2xx} responses were not 2xx/3xx`);
}

/** Progress goes to stderr, so stdout carries only the final Markdown. */
function log(line) {
  console.error(`[bench] ${line}`);
}

function warnLoudly(message) {
  const bar = "!".repeat(78);
  console.error(`${bar}\n!!! ${message}\n!!! these numbers measure errors, not the S1 handler: do not use them\n${bar}`);
}

function gitCommit() {
  try {
    const git = (args) => execFileSync("git", args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const commit = git(["rev-parse", "--short", "HEAD"]);
    return git(["status", "--porcelain", "--untracked-files=no"]) ? `${commit} + uncommitted changes` : commit;
  } catch {
    return null; // not a git checkout, or no commit yet
  }
}

function machineInfo(opts, plan, wrk) {
  return {
    date: new Date().toISOString(),
    cpuModel: os.cpus()[0]?.model ?? "unknown CPU",
    cores: plan.cores,
    os: `${os.type()} ${os.release()}`,
    // Anything else using the cores (a compile) skews the numbers: record how busy the machine was.
    loadAverage: os.loadavg()[0].toFixed(2),
    nodeVersion: process.version,
    wrkVersion: wrk,
    gitCommit: gitCommit(),
    pinning: plan.text,
    load:
      `wrk -t1 -c${CONNECTIONS} --latency; ${opts.rounds} round(s), each run ${opts.durationS} s measured after ` +
      `${opts.warmupS} s warm-up; medians over rounds; pipelined = ${PIPELINE_DEPTH} requests per write ` +
      `(latency then counts per batch of ${PIPELINE_DEPTH})`,
  };
}

function render(info, runs) {
  const rows = summarize(runs, BASELINE);
  const flagged = runs.filter((r) => r.non2xx > 0).length;
  const warning = flagged
    ? `\n**WARNING: ${flagged} run(s) had non-2xx/3xx responses; those numbers are not valid.**\n`
    : "";
  const starved = runs.filter((r) => r.serverCpuPercent < BUSY_ENOUGH_PERCENT).length;
  const starvedNote = starved
    ? `\n**${starved} run(s) kept the server's core under ${BUSY_ENOUGH_PERCENT}% busy (see "server CPU %"): ` +
      "wrk was the limit, or something else (a compile?) took the core; their req/s understate the server.**\n"
    : "";
  const note = runs.some((r) => r.mode === "pipelined") ? `\n${PIPELINED_LATENCY_NOTE}\n` : "";
  const summary = `${machineHeader(info)}\n${warning}${starvedNote}\n${summaryTable(rows, BASELINE)}\n${note}`;
  const full = `${summary}\n## Every run\n\n${runsTable(runs)}\n`;
  return { summary, full, flagged };
}

async function main() {
  const opts = readOptions();
  const wrk = wrkVersion();
  if (wrk === null) {
    console.error("wrk not found: install it with apt-get install wrk (see bench/README.md)");
    return 2;
  }
  if (process.platform !== "linux") {
    console.error("bench/run.mjs reads CPU time from /proc and pins with taskset: it needs Linux");
    return 1;
  }
  for (const entry of opts.servers) {
    const missing = missingRequirements(entry, ROOT);
    if (missing.length > 0) {
      console.error(`${entry.name}: missing ${missing.join(", ")}. ${entry.missingHint ?? ""}`);
      return 1;
    }
  }
  const plan = pinningPlan();
  if (plan.serverCore === null) log(`WARNING: running unpinned: ${plan.text}`);
  const info = machineInfo(opts, plan, wrk);
  const servers = await startAll(opts.servers, plan);
  const runs = await measureAll(servers, opts, plan);
  await Promise.all(servers.map(stopServer));

  const { summary, full, flagged } = render(info, runs);
  mkdirSync(join(ROOT, "bench", "results"), { recursive: true });
  writeFileSync(RESULTS_FILE, full);
  console.log(summary);
  log(`written to ${RESULTS_FILE}`);
  if (flagged) warnLoudly(`${flagged} run(s) had non-2xx/3xx responses (see the errors column)`);
  return flagged ? 1 : 0;
}

// Every way out goes through here, so no server or wrk is left behind.
let exiting = false;
async function shutdown(code, message) {
  if (exiting) return;
  exiting = true;
  if (message) console.error(message);
  await stopAll();
  process.exit(code);
}

process.on("exit", killAllNow); // last resort: synchronous SIGKILL of anything still running
process.on("SIGINT", () => shutdown(130, "\n[bench] interrupted: stopping servers"));
process.on("SIGTERM", () => shutdown(143, "[bench] terminated: stopping servers"));
process.on("SIGHUP", () => shutdown(129, "[bench] hang-up: stopping servers"));
process.on("uncaughtException", (err) => shutdown(1, `[bench] error: ${err.stack ?? err}`));
main().then(
  (code) => shutdown(code),
  (err) => shutdown(1, `[bench] error: ${err.stack ?? err}`),
);
