// Benchmark runner: fetch-rs against node:http and the other peers (fastify, Hono, Bun.serve,
// Deno.serve, hyper alone) on the same scenarios (RFC 5.4), load from wrk (or h2load, autocannon,
// oha), server and load generator pinned to separate cores, servers alternated over rounds,
// medians, CPU per request and peak RSS from /proc. Prints a Markdown table and writes it to
// bench/results/latest.md, with an SVG chart (latest.svg) and the raw runs (latest.json).
// Run with: npm run bench                 (every scenario, server and mode: about 45 minutes)
//           npm run bench -- --quick      (JSON, fetch-rs vs node:http, 1 round: under a minute)
//           node bench/run.mjs --scenarios=json,text --servers=fetch-rs,node-http,bun --rounds=3
// See bench/README.md.

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  clockTicksPerSecond, machineCpuTicks, parseCpuList, processName, sampleCpu, startSampler, threadAffinities,
} from "./lib/cpu.mjs";
import { LOADGENS, removeBodyFiles } from "./lib/loadgen.mjs";
import { fmt, legend, machineHeader, median, runProblems, runsTable, summarize, summaryTable } from "./lib/report.mjs";
import { checkPipelined, checkResponse, CONNECTIONS, DEFAULT_MODES, MODES, PIPELINE_DEPTH, SCENARIOS, TLS_MODES } from "./lib/scenarios.mjs";
import {
  BASELINE_BY_PROTOCOL, killAllNow, missingRequirements, SERVERS, startServer, stopAll, stopServer,
} from "./lib/servers.mjs";
import { barChartSvg } from "./lib/svg.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const RESULTS_DIR = join(ROOT, "bench", "results");

// A server that saturates its cores runs them at ~100% each; below this, the run did not measure the server alone.
const BUSY_ENOUGH_PERCENT = 90;
// Other CPU plus steal above this (in % of one core) during a run: something else competed with it.
const CONTENDED_PERCENT = 25;
// Seconds a run costs beyond warm-up and measurement (start-up, reporting), and a server start; for the estimate.
const RUN_OVERHEAD_S = 0.15;
const START_OVERHEAD_S = 1;
// After the deadline the runner stops measuring and reports; this long after it, it kills everything.
const HARD_STOP_GRACE_MS = 60_000;

const QUICK = { scenarios: "json", servers: "fetch-rs,node-http", modes: "plain,pipelined", rounds: 1, warmup: 2, duration: 2 };

const names = (table) => table.map((e) => e.name).join(",");
const USAGE = `Usage: node bench/run.mjs [options]
  --scenarios=a,b   scenarios (default: all: ${names(SCENARIOS)})
  --servers=a,b     servers (default: all available: ${names(SERVERS)})
  --modes=a,b       plain, pipelined, h2c, https, h2, handshake (default: ${DEFAULT_MODES.join(",")}; --h2 adds h2c, --tls the TLS modes)
  --h2              add the HTTP/2 cleartext mode (h2load, prior knowledge; servers that speak it)
  --tls             add the TLS modes: https (wrk, keep-alive), h2 (h2load, ${MODES.find((m) => m.name === "h2").depth} streams), handshake (wrk, a new connection per request)
  --loadgen=NAME    wrk (default), autocannon or oha (plain mode only) for the HTTP/1.1 modes
  --duration=N      seconds per measured run (default 5)
  --warmup=N        seconds of warm-up before each measured run (default 2)
  --rounds=N        rounds, servers alternated within each (default 3)
  --server-cpus=L   cpus for the server (taskset list, default 0)
  --load-cpus=L     cpus for the load generator, one thread each (default 1)
  --max-minutes=N   stop measuring after N minutes and report what ran (default: 1.5x the estimate + 2)
  --quick           ${QUICK.scenarios}, ${QUICK.servers}, ${QUICK.modes}, ${QUICK.rounds} round of ${QUICK.warmup} s + ${QUICK.duration} s
  --help`;

/** Command-line options, validated; exits with usage on a bad option. */
function readOptions() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        scenarios: { type: "string" },
        servers: { type: "string" },
        modes: { type: "string" },
        h2: { type: "boolean", default: false },
        tls: { type: "boolean", default: false },
        loadgen: { type: "string", default: "wrk" },
        duration: { type: "string" },
        warmup: { type: "string" },
        rounds: { type: "string" },
        "server-cpus": { type: "string" },
        "load-cpus": { type: "string" },
        "max-minutes": { type: "string" },
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
  const quick = values.quick ? QUICK : {};
  const defaults = { duration: 5, warmup: 2, rounds: 3, ...quick };
  const modeList =
    values.modes ?? quick.modes ?? [...DEFAULT_MODES, ...(values.h2 ? ["h2c"] : []), ...(values.tls ? TLS_MODES : [])].join(",");
  if (!LOADGENS[values.loadgen] || values.loadgen === "h2load") {
    usageError(`--loadgen must be wrk, autocannon or oha, got ${values.loadgen}`);
  }
  return {
    scenarios: pickByName(values.scenarios ?? quick.scenarios, SCENARIOS, "scenario"),
    servers: pickByName(values.servers ?? quick.servers, SERVERS, "server"),
    serversExplicit: values.servers !== undefined,
    modes: pickByName(modeList, MODES, "mode"),
    loadgen: LOADGENS[values.loadgen],
    durationS: positiveInt(values.duration, defaults.duration, "--duration"),
    warmupS: positiveInt(values.warmup, defaults.warmup, "--warmup"),
    rounds: positiveInt(values.rounds, defaults.rounds, "--rounds"),
    serverCpus: values["server-cpus"],
    loadCpus: values["load-cpus"],
    maxMinutes: values["max-minutes"] === undefined ? null : positiveInt(values["max-minutes"], 0, "--max-minutes"),
    quick: values.quick,
  };
}

function usageError(message) {
  console.error(`${message}\n\n${USAGE}`);
  process.exit(1);
}

function positiveInt(text, fallback, flag) {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) usageError(`${flag} must be a positive whole number, got ${text}`);
  return n;
}

/** Entries of `table` named in a comma list (all of them when the list is absent), in table order. */
function pickByName(list, table, what) {
  if (list === undefined) return table;
  const wanted = list.split(",").map((name) => name.trim()).filter(Boolean);
  for (const name of wanted) {
    if (!table.some((e) => e.name === name)) usageError(`unknown ${what} ${JSON.stringify(name)} (known: ${names(table)})`);
  }
  return table.filter((e) => wanted.includes(e.name));
}

/** Which cpus the server and the load generator get: two cores or more pin, one core cannot. */
function pinningPlan(opts) {
  const cores = os.availableParallelism();
  if (cores < 2 && !opts.serverCpus && !opts.loadCpus) {
    return {
      cores, serverCpus: null, loadCpus: null, loadThreads: 1,
      text: "NONE: only 1 core, so the server and the load generator share it and the numbers are indicative only",
    };
  }
  const serverCpus = opts.serverCpus ?? "0";
  const loadCpus = opts.loadCpus ?? "1";
  let server, load;
  try {
    [server, load] = [parseCpuList(serverCpus), parseCpuList(loadCpus)];
  } catch (err) {
    usageError(err.message);
  }
  const online = parseCpuList(`0-${cores - 1}`);
  for (const cpu of [...server, ...load]) {
    if (!online.includes(cpu)) usageError(`cpu ${cpu} is not one of this machine's ${cores} (0-${cores - 1})`);
  }
  if (server.some((cpu) => load.includes(cpu))) usageError("--server-cpus and --load-cpus overlap");
  const idle = online.filter((cpu) => !server.includes(cpu) && !load.includes(cpu));
  return {
    cores,
    serverCpus,
    loadCpus,
    serverCpuCount: server.length,
    loadThreads: Math.min(load.length, CONNECTIONS),
    text:
      `server on cpu ${serverCpus}, load generator and this runner on cpu ${loadCpus} (taskset; every server thread checked)` +
      (idle.length ? `, cpus ${idle.join(",")} left idle` : ""),
  };
}

/** Pins this runner (all its threads) to the load cpus, so it never takes time from the server's. */
function pinSelf(plan) {
  if (plan.loadCpus === null) return;
  try {
    execFileSync("taskset", ["-a", "-p", "-c", plan.loadCpus, String(process.pid)], { stdio: "ignore" });
  } catch (err) {
    log(`WARNING: could not pin the runner to cpu ${plan.loadCpus}: ${err.message}`);
  }
}

/**
 * Checks that the pid is the server itself (taskset exec'd it, so the pid is the same) and that
 * all its threads are pinned. Returns the number of threads checked.
 */
function verifyPinning(server, cpus) {
  const name = processName(server.pid);
  if (name === "taskset") throw new Error(`${server.entry.name}: pid ${server.pid} is still taskset, not the server`);
  if (cpus === null) return 0;
  const want = parseCpuList(cpus).join(",");
  const affinities = threadAffinities(server.pid);
  const stray = affinities.filter((a) => a === "?" || parseCpuList(a).join(",") !== want);
  if (stray.length > 0) {
    throw new Error(`${server.entry.name}: ${stray.length} of ${affinities.length} threads not pinned to cpu ${cpus}: ${stray}`);
  }
  return affinities.length;
}

function assertAlive(server) {
  const { exitCode, signalCode } = server.child;
  if (exitCode !== null || signalCode !== null) {
    // A native addon is mapped from its file: rewriting the file under a running process kills it so.
    const hint = signalCode === "SIGBUS" ? "; SIGBUS usually means its native addon was rebuilt while it ran" : "";
    throw new Error(`${server.entry.name} exited during the benchmark (code ${exitCode}, signal ${signalCode})${hint}`);
  }
}

/** The load generator of a mode: h2load for h2c and h2, the chosen one (wrk by default) otherwise. */
const loadgenFor = (mode, opts) => (mode.protocol === "h2c" || mode.protocol === "tls-h2" ? LOADGENS.h2load : opts.loadgen);

/** One warm-up run, then one measured run with the server's CPU time, RSS and the machine's CPU read around it. */
async function measure(server, scenario, mode, ctx) {
  const { opts, plan, ticksPerSecond } = ctx;
  const loadgen = loadgenFor(mode, opts);
  const base = {
    port: server.port, scenario, mode, connections: mode.connections ?? CONNECTIONS, threads: plan.loadThreads, pinCore: plan.loadCpus, cwd: ROOT,
  };
  await loadgen.run({ ...base, durationS: opts.warmupS });
  assertAlive(server);
  const sampler = startSampler(server.pid);
  const before = sampleCpu(server.pid);
  const machineBefore = machineCpuTicks();
  const startedAt = performance.now();
  let report;
  let sampled;
  try {
    report = await loadgen.run({ ...base, durationS: opts.durationS, onSpawn: (pid) => sampler.setLoadPid(pid) });
  } finally {
    sampled = sampler.stop();
  }
  const wallS = (performance.now() - startedAt) / 1000;
  assertAlive(server);
  const after = sampleCpu(server.pid);
  const machineAfter = machineCpuTicks();
  const processS = (after.process - before.process) / ticksPerSecond;
  const mainThreadS = (after.jsThread - before.jsThread) / ticksPerSecond;
  const loadS = sampled.loadTicks / ticksPerSecond;
  const machineS = (machineAfter.busy - machineBefore.busy) / ticksPerSecond;
  const stealS = (machineAfter.steal - machineBefore.steal) / ticksPerSecond;
  const usPerRequest = (seconds) => (report.requests > 0 ? (seconds * 1e6) / report.requests : NaN);
  return {
    scenario: scenario.name,
    mode: mode.name,
    server: server.entry.name,
    mainThread: server.entry.mainThread,
    loadgen: loadgen.name,
    ...report,
    cpuUsPerReqProcess: usPerRequest(processS),
    cpuUsPerReqMainThread: server.entry.mainThread === null ? NaN : usPerRequest(mainThreadS),
    peakRssKiB: sampled.peakRssKiB,
    // How busy the server kept its cores: well under 100% each means the load generator was the limit or something else took them.
    serverCpuPercent: (processS / wallS) * 100,
    loadCpuPercent: (loadS / wallS) * 100,
    // Everything else the machine did meanwhile (this runner, a compile, the kernel's softirq work), in % of one core.
    otherCpuPercent: Math.max(0, ((machineS - processS - loadS) / wallS) * 100),
    // Time the virtual machine's host took the cpus away (0 on bare metal), in % of one core.
    stealCpuPercent: (stealS / wallS) * 100,
  };
}

/** The servers `entry` runs in `modes` (by protocol). */
const modesOf = (entry, modes) => modes.filter((m) => entry.protocols.includes(m.protocol));

/**
 * For each scenario: start the servers, check each one's answer, then rounds of (mode, server)
 * runs, the server order rotated each round; stop the servers. Fresh processes per scenario keep
 * peak RSS per scenario and a crash in one scenario out of the others.
 */
async function measureAll(servers, ctx) {
  const { opts, plan, deadline, skipped } = ctx;
  const runs = [];
  const broken = new Set(); // servers that failed to start: not tried again
  for (const scenario of opts.scenarios) {
    if (Date.now() > deadline) return { runs, incomplete: `stopped at the --max-minutes deadline before scenario ${scenario.name}` };
    const started = [];
    try {
      // A server that answers only some scenarios (its `scenarios`) is left out of the others.
      const serves = (e) =>
        !broken.has(e.name) && modesOf(e, opts.modes).length > 0 && (e.scenarios?.includes(scenario.name) ?? true);
      for (const entry of servers.filter(serves)) {
        let server;
        try {
          server = await startServer(entry, { root: ROOT, pinCore: plan.serverCpus });
        } catch (err) {
          broken.add(entry.name);
          skipped.push(`${entry.name}: failed to start (${err.message.split("\n")[0]})`);
          log(`SKIPPING ${entry.name}: ${err.message}`);
          continue;
        }
        started.push(server);
        const threads = verifyPinning(server, plan.serverCpus);
        const failures = [];
        for (const protocol of new Set(modesOf(entry, opts.modes).map((m) => m.protocol))) {
          const problem = await checkResponse(scenario, server.port, protocol);
          if (problem) failures.push(`${protocol}: ${problem}`);
        }
        if (failures.length) {
          server.failedCheck = failures.join("; ");
          skipped.push(`${entry.name} in ${scenario.name}: wrong answer (${server.failedCheck})`);
          log(`SKIPPING ${entry.name} for ${scenario.name}: ${server.failedCheck}`);
          continue;
        }
        server.skipModes = new Set();
        for (const mode of modesOf(entry, opts.modes).filter((m) => m.protocol === "h1" && m.depth > 1)) {
          const problem = await checkPipelined(scenario, server.port);
          if (problem) {
            server.skipModes.add(mode.name);
            skipped.push(`${entry.name} in ${scenario.name} ${mode.name}: ${problem}`);
            log(`SKIPPING ${entry.name} for ${scenario.name} ${mode.name}: ${problem}`);
          }
        }
        const pinned = threads ? `, ${threads} threads pinned to cpu ${plan.serverCpus}` : "";
        log(`${scenario.name}: started ${entry.name}: pid ${server.pid} (${processName(server.pid)}), port ${server.port}${pinned}`);
      }
      const ready = started.filter((s) => !s.failedCheck);
      for (let round = 1; round <= opts.rounds; round++) {
        // Rotate the order each round, so no server always runs first (or right after a heavy one).
        const shift = (round - 1) % Math.max(1, ready.length);
        const order = [...ready.slice(shift), ...ready.slice(0, shift)];
        for (const mode of opts.modes) {
          for (const server of order.filter((s) => s.entry.protocols.includes(mode.protocol))) {
            if (Date.now() > deadline) {
              return { runs, incomplete: `stopped at the --max-minutes deadline in ${scenario.name} round ${round}` };
            }
            if (server.failedRun || server.skipModes.has(mode.name)) continue;
            try {
              const run = { round, ...(await measure(server, scenario, mode, ctx)) };
              runs.push(run);
              logRun(run, plan);
            } catch (err) {
              // A server that died or a load generator that failed: the rest of the scenario goes on without it.
              server.failedRun = err.message.split("\n")[0];
              skipped.push(`${server.entry.name} in ${scenario.name} from round ${round} ${mode.name}: ${server.failedRun}`);
              log(`DROPPING ${server.entry.name} for the rest of ${scenario.name}: ${err.message}`);
            }
          }
        }
      }
    } finally {
      await Promise.all(started.map(stopServer));
    }
  }
  return { runs, incomplete: null };
}

function logRun(run, plan) {
  const problems = runProblems(run);
  log(
    `round ${run.round} ${run.scenario} ${run.mode} ${run.server}: ${fmt.int(run.requestsPerSec)} req/s, ` +
      `p50 ${fmt.ms(run.p50Ms)} ms, p99 ${fmt.ms(run.p99Ms)} ms, ` +
      `${fmt.us(run.cpuUsPerReqProcess)} us/req process, ${fmt.us(run.cpuUsPerReqMainThread)} us/req main thread, ` +
      `peak RSS ${fmt.mib(run.peakRssKiB / 1024)} MiB, server CPU ${fmt.int(run.serverCpuPercent)}%, ` +
      `load CPU ${fmt.int(run.loadCpuPercent)}%, other ${fmt.int(run.otherCpuPercent)}%, steal ${fmt.int(run.stealCpuPercent)}%` +
      (problems ? `  <-- ${problems}` : "") +
      (run.serverCpuPercent < BUSY_ENOUGH_PERCENT * (plan.serverCpuCount ?? 1) ? "  (server not saturated)" : ""),
  );
  if (run.non2xx > 0) warnLoudly(`${run.server} ${run.scenario} ${run.mode} round ${run.round}: ${run.non2xx} responses were not 2xx/3xx`);
}

/** Progress goes to stderr, so stdout carries only the final Markdown. */
function log(line) {
  console.error(`[bench] ${line}`);
}

function warnLoudly(message) {
  const bar = "!".repeat(78);
  console.error(`${bar}\n!!! ${message}\n!!! these numbers measure errors, not the scenario: do not use them\n${bar}`);
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

/** A package's version from bench/node_modules, or null. */
function peerVersion(name) {
  try {
    return JSON.parse(readFileSync(join(ROOT, "bench", "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return null;
  }
}

/** hyper's version from Cargo.lock, or null. */
function hyperVersion() {
  try {
    return /name = "hyper"\nversion = "([^"]+)"/.exec(readFileSync(join(ROOT, "Cargo.lock"), "utf8"))?.[1] ?? null;
  } catch {
    return null;
  }
}

/** Versions of what took part: node always, the rest when used. */
function versions(servers, loadgens) {
  const list = [`node ${process.version}`];
  const runtime = (entry) => {
    if (!entry.version) return null;
    try {
      const [command, args] = entry.version;
      const out = execFileSync(join(ROOT, command), args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 10_000 });
      return out.split("\n")[0].trim();
    } catch {
      return null;
    }
  };
  for (const entry of servers) {
    if (entry.name === "bun") list.push(`bun ${runtime(entry) ?? "?"}`);
    if (entry.name === "deno") list.push(runtime(entry)?.replace(/\s*\(.*/, "") ?? "deno ?");
    if (entry.name === "fastify") list.push(`fastify ${peerVersion("fastify")}`);
    if (entry.name === "hono") list.push(`hono ${peerVersion("hono")}`, `@hono/node-server ${peerVersion("@hono/node-server")}`);
    if (entry.name === "hyper") list.push(`hyper ${hyperVersion() ?? "?"}`);
  }
  for (const [name, version] of loadgens) list.push(`${name} ${version}`);
  return list.join(", ");
}

function machineInfo(opts, plan, servers, loadgens, skipped) {
  const modeText = opts.modes
    .map((m) => `${m.name} (${loadgenFor(m, opts).name}: ${m.title})`)
    .join(", ");
  return {
    date: new Date().toISOString(),
    cpuModel: os.cpus()[0]?.model ?? "unknown CPU",
    cores: plan.cores,
    os: `${os.type()} ${os.release()}`,
    // Anything else using the cores (a compile) skews the numbers: record how busy the machine was.
    loadAverage: os.loadavg()[0].toFixed(2),
    versions: versions(servers, loadgens),
    gitCommit: gitCommit(),
    pinning: plan.text,
    load:
      `${CONNECTIONS} connections, ${plan.loadThreads} load thread(s); modes ${modeText}; ${opts.rounds} round(s), ` +
      `each run ${opts.durationS} s measured after ${opts.warmupS} s warm-up, server order rotated each round; medians over rounds`,
    scenarios: opts.scenarios.map((s) => `${s.name} (${s.method} ${s.path}: ${s.title})`).join(", "),
    servers: servers.map((e) => `${e.name} (${e.title})`).join(", "),
    skipped,
  };
}

function render(info, runs, opts, plan) {
  const baselineFor = (modeName) => BASELINE_BY_PROTOCOL[MODES.find((m) => m.name === modeName).protocol];
  const rows = summarize(runs, baselineFor);
  const flagged = runs.filter((r) => r.non2xx > 0 || !(r.requests > 0)).length;
  const warning = flagged
    ? `\n**WARNING: ${flagged} run(s) had non-2xx/3xx responses or none completed; those numbers are not valid.**\n`
    : "";
  const busy = BUSY_ENOUGH_PERCENT * (plan.serverCpuCount ?? 1);
  const starved = runs.filter((r) => r.serverCpuPercent < busy && r.scenario !== "async").length;
  const starvedNote = starved
    ? `\n${starved} run(s) (async scenario not counted: its timer leaves the server idle by design) kept the ` +
      `server's cpu under ${BUSY_ENOUGH_PERCENT}% busy (see "server CPU %"): the load generator was the limit ` +
      '(see "load CPU %"), or something else took the core (see "other CPU %" and "steal %" in bench/results/latest.md); ' +
      "their req/s understate the server: compare CPU us/req.\n"
    : "";
  const others = runs.map((r) => r.otherCpuPercent);
  const steals = runs.map((r) => r.stealCpuPercent);
  const busiest = runs.filter((r) => r.otherCpuPercent + r.stealCpuPercent > CONTENDED_PERCENT);
  const contention = runs.length
    ? `\nContention during the measured runs, in % of one core: other CPU on the machine (this runner, the kernel, ` +
      `anything else such as a compile) median ${fmt.int(median(others))}%, max ${fmt.int(Math.max(...others))}%; ` +
      `steal by the VM's host median ${fmt.int(median(steals))}%, max ${fmt.int(Math.max(...steals))}%` +
      (busiest.length
        ? `. ${busiest.length} run(s) over ${CONTENDED_PERCENT}%: ` +
          busiest.map((r) => `${r.scenario} ${r.mode} ${r.server} round ${r.round}`).join(", ") +
          " (medians over rounds absorb one such run per row; see bench/results/latest.md)"
        : "") +
      ".\n"
    : "";
  const baselines = [...new Set(opts.modes.map((m) => BASELINE_BY_PROTOCOL[m.protocol]))].join(" / ");
  const notes = legend({ baselines, pipelined: opts.modes.some((m) => m.name === "pipelined"), depth: PIPELINE_DEPTH });
  const summary =
    `${machineHeader(info)}\n${warning}${starvedNote}${contention}\n${summaryTable(rows)}\n\n${notes}\n`;
  const full = `${summary}\n## Every run\n\n${runsTable(runs)}\n`;
  const svg = barChartSvg(rows, {
    servers: SERVERS.map((e) => e.name),
    title: `fetch-rs benchmark: req/s (ratio to ${baselines})`,
    subtitle: `${info.date.slice(0, 10)}, ${info.cpuModel}, ${info.cores} cores; ${info.pinning.split(" (")[0]}; ` +
      `${opts.rounds} round(s) of ${opts.durationS} s, medians; fetch-rs ${info.gitCommit ?? "?"}`,
  });
  return { summary, full, svg, flagged };
}

/** Seconds the selected work should take, for the estimate and the default deadline. */
function estimateSeconds(opts, servers) {
  let runs = 0;
  for (const entry of servers) runs += modesOf(entry, opts.modes).length;
  const perRun = opts.warmupS + opts.durationS + 2 * RUN_OVERHEAD_S;
  return opts.scenarios.length * (runs * opts.rounds * perRun + servers.length * START_OVERHEAD_S);
}

async function main() {
  const opts = readOptions();
  if (process.platform !== "linux") {
    console.error("bench/run.mjs reads CPU time from /proc and pins with taskset: it needs Linux");
    return 1;
  }
  const skipped = [];

  // Load generators: what is here, what each mode needs; a mode without its generator is skipped.
  const available = new Map();
  for (const gen of Object.values(LOADGENS)) {
    const version = gen.version();
    if (version === null) log(`load generator ${gen.name}: MISSING (install: ${gen.missingHint})`);
    else available.set(gen.name, version);
  }
  log(`load generators here: ${[...available].map(([n, v]) => `${n} ${v}`).join(", ") || "none"}`);
  opts.modes = opts.modes.filter((mode) => {
    const gen = loadgenFor(mode, opts);
    if (!available.has(gen.name)) {
      skipped.push(`mode ${mode.name}: ${gen.name} missing (${gen.missingHint})`);
      log(`SKIPPING mode ${mode.name}: it needs ${gen.name}, which is missing: ${gen.missingHint}`);
      return false;
    }
    if (!gen.modes.includes(mode.name)) {
      skipped.push(`mode ${mode.name}: ${gen.name} cannot run it`);
      log(`SKIPPING mode ${mode.name}: ${gen.name} cannot run it`);
      return false;
    }
    return true;
  });
  if (opts.modes.length === 0) {
    console.error("no mode left to run: install the missing load generator (see above and bench/README.md)");
    return 2;
  }

  // Servers: those whose files are missing are skipped with the way to get them.
  const servers = opts.servers.filter((entry) => {
    const missing = missingRequirements(entry, ROOT);
    if (missing.length > 0) {
      skipped.push(`${entry.name}: missing ${missing.join(", ")}`);
      log(`SKIPPING ${entry.name}: missing ${missing.join(", ")}: ${entry.missingHint ?? ""}`);
      return false;
    }
    if (modesOf(entry, opts.modes).length === 0) {
      if (opts.serversExplicit) log(`SKIPPING ${entry.name}: it speaks none of the selected modes (${opts.modes.map((m) => m.name)})`);
      return false;
    }
    return true;
  });
  if (servers.length === 0) {
    console.error("no server left to run (see above)");
    return 1;
  }

  const plan = pinningPlan(opts);
  if (plan.serverCpus === null) log(`WARNING: running unpinned: ${plan.text}`);
  pinSelf(plan);
  const estimate = estimateSeconds(opts, servers);
  const budgetMs = (opts.maxMinutes ?? Math.ceil((estimate * 1.5 + 120) / 60)) * 60_000;
  const deadline = Date.now() + budgetMs;
  setTimeout(() => shutdown(1, `[bench] hard stop: still running ${HARD_STOP_GRACE_MS / 1000} s after the deadline`), budgetMs + HARD_STOP_GRACE_MS).unref();
  log(
    `${opts.scenarios.length} scenario(s) x ${opts.modes.length} mode(s) x ${servers.length} server(s) x ${opts.rounds} round(s): ` +
      `about ${Math.ceil(estimate / 60)} min (deadline ${budgetMs / 60_000} min, then it reports what ran)`,
  );

  const loadgensUsed = [...new Set(opts.modes.map((m) => loadgenFor(m, opts).name))].map((n) => [n, available.get(n)]);
  const info = machineInfo(opts, plan, servers, loadgensUsed, skipped);
  const ctx = { opts, plan, ticksPerSecond: clockTicksPerSecond(), deadline, skipped };
  const { runs, incomplete } = await measureAll(servers, ctx);
  info.loadAverageEnd = os.loadavg()[0].toFixed(2);
  info.incomplete = incomplete;
  if (incomplete) log(`WARNING: ${incomplete}`);

  const { summary, full, svg, flagged } = render(info, runs, opts, plan);
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, "latest.md"), full);
  writeFileSync(join(RESULTS_DIR, "latest.svg"), svg);
  writeFileSync(join(RESULTS_DIR, "latest.json"), `${JSON.stringify({ info, runs }, null, 1)}\n`);
  console.log(summary);
  log(`written to bench/results/latest.md, latest.svg and latest.json`);
  if (flagged) warnLoudly(`${flagged} run(s) had non-2xx/3xx responses or none completed (see the errors column)`);
  return flagged || incomplete ? 1 : 0;
}

// Every way out goes through here, so no server or load generator is left behind.
let exiting = false;
async function shutdown(code, message) {
  if (exiting) return;
  exiting = true;
  if (message) console.error(message);
  // Bounded: stopAll SIGKILLs whatever ignores SIGTERM within its grace period.
  await stopAll();
  removeBodyFiles();
  process.exit(code);
}

process.on("exit", () => {
  killAllNow(); // last resort: synchronous SIGKILL of anything still running
  removeBodyFiles();
});
process.on("SIGINT", () => shutdown(130, "\n[bench] interrupted: stopping servers"));
process.on("SIGTERM", () => shutdown(143, "[bench] terminated: stopping servers"));
process.on("SIGHUP", () => shutdown(129, "[bench] hang-up: stopping servers"));
process.on("uncaughtException", (err) => shutdown(1, `[bench] error: ${err.stack ?? err}`));
process.on("unhandledRejection", (err) => shutdown(1, `[bench] error: ${err?.stack ?? err}`));
main().then(
  (code) => shutdown(code),
  (err) => shutdown(1, `[bench] error: ${err.stack ?? err}`),
);
