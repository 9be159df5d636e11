// workerThreads: 0: the network on the JS thread (src/in_thread.rs). The same server
// behaviour as with worker threads, over real sockets, and no Rust threads started. The
// whole suite also runs in this mode with FETCH_RS_IN_THREAD=1 (docs/network-thread.md).
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import http2 from "node:http2";
import { test } from "node:test";
import { promisify } from "node:util";
import WebSocket from "ws";
import { Response, Server, serve } from "../dist/index.js";
import { parseRaw, pattern, raw, request, sleep, start } from "./helpers.mjs";
import { A, httpsRequest } from "./tls-helpers.mjs";

const inThread = { workerThreads: 0 };

/** Names of this process's threads that fetch-rs's runtime started. */
function runtimeThreads() {
  return readdirSync("/proc/self/task").filter((t) => {
    try {
      return readFileSync(`/proc/self/task/${t}/comm`, "utf8").trim() === "fetch-rs";
    } catch {
      return false; // the thread ended meanwhile
    }
  }).length;
}

const linux = process.platform === "linux";
const run = promisify(execFile);
const hasH2load = (() => {
  try {
    execFileSync("h2load", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

test("workerThreads: 0 serves without starting a Rust thread", { skip: !linux }, async () => {
  const before = runtimeThreads();
  const { server, base } = await start((e) => e.respondWith(Response.json({ ok: true })), inThread);
  try {
    const res = await fetch(`${base}/`);
    assert.deepEqual(await res.json(), { ok: true });
    assert.equal(runtimeThreads(), before);
  } finally {
    await server.close();
  }
});

test(
  "workerThreads: 0 answers bodies small, collected and streamed, and streamed responses",
  { skip: !linux },
  async () => {
    const { server, base } = await start(async (e) => {
      const url = new URL(e.request.url);
      if (url.pathname === "/echo") return e.respondWith(new Response(await e.request.arrayBuffer()));
      if (url.pathname === "/stream") {
        const body = new ReadableStream({
          async pull(c) {
            await sleep(1);
            c.enqueue(new TextEncoder().encode("chunk "));
            if (++this.n === 3) c.close();
          },
          n: 0,
        });
        return e.respondWith(new Response(body));
      }
      e.respondWith(new Response("hi"));
    }, inThread);
    try {
      assert.equal(await (await fetch(`${base}/`)).text(), "hi");
      for (const size of [10, 100 * 1024, 3 * 1024 * 1024]) {
        const sent = pattern(size, size);
        const res = await request(base, "/echo", { method: "POST", body: sent });
        assert.equal(res.status, 200);
        assert.ok(res.body.equals(sent), `echo of ${size} bytes`);
      }
      assert.equal(await (await fetch(`${base}/stream`)).text(), "chunk chunk chunk ");
    } finally {
      await server.close();
    }
  },
);

test("workerThreads: 0 answers pipelined requests in order, sync and async listeners", { skip: !linux }, async () => {
  const { server } = await start(async (e) => {
    const n = new URL(e.request.url).pathname.slice(1);
    if (Number(n) % 2) await sleep(2);
    e.respondWith(new Response(`r${n}`));
  }, inThread);
  try {
    let req = "";
    for (let i = 0; i < 20; i++) req += `GET /${i} HTTP/1.1\r\nHost: x\r\n\r\n`;
    const { text } = await raw(server.port, req, { idleMs: 500 });
    const bodies = text
      .split("HTTP/1.1 200 OK")
      .slice(1)
      .map((r) => parseRaw(`HTTP/1.1 200 OK${r}`).body);
    assert.deepEqual(
      bodies,
      Array.from({ length: 20 }, (_, i) => `r${i}`),
    );
  } finally {
    await server.close();
  }
});

test("workerThreads: 0 keeps the timeouts: a listener that never answers gets 503", { skip: !linux }, async () => {
  const { server, base } = await start((e) => e.respondWith(new Promise(() => {})), { ...inThread, timeout: 150 });
  try {
    const started = Date.now();
    const res = await request(base, "/");
    assert.equal(res.status, 503);
    assert.ok(Date.now() - started >= 140);
  } finally {
    await server.close();
  }
});

test("workerThreads: 0 serves HTTPS", { skip: !linux }, async () => {
  const server = new Server({ port: 0, host: "127.0.0.1", tls: A, ...inThread });
  server.addEventListener("fetch", (e) => e.respondWith(new Response(`tls ${e.request.url}`)));
  await server.listen();
  try {
    const res = await httpsRequest(server.port, "/a", { ALPNProtocols: ["http/1.1"] });
    assert.equal(res.status, 200);
    assert.equal(res.alpn, "http/1.1");
    assert.match(res.body, /^tls https:\/\/127\.0\.0\.1:\d+\/a$/);
    res.socket.destroy();
  } finally {
    await server.close();
  }
});

test("workerThreads: 0 speaks HTTP/2 cleartext with concurrent streams", { skip: !linux }, async () => {
  const { server, base } = await start(async (e) => {
    await sleep(5);
    e.respondWith(new Response(new URL(e.request.url).pathname));
  }, inThread);
  const session = http2.connect(base);
  try {
    const one = (path) =>
      new Promise((resolve, reject) => {
        const s = session.request({ ":path": path });
        let body = "";
        s.setEncoding("utf8");
        s.on("data", (d) => (body += d));
        s.on("end", () => resolve(body));
        s.on("error", reject);
      });
    assert.deepEqual(await Promise.all(["/a", "/b", "/c"].map(one)), ["/a", "/b", "/c"]);
  } finally {
    session.close();
    await server.close();
  }
});

// Each HTTP/2 stream runs in a task of its own (hyper's executor); a turn of the in-thread
// runtime must go on while such tasks run, or a stream woken at the end of a turn waits for
// the next socket event or the 10 ms timer tick, and the server sits idle under load. The
// measure is how busy the JS thread is while h2load keeps 10 x 100 streams open, which does
// not depend on the machine's speed: CPU-bound, it is mostly busy; waiting for ticks it was
// busy under 20% of the time (30,000 requests took 1.6 s instead of 0.2 s).
/** The machine's CPU time so far from /proc/stat (all cores, in clock ticks): idle and total. */
function machineTimes() {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return { idle: fields[3] + fields[4], total: fields.slice(0, 8).reduce((a, b) => a + b, 0) };
}

test(
  "workerThreads: 0 keeps busy under many HTTP/2 streams (no waiting for the timer tick)",
  { skip: !linux },
  async (t) => {
    if (!hasH2load) {
      t.skip("h2load is not installed (apt-get install nghttp2-client)");
      return;
    }
    const { server, base } = await start((e) => e.respondWith(Response.json({ ok: true })), inThread);
    try {
      const cpu = process.cpuUsage();
      const machine = machineTimes();
      const began = performance.now();
      const { stdout } = await run("h2load", ["-c10", "-m100", "-n30000", `${base}/`]);
      const wall = performance.now() - began;
      const used = process.cpuUsage(cpu);
      const after = machineTimes();
      assert.match(stdout, /30000 succeeded/);
      const busy = (used.user + used.system) / 1000 / wall;
      // Waiting for ticks leaves the machine idle too; a machine busy with other work can
      // leave the server less than 40% of a core without any waiting.
      const idle = (after.idle - machine.idle) / (after.total - machine.total);
      assert.ok(
        busy > 0.4 || idle < 0.25,
        `JS thread busy ${(busy * 100).toFixed(0)}% of ${wall.toFixed(0)} ms while the machine was ${(idle * 100).toFixed(0)}% idle`,
      );
    } finally {
      await server.close();
    }
  },
);

test("workerThreads: 0 closes gracefully and lets the process exit", { skip: !linux }, async () => {
  const { server, base } = await start((e) => e.respondWith(new Response("x")), inThread);
  const agent = new (await import("node:http")).Agent({ keepAlive: true });
  const res = await request(base, "/", { agent });
  assert.equal(res.status, 200);
  await server.close();
  agent.destroy();
  // A second server on the same thread after the first is gone.
  const again = await start((e) => e.respondWith(new Response("y")), inThread);
  assert.equal(await (await fetch(`${again.base}/`)).text(), "y");
  await again.server.close();
});

test(
  "workerThreads: 0 in worker threads: two share a port, and terminating one that still listens is safe",
  { skip: !linux },
  async () => {
    const { Worker } = await import("node:worker_threads");
    const { once } = await import("node:events");
    const dist = JSON.stringify(new URL("../dist/index.js", import.meta.url).href);
    const code = `
    const { parentPort, workerData, threadId } = await import("node:worker_threads");
    const { Server, Response } = await import(${dist});
    const server = new Server({ port: workerData.port, host: "127.0.0.1", reusePort: true, workerThreads: 0 });
    server.addEventListener("fetch", (e) => e.respondWith(Response.json({ thread: threadId })));
    await server.listen();
    parentPort.postMessage(server.port);
  `;
    const first = new Worker(code, { eval: true, workerData: { port: 0 } });
    const [port] = await once(first, "message");
    const second = new Worker(code, { eval: true, workerData: { port } });
    await once(second, "message");
    const threads = new Set();
    for (let i = 0; i < 40 && threads.size < 2; i++) {
      const r = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: "close" } });
      threads.add((await r.json()).thread);
    }
    assert.equal(threads.size, 2, "connections never reached the second worker");
    // Neither server is closed: terminating tears its env down with the sockets still watched.
    await first.terminate();
    await second.terminate();
    await sleep(50);
    assert.ok(true, "the process survived");
  },
);

test(
  "workerThreads: 0 keeps memory bounded under concurrent 1 MiB uploads read whole",
  { skip: !linux, timeout: 60_000 },
  async () => {
    // When read bodies were external buffers over Rust memory, freed by a finalizer on a
    // later turn of Node's loop, the in-thread network's long turns left them waiting:
    // this run peaked at 890-910 MiB of RSS (and took three times as long), against under
    // 200 MiB with Buffers V8 allocates and frees itself.
    const { spawn } = await import("node:child_process");
    const http = await import("node:http");
    const dist = JSON.stringify(new URL("../dist/index.js", import.meta.url).href);
    const code = `
    const { Server, Response } = await import(${dist});
    const server = new Server({ port: 0, host: "127.0.0.1", workerThreads: 0 });
    server.addEventListener("fetch", (e) =>
      e.respondWith(e.request.arrayBuffer().then((b) => Response.json({ length: b.byteLength }))));
    await server.listen();
    console.log("PORT " + server.port);
  `;
    const proc = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      let out = "";
      const port = await new Promise((resolve, reject) => {
        proc.stdout.on("data", (d) => {
          out += d;
          const m = /PORT (\d+)/.exec(out);
          if (m) resolve(Number(m[1]));
        });
        proc.on("exit", (c) => reject(new Error(`server exited with ${c}`)));
      });
      const peak = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"))[1]) / 1024;
      const before = peak();
      const CONNECTIONS = 48;
      const COUNT = 800;
      const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
      const body = Buffer.alloc(1024 * 1024, 120);
      let next = 0;
      const worker = async () => {
        while (next < COUNT) {
          next++;
          const r = await request(`http://127.0.0.1:${port}`, "/", { method: "POST", body, agent });
          assert.equal(JSON.parse(r.body).length, body.length);
        }
      };
      await Promise.all(Array.from({ length: CONNECTIONS }, worker));
      agent.destroy();
      const rise = peak() - before;
      assert.ok(rise < 400, `peak RSS rose by ${rise.toFixed(0)} MiB over ${COUNT} uploads of 1 MiB`);
    } finally {
      proc.kill("SIGKILL");
    }
  },
);

/**
 * Starts a server with `options` in a child process limited to `cpus` (taskset), answers one
 * request, and returns how many of the child's threads the runtime started.
 */
async function threadsInChild(cpus, options) {
  const script = `
    import { readdirSync, readFileSync } from "node:fs";
    const { Server } = await import(${JSON.stringify(new URL("../dist/index.js", import.meta.url).href)});
    const server = new Server({ host: "127.0.0.1", port: 0, ...${JSON.stringify(options)} });
    server.addEventListener("fetch", (e) => e.respondWith(new Response("ok")));
    await server.listen();
    const text = await (await fetch("http://127.0.0.1:" + server.port + "/")).text();
    const threads = readdirSync("/proc/self/task").filter((t) => {
      try { return readFileSync("/proc/self/task/" + t + "/comm", "utf8").trim() === "fetch-rs"; } catch { return false; }
    }).length;
    await server.close();
    console.log(JSON.stringify({ text, threads }));
  `;
  const env = { ...process.env };
  delete env.FETCH_RS_IN_THREAD; // the default is what is tested, not the suite's forced mode
  const argv = [process.execPath, "--input-type=module", "-e", script];
  const { stdout } = await run(...(cpus ? ["taskset", ["-c", cpus, ...argv]] : [argv[0], argv.slice(1)]), { env });
  const result = JSON.parse(stdout);
  assert.equal(result.text, "ok");
  return result.threads;
}

const hasTaskset = (() => {
  try {
    execFileSync("taskset", ["-c", "0", "true"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

test(
  "with one CPU the network runs on the JS thread by default; workerThreads: 1 still starts a thread",
  { skip: !linux || !hasTaskset },
  async () => {
    assert.equal(await threadsInChild("0", {}), 0);
    assert.equal(await threadsInChild("0", { workerThreads: 1 }), 1);
  },
);

test(
  "with more CPUs the default starts worker threads (cores - 1, at most 4)",
  { skip: !linux || (await import("node:os")).availableParallelism() < 2 },
  async () => {
    const cores = (await import("node:os")).availableParallelism();
    assert.equal(await threadsInChild(null, {}), Math.min(cores - 1, 4));
  },
);

test(
  "workerThreads: 0 echoes WebSocket messages sent one at a time, each turn ending idle, on sockets in turn and with requests between: each whole and in order",
  { skip: !linux, timeout: 60_000 },
  async () => {
    // A guard of the turn's end: a turn whose first yield finds nothing ends there. One
    // message in flight at a time makes every turn end so; a wake-up left behind by a turn
    // would leave its echo to the 10 ms tick, or to the next socket's event.
    const server = serve({
      ...inThread,
      port: 0,
      host: "127.0.0.1",
      fetch(req, srv) {
        if (srv.upgrade(req)) return;
        return new Response(`plain ${new URL(req.url).pathname}`);
      },
      websocket: {
        message(ws, m) {
          ws.send(m);
        },
      },
    });
    const clients = [];
    try {
      for (let k = 0; k < 4; k++) {
        const c = new WebSocket(`ws://127.0.0.1:${server.port}/ws`);
        await once(c, "open");
        const got = [];
        const waiters = [];
        c.on("message", (d, isBinary) => {
          got.push([isBinary, isBinary ? Buffer.from(d).toString("hex") : String(d)]);
          waiters.shift()?.();
        });
        clients.push({ c, got, waiters, sent: [] });
      }
      for (let i = 0; i < 600; i++) {
        const cl = clients[i % clients.length];
        const m =
          i % 3 === 0
            ? `m${i}-${"x".repeat(i % 97)}`
            : Buffer.from(Array.from({ length: i % 131 }, (_, j) => (i + j) & 0xff));
        cl.sent.push(typeof m === "string" ? [false, m] : [true, m.toString("hex")]);
        const echoed = new Promise((resolve) => cl.waiters.push(resolve));
        cl.c.send(m);
        await echoed;
        if (i % 100 === 99) {
          const res = await fetch(`http://127.0.0.1:${server.port}/between${i}`);
          assert.equal(await res.text(), `plain /between${i}`);
        }
      }
      for (const [k, { got, sent }] of clients.entries()) assert.deepEqual(got, sent, `socket ${k}'s echoes`);
    } finally {
      for (const { c } of clients) c.close();
      await server.close();
    }
  },
);

test(
  "workerThreads: 0 sends of bursts to many sockets, mixed with large sends, publishes and sends from timers: each reply whole and in its place",
  { skip: !linux, timeout: 60_000 },
  async () => {
    // A guard of the in-thread send (src/websocket.rs, `send_batched`): a batch's small
    // frames, sends and publishes alike, go into one buffer of the batch, each socket
    // holding a run of it that the flush writes or copies. Sockets whose sends alternate
    // in a batch, a large send or a publish between two small ones, and sends outside a
    // batch take each of the run's ways; a run with a wrong place would put bytes of one
    // reply, or of another socket's, in the wrong stream.
    const clientCount = 6;
    const perClient = 300;
    const server = serve({
      ...inThread,
      port: 0,
      host: "127.0.0.1",
      fetch(req, srv) {
        if (srv.upgrade(req)) return;
        return new Response("websocket only", { status: 426 });
      },
      websocket: {
        open(ws) {
          ws.subscribe("all");
        },
        message(ws, m) {
          const [c, i] = String(m).split(":").map(Number);
          ws.send(`a:${c}:${i}:${"x".repeat(i % 40)}`);
          // The first half small replies only (runs that grow); the second half with large
          // ones between, which can leave a socket full (runs copied).
          if (i % 5 === 0 && i >= perClient / 2) ws.send(`B:${c}:${i}:${"y".repeat(3000)}`);
          if (i % 13 === 0) ws.send(Buffer.from([c, i & 0xff, i >> 8, 0xff]));
          ws.send(`b:${c}:${i}`);
          if (i % 7 === 0) server.publish("all", `p:${c}:${i}`);
          if (i % 11 === 0) setTimeout(() => ws.send(`t:${c}:${i}`), 0);
        },
      },
    });
    const own = (c) => {
      const out = [];
      for (let i = 0; i < perClient; i++) {
        out.push(`a:${c}:${i}:${"x".repeat(i % 40)}`);
        if (i % 5 === 0 && i >= perClient / 2) out.push(`B:${c}:${i}:${"y".repeat(3000)}`);
        if (i % 13 === 0) out.push(`bin:${Buffer.from([c, i & 0xff, i >> 8, 0xff]).toString("hex")}`);
        out.push(`b:${c}:${i}`);
      }
      return out;
    };
    const publishes = new Set();
    for (let c = 0; c < clientCount; c++) for (let i = 0; i < perClient; i += 7) publishes.add(`p:${c}:${i}`);
    const timed = (c) => Array.from({ length: Math.ceil(perClient / 11) }, (_, k) => `t:${c}:${k * 11}`);
    const clients = [];
    try {
      for (let c = 0; c < clientCount; c++) {
        const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws`, { perMessageDeflate: false });
        await once(ws, "open");
        const got = [];
        const total = own(c).length + publishes.size + timed(c).length;
        let done;
        const all = new Promise((resolve) => (done = resolve));
        ws.on("message", (d, isBinary) => {
          got.push(isBinary ? `bin:${Buffer.from(d).toString("hex")}` : String(d));
          if (got.length === total) done();
        });
        clients.push({ ws, got, all, total });
      }
      // Every client's burst at once: a read brings several of a socket's messages, and a
      // drain those of several sockets.
      for (const [c, { ws }] of clients.entries()) for (let i = 0; i < perClient; i++) ws.send(`${c}:${i}`);
      for (const [c, { got, all, total }] of clients.entries()) {
        // A deadline, not a wait: a reply lost would leave the count short for good.
        let timer;
        const deadline = new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`client ${c}: ${got.length} of ${total} replies`)), 20_000);
        });
        await Promise.race([all, deadline]).finally(() => clearTimeout(timer));
        // Anything more (a reply twice) comes with the last ones: a round trip later it is in.
        clients[c].ws.ping();
        await once(clients[c].ws, "pong");
        assert.equal(got.length, total, `client ${c}: no reply twice or extra`);
        // Its own replies in the order sent; the publishes in one order for every client;
        // the timers' sends in theirs.
        assert.deepEqual(
          got.filter((s) => !s.startsWith("p:") && !s.startsWith("t:")),
          own(c),
          `client ${c}'s own replies`,
        );
        const pubs = got.filter((s) => s.startsWith("p:"));
        assert.deepEqual(new Set(pubs), publishes, `client ${c}'s publishes`);
        assert.deepEqual(
          pubs,
          clients[0].got.filter((s) => s.startsWith("p:")),
          `client ${c}'s publish order`,
        );
        assert.deepEqual(
          got.filter((s) => s.startsWith("t:")),
          timed(c),
          `client ${c}'s sends from timers`,
        );
      }
    } finally {
      for (const { ws } of clients) ws.close();
      await server.close();
    }
  },
);
