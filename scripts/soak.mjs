// Soak: millions of mixed requests against a fetch-rs server in a child process, reporting the
// server's resident memory after warm-up and at the end (issue 4 goal: under 5% growth).
// Run with: node scripts/soak.mjs [--requests N | --quick] [--connections 64] [--max-seconds 900]
//
// Mix (by request number): 45% GET /json, 25% POST /echo (0 B to 128 KiB, checked byte for
// byte), 10% /throw, 5% /reject, 5% /slow, and 10% of turns a client on a fresh connection that
// goes away mid-request (mid-upload, while the listener waits, or right after writing).
// `--only KIND` runs a single kind instead.
// Keep-alive raw sockets, one request in flight each. Not part of `npm test`.
import net from "node:net";
import { rssKiB, startServer } from "./child-server.mjs";


// --- arguments

function parseArgs(argv) {
  const o = { requests: 5_000_000, connections: 64, maxSeconds: 900, warmupFraction: 0.1, nodeFlags: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${a} needs a positive number`);
      return v;
    };
    if (a === "--quick") o.requests = 200_000;
    else if (a === "--requests") o.requests = Math.floor(num());
    else if (a === "--connections") o.connections = Math.floor(num());
    else if (a === "--max-seconds") o.maxSeconds = num();
    else if (a === "--only") o.only = argv[++i];
    else if (a === "--node-flags") o.nodeFlags = argv[++i].split(/\s+/).filter(Boolean);
    else if (a === "--help") {
      console.log("node scripts/soak.mjs [--requests N | --quick] [--connections C] [--max-seconds S] [--only json|echo|throw|reject|slow|disconnect] [--node-flags '--max-semi-space-size=4']");
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));

// --- the server process


// --- a keep-alive client connection with a minimal HTTP/1.1 response parser

class ClientConnection {
  #sock = null;
  #buf = Buffer.alloc(0);
  #pending = null; // { resolve, reject, timer }
  #head = null; // { status, length, chunked, close, bodyStart }
  constructor(port) {
    this.port = port;
  }

  get open() {
    return this.#sock !== null && !this.#sock.destroyed;
  }

  #connect() {
    const sock = net.connect(this.port, "127.0.0.1");
    sock.setNoDelay(true);
    sock.on("data", (d) => {
      this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
      this.#parse();
    });
    const gone = (err) => {
      // A socket we already let go of (Connection: close, a stall) fails nothing.
      if (this.#sock !== sock) return;
      this.#sock = null;
      this.#fail(err ?? new Error("the server closed the connection"));
    };
    sock.on("error", gone);
    sock.on("close", () => gone());
    this.#sock = sock;
    this.#buf = Buffer.alloc(0);
    this.#head = null;
  }

  #fail(err) {
    const p = this.#pending;
    if (p === null) return;
    this.#pending = null;
    clearTimeout(p.timer);
    p.reject(err);
  }

  #parse() {
    for (;;) {
      if (this.#pending === null) return;
      if (this.#head === null) {
        const end = this.#buf.indexOf("\r\n\r\n");
        if (end === -1) return;
        const lines = this.#buf.toString("latin1", 0, end).split("\r\n");
        const status = Number(lines[0].split(" ")[1]);
        let length = 0;
        let chunked = false;
        let close = false;
        for (let i = 1; i < lines.length; i++) {
          const l = lines[i].toLowerCase();
          if (l.startsWith("content-length:")) length = Number(l.slice(15).trim());
          else if (l.startsWith("transfer-encoding:") && l.includes("chunked")) chunked = true;
          else if (l.startsWith("connection:") && l.includes("close")) close = true;
        }
        this.#buf = this.#buf.subarray(end + 4);
        if (status >= 100 && status < 200) continue; // 100 Continue and friends
        this.#head = { status, length, chunked, close };
      }
      const h = this.#head;
      let body;
      if (h.chunked) {
        body = this.#dechunk();
        if (body === null) return;
      } else {
        if (this.#buf.length < h.length) return;
        body = this.#buf.subarray(0, h.length);
        this.#buf = this.#buf.subarray(h.length);
      }
      this.#head = null;
      const p = this.#pending;
      this.#pending = null;
      clearTimeout(p.timer);
      if (h.close) {
        this.#sock?.destroy();
        this.#sock = null;
      }
      p.resolve({ status: h.status, body });
    }
  }

  /** Decodes a complete chunked body from the buffer, or returns null if more is needed. */
  #dechunk() {
    const parts = [];
    let i = 0;
    for (;;) {
      const le = this.#buf.indexOf("\r\n", i);
      if (le === -1) return null;
      const size = parseInt(this.#buf.toString("latin1", i, le), 16);
      if (size === 0) {
        const end = this.#buf.indexOf("\r\n\r\n", le - 2);
        if (end === -1) return null;
        this.#buf = this.#buf.subarray(end + 4);
        return Buffer.concat(parts);
      }
      if (this.#buf.length < le + 2 + size + 2) return null;
      parts.push(this.#buf.subarray(le + 2, le + 2 + size));
      i = le + 2 + size + 2;
    }
  }

  /** Sends one request and resolves with { status, body }; rejects if the connection drops. */
  send(bytes, timeoutMs = 15_000) {
    if (!this.open) this.#connect();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#fail(Object.assign(new Error("no response"), { code: "STALLED" }));
        this.#sock?.destroy();
        this.#sock = null;
      }, timeoutMs);
      this.#pending = { resolve, reject, timer };
      this.#sock.write(bytes);
    });
  }

  close() {
    this.#sock?.destroy();
    this.#sock = null;
  }
}

/** A client that sends part of a request on a fresh connection and goes away. */
function disconnectingClient(port, kind, body) {
  return new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1");
    const done = () => {
      sock.destroy();
      resolve();
    };
    sock.on("error", done);
    sock.on("connect", () => {
      if (kind === 0) {
        // Mid-upload: the head promises more body than arrives.
        sock.write(`POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: ${body.length * 2}\r\n\r\n`);
        sock.write(body);
        setTimeout(done, 2);
      } else if (kind === 1) {
        // While the listener is still working on it.
        sock.write("GET /slow HTTP/1.1\r\nHost: soak\r\n\r\n");
        setTimeout(done, 1);
      } else {
        // Right after writing: races the response.
        sock.write("GET /json HTTP/1.1\r\nHost: soak\r\n\r\n", done);
      }
    });
  });
}

// --- the run

const bodies = [0, 16, 512, 4096, 70 * 1024, 128 * 1024].map((size, k) => {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + k * 7) & 0xff;
  return b;
});
const requestBytes = {
  json: Buffer.from("GET /json HTTP/1.1\r\nHost: soak\r\n\r\n"),
  throw: Buffer.from("GET /throw HTTP/1.1\r\nHost: soak\r\n\r\n"),
  reject: Buffer.from("GET /reject HTTP/1.1\r\nHost: soak\r\n\r\n"),
  slow: Buffer.from("GET /slow HTTP/1.1\r\nHost: soak\r\n\r\n"),
  echo: bodies.map((b) =>
    Buffer.concat([Buffer.from(`POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: ${b.length}\r\n\r\n`), b]),
  ),
};

/** Which echo body request n sends: mostly small, 2% over the 64 KiB pre-collect limit. */
function echoIndex(n) {
  const r = (n >>> 2) % 100;
  return r < 25 ? 0 : r < 55 ? 1 : r < 80 ? 2 : r < 98 ? 3 : r < 99 ? 4 : 5;
}

const server = await startServer([], opts.nodeFlags);
const pid = server.child.pid;
let serverExit = null;
server.child.on("exit", (code, signal) => {
  serverExit = { code, signal };
});

const totals = {
  statuses: {},
  echoMismatches: 0,
  unexpectedStatus: 0,
  connectionDrops: 0,
  stalled: 0,
  disconnects: 0,
};
const expected = { json: 200, echo: 200, throw: 500, reject: 500, slow: 200 };
// 20 slots, interleaved: json 45%, echo 25%, throw 10%, reject 5%, slow 5%, disconnect 10%.
// `--only KIND` runs one kind alone, to find which one a growth comes from.
const MIX = opts.only
  ? [opts.only]
  : [
      "json", "echo", "json", "echo", "json", "throw", "json", "disconnect", "json", "echo",
      "json", "slow", "json", "echo", "json", "reject", "json", "echo", "throw", "disconnect",
    ];
if (!MIX.every((k) => k in expected || k === "disconnect")) throw new Error(`--only: unknown kind ${opts.only}`);
const warmupAt = Math.max(1, Math.floor(opts.requests * opts.warmupFraction));
let next = 0;
let completed = 0;
let warm = null;
let peakRss = 0;
const started = Date.now();
const deadline = started + opts.maxSeconds * 1000;
let stoppedByTime = false;

async function fetchStats() {
  const c = new ClientConnection(server.port);
  try {
    const r = await c.send(Buffer.from("GET /__stats HTTP/1.1\r\nHost: soak\r\n\r\n"), 5000);
    return JSON.parse(r.body.toString());
  } finally {
    c.close();
  }
}

async function worker() {
  const conn = new ClientConnection(server.port);
  while (serverExit === null) {
    if (Date.now() > deadline) {
      stoppedByTime = true;
      break;
    }
    const n = next++;
    if (n >= opts.requests) break;
    const kind = MIX[n % MIX.length];
    if (kind === "disconnect") {
      await disconnectingClient(server.port, totals.disconnects % 3, bodies[3]);
      totals.disconnects++;
    } else {
      const e = kind === "echo" ? echoIndex(n) : -1;
      try {
        const res = await conn.send(kind === "echo" ? requestBytes.echo[e] : requestBytes[kind]);
        totals.statuses[res.status] = (totals.statuses[res.status] ?? 0) + 1;
        if (res.status !== expected[kind]) totals.unexpectedStatus++;
        else if (kind === "echo" && !res.body.equals(bodies[e])) totals.echoMismatches++;
      } catch (err) {
        if (err.code === "STALLED") totals.stalled++;
        else totals.connectionDrops++;
      }
    }
    completed++;
    if (warm === null && completed >= warmupAt) {
      warm = { rss: rssKiB(pid), at: completed, seconds: (Date.now() - started) / 1000 };
      try {
        warm.stats = await fetchStats();
      } catch {}
    }
  }
  conn.close();
}

/** Where the server's memory sits: V8's young and old generations, and the rest of the process. */
function breakdown(rss, stats) {
  const m = stats?.memory;
  const sp = stats?.heapSpaces;
  if (!m || !sp || rss === null) return null;
  const MiB = 1024 * 1024;
  const young = (sp.new_space ?? 0) + (sp.new_large_object_space ?? 0);
  return {
    rssMiB: +(rss / 1024).toFixed(1),
    v8YoungMiB: +(young / MiB).toFixed(1),
    v8OldMiB: +((m.heapTotal - young) / MiB).toFixed(1),
    arrayBuffersMiB: +(m.arrayBuffers / MiB).toFixed(1),
    outsideV8HeapMiB: +((rss * 1024 - m.heapTotal) / MiB).toFixed(1),
  };
}
const fmt = (b) => (b ? Object.entries(b).map(([k, v]) => `${k.replace(/MiB$/, "")} ${v}`).join(", ") + " MiB" : "n/a");

// Each progress line reads the server's own memory figures, so a growth can be placed.
let sampling = false;
const progress = setInterval(async () => {
  if (sampling) return;
  sampling = true;
  const rss = rssKiB(pid);
  if (rss !== null) peakRss = Math.max(peakRss, rss);
  const s = (Date.now() - started) / 1000;
  let where = null;
  try {
    where = breakdown(rss, await fetchStats());
  } catch {}
  process.stderr.write(`soak: ${completed} done, ${Math.round(completed / s)} req/s, server ${fmt(where) === "n/a" ? `RSS ${(rss / 1024).toFixed(1)} MiB` : fmt(where)}\n`);
  sampling = false;
}, 10_000);

await Promise.all(Array.from({ length: opts.connections }, worker));
clearInterval(progress);
const seconds = (Date.now() - started) / 1000;

// Let aborted requests and timers settle before the final reading.
await new Promise((r) => setTimeout(r, 2000));
const endRss = rssKiB(pid);
peakRss = Math.max(peakRss, endRss ?? 0);
let endStats = null;
try {
  endStats = await fetchStats();
} catch {}

// Whether the server died on its own, before the SIGTERM below.
const crashedDuringRun = serverExit;
// A graceful close must finish promptly and exit 0.
let exitedCleanly = false;
if (serverExit === null) {
  const exited = new Promise((r) => server.child.once("exit", (code, signal) => r({ code, signal })));
  server.child.kill("SIGTERM");
  const ex = await Promise.race([exited, new Promise((r) => setTimeout(() => r(null), 15_000))]);
  if (ex === null) server.child.kill("SIGKILL");
  exitedCleanly = ex !== null && ex.code === 0;
}

const growth = warm?.rss && endRss ? ((endRss - warm.rss) / warm.rss) * 100 : null;
// V8 sizes its young generation to the allocation rate, up to a fixed ceiling
// (--max-semi-space-size); a long run reaches that ceiling later than the warm-up. The growth
// of everything else tells a leak from that.
const wb = breakdown(warm?.rss ?? null, warm?.stats);
const eb = breakdown(endRss, endStats);
const growthBesidesYoung =
  wb && eb ? (((eb.rssMiB - eb.v8YoungMiB) - (wb.rssMiB - wb.v8YoungMiB)) / (wb.rssMiB - wb.v8YoungMiB)) * 100 : null;
const mib = (k) => (k === null || k === undefined ? "n/a" : `${(k / 1024).toFixed(1)} MiB`);
const report = {
  requested: opts.requests,
  completed,
  seconds: Number(seconds.toFixed(1)),
  requestsPerSecond: Math.round(completed / seconds),
  stoppedByTimeLimit: stoppedByTime,
  connections: opts.connections,
  rssAfterWarmupKiB: warm?.rss ?? null,
  rssAfterWarmupAt: warm?.at ?? null,
  rssEndKiB: endRss,
  rssPeakKiB: peakRss,
  rssGrowthPercent: growth === null ? null : Number(growth.toFixed(2)),
  heapUsedAfterWarmup: warm?.stats?.memory?.heapUsed ?? null,
  heapUsedEnd: endStats?.memory?.heapUsed ?? null,
  memoryAfterWarmup: wb,
  memoryEnd: eb,
  rssGrowthBesidesV8YoungPercent: growthBesidesYoung === null ? null : Number(growthBesidesYoung.toFixed(2)),
  nodeFlags: opts.nodeFlags,
  // Read over one more request, so activeConnections and pendingRequests count it.
  serverStatsEnd: endStats?.stats ?? null,
  errorsReportedByServer: endStats?.errorsReported ?? null,
  ...totals,
  serverCrashed: crashedDuringRun !== null,
  serverExit: crashedDuringRun,
  closedCleanly: exitedCleanly,
};

console.log(`soak: ${completed} requests in ${report.seconds} s (${report.requestsPerSecond} req/s) over ${opts.connections} connections${stoppedByTime ? " [stopped at --max-seconds]" : ""}`);
console.log(`  server RSS after warm-up (${warm?.at} requests): ${mib(warm?.rss)}; at the end: ${mib(endRss)}; peak: ${mib(peakRss)}`);
console.log(`  RSS growth: ${growth === null ? "n/a" : `${growth.toFixed(2)}%`} (goal: under 5%)`);
console.log(`  where, after warm-up: ${fmt(report.memoryAfterWarmup)}`);
console.log(`  where, at the end:    ${fmt(report.memoryEnd)}`);
console.log(`  RSS growth besides V8's young generation: ${growthBesidesYoung === null ? "n/a" : `${growthBesidesYoung.toFixed(2)}%`}`);
console.log(`  JS heap used after warm-up: ${mib(report.heapUsedAfterWarmup / 1024)}; at the end: ${mib(report.heapUsedEnd / 1024)}`);
console.log(`  statuses: ${JSON.stringify(totals.statuses)}; unexpected statuses: ${totals.unexpectedStatus}; echo mismatches: ${totals.echoMismatches}`);
console.log(`  client disconnects: ${totals.disconnects}; dropped connections: ${totals.connectionDrops}; stalled requests: ${totals.stalled}`);
console.log(`  server at the end (counting the stats request itself): ${JSON.stringify(endStats?.stats ?? null)}; errors reported: ${report.errorsReportedByServer}`);
console.log(`  server crashed: ${report.serverCrashed}${crashedDuringRun ? ` (${JSON.stringify(crashedDuringRun)})` : ""}; closed cleanly on SIGTERM: ${exitedCleanly}`);
if (server.stderr().trim()) console.log(`  server stderr (tail):\n${server.stderr().trim().split("\n").slice(-20).join("\n")}`);
console.log(JSON.stringify(report));

const failed =
  report.serverCrashed ||
  !exitedCleanly ||
  totals.echoMismatches > 0 ||
  totals.unexpectedStatus > 0 ||
  totals.stalled > 0;
process.exit(failed ? 1 : 0);
