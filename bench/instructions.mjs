// Instructions per request, counted by valgrind's callgrind: deterministic where CPU time per
// request is not (a busy or shared machine), so a change of a few percent in the code a
// request runs shows up in one run. It counts user-space instructions only (no kernel, no
// cache misses, no wake-ups): a guide for the code path, not a substitute for `npm run bench`.
//
// Each server runs under callgrind; after a warm-up its counters are zeroed, N keep-alive
// requests are sent with `h2load --h1` (50 connections), and the counts are dumped and summed
// by object (the addon, node, libc, JIT code as "???").
// Needs valgrind (callgrind_control) and h2load (nghttp2-client).
// With --tls every server serves HTTPS with the benchmark certificate (TLS_CERT_PEM/TLS_KEY_PEM,
// as bench/lib/servers.mjs gives it) and h2load sends HTTP/1.1 over TLS (ALPN http/1.1). Every
// load opens its own 50 connections: a load of 50 requests is measured too and subtracted, so the
// counts are those of requests on open connections, and the cost of a connection is shown apart.
// A name not in the table is looked up without a "-tls" suffix (served over TLS) and then without
// an "-inthread" one (`workerThreads: 0`): fetch-rs-base-tls, fetch-rs-base-inthread-tls.
// Run with: node bench/instructions.mjs [--servers=fetch-rs,fetch-rs-base,hyper] [--requests=20000]
//           [--path=/json] [--top=25] [--tls]   (--top lists the functions that cost most, per server)
//           [--body=BYTES] (POSTs a body of that many bytes with each request: --path=/echo)
//           [--h2c]        (HTTP/2 cleartext, 16 streams per connection, instead of HTTP/1.1)
//           [--unix]       (the servers listen on a Unix domain socket, UNIX_PATH in their
//                           environment, and h2load connects there: fetch-rs's own servers)
//           [--http10]     (the load is ApacheBench's, `ab -k -c50`: HTTP/1.0 GETs with
//                           `Connection: Keep-Alive`, over TCP; apt package apache2-utils)
//           [--tls12]      (over TLS 1.2, the load from bench/h1-tls-load.mjs, node:tls, as
//                           h2load cannot be held to TLS 1.2; GETs over HTTP/1.1 only)
//           [--sim]        (also simulates the caches and branch prediction: the table gets
//                           their events per request (I1mr, D1mr, Bcm, ...), the whole process's
//                           and the addon's, and the dumps get them per function; see --keep)
//           [--instr]      (the kept dumps count each instruction address, for per-instruction
//                           tools such as counting atomic read-modify-writes)
//           [--keep=DIR]   (keeps the callgrind dumps there, as DIR/<server>.callgrind, for
//                           `callgrind_annotate --inclusive=yes` or `--tree=caller`; with --tls
//                           also DIR/<server>.connections.callgrind, the load subtracted)
import { spawn, execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, serverByName } from "./lib/servers.mjs";
import { eventRows, summarize } from "./lib/callgrind.mjs";

const ROOT = new URL("..", import.meta.url).pathname;
const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, "").split("=");
    return [k, v ?? "true"];
  }),
);
const names = (args.servers ?? "fetch-rs,fetch-rs-inthread,hyper").split(",");
const requests = Number(args.requests ?? 20000);
const path = args.path ?? "/json";
const top = Number(args.top ?? 0);
const tls = args.tls === "true" || args.tls12 === "true";
const tls12 = args.tls12 === "true";
if (tls12 && (args.body !== undefined || args.h2c === "true")) throw new Error("--tls12 sends GETs over HTTP/1.1 only");
// h2load's protocol: HTTP/1.1, or with --h2c HTTP/2 with prior knowledge, 16 streams a connection.
const protocol = args.h2c === "true" ? ["-m", "16"] : ["--h1"];
const unix = args.unix === "true";
const http10 = args.http10 === "true";
if (http10 && (tls || unix || args.body !== undefined || args.h2c === "true")) throw new Error("--http10 sends GETs over TCP only");
if (unix && tls12) throw new Error("--tls12 loads over TCP only, not with --unix");
/** Over TLS: the connections (and requests) of the load that is subtracted (see below). */
const HANDSHAKES = 50;
const keep = args.keep;
// --body=BYTES: POST a body of that many bytes ('x') with every request (h2load -d).
const bodyBytes = args.body === undefined ? 0 : Number(args.body);

// The certificate the TLS servers of bench/run.mjs get (the test suite's, for 127.0.0.1).
const tlsEnv = () => {
  const file = (name) => readFileSync(new URL(`../test/fixtures/tls/${name}`, import.meta.url), "utf8");
  return { TLS_CERT_PEM: file("a.pem"), TLS_KEY_PEM: file("a.key") };
};


const run = (cmd, argv) =>
  execFileSync(cmd, argv, { encoding: "utf8", maxBuffer: 64 << 20, stdio: ["ignore", "pipe", "pipe"] });

/**
 * Starts `entry` under callgrind, loads it, and returns the dumps of the measured loads: one
 * per count in `loads` (requests spread over 50 new connections each time), zeroed before each.
 */
async function measure(entry, dir, loads) {
  const port = await freePort();
  const sock = unix ? join(dir, `${entry.name}.sock`) : undefined;
  const out = join(dir, `${entry.name}.%p`);
  const sim = args.sim === "true" ? ["--cache-sim=yes", "--branch-sim=yes"] : [];
  if (args.instr === "true") sim.push("--dump-instr=yes");
  const child = spawn("valgrind", ["--tool=callgrind", ...sim, `--callgrind-out-file=${out}`, entry.command, ...entry.args], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...(entry.env ?? {}),
      PORT: String(port),
      ...(tls ? tlsEnv() : {}),
      ...(unix ? { UNIX_PATH: sock } : {}),
    },
    stdio: ["ignore", "pipe", "ignore"],
  });
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${entry.name} did not start within 120 s`)), 120_000);
      let seen = "";
      child.stdout.on("data", (d) => {
        seen += d;
        if (/READY \d+/.test(seen)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once("exit", (code) => reject(new Error(`${entry.name} exited (${code}) before it was ready`)));
    });
    const url = `${tls ? "https" : "http"}://127.0.0.1:${port}${path}`;
    const data = bodyBytes > 0 ? ["-d", join(dir, "body")] : [];
    if (unix) data.push("-B", `unix:${sock}`);
    // h2load, or with --tls12 the node:tls load (N requests over 50 new connections too).
    const loadOf = (n) =>
      tls12
        ? run(process.execPath, [join(ROOT, "bench/h1-tls-load.mjs"), url, String(n), "50", "TLSv1.2"])
        : http10
          ? run("ab", ["-k", "-q", "-c", "50", "-n", String(n), url])
          : run("h2load", [...protocol, "-n", String(n), "-c", "50", ...data, url]);
    loadOf(5000);
    for (const n of loads) {
      run("callgrind_control", ["-z", String(child.pid)]);
      const load = loadOf(n);
      const ok = http10
        ? new RegExp(`Complete requests:\\s+${n}\\n`).test(load) && /Failed requests:\s+0\n/.test(load)
        : new RegExp(`${n} succeeded`).test(load);
      if (!ok) throw new Error(`${entry.name}: not every request succeeded`);
      run("callgrind_control", ["-d", String(child.pid)]);
    }
  } finally {
    child.kill("SIGTERM");
    await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once("exit", resolve)));
  }
  // The dumps after the zeroings are the process's files with the suffixes ".1", ".2", ...
  return loads.map((_, i) => {
    const file = readdirSync(dir).find((f) => f.startsWith(`${entry.name}.`) && f.endsWith(`.${i + 1}`));
    if (!file) throw new Error(`${entry.name}: no callgrind dump`);
    return join(dir, file);
  });
}

/** `a` less `b`, object by object and function by function. */
function subtract(a, b) {
  const less = (x, y) => new Map([...x].map(([k, v]) => [k, v - (y.get(k) ?? 0)]));
  return {
    total: a.total - b.total,
    gc: a.gc - b.gc,
    gcCalls: a.gcCalls - b.gcCalls,
    objects: less(a.objects, b.objects),
    functions: less(a.functions, b.functions),
    events: less(a.events, b.events),
    addonEvents: less(a.addonEvents, b.addonEvents),
  };
}

const dir = mkdtempSync(join(tmpdir(), "fetch-rs-callgrind-"));
if (bodyBytes > 0) writeFileSync(join(dir, "body"), Buffer.alloc(bodyBytes, "x"));
try {
  const results = [];
  for (const name of names) {
    const entry = serverByName(name);
    if (tls && !entry.tls) throw new Error(`${name} is not a TLS server (see bench/lib/servers.mjs)`);
    process.stderr.write(`${name}: ${requests} requests under callgrind...\n`);
    const dumps = await measure(entry, dir, tls ? [HANDSHAKES, requests] : [requests]);
    if (keep !== undefined) {
      mkdirSync(keep, { recursive: true });
      copyFileSync(dumps.at(-1), join(keep, `${name}.callgrind`));
      // The small load too, to take the connections' share off a function's count.
      if (tls) copyFileSync(dumps[0], join(keep, `${name}.connections.callgrind`));
    }
    if (!tls) {
      results.push({ name, ...summarize(dumps[0]) });
      continue;
    }
    // Over TLS each load's 50 connections shake hands, which would weigh on the count as much as
    // the requests: a second load of one request per connection is subtracted, and what that one
    // costs beyond its 50 requests is the cost of a connection (handshake, setup and close).
    const [few, many] = dumps.map(summarize);
    const perRequest = subtract(many, few);
    const connection = (few.total - (perRequest.total / (requests - HANDSHAKES)) * HANDSHAKES) / HANDSHAKES;
    results.push({ name, ...perRequest, connection });
  }
  const counted = tls ? requests - HANDSHAKES : requests;
  const per = (n) => Math.round(n / counted).toLocaleString("en-US");
  const objects = [...new Set(results.flatMap((r) => [...r.objects.keys()]))]
    .map((o) => [o, Math.max(...results.map((r) => r.objects.get(o) ?? 0))])
    .filter(([, n]) => n / requests >= 20)
    .sort((a, b) => b[1] - a[1])
    .map(([o]) => o);
  const load = tls ? `HTTPS/1.1, ${requests} requests less ${HANDSHAKES} on new connections` : `${requests} requests`;
  const what = bodyBytes > 0 ? `POST ${path} with ${bodyBytes} bytes` : `GET ${path}`;
  const over = unix ? ", over a Unix socket" : "";
  const client = tls12
    ? "bench/h1-tls-load.mjs (TLS 1.2), 50 connections"
    : http10
      ? "ab -k -c50 (HTTP/1.0, keep-alive)"
      : `h2load ${protocol.join(" ")} -c50`;
  console.log(`Instructions per request (callgrind, ${what}${over}, ${load}, ${client})\n`);
  console.log(`| object | ${results.map((r) => r.name).join(" | ")} |`);
  console.log(`| --- | ${results.map(() => "---:").join(" | ")} |`);
  console.log(`| all | ${results.map((r) => per(r.total)).join(" | ")} |`);
  console.log(`| of which V8 GC, inclusive | ${results.map((r) => `${per(r.gc)} (${r.gcCalls} GCs)`).join(" | ")} |`);
  console.log(`| all but V8 GC | ${results.map((r) => per(r.total - r.gc)).join(" | ")} |`);
  for (const o of objects) console.log(`| ${o} | ${results.map((r) => per(r.objects.get(o) ?? 0)).join(" | ")} |`);
  // --sim: the simulated cache misses and branch mispredictions per request, all and the addon's.
  for (const row of eventRows(results, counted)) console.log(row);
  if (tls) {
    const each = results.map((r) => Math.round(r.connection).toLocaleString("en-US"));
    console.log(`| per connection (handshake, setup, close; all objects) | ${each.join(" | ")} |`);
  }
  for (const r of top > 0 ? results : []) {
    console.log(`\n${r.name}: the ${top} functions that cost most (instructions per request)`);
    for (const [fn, n] of [...r.functions].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`${per(n).padStart(7)}  ${fn.slice(0, 140)}`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
