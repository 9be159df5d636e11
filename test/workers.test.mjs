// The addon loaded and unloaded by many worker threads in one process (test runners,
// worker pools, a restarted worker of examples/multi-core.mjs). Each scenario runs in a
// child process, so a crash fails the test instead of killing the runner.
import { test } from "node:test";
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { runModule } from "./helpers.mjs";

const dist = JSON.stringify(new URL("../dist/index.js", import.meta.url).href);

/** Runs `source` as an ES module in a child process; resolves with its exit and output. */
const runChild = (source, timeoutMs = 90_000) => runModule(source, timeoutMs);

// The worker (an ES module: workers inherit the child's --input-type): loads fetch-rs, serves on port 0, posts its port, and then goes as the
// parent says: "close" (close the server and let the thread end by itself) or "exit"
// (process.exit() in the worker, server still listening). worker.terminate() is the third way.
const workerSource = `
  const { parentPort, workerData } = await import("node:worker_threads");
  const { Server, Response } = await import(${dist});
  {
    const server = new Server({ port: 0, host: "127.0.0.1" });
    server.addEventListener("fetch", (e) => {
      if (e.request.url.endsWith("/hang")) return e.respondWith(new Promise(() => {}));
      e.respondWith(new Response("worker " + workerData.i));
    });
    await server.listen();
    parentPort.postMessage(server.port);
    parentPort.on("message", async (how) => {
      if (how === "close") {
        await server.close();
        parentPort.close();
      } else if (how === "exit") {
        process.exit(0);
      }
    });
  }
`;

const parentSource = `
  import { Worker } from "node:worker_threads";
  import { once } from "node:events";
  import http from "node:http";

  const workerSource = ${JSON.stringify(workerSource)};
  function get(port, path = "/") {
    return new Promise((resolve, reject) => {
      const req = http.get({ host: "127.0.0.1", port, path, agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve(body));
      });
      req.on("error", reject);
    });
  }
  async function startWorker(i) {
    const w = new Worker(workerSource, { eval: true, workerData: { i } });
    const [port] = await once(w, "message");
    return { w, port };
  }
  async function ending(w, how) {
    const exited = once(w, "exit");
    if (how === "terminate") await w.terminate();
    else w.postMessage(how);
    await exited;
  }

  let answered = 0;
  let expected = 0;
  const check = (body, i) => {
    expected++;
    if (body === "worker " + i) answered++;
    else console.log("wrong answer from worker", i, JSON.stringify(body));
  };

  // Only imports and exits: the shortest reproduction.
  for (let i = 0; i < 3; i++) {
    const w = new Worker("import(" + JSON.stringify(${dist}) + ")", { eval: true });
    await once(w, "exit");
  }

  // 50 workers in turn, each serving a request and then ending one of four ways.
  const ways = ["close", "exit", "terminate", "terminate-mid-request"];
  for (let i = 0; i < 50; i++) {
    const { w, port } = await startWorker(i);
    check(await get(port), i);
    const how = ways[i % ways.length];
    if (how === "terminate-mid-request") {
      // A request the worker never answers, in flight while the thread is torn down.
      const hung = get(port, "/hang").then(() => "answered", (e) => e.code);
      await new Promise((r) => setTimeout(r, 20));
      await ending(w, "terminate");
      const outcome = await hung;
      if (outcome !== "ECONNRESET" && outcome !== "answered") console.log("hung request ended with", outcome);
    } else {
      await ending(w, how);
    }
  }

  // Workers that start, serve and end while another keeps serving.
  const long = await startWorker(1000);
  let serving = true;
  const steady = (async () => {
    while (serving) check(await get(long.port), 1000);
  })();
  for (let i = 100; i < 120; i += 2) {
    const a = startWorker(i);
    const b = startWorker(i + 1);
    for (const [j, p] of [[i, a], [i + 1, b]]) {
      const { w, port } = await p;
      check(await get(port), j);
      await ending(w, j % 2 ? "terminate" : "close");
    }
  }
  serving = false;
  await steady;
  await ending(long.w, "terminate");
  console.log(JSON.stringify({ answered, expected }));
`;

test("workers that load fetch-rs, serve and end one after another do not crash the process", async () => {
  const r = await runChild(parentSource);
  assert.equal(r.signal, null, `the process died: ${r.signal}\n${r.out}`);
  assert.equal(r.code, 0, r.out);
  const last = r.out.trim().split("\n").at(-1);
  const { answered, expected } = JSON.parse(last);
  assert.ok(expected >= 70, r.out);
  assert.equal(answered, expected, r.out);
});

// A request that reaches a worker while its JS is busy, so it is still queued for JS when
// worker.terminate() stops the thread: the termination must end the worker (in-thread, the
// driver once called JS for it again and again, on a timer of 0 ms, and the worker never
// exited), and the client must see its connection reset, not wait forever.
const busySource = `
  import { Worker } from "node:worker_threads";
  import { once } from "node:events";
  import http from "node:http";

  const workerSource = \`
    const { parentPort } = await import("node:worker_threads");
    const { Server, Response } = await import(${dist});
    const server = new Server({ port: 0, host: "127.0.0.1" });
    server.addEventListener("fetch", (e) => e.respondWith(new Response("not busy")));
    await server.listen();
    parentPort.postMessage(server.port);
    parentPort.on("message", () => {
      parentPort.postMessage("busy");
      for (;;) {}
    });
  \`;
  const outcomes = [];
  for (let i = 0; i < 3; i++) {
    const w = new Worker(workerSource, { eval: true });
    const [port] = await once(w, "message");
    w.postMessage("spin");
    await once(w, "message");
    const outcome = new Promise((resolve) => {
      const req = http.get({ host: "127.0.0.1", port, path: "/", agent: false }, (res) => {
        res.resume();
        resolve("answered " + res.statusCode);
      });
      req.on("error", (e) => resolve(e.code));
    });
    // Time for the connection to be made and its request to arrive, unread.
    await new Promise((r) => setTimeout(r, 100));
    const exited = once(w, "exit");
    await w.terminate();
    await exited;
    outcomes.push(await outcome);
  }
  console.log(JSON.stringify(outcomes));
`;

test("a worker terminated while its JS is busy and a request waits for it ends, and the request's connection is reset", async () => {
  const r = await runChild(busySource, 30_000);
  assert.equal(r.signal, null, `the process did not end: ${r.signal}\n${r.out}`);
  assert.equal(r.code, 0, r.out);
  const outcomes = JSON.parse(r.out.trim().split("\n").at(-1));
  assert.deepEqual(outcomes, ["ECONNRESET", "ECONNRESET", "ECONNRESET"], r.out);
});

// The other side of the test above: a value-less exception out of a turn's call into JS
// that is not a termination (a tick queued by a handler throws `undefined`) is the
// application's uncaught exception, as any other, and the server goes on serving.
const throwsUndefinedSource = `
  const { Server, Response } = await import(${dist});
  const seen = [];
  process.on("uncaughtException", (e) => seen.push(String(e)));
  const server = new Server({ port: 0, host: "127.0.0.1" });
  let n = 0;
  server.addEventListener("fetch", (e) => {
    if (n++ === 0) process.nextTick(() => { throw undefined; });
    e.respondWith(new Response("answer " + n));
  });
  await server.listen();
  const url = "http://127.0.0.1:" + server.port + "/";
  const first = await (await fetch(url)).text();
  const second = await (await fetch(url)).text();
  await server.close();
  console.log(JSON.stringify({ first, second, seen }));
`;

test("a tick that throws undefined during a handler is an uncaught exception, and the server goes on", async () => {
  const r = await runChild(throwsUndefinedSource, 30_000);
  assert.equal(r.signal, null, `the process did not end: ${r.signal}\n${r.out}`);
  assert.equal(r.code, 0, r.out);
  assert.deepEqual(JSON.parse(r.out.trim().split("\n").at(-1)), {
    first: "answer 1",
    second: "answer 2",
    seen: ["undefined"],
  });
});

// What fetch-rs loads at import and what it leaves to first use (docs/network-thread.md,
// "Memory at rest, round twenty-three"): node:zlib is looked at only for a response that
// Node's fetch() made, to know which codings it decoded. A guard of the deferred load: the
// import leaves zlib unloaded, in the main thread and in a worker, and the first such
// response in each is still sent decoded, without the coding's headers.
const GZIP_TEXT = "deferred ".repeat(500);
const lazySource = `
  import { Worker } from "node:worker_threads";
  import { once } from "node:events";
  import http from "node:http";

  const text = ${JSON.stringify(GZIP_TEXT)};
  // Made by the test's process: zlib loaded here would hide what the import loads.
  const gz = Buffer.from(${JSON.stringify(gzipSync(GZIP_TEXT).toString("base64"))}, "base64");
  const upstream = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip", "content-length": gz.length });
    res.end(gz);
  });
  upstream.listen(0, "127.0.0.1");
  await once(upstream, "listening");
  const up = "http://127.0.0.1:" + upstream.address().port + "/";

  function get(port) {
    return new Promise((resolve, reject) => {
      const req = http.get({ host: "127.0.0.1", port, path: "/", agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (body += d));
        res.on("end", () =>
          resolve(body === text && res.headers["content-encoding"] === undefined && res.headers["content-length"] !== String(gz.length)),
        );
      });
      req.on("error", reject);
    });
  }
  const zlibLoaded = () => process.moduleLoadList.includes("NativeModule zlib");
  const out = {};

  const workerSource = \`
    const { parentPort, workerData } = await import("node:worker_threads");
    const zlibLoaded = () => process.moduleLoadList.includes("NativeModule zlib");
    const before = zlibLoaded();
    const { Server } = await import(${dist});
    const after = zlibLoaded();
    const server = new Server({ port: 0, host: "127.0.0.1" });
    server.addEventListener("fetch", (e) => e.respondWith(fetch(workerData)));
    await server.listen();
    parentPort.postMessage({ before, after, port: server.port });
    parentPort.once("message", async () => {
      await server.close();
      parentPort.close();
    });
  \`;
  const w = new Worker(workerSource, { eval: true, workerData: up });
  const [inWorker] = await once(w, "message");
  out.worker = { before: inWorker.before, after: inWorker.after, served: await get(inWorker.port) };
  w.postMessage("close");
  await once(w, "exit");

  const before = zlibLoaded();
  const { Server } = await import(${dist});
  const after = zlibLoaded();
  const server = new Server({ port: 0, host: "127.0.0.1" });
  server.addEventListener("fetch", (e) => e.respondWith(fetch(up)));
  await server.listen();
  out.main = { before, after, served: await get(server.port) };
  await server.close();
  upstream.close();
  console.log(JSON.stringify(out));
`;

test("node:zlib is not loaded by the import, and a response from fetch() is sent decoded on first use, in a worker too", async () => {
  const r = await runChild(lazySource, 30_000);
  assert.equal(r.code, 0, r.out);
  const out = JSON.parse(r.out.trim().split("\n").at(-1));
  for (const where of ["worker", "main"]) {
    assert.equal(out[where].before, false, `${where}: zlib loaded before the import: ${r.out}`);
    assert.equal(out[where].after, false, `${where}: zlib loaded by the import: ${r.out}`);
    assert.equal(out[where].served, true, `${where}: ${r.out}`);
  }
});
