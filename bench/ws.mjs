// WebSocket benchmark: fetch-rs against the `ws` package on node:http, Bun.serve and
// Deno.serve, side by side in one run. Scenarios: echo of 64 B and 16 KiB messages over 100
// connections, and a fan-out of one publish to 1,000 subscribers. The load comes from a
// small Rust generator (examples/ws-load.rs, tokio-tungstenite on its own core) so that the
// client does not limit the result. Server and load are pinned to separate cores; servers
// alternate within each round; medians are reported with CPU per message (whole process
// and JS thread, from /proc). Writes bench/results/ws-latest.md.
// Run with: npm run bench:ws
//           node bench/ws.mjs --duration=1 --warmup=0.5 --rounds=1   (a quick check that it runs)
//           node bench/ws.mjs --servers=fetch-rs,bun --scenarios=echo-64

import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { clockTicksPerSecond, sampleCpu } from "./lib/cpu.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "bench", "node_modules", ".bin");
const LOAD = join(ROOT, "target", "release", "examples", "ws-load");

const SERVERS = [
  { name: "fetch-rs", cmd: [process.execPath, "bench/servers/ws-fetch-rs.mjs"] },
  {
    // Bun's handler API (server.upgrade, the `websocket` handlers) where the row above uses
    // upgradeWebSocket and the socket's events: the same server as Bun.serve's.
    name: "fetch-rs handlers",
    key: "fetch-rs-handlers",
    cmd: [process.execPath, "bench/servers/ws-fetch-rs-handlers.mjs"],
  },
  {
    // The network on the JS thread (src/in_thread.rs, docs/network-thread.md).
    name: "fetch-rs in-thread",
    key: "fetch-rs-inthread",
    cmd: [process.execPath, "bench/servers/ws-fetch-rs.mjs"],
    env: { FETCH_RS_OPTIONS: JSON.stringify({ workerThreads: 0 }) },
  },
  {
    // The worker-thread network: the default with two or more cores (with one, as under
    // this runner's pinning, the default is the network on the JS thread).
    name: "fetch-rs threads",
    key: "fetch-rs-threads",
    cmd: [process.execPath, "bench/servers/ws-fetch-rs.mjs"],
    env: { FETCH_RS_OPTIONS: JSON.stringify({ workerThreads: 1 }) },
  },
  {
    // The same server from another build (bench/make-baseline.sh REV), to compare a change with
    // the code before it in one run. Listed only when asked for (--servers=...,fetch-rs-base).
    name: "fetch-rs-base",
    cmd: [process.execPath, "bench/servers/ws-fetch-rs.mjs"],
    env: { FETCH_RS_PACKAGE: "../baseline/dist/index.js" },
    needs: join(ROOT, "bench", "baseline", "fetch-rs.node"),
    hint: "bench/make-baseline.sh main",
    optIn: true,
  },
  {
    name: "fetch-rs-base handlers",
    key: "fetch-rs-handlers-base",
    cmd: [process.execPath, "bench/servers/ws-fetch-rs-handlers.mjs"],
    env: { FETCH_RS_PACKAGE: "../baseline/dist/index.js" },
    needs: join(ROOT, "bench", "baseline", "fetch-rs.node"),
    hint: "bench/make-baseline.sh main",
    optIn: true,
  },
  {
    name: "fetch-rs-base in-thread",
    key: "fetch-rs-base-inthread",
    cmd: [process.execPath, "bench/servers/ws-fetch-rs.mjs"],
    env: { FETCH_RS_PACKAGE: "../baseline/dist/index.js", FETCH_RS_OPTIONS: JSON.stringify({ workerThreads: 0 }) },
    needs: join(ROOT, "bench", "baseline", "fetch-rs.node"),
    hint: "bench/make-baseline.sh main",
    optIn: true,
  },
  { name: "ws (node:http)", key: "node-ws", cmd: [process.execPath, "bench/servers/ws-node.mjs"] },
  { name: "Bun.serve", key: "bun", cmd: [join(BIN, "bun"), "bench/servers/ws-bun.mjs"], needs: join(BIN, "bun") },
  {
    name: "Deno.serve",
    key: "deno",
    cmd: [join(BIN, "deno"), "run", "-A", "bench/servers/ws-deno.mjs"],
    needs: join(BIN, "deno"),
  },
];

const SCENARIOS = [
  {
    name: "echo-64",
    label: "echo 64 B, 100 connections",
    args: ["--mode", "echo", "--size", "64", "--connections", "100"],
  },
  {
    // Opt-in (--scenarios=echo-64-text): the echo of text messages (ASCII).
    name: "echo-64-text",
    label: "echo 64 B of text, 100 connections",
    args: ["--mode", "echo", "--size", "64", "--connections", "100", "--text", "true"],
    optIn: true,
  },
  {
    name: "echo-16k",
    label: "echo 16 KiB, 100 connections",
    args: ["--mode", "echo", "--size", "16384", "--connections", "100"],
  },
  {
    name: "fanout-1000",
    label: "fan-out to 1,000 subscribers (deliveries)",
    args: ["--mode", "fanout", "--size", "64", "--subscribers", "1000"],
  },
];

const { values: o } = parseArgs({
  options: {
    servers: { type: "string" },
    scenarios: { type: "string" },
    duration: { type: "string", default: "5" },
    warmup: { type: "string", default: "1" },
    rounds: { type: "string", default: "3" },
    "server-cpus": { type: "string", default: "0" },
    "load-cpus": { type: "string", default: "1" },
    // The first server's port (each start takes the next one): another run on the machine
    // can keep out of the way.
    port: { type: "string", default: "3700" },
    help: { type: "boolean", default: false },
  },
});
if (o.help) {
  console.log(
    "node bench/ws.mjs [--servers=fetch-rs,fetch-rs-handlers,fetch-rs-inthread,fetch-rs-threads,fetch-rs-base,fetch-rs-base-inthread,node-ws,bun,deno] [--scenarios=echo-64,echo-64-text,echo-16k,fanout-1000] [--duration=5] [--warmup=1] [--rounds=3] [--server-cpus=0] [--load-cpus=1] [--port=3700]",
  );
  process.exit(0);
}
const pick = (table, list) =>
  list === undefined
    ? table
    : table.filter((e) => list.split(",").includes(e.key ?? e.name) || list.split(",").includes(e.name));
const servers = (o.servers === undefined ? SERVERS.filter((s) => !s.optIn) : pick(SERVERS, o.servers)).filter((s) => {
  if (s.needs && !existsSync(s.needs)) {
    console.error(`skipping ${s.name}: ${s.needs} is missing (${s.hint ?? "npm --prefix bench ci"})`);
    return false;
  }
  return true;
});
const scenarios = o.scenarios === undefined ? SCENARIOS.filter((s) => !s.optIn) : pick(SCENARIOS, o.scenarios);
const loadThreads = o["load-cpus"].split(",").length;

// Built every run (cargo does nothing when it is up to date): a binary left from an older
// checkout would measure with an older load generator.
console.error("building the load generator (cargo build --release --example ws-load)");
execFileSync("cargo", ["build", "--release", "--example", "ws-load"], { cwd: ROOT, stdio: "inherit" });

function startServer(s, port) {
  const child = spawn("taskset", ["-c", o["server-cpus"], ...s.cmd], {
    cwd: ROOT,
    env: { ...process.env, ...s.env, PORT: String(port) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`${s.name} did not start`)), 20_000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = /READY (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.on("exit", (code) => reject(new Error(`${s.name} exited with ${code}`)));
  });
}

async function stop(child) {
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}

/** The server's pid under taskset (taskset execs, so it is the child's own pid). */
function runLoad(port, scenario) {
  const args = [
    "-c",
    o["load-cpus"],
    LOAD,
    "--url",
    `ws://127.0.0.1:${port}`,
    "--duration",
    o.duration,
    "--warmup",
    o.warmup,
    "--threads",
    String(loadThreads),
    ...scenario.args,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn("taskset", args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.on("exit", (code) => {
      try {
        resolve(JSON.parse(out.trim().split("\n").pop()));
      } catch {
        reject(new Error(`ws-load exited with ${code}: ${out}`));
      }
    });
  });
}

const ticks = clockTicksPerSecond();
const results = {};
let port = Number(o.port);
for (let round = 0; round < Number(o.rounds); round++) {
  for (const scenario of scenarios) {
    for (const s of servers) {
      const { child, port: p } = await startServer(s, port++);
      try {
        // CPU is read around the whole load run (warm-up included) and divided by every
        // message counted in it, so CPU per message is a slight overestimate for all alike.
        const before = sampleCpu(child.pid);
        const r = await runLoad(p, scenario);
        const after = sampleCpu(child.pid);
        const all = r.messages * ((Number(o.duration) + Number(o.warmup)) / Number(o.duration));
        const us = (t) => (all > 0 ? ((t / ticks) * 1e6) / all : NaN);
        (results[scenario.name] ??= {})[s.name] ??= [];
        results[scenario.name][s.name].push({
          perSecond: r.perSecond,
          errors: r.errors,
          cpuUs: us(after.process - before.process),
          jsUs: us(after.jsThread - before.jsThread),
        });
        const last = results[scenario.name][s.name].at(-1);
        console.error(
          `${scenario.name} ${s.name}: ${Math.round(r.perSecond)}/s, CPU ${last.cpuUs.toFixed(2)} µs/msg (JS thread ${last.jsUs.toFixed(2)})`,
        );
      } finally {
        await stop(child);
      }
    }
  }
}

const median = (xs) => {
  const a = [...xs].sort((x, y) => x - y);
  return a.length ? a[Math.floor((a.length - 1) / 2)] : NaN;
};
const f = (n, d = 0) => (Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: d }) : "n/a");
const lines = [
  `WebSocket benchmark: server on cpu ${o["server-cpus"]}, load (examples/ws-load.rs) on cpu ${o["load-cpus"]}, ` +
    `${o.rounds} round(s) of ${o.warmup} s + ${o.duration} s, medians.`,
  "",
];
for (const scenario of scenarios) {
  const row = results[scenario.name] ?? {};
  const base = median((row["ws (node:http)"] ?? []).map((x) => x.perSecond));
  lines.push(`### ${scenario.label}`, "");
  lines.push(
    "| server | messages/s | vs ws | CPU µs/msg | JS thread µs/msg | errors |",
    "|---|---:|---:|---:|---:|---:|",
  );
  for (const s of servers) {
    const runs = row[s.name] ?? [];
    const ps = median(runs.map((x) => x.perSecond));
    lines.push(
      `| ${s.name} | ${f(ps)} | ${Number.isFinite(base) && base > 0 ? f(ps / base, 2) + "x" : "n/a"} | ` +
        `${f(median(runs.map((x) => x.cpuUs)), 2)} | ${f(median(runs.map((x) => x.jsUs)), 2)} | ${runs.reduce((a, x) => a + x.errors, 0)} |`,
    );
  }
  lines.push("");
}
const table = lines.join("\n");
console.log(table);
mkdirSync(join(ROOT, "bench", "results"), { recursive: true });
writeFileSync(join(ROOT, "bench", "results", "ws-latest.md"), table);
