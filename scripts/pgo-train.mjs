// Training run for the profile-guided build (scripts/build.mjs, docs/pgo.md): drives an
// instrumented addon through the paths a server spends its time on, over real sockets, so that
// its profile counts say which code is hot. Node built-ins only (it runs at `npm install` time,
// before any benchmark peer is installed): raw `net` sockets for HTTP/1.1 and WebSocket frames,
// node:https and node:http2 for TLS and HTTP/2.
//
// Each mode (the network on the JS thread, `workerThreads: 0`, and on one worker thread,
// `workerThreads: 1`) runs in a child process of its own that loads the addon, serves, and exits
// normally at the end, which is when the profiling runtime writes its counts (LLVM_PROFILE_FILE
// says where). The clients run in this process, which never loads the addon.
//
// Run with: FETCH_RS_NATIVE_PATH=path/to/instrumented.so LLVM_PROFILE_FILE=dir/%p-%m.profraw \
//             node scripts/pgo-train.mjs [--seconds=S]   (S: the whole run, about; default 24)
// Needs dist/ (npm run build:ts) and test/fixtures/tls (the test certificate).
import { fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import net from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { maskedFrame } from "./ws-frame.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");

// --- the server (child process)

async function serveChild() {
  const { Server, serve, upgradeWebSocket } = await import(join(root, "dist", "index.js"));
  const mode = JSON.parse(process.env.FETCH_RS_TRAIN_MODE ?? "{}");
  const big = new Uint8Array(100 * 1024).fill(0x78);
  const pathOf = (url) => {
    const start = url.indexOf("/", url.indexOf("//") + 2);
    const query = url.indexOf("?", start);
    return query < 0 ? url.slice(start) : url.slice(start, query);
  };
  // The routes of the benchmarks (bench/servers/fetch-handler.mjs) and WebSocket echo and pub/sub
  // with upgradeWebSocket (Deno's API and the socket's events).
  let plain;
  const handle = (request) => {
    const path = pathOf(request.url);
    if (request.method === "POST") {
      if (path === "/echo") return request.arrayBuffer().then((body) => new Response(body));
      if (path === "/upload") return request.arrayBuffer().then((b) => Response.json({ length: b.byteLength }));
    }
    if (path === "/json") return Response.json({ ok: true });
    if (path === "/text") return new Response("Hello, World!");
    if (path === "/download") return new Response(big);
    if (path.startsWith("/ws")) {
      const { socket, response } = upgradeWebSocket(request);
      socket.binaryType = "nodebuffer";
      if (path === "/ws/sub") socket.onopen = () => socket.subscribe("t");
      else if (path === "/ws/pub") socket.onmessage = (e) => plain.publish("t", e.data);
      else socket.onmessage = (e) => socket.send(e.data);
      return response;
    }
    return new Response("Not Found", { status: 404 });
  };
  plain = new Server({ host: "127.0.0.1", port: 0, maxBodySize: 16 << 20, ...mode });
  plain.addEventListener("fetch", (event) => event.respondWith(handle(event.request)));
  await plain.listen();
  const tlsFile = (name) => readFileSync(join(root, "test", "fixtures", "tls", name));
  const secure = new Server({
    host: "127.0.0.1",
    port: 0,
    maxBodySize: 16 << 20,
    tls: { cert: tlsFile("a.pem"), key: tlsFile("a.key") },
    ...mode,
  });
  secure.addEventListener("fetch", (event) => event.respondWith(handle(event.request)));
  await secure.listen();
  // serve() with Bun's handler API (server.upgrade and the `websocket` handlers).
  const handlers = serve({
    ...mode,
    host: "127.0.0.1",
    port: 0,
    fetch(request, server) {
      const path = pathOf(request.url);
      if (path.startsWith("/ws") && server.upgrade(request, { data: { path } })) return;
      return path === "/json" ? Response.json({ ok: true }) : new Response("Hello, World!");
    },
    websocket: {
      open(ws) {
        if (ws.data.path === "/ws/sub") ws.subscribe("t");
      },
      message(ws, message) {
        if (ws.data.path === "/ws/pub") handlers.publish("t", message);
        else ws.send(message);
      },
    },
  });
  process.send({ plain: plain.port, secure: secure.port, handlers: handlers.port });
  process.on("message", async () => {
    await Promise.all([plain.close({ force: true }), secure.close({ force: true }), handlers.close({ force: true })]);
    process.exit(0);
  });
}

// --- the clients

async function main() {
  const seconds = Number((process.argv.find((a) => a.startsWith("--seconds=")) ?? "--seconds=24").slice(10));
  // Half the time to each mode, shared by the scenarios below by weight.
  const scenarios = [
    ["GET /json", 3, (p, ms) => http1Load(p.plain, ms, { conns: 32, depth: 1, request: get("/json") })],
    ["GET /json pipelined", 2, (p, ms) => http1Load(p.plain, ms, { conns: 16, depth: 16, request: get("/json") })],
    ["GET /json serve()", 1, (p, ms) => http1Load(p.handlers, ms, { conns: 32, depth: 1, request: get("/json") })],
    ["POST /echo 1 KiB", 1, (p, ms) => http1Load(p.plain, ms, { conns: 16, depth: 1, request: post("/echo", 1024) })],
    [
      "POST /echo 100 KiB",
      1,
      (p, ms) => http1Load(p.plain, ms, { conns: 8, depth: 1, request: post("/echo", 100 << 10) }),
    ],
    [
      "POST /upload 1 MiB",
      1,
      (p, ms) => http1Load(p.plain, ms, { conns: 4, depth: 1, request: post("/upload", 1 << 20) }),
    ],
    ["GET /download", 0.5, (p, ms) => http1Load(p.plain, ms, { conns: 8, depth: 1, request: get("/download") })],
    ["HTTPS/1.1", 2, (p, ms) => httpsLoad(p.secure, ms)],
    ["h2 (TLS)", 1, (p, ms) => h2Load(`https://127.0.0.1:${p.secure}`, ms)],
    ["h2c", 1, (p, ms) => h2Load(`http://127.0.0.1:${p.plain}`, ms)],
    ["WebSocket echo 64 B", 2, (p, ms) => wsEcho(p.plain, ms, 64, false)],
    ["WebSocket echo 64 B handlers", 2, (p, ms) => wsEcho(p.handlers, ms, 64, false)],
    ["WebSocket echo text, 16 KiB", 0.5, (p, ms) => wsEcho(p.handlers, ms, 16 << 10, true)],
    ["WebSocket fan-out", 1, (p, ms) => wsFanout(p.plain, ms)],
    ["WebSocket fan-out handlers", 1, (p, ms) => wsFanout(p.handlers, ms)],
  ];
  const weight = scenarios.reduce((s, [, w]) => s + w, 0);
  for (const mode of [{ workerThreads: 0 }, { workerThreads: 1 }]) {
    const child = fork(fileURLToPath(import.meta.url), ["--serve"], {
      env: { ...process.env, FETCH_RS_TRAIN_MODE: JSON.stringify(mode) },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    const ports = await new Promise((resolve, reject) => {
      child.once("message", resolve);
      child.once("exit", (code) => reject(new Error(`the training server exited (${code}) before listening`)));
    });
    for (const [name, w, run] of scenarios) {
      const ms = (seconds * 1000 * w) / weight / 2;
      const n = await run(ports, ms);
      console.log(`pgo-train: workerThreads ${mode.workerThreads}, ${name}: ${n}`);
      if (n === 0) throw new Error(`pgo-train: ${name} got no answers`);
    }
    const code = await new Promise((resolve) => {
      child.removeAllListeners("exit");
      child.once("exit", (c, signal) => resolve(c ?? signal));
      child.send("exit");
    });
    if (code !== 0) throw new Error(`pgo-train: the training server exited with ${code}`);
  }
}

const get = (path) => Buffer.from(`GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n`);
function post(path, bytes) {
  const head = `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/octet-stream\r\ncontent-length: ${bytes}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head), Buffer.alloc(bytes, 0x78)]);
}

/**
 * Counts the complete HTTP/1.1 responses in a byte stream (Content-Length bodies only: every
 * route above answers with one). Returns a function that takes the next chunk and returns how
 * many responses it completed.
 */
function responseCounter() {
  let buf = Buffer.alloc(0);
  let need = -1; // body bytes still to skip, -1 while reading a head
  return (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    let done = 0;
    for (;;) {
      if (need < 0) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return done;
        const head = buf.subarray(0, end).toString("latin1");
        const m = /\r\ncontent-length: *(\d+)/i.exec(head);
        if (!m || !head.startsWith("HTTP/1.1 200")) throw new Error(`pgo-train: unexpected response ${head}`);
        need = Number(m[1]);
        buf = buf.subarray(end + 4);
      }
      if (buf.length < need) {
        need -= buf.length;
        buf = Buffer.alloc(0);
        return done;
      }
      buf = buf.subarray(need);
      need = -1;
      done++;
    }
  };
}

/** Keep-alive HTTP/1.1 load: `conns` sockets, each with `depth` requests written at once. */
function http1Load(port, ms, { conns, depth, request }) {
  const batch = Buffer.concat(Array.from({ length: depth }, () => request));
  const deadline = Date.now() + ms;
  let total = 0;
  const one = () =>
    new Promise((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1");
      const count = responseCounter();
      let pending = depth;
      socket.on("connect", () => socket.write(batch));
      socket.on("data", (chunk) => {
        try {
          const n = count(chunk);
          total += n;
          pending -= n;
        } catch (error) {
          socket.destroy();
          reject(error);
          return;
        }
        if (pending > 0) return;
        if (Date.now() >= deadline) {
          socket.end();
          resolve();
        } else {
          pending = depth;
          socket.write(batch);
        }
      });
      socket.on("error", reject);
    });
  return Promise.all(Array.from({ length: conns }, one)).then(() => total);
}

/** HTTPS/1.1 with node:https: keep-alive requests, and a new connection (a handshake) now and then. */
async function httpsLoad(port, ms) {
  const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 16 });
  const fresh = new https.Agent({ keepAlive: false });
  const deadline = Date.now() + ms;
  let total = 0;
  const request = (agent, method, path, body) =>
    new Promise((resolve, reject) => {
      const req = https.request({ host: "127.0.0.1", port, method, path, agent, rejectUnauthorized: false }, (res) => {
        res.on("data", () => {});
        res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
      });
      req.on("error", reject);
      req.end(body);
    });
  const body = Buffer.alloc(1024, 0x78);
  const worker = async (i) => {
    for (let n = 0; Date.now() < deadline; n++) {
      if (i === 0 && n % 8 === 0) await request(fresh, "GET", "/json");
      else if (n % 4 === 3) await request(keepAlive, "POST", "/echo", body);
      else await request(keepAlive, "GET", "/json");
      total++;
    }
  };
  await Promise.all(Array.from({ length: 16 }, (_, i) => worker(i)));
  keepAlive.destroy();
  return total;
}

/** HTTP/2 (h2 over TLS, or h2c by prior knowledge): 4 sessions, 16 streams each at a time. */
async function h2Load(origin, ms) {
  const deadline = Date.now() + ms;
  let total = 0;
  const body = Buffer.alloc(1024, 0x78);
  const session = async () => {
    const s = http2.connect(origin, { rejectUnauthorized: false });
    s.on("error", () => {});
    const stream = (n) =>
      new Promise((resolve, reject) => {
        const post = n % 4 === 3;
        const req = s.request({ ":method": post ? "POST" : "GET", ":path": post ? "/echo" : "/json" });
        req.on("response", (h) => h[":status"] !== 200 && reject(new Error(`status ${h[":status"]}`)));
        req.on("data", () => {});
        req.on("end", resolve);
        req.on("error", reject);
        req.end(post ? body : undefined);
      });
    const lane = async () => {
      for (let n = 0; Date.now() < deadline; n++) {
        await stream(n);
        total++;
      }
    };
    await Promise.all(Array.from({ length: 16 }, lane));
    await new Promise((resolve) => s.close(resolve));
  };
  await Promise.all(Array.from({ length: 4 }, session));
  return total;
}

// --- WebSocket over raw sockets: hand-made handshake and masked frames

/** Opens a WebSocket on `path`; resolves with { socket, onFrame(cb), send(buf) } after the 101. */
function wsConnect(port, path) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.setNoDelay(true);
    const key = randomBytes(16).toString("base64");
    socket.on("connect", () =>
      socket.write(
        `GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: Upgrade\r\nupgrade: websocket\r\n` +
          `sec-websocket-version: 13\r\nsec-websocket-key: ${key}\r\n\r\n`,
      ),
    );
    socket.on("error", reject);
    let buf = Buffer.alloc(0);
    let open = false;
    let frameCb = () => {};
    socket.on("data", (chunk) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (!open) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        if (!buf.subarray(0, 12).toString("latin1").startsWith("HTTP/1.1 101")) {
          reject(new Error(`pgo-train: no upgrade: ${buf.subarray(0, end)}`));
          socket.destroy();
          return;
        }
        open = true;
        buf = buf.subarray(end + 4);
        resolve({ socket, onFrame: (cb) => (frameCb = cb), send: (frame) => socket.write(frame) });
      }
      // Unmasked server frames: count the complete ones.
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 0x7f;
        let at = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          at = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          at = 10;
        }
        if (buf.length < at + len) return;
        const opcode = buf[0] & 0x0f;
        buf = buf.subarray(at + len);
        frameCb(opcode);
      }
    });
  });
}

const clientFrame = (payload, text) => maskedFrame(text ? 1 : 2, payload);
const closeFrame = () => maskedFrame(8, Buffer.from([0x03, 0xe8]));

/** Echo: 50 sockets, each with 4 messages in flight, until the time is up. */
async function wsEcho(port, ms, size, text) {
  const frame = clientFrame(Buffer.alloc(size, 0x61), text);
  const deadline = Date.now() + ms;
  let total = 0;
  const one = async () => {
    const ws = await wsConnect(port, "/ws/echo");
    await new Promise((resolve) => {
      let inFlight = 4;
      ws.onFrame(() => {
        total++;
        inFlight--;
        if (Date.now() < deadline) {
          inFlight++;
          ws.send(frame);
        } else if (inFlight === 0) resolve();
      });
      for (let i = 0; i < 4; i++) ws.send(frame);
    });
    ws.send(closeFrame());
    ws.socket.end();
  };
  await Promise.all(Array.from({ length: 50 }, one));
  return total;
}

/** Fan-out: 200 subscribers, one publisher; each publish waits for every delivery (or 1 s). */
async function wsFanout(port, ms) {
  const subscribers = 200;
  let delivered = 0;
  let waiter = null;
  const subs = [];
  for (let i = 0; i < subscribers; i++) {
    const ws = await wsConnect(port, "/ws/sub");
    ws.onFrame(() => {
      delivered++;
      if (waiter && delivered >= waiter.until) waiter.resolve();
    });
    subs.push(ws);
  }
  const pub = await wsConnect(port, "/ws/pub");
  const frame = clientFrame(Buffer.alloc(64, 0x62), false);
  // Each publish waits until every subscriber has it, or 1 s (the subscriptions are made in the
  // sockets' open handlers, so the first publishes may find some not yet made).
  const publish = (timeoutMs) =>
    new Promise((resolve) => {
      const until = delivered + subscribers;
      const timer = setTimeout(resolve, timeoutMs);
      waiter = { until, resolve: () => (clearTimeout(timer), resolve()) };
      pub.send(frame);
    });
  const deadline = Date.now() + ms;
  let publishes = 0;
  while (Date.now() < deadline) {
    await publish(1000);
    publishes++;
  }
  waiter = null;
  for (const ws of [...subs, pub]) {
    ws.send(closeFrame());
    ws.socket.end();
  }
  return delivered;
}

if (process.argv[2] === "--serve") await serveChild();
else await main();
