// The servers the benchmark can run, as a table, and how to start and stop them.
// Every child process started here is registered so the runner can kill it on any exit path.
// Used by bench/run.mjs. Run with: node bench/run.mjs (not run on its own)

import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { isAbsolute, join } from "node:path";

/**
 * One entry per server. A server is any command that reads PORT from its environment, listens
 * on 127.0.0.1:PORT, answers every scenario of scenarios.mjs on its path, prints "READY <port>"
 * on stdout once listening and exits on SIGTERM.
 * - `requires`: files (relative to the repository root) it cannot start without; when one is
 *   missing the runner skips the server and prints `missingHint`.
 * - `protocols`: "h1" (HTTP/1.1: plain and pipelined modes) and/or "h2c" (HTTP/2 prior knowledge).
 * - `scenarios`: the names of the scenarios it answers, where not all (left out of the others).
 * - `mainThread`: what the main thread's CPU column means: "js" (Node: the JS thread), "main"
 *   (Bun, Deno: their main thread, which runs JS and most of their HTTP work), null (no JS).
 * - `version`: how to print the runtime's version for the header (a command), if not Node's.
 * - `env`: extra environment variables for the server.
 * - `tls`: the server serves HTTPS with the benchmark certificate, given as PEM in the
 *   TLS_CERT_PEM and TLS_KEY_PEM environment variables (every TLS server the same one).
 * To add a peer, add an entry and a script or binary.
 */
const PEERS_HINT = "install the peers with `npm --prefix bench install` (bench/README.md)";
const BUN = "bench/node_modules/.bin/bun";
const DENO = "bench/node_modules/.bin/deno";
const HYPER = "target/release/examples/hyper-baseline";
const LEAN = "target/release/examples/lean-h1";

// What the entries of one runtime share (plain and TLS alike; TLS servers get `tls: true`).
const FETCH_RS = {
  command: process.execPath,
  args: ["bench/servers/fetch-rs.mjs"],
  requires: ["dist/index.js", "fetch-rs.node"],
  missingHint: "fetch-rs is not built: run `npm run build` in the repository root",
  mainThread: "js",
};
const BUN_SERVE = {
  command: BUN,
  args: ["bench/servers/bun.mjs"],
  requires: [BUN],
  missingHint: PEERS_HINT,
  mainThread: "main",
  version: [BUN, ["--version"]],
};
const DENO_SERVE = {
  command: DENO,
  args: ["run", "--allow-net=127.0.0.1", "--allow-env=PORT,TLS_CERT_PEM,TLS_KEY_PEM", "bench/servers/deno.mjs"],
  requires: [DENO],
  missingHint: PEERS_HINT,
  mainThread: "main",
  version: [DENO, ["--version"]],
};

export const SERVERS = [
  {
    name: "fetch-rs",
    title: "fetch-rs, addEventListener('fetch')",
    ...FETCH_RS,
    protocols: ["h1", "h2c"],
  },
  {
    name: "fetch-rs-serve",
    title: "fetch-rs, serve({ fetch })",
    ...FETCH_RS,
    args: ["bench/servers/fetch-rs-serve.mjs"],
    protocols: ["h1", "h2c"],
  },
  {
    // The same server from another build (bench/make-baseline.sh REV), to compare a change with
    // the code before it in one run.
    name: "fetch-rs-base",
    title: "fetch-rs, addEventListener('fetch'), built from bench/baseline (the code before a change)",
    ...FETCH_RS,
    env: { FETCH_RS_PACKAGE: "../baseline/dist/index.js" },
    requires: ["bench/baseline/dist/index.js", "bench/baseline/fetch-rs.node"],
    missingHint: "no baseline build: run `bench/make-baseline.sh REV` (e.g. main) to make one",
    protocols: ["h1", "h2c"],
  },
  {
    // fetch-rs-base with the network on the JS thread, to A/B a change in that mode too.
    name: "fetch-rs-inthread-base",
    title: "fetch-rs, network on the JS thread (workerThreads: 0), built from bench/baseline",
    ...FETCH_RS,
    env: { FETCH_RS_PACKAGE: "../baseline/dist/index.js", FETCH_RS_OPTIONS: JSON.stringify({ workerThreads: 0 }) },
    requires: ["bench/baseline/dist/index.js", "bench/baseline/fetch-rs.node"],
    missingHint: "no baseline build: run `bench/make-baseline.sh REV` (e.g. main) to make one",
    protocols: ["h1", "h2c"],
  },
  {
    // fetch-rs-base with the network on a worker thread, to A/B a change in that mode too.
    name: "fetch-rs-threads-base",
    title: "fetch-rs, network on a worker thread (workerThreads: 1), built from bench/baseline",
    ...FETCH_RS,
    env: { FETCH_RS_PACKAGE: "../baseline/dist/index.js", FETCH_RS_OPTIONS: JSON.stringify({ workerThreads: 1 }) },
    requires: ["bench/baseline/dist/index.js", "bench/baseline/fetch-rs.node"],
    missingHint: "no baseline build: run `bench/make-baseline.sh REV` (e.g. main) to make one",
    protocols: ["h1", "h2c"],
  },
  {
    // The network on the JS thread (src/in_thread.rs, docs/network-thread.md).
    name: "fetch-rs-inthread",
    title: "fetch-rs, addEventListener('fetch'), network on the JS thread (workerThreads: 0)",
    command: process.execPath,
    args: ["bench/servers/fetch-rs.mjs"],
    env: { FETCH_RS_OPTIONS: JSON.stringify({ workerThreads: 0 }) },
    requires: ["dist/index.js", "fetch-rs.node"],
    missingHint: "fetch-rs is not built: run `npm run build` in the repository root",
    protocols: ["h1", "h2c"],
    mainThread: "js",
  },
  {
    // The worker-thread network on any machine: the default with two or more cores (with one,
    // as under this runner's pinning, the default is the network on the JS thread).
    name: "fetch-rs-threads",
    title: "fetch-rs, addEventListener('fetch'), network on a worker thread (workerThreads: 1)",
    ...FETCH_RS,
    env: { FETCH_RS_OPTIONS: JSON.stringify({ workerThreads: 1 }) },
    protocols: ["h1", "h2c"],
  },
  {
    name: "node-http",
    title: "node:http createServer",
    command: process.execPath,
    args: ["bench/servers/node-http.mjs"],
    protocols: ["h1"],
    mainThread: "js",
  },
  {
    name: "node-http2",
    title: "node:http2 createServer (h2c), the baseline of the h2c mode",
    command: process.execPath,
    args: ["bench/servers/node-http.mjs", "--h2c"],
    protocols: ["h2c"],
    mainThread: "js",
  },
  {
    name: "fastify",
    title: "fastify",
    command: process.execPath,
    args: ["bench/servers/fastify.mjs"],
    requires: ["bench/node_modules/fastify/package.json"],
    missingHint: PEERS_HINT,
    protocols: ["h1"],
    mainThread: "js",
  },
  {
    name: "hono",
    title: "Hono app on @hono/node-server",
    command: process.execPath,
    args: ["bench/servers/hono.mjs"],
    requires: ["bench/node_modules/hono/package.json", "bench/node_modules/@hono/node-server/package.json"],
    missingHint: PEERS_HINT,
    protocols: ["h1"],
    mainThread: "js",
  },
  {
    name: "bun",
    title: "Bun.serve",
    ...BUN_SERVE,
    // Bun.serve has no HTTP/2 cleartext.
    protocols: ["h1"],
  },
  {
    name: "deno",
    title: "Deno.serve",
    ...DENO_SERVE,
    protocols: ["h1", "h2c"],
  },
  {
    name: "fetch-rs-tls",
    title: "fetch-rs over TLS (HTTP/1.1 and h2 by ALPN)",
    ...FETCH_RS,
    protocols: ["tls-h1", "tls-h2"],
    tls: true,
  },
  {
    name: "fetch-rs-threads-tls",
    title: "fetch-rs over TLS, network on a worker thread (workerThreads: 1)",
    ...FETCH_RS,
    env: { FETCH_RS_OPTIONS: JSON.stringify({ workerThreads: 1 }) },
    protocols: ["tls-h1", "tls-h2"],
    tls: true,
  },
  {
    // fetch-rs-base over TLS, to A/B a change in the TLS modes.
    name: "fetch-rs-base-tls",
    title: "fetch-rs over TLS, built from bench/baseline (the code before a change)",
    ...FETCH_RS,
    env: { FETCH_RS_PACKAGE: "../baseline/dist/index.js" },
    requires: ["bench/baseline/dist/index.js", "bench/baseline/fetch-rs.node"],
    missingHint: "no baseline build: run `bench/make-baseline.sh REV` (e.g. main) to make one",
    protocols: ["tls-h1", "tls-h2"],
    tls: true,
  },
  {
    // The network on the JS thread over TLS: the handshakes and records on the JS thread too.
    name: "fetch-rs-inthread-tls",
    title: "fetch-rs over TLS, network on the JS thread (workerThreads: 0)",
    ...FETCH_RS,
    env: { FETCH_RS_OPTIONS: JSON.stringify({ workerThreads: 0 }) },
    protocols: ["tls-h1", "tls-h2"],
    mainThread: "js",
    tls: true,
  },
  {
    name: "node-https",
    title: "node:https createServer, the baseline of the https and handshake modes",
    command: process.execPath,
    args: ["bench/servers/node-http.mjs", "--https"],
    protocols: ["tls-h1"],
    mainThread: "js",
    tls: true,
  },
  {
    name: "node-http2-tls",
    title: "node:http2 createSecureServer, the baseline of the h2 mode",
    command: process.execPath,
    args: ["bench/servers/node-http.mjs", "--h2"],
    protocols: ["tls-h2"],
    mainThread: "js",
    tls: true,
  },
  {
    name: "bun-tls",
    title: "Bun.serve with tls",
    ...BUN_SERVE,
    // Bun.serve answers HTTP/1.1 over TLS (no h2 in ALPN).
    protocols: ["tls-h1"],
    tls: true,
  },
  {
    name: "deno-tls",
    title: "Deno.serve with cert and key",
    ...DENO_SERVE,
    protocols: ["tls-h1", "tls-h2"],
    tls: true,
  },
  {
    name: "hyper",
    title: "hyper 1 + tokio, no JavaScript (examples/hyper-baseline.rs): the ceiling",
    command: HYPER,
    args: [],
    requires: [HYPER],
    missingHint: "build it with `cargo build --release --example hyper-baseline` in the repository root",
    protocols: ["h1", "h2c"],
    mainThread: null,
  },
  {
    name: "lean",
    title: "a lean HTTP/1.1 path on tokio, no hyper, no JavaScript (examples/lean-h1.rs): json and text only",
    command: LEAN,
    args: [],
    requires: [LEAN],
    missingHint: "build it with `cargo build --release --example lean-h1` in the repository root",
    protocols: ["h1"],
    scenarios: ["json", "text"],
    mainThread: null,
  },
];

/**
 * Servers for the scripts that take servers by name (bench/instructions.mjs, bench/usersys.mjs),
 * left out of bench/run.mjs's default set.
 */
const BY_NAME_ONLY = [
  {
    name: "fetch-rs-hono",
    title: "Hono app on fetch-rs, serve({ fetch: app.fetch })",
    ...FETCH_RS,
    args: ["bench/servers/fetch-rs-hono.mjs"],
    requires: [...FETCH_RS.requires, "bench/node_modules/hono/package.json"],
    protocols: ["h1", "h2c"],
  },
  {
    name: "fetch-rs-hono-base",
    title: "Hono app on fetch-rs, built from bench/baseline",
    ...FETCH_RS,
    args: ["bench/servers/fetch-rs-hono.mjs"],
    env: { FETCH_RS_PACKAGE: "../baseline/dist/index.js" },
    requires: ["bench/baseline/dist/index.js", "bench/baseline/fetch-rs.node", "bench/node_modules/hono/package.json"],
    protocols: ["h1", "h2c"],
  },
];

/**
 * The table's entry for `name`, or one derived from it by a suffix: "-tls" (the same server over
 * HTTPS, with the test certificate) or "-inthread" (fetch-rs with `workerThreads: 0`); for the
 * scripts that take servers by name (bench/instructions.mjs, bench/usersys.mjs).
 */
export function lookupServer(name) {
  const entry = SERVERS.find((s) => s.name === name) ?? BY_NAME_ONLY.find((s) => s.name === name);
  if (entry) return entry;
  if (name.endsWith("-tls")) {
    const plain = lookupServer(name.slice(0, -4));
    return plain && { ...plain, name, tls: true };
  }
  if (name.endsWith("-inthread")) {
    const shared = lookupServer(name.slice(0, -9));
    const options = JSON.stringify({ workerThreads: 0 });
    return shared && { ...shared, name, env: { ...shared.env, FETCH_RS_OPTIONS: options } };
  }
  return undefined;
}

/** `lookupServer`, for a name given on a script's command line: an unknown one is an error. */
export function serverByName(name) {
  const entry = lookupServer(name);
  if (!entry) throw new Error(`no server named ${name} (see bench/lib/servers.mjs)`);
  return entry;
}

/** Which server each mode's ratios are taken against. */
export const BASELINE_BY_PROTOCOL = { h1: "node-http", h2c: "node-http2", "tls-h1": "node-https", "tls-h2": "node-http2-tls" };

// The certificate every TLS server gets: the test suite's (EC P-256, for localhost and 127.0.0.1).
const tlsEnv = () => {
  const file = (name) => readFileSync(new URL(`../../test/fixtures/tls/${name}`, import.meta.url), "utf8");
  return { TLS_CERT_PEM: file("a.pem"), TLS_KEY_PEM: file("a.key") };
};

// Bounds on every wait, so a broken server cannot hang the run.
const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 3_000;

const children = new Set();

/**
 * Spawns a command and registers it for cleanup; `pinCore` (a taskset cpu list such as "0" or
 * "0-3", or null) wraps it in taskset, which execs the command: the pid is the command's.
 */
export function spawnTracked(command, args, { pinCore = null, ...options } = {}) {
  const [cmd, argv] = pinCore === null ? [command, args] : ["taskset", ["-c", String(pinCore), command, ...args]];
  const child = spawn(cmd, argv, options);
  children.add(child);
  child.once("exit", () => children.delete(child));
  // Without a listener a spawn failure (ENOENT) would be thrown as an uncaught error.
  child.once("error", () => children.delete(child));
  return child;
}

/** SIGKILLs every child still running; synchronous, so it is safe inside process.on("exit"). */
export function killAllNow() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}

/** Stops every child still running: SIGTERM, then SIGKILL after a grace period. */
export async function stopAll() {
  await Promise.all([...children].map((child) => stopChild(child)));
}

/** Files a server entry needs that are missing, as paths relative to the repository root. */
export function missingRequirements(entry, root) {
  return (entry.requires ?? []).filter((file) => !existsSync(join(root, file)));
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Starts a server entry and resolves once it prints READY: { entry, child, pid, port }. */
export async function startServer(entry, { root, pinCore }) {
  const port = await freePort();
  const command = isAbsolute(entry.command) ? entry.command : join(root, entry.command);
  const child = spawnTracked(command, entry.args, {
    pinCore,
    cwd: root,
    env: { ...process.env, ...entry.env, PORT: String(port), ...(entry.tls ? tlsEnv() : {}) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const readyPort = await waitForReady(child, entry.name);
  return { entry, child, pid: child.pid, port: readyPort };
}

/** Resolves with the port from the child's "READY <port>" line; rejects on exit or timeout. */
function waitForReady(child, name) {
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    const fail = (why) => {
      cleanup();
      const tail = (stderr || stdout).trim().split("\n").slice(-15).join("\n");
      reject(new Error(`${name} did not start: ${why}${tail ? `\n--- its output ---\n${tail}` : ""}`));
    };
    const onStdout = (chunk) => {
      stdout += chunk;
      const match = /^READY (\d+)\s*$/m.exec(stdout);
      if (match) {
        cleanup();
        child.stdout.resume(); // keep draining: nobody reads it now, and a full pipe would block the server
        resolve(Number(match[1]));
      }
    };
    const onStderr = (chunk) => (stderr = (stderr + chunk).slice(-16_384));
    const onExit = (code, signal) => fail(`it exited (code ${code}, signal ${signal})`);
    const onError = (err) => fail(err.message);
    const timer = setTimeout(() => fail(`no READY line within ${READY_TIMEOUT_MS / 1000} s`), READY_TIMEOUT_MS);
    function cleanup() {
      clearTimeout(timer);
      child.stdout.off("data", onStdout);
      child.off("exit", onExit);
      child.off("error", onError);
    }
    child.stdout.setEncoding("utf8").on("data", onStdout);
    // Stderr stays drained for the whole life of the child, so a chatty server never blocks on a full pipe.
    child.stderr.setEncoding("utf8").on("data", onStderr);
    child.once("exit", onExit);
    child.once("error", onError);
  });
}

/** Stops one server: SIGTERM, then SIGKILL if it has not exited within the grace period. */
export function stopServer(server) {
  return stopChild(server.child);
}

function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}
