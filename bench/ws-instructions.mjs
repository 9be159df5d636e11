// What one echoed WebSocket message costs a server, counted over an exact number of messages:
// the WebSocket counterpart of bench/instructions.mjs. The load is examples/ws-load.rs in its
// counted mode (`--messages`): every connection echoes a warm-up, the generator stops and
// says WARM, the tool here is started or zeroed, then every connection echoes exactly N
// messages, the generator says MEASURED, and the tool's figures are taken and divided by the
// messages. Tools:
// - callgrind (default): user-space instructions per message by object (the addon, node, libc,
//   JIT code as "???"), deterministic where CPU time is not on a shared machine. Needs valgrind.
// - syscalls: system calls (in total and the usual ones) and context switches per message,
//   counted by `perf stat` on the kernel's tracepoints, which slows the server far less than
//   strace (which changes how many messages each read finds).
// - strace: system calls per message (`strace -c -f` attached for the measured messages).
// - perf: `perf record -g -e cpu-clock` attached for the measured messages; prints the
//   objects and functions (user and kernel) that took the samples, per cent.
// The server runs pinned to one core (--server-cpus), so fetch-rs's default is the network on
// the JS thread, as in bench/ws.mjs; the load runs on the others.
// --mode=fanout counts the fan-out of bench/ws.mjs instead: `--subscribers` sockets (1,000)
// subscribed to one topic, and `--messages` publishes (in all, not per connection; `--warm`
// before them), each delivered to every subscriber; the figures are per delivery.
// Run with: node bench/ws-instructions.mjs [--servers=fetch-rs,fetch-rs-base] [--tool=callgrind|syscalls|strace|perf]
//           [--mode=echo|fanout] [--subscribers=1000] (fanout)
//           [--messages=200] (per connection; fanout: publishes) [--warm=300] (warm-up messages per connection) [--connections=100] [--size=64] [--window=4] [--text]
//           [--top=25] (callgrind, perf: the functions that cost most) [--keep=DIR] (the dumps, perf data)
//           [--sim] (callgrind: also simulates the caches and branch prediction; the table gets
//                    their events (I1mr, D1mr, Bcm, ...) per message, all and the addon's)
//           [--events=page-faults,ipi:ipi_send_cpu] (syscalls: more perf events to count)
// Servers: fetch-rs, fetch-rs-threads (workerThreads: 1), fetch-rs-handlers(-threads) (Bun's
// handler API), fetch-rs-base, fetch-rs-base-threads and fetch-rs-handlers-base
// (bench/make-baseline.sh REV), node-ws, bun.
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { eventRows, summarize } from "./lib/callgrind.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const LOAD = join(ROOT, "target", "release", "examples", "ws-load");
const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, "").split("=");
    return [k, v ?? "true"];
  }),
);
const tool = args.tool ?? "callgrind";
// --sim: callgrind also simulates the caches and branch prediction (as bench/instructions.mjs).
const sim = args.sim === "true" ? ["--cache-sim=yes", "--branch-sim=yes"] : [];
const names = (args.servers ?? "fetch-rs").split(",");
const mode = args.mode ?? "echo";
if (mode !== "echo" && mode !== "fanout") throw new Error(`--mode is echo or fanout, not ${mode}`);
const fanout = mode === "fanout";
const subscribers = Number(args.subscribers ?? 1000);
const perConnection = Number(args.messages ?? 200);
// Warm-up messages per connection (fanout: publishes), so that V8 has compiled the hot code
// before the count.
const warm = Number(args.warm ?? (fanout ? 100 : 300));
const connections = Number(args.connections ?? 100);
const size = Number(args.size ?? 64);
const window = Number(args.window ?? 4);
// Text messages (ASCII) instead of binary ones.
const text = args.text === "true";
const top = Number(args.top ?? 0);
// --tool=syscalls: more perf events to count per message, comma-separated (for example
// `--events=page-faults,ipi:ipi_send_cpu,irq:softirq_entry`).
const extraEvents = args.events ? args.events.split(",") : [];
const serverCpus = args["server-cpus"] ?? "0";
const loadCpus = args["load-cpus"] ?? "1";

const FETCH_RS = [process.execPath, "bench/servers/ws-fetch-rs.mjs"];
const BASE = { FETCH_RS_PACKAGE: "../baseline/dist/index.js" };
const THREADS = { FETCH_RS_OPTIONS: JSON.stringify({ workerThreads: 1 }) };
const SERVERS = {
  "fetch-rs": { cmd: FETCH_RS },
  "fetch-rs-threads": { cmd: FETCH_RS, env: THREADS },
  // Bun's handler API (server.upgrade, the `websocket` handlers) instead of the socket's events.
  "fetch-rs-handlers": { cmd: [process.execPath, "bench/servers/ws-fetch-rs-handlers.mjs"] },
  "fetch-rs-handlers-threads": { cmd: [process.execPath, "bench/servers/ws-fetch-rs-handlers.mjs"], env: THREADS },
  "fetch-rs-base": { cmd: FETCH_RS, env: BASE, needs: "bench/baseline/fetch-rs.node" },
  "fetch-rs-base-threads": { cmd: FETCH_RS, env: { ...BASE, ...THREADS }, needs: "bench/baseline/fetch-rs.node" },
  "fetch-rs-handlers-base": {
    cmd: [process.execPath, "bench/servers/ws-fetch-rs-handlers.mjs"],
    env: BASE,
    needs: "bench/baseline/fetch-rs.node",
  },
  // Any other build: FETCH_RS_CANDIDATE=/path/to/dist/index.js (a copy of dist/ beside its fetch-rs.node).
  "fetch-rs-candidate": { cmd: FETCH_RS, env: { FETCH_RS_PACKAGE: process.env.FETCH_RS_CANDIDATE } },
  "node-ws": { cmd: [process.execPath, "bench/servers/ws-node.mjs"] },
  bun: { cmd: ["bench/node_modules/.bin/bun", "bench/servers/ws-bun.mjs"], needs: "bench/node_modules/.bin/bun" },
};

// The system calls counted one by one by --tool=syscalls (all of them are counted in total).
const SYSCALLS = ["recvfrom", "read", "readv", "sendto", "sendmsg", "write", "writev", "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "futex", "clock_gettime"];

const run = (cmd, argv) =>
  execFileSync(cmd, argv, { encoding: "utf8", maxBuffer: 64 << 20, stdio: ["ignore", "pipe", "pipe"] });

/** Starts the server (under callgrind for that tool) and resolves with its process once READY. */
function startServer(name, entry, dir) {
  const wrap =
    tool === "callgrind"
      ? ["valgrind", "--tool=callgrind", ...sim, `--callgrind-out-file=${join(dir, `${name}.%p`)}`]
      : [];
  const child = spawn("taskset", ["-c", serverCpus, ...wrap, ...entry.cmd], {
    cwd: ROOT,
    env: { ...process.env, ...(entry.env ?? {}), PORT: "0" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 180 s`)), 180_000);
    child.stdout.on("data", (d) => {
      seen += d;
      const m = /READY (\d+)/.exec(seen);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.once("exit", (code) => reject(new Error(`${name} exited (${code}) before it was ready`)));
  });
}

/** Runs the counted load; `onWarm` and `onMeasured` run at its two stops. Returns its JSON line. */
async function load(port, onWarm, onMeasured) {
  const child = spawn(
    "taskset",
    [
      "-c",
      loadCpus,
      LOAD,
      "--url",
      `ws://127.0.0.1:${port}`,
      "--mode",
      mode,
      "--connections",
      String(connections),
      "--subscribers",
      String(subscribers),
      "--size",
      String(size),
      "--window",
      String(window),
      "--messages",
      String(perConnection),
      "--warm",
      String(warm),
      "--threads",
      String(loadCpus.split(",").length),
      ...(text ? ["--text", "true"] : []),
    ],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  let result = null;
  for await (const line of createInterface({ input: child.stdout })) {
    if (line === "WARM") {
      await onWarm();
      child.stdin.write("\n");
    } else if (line === "MEASURED") {
      await onMeasured();
      child.stdin.write("\n");
    } else if (line.startsWith("{")) result = JSON.parse(line);
  }
  if (result === null || result.errors > 0) throw new Error(`ws-load failed: ${JSON.stringify(result)}`);
  return result;
}

/** Attaches `cmd` to the server for the measured messages; returns what it printed. */
function attach(cmd, argv) {
  let child;
  let out = "";
  return {
    start: async () => {
      child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (out += d));
      // Both tools need a moment to attach before the messages start.
      await new Promise((r) => setTimeout(r, 1000));
    },
    stop: async () => {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGINT");
      await exited;
    },
    output: () => out,
  };
}

const dir = mkdtempSync(join(tmpdir(), "fetch-rs-ws-tool-"));
// Fanout: deliveries (each publish reaches every subscriber).
const messages = perConnection * (fanout ? subscribers : connections);
const what = fanout ? "delivery" : "echoed message";
const results = [];
try {
  for (const [index, name] of names.entries()) {
    const entry = SERVERS[name];
    // Each run's files apart, so that a server named twice (to see how steady a count is) is
    // measured twice.
    const tag = `${index}-${name}`;
    if (!entry) throw new Error(`no server named ${name} (${Object.keys(SERVERS).join(", ")})`);
    if (entry.needs && !existsSync(join(ROOT, entry.needs))) throw new Error(`${name}: ${entry.needs} is missing`);
    process.stderr.write(
      fanout
        ? `${name}: ${perConnection} publishes to ${subscribers} subscribers under ${tool}...\n`
        : `${name}: ${messages} echoes (${connections} connections) under ${tool}...\n`,
    );
    const { child, port } = await startServer(tag, entry, dir);
    try {
      if (tool === "callgrind") {
        await load(
          port,
          async () => run("callgrind_control", ["-z", String(child.pid)]),
          async () => run("callgrind_control", ["-d", String(child.pid)]),
        );
        const file = readdirSync(dir).find((f) => f.startsWith(`${tag}.`) && f.endsWith(".1"));
        if (!file) throw new Error(`${name}: no callgrind dump`);
        if (args.keep !== undefined) {
          mkdirSync(args.keep, { recursive: true });
          copyFileSync(join(dir, file), join(args.keep, `${name}.callgrind`));
        }
        results.push({ name, ...summarize(join(dir, file)) });
      } else if (tool === "strace") {
        const t = attach("strace", ["-c", "-f", "-p", String(child.pid)]);
        await load(port, t.start, t.stop);
        console.log(`\n${name}: system calls for ${messages} ${fanout ? "deliveries" : "echoed messages"} (strace -c -f)\n`);
        console.log(t.output().trim());
        const total = /\n\S+\s+\S+\s+\S+\s+(\d+)\s+(?:\d+\s+)?total/.exec(t.output());
        if (total) console.log(`\n${name}: ${(Number(total[1]) / messages).toFixed(3)} system calls per ${what}`);
      } else if (tool === "syscalls") {
        const events = [...SYSCALLS.map((c) => `syscalls:sys_enter_${c}`), ...extraEvents];
        const t = attach("perf", ["stat", "-x", ",", "-e", ["raw_syscalls:sys_enter", ...events, "context-switches", "task-clock"].join(","), "-p", String(child.pid)]);
        const r = await load(port, t.start, t.stop);
        console.log(`\n${name}: per ${what}, over ${messages} (${r.perSecond.toFixed(0)}/s; perf stat)`);
        for (const line of t.output().split("\n")) {
          const [count, unit, event] = line.split(",");
          if (event === undefined || !/^[\d.]+$/.test(count) || Number(count) === 0) continue;
          const per = Number(count) / messages;
          const what = event === "task-clock" ? "ns CPU (task-clock, msec counted)" : event.replace(/^syscalls:sys_enter_/, "");
          console.log(`${(event === "task-clock" ? per * 1e6 : per).toFixed(3).padStart(10)}  ${what}${unit ? "" : ""}`);
        }
      } else if (tool === "perf") {
        const data = join(dir, `${tag}.perf`);
        const t = attach("perf", ["record", "-g", "-e", "cpu-clock", "-o", data, "-p", String(child.pid)]);
        const r = await load(port, t.start, t.stop);
        if (args.keep !== undefined) {
          mkdirSync(args.keep, { recursive: true });
          copyFileSync(data, join(args.keep, `${name}.perf`));
        }
        const report = (sort) =>
          run("perf", ["report", "-i", data, "--stdio", "--no-children", "-g", "none", "--sort", sort, "--percent-limit", "0.5"]);
        // cpu-clock counts nanoseconds: the event count over the messages is CPU time per message.
        const byDso = report("dso");
        const ns = Number(/Event count \(approx\.\): (\d+)/.exec(byDso)?.[1] ?? NaN) / messages;
        console.log(`\n${name}: perf cpu-clock over ${messages} (${r.perSecond.toFixed(0)}/s): ${ns.toFixed(0)} ns CPU per ${what}\n`);
        for (const m of byDso.matchAll(/^\s*([\d.]+)%\s+(.+?)\s*$/gm))
          console.log(`${((Number(m[1]) / 100) * ns).toFixed(0).padStart(6)} ns  ${m[1].padStart(6)}%  ${m[2]}`);
        if (top > 0) console.log("");
        const bySym = top > 0 ? [...report("dso,sym").matchAll(/^\s*([\d.]+)%\s+(.+?)\s*$/gm)] : [];
        for (const m of bySym.slice(0, top))
          console.log(`${((Number(m[1]) / 100) * ns).toFixed(0).padStart(6)} ns  ${m[2].replace(/\s+/g, " ")}`);
      } else throw new Error(`unknown tool ${tool}`);
    } finally {
      child.kill("SIGTERM");
      await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once("exit", resolve)));
    }
  }
  if (tool === "callgrind") {
    const per = (n) => Math.round(n / messages).toLocaleString("en-US");
    const objects = [...new Set(results.flatMap((r) => [...r.objects.keys()]))]
      .map((o) => [o, Math.max(...results.map((r) => r.objects.get(o) ?? 0))])
      .filter(([, n]) => n / messages >= 20)
      .sort((a, b) => b[1] - a[1])
      .map(([o]) => o);
    console.log(
      fanout
        ? `Instructions per delivery (callgrind; ${perConnection} publishes of ${size} B${text ? " (text)" : ""} to ` +
            `${subscribers} subscribers, ${window} in flight; examples/ws-load.rs --mode fanout --messages)\n`
        : `Instructions per echoed message (callgrind; ${connections} connections x ${perConnection} messages of ` +
            `${size} B${text ? " (text)" : ""}, ${window} in flight each; examples/ws-load.rs --messages)\n`,
    );
    console.log(`| object | ${results.map((r) => r.name).join(" | ")} |`);
    console.log(`| --- | ${results.map(() => "---:").join(" | ")} |`);
    console.log(`| all | ${results.map((r) => per(r.total)).join(" | ")} |`);
    console.log(`| of which V8 GC, inclusive | ${results.map((r) => `${per(r.gc)} (${r.gcCalls} GCs)`).join(" | ")} |`);
    for (const o of objects) console.log(`| ${o} | ${results.map((r) => per(r.objects.get(o) ?? 0)).join(" | ")} |`);
    for (const row of eventRows(results, messages)) console.log(row);
    for (const r of top > 0 ? results : []) {
      console.log(`\n${r.name}: the ${top} functions that cost most (instructions per ${what})`);
      for (const [fn, n] of [...r.functions].sort((a, b) => b[1] - a[1]).slice(0, top)) {
        console.log(`${per(n).padStart(7)}  ${fn.slice(0, 140)}`);
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
