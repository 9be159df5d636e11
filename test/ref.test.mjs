// server.ref() / server.unref() (Bun's and Deno's): an unref'd server lets its process exit
// once nothing else keeps Node's event loop alive, and still serves while the process lives.
// Each case runs a child process, once with the network on worker threads and once on the
// JS thread (workerThreads: 0), since the two hold the loop with different handles.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import { describe, test } from "node:test";
import WebSocket from "ws";
import { Server } from "../dist/index.js";
import { runModule } from "./helpers.mjs";
import { A, CA } from "./tls-helpers.mjs";

const dist = JSON.stringify(new URL("../dist/index.js", import.meta.url).href);
const script = (body) => `import { Server, serve, Response } from ${dist};\n${body}`;

/**
 * Starts `source` in a child Node process that prints its server's port on a line first;
 * resolves with the port and `exit` (resolves with `{ code, signal, out, ms }`, where `ms` is
 * the time from the port's line to the exit; the child is killed after `timeoutMs`).
 */
async function child(source, timeoutMs = 8000) {
  const c = spawn(process.execPath, ["--input-type=module", "-e", source], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let ready;
  const port = new Promise((resolve) => (ready = resolve));
  let since = 0;
  c.stdout.on("data", (d) => {
    out += d;
    const m = /^port (\d+)$/m.exec(out);
    if (m !== null && since === 0) {
      since = performance.now();
      ready(Number(m[1]));
    }
  });
  c.stderr.on("data", (d) => (out += d));
  const timer = setTimeout(() => c.kill("SIGKILL"), timeoutMs);
  const exit = once(c, "exit").then(([code, signal]) => {
    clearTimeout(timer);
    ready(0);
    return { code, signal, out, ms: performance.now() - since };
  });
  return { port: await port, exit };
}

/**
 * Sends a request whose chunked body comes in two parts `gapMs` apart; resolves with the reply.
 * (Chunked: a small body of declared length is read before the handler gets the request.)
 */
function slowBody(port, gapMs) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let text = "";
    s.on("data", (d) => (text += d));
    s.on("end", () => resolve(text));
    s.on("error", reject);
    s.write("POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n");
    setTimeout(() => s.write("5\r\nworld\r\n0\r\n\r\n"), gapMs);
  });
}

for (const [mode, threads] of [
  ["worker threads", 1],
  ["the JS thread", 0],
]) {
  const opts = `{ port: 0, host: "127.0.0.1", workerThreads: ${threads} }`;
  describe(`ref() and unref(), network on ${mode}`, () => {
    test("an unref'd server lets the process exit by itself", async () => {
      const r = await runModule(
        script(`
          const server = serve({ ...${opts}, fetch: () => new Response("hi") });
          const res = await fetch(server.url);
          console.log(await res.text(), server.unref());
        `),
        8000,
      );
      assert.equal(r.signal, null, `the process had to be killed: ${r.out}`);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /^hi undefined$/m);
    });

    test("unref() then ref() keeps the process alive", async () => {
      const r = await runModule(
        script(`
          const server = serve({ ...${opts}, fetch: () => new Response("hi") });
          server.unref();
          server.unref();
          console.log(server.ref(), server.ref());
        `),
        1500,
      );
      assert.equal(r.signal, "SIGKILL", `the process exited (${r.code}) while the server listened: ${r.out}`);
      assert.match(r.out, /^undefined undefined$/m);
    });

    test("unref() before listen() is applied when it listens", async () => {
      const r = await runModule(
        script(`
          const server = new Server(${opts});
          server.addEventListener("fetch", (e) => e.respondWith(new Response("hi")));
          server.unref();
          await server.listen();
          const res = await fetch(server.url);
          console.log(await res.text(), server.port > 0);
        `),
        8000,
      );
      assert.equal(r.signal, null, `the process had to be killed: ${r.out}`);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /^hi true$/m);
    });

    test("an unref'd server answers requests while a timer keeps the process alive", async () => {
      const { port, exit } = await child(
        script(`
          const server = serve({ ...${opts}, fetch: (req) => new Response("n=" + new URL(req.url).searchParams.get("n")) });
          server.unref();
          setTimeout(() => console.log("timer done"), 1500);
          console.log("port " + server.port);
        `),
      );
      assert.ok(port > 0);
      for (let n = 0; n < 5; n++) {
        const res = await fetch(`http://127.0.0.1:${port}/?n=${n}`, { headers: { connection: "close" } });
        assert.equal(await res.text(), `n=${n}`);
      }
      const r = await exit;
      assert.equal(r.signal, null, `the process had to be killed: ${r.out}`);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /timer done/);
    });

    test("a request in flight keeps an unref'd server's process alive until it is answered", async () => {
      // The timer lets the request in; its body's second half comes after the timer is done,
      // while the handler still reads it.
      const { port, exit } = await child(
        script(`
          const server = serve({ ...${opts}, fetch: async (req) => new Response("got " + (await req.text())) });
          server.unref();
          setTimeout(() => console.log("timer done"), 300);
          console.log("port " + server.port);
        `),
      );
      const reply = await slowBody(port, 800);
      assert.match(reply, /^HTTP\/1\.1 200/);
      assert.match(reply, /got helloworld$/);
      const r = await exit;
      assert.equal(r.signal, null, `the process had to be killed: ${r.out}`);
      assert.equal(r.code, 0, r.out);
    });

    test("an open WebSocket does not hold an unref'd server's process", async () => {
      const { port, exit } = await child(
        script(`
          const server = serve({
            ...${opts},
            fetch: (req, srv) => (srv.upgrade(req) ? undefined : new Response("no", { status: 400 })),
            websocket: { idleTimeout: 1, message: (ws, m) => ws.send("echo " + m) },
          });
          server.unref();
          setTimeout(() => console.log("timer done"), 1000);
          console.log("port " + server.port);
        `),
      );
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
      await once(ws, "open");
      ws.send("a");
      const [m] = await once(ws, "message");
      assert.equal(String(m), "echo a");
      const r = await exit;
      assert.equal(r.signal, null, `the process had to be killed: ${r.out}`);
      assert.equal(r.code, 0, r.out);
      assert.ok(r.ms < 5000, `exited ${r.ms} ms after listening`);
      ws.terminate();
    });

    test("an unref'd TLS server serves, then lets the process exit", async () => {
      const tls = JSON.stringify({ cert: A.cert, key: A.key });
      const { port, exit } = await child(
        script(`
          const server = serve({ ...${opts}, tls: ${tls}, fetch: () => new Response("secure") });
          server.unref();
          setTimeout(() => console.log("timer done"), 1000);
          console.log("port " + server.port);
        `),
      );
      const https = await import("node:https");
      const body = await new Promise((resolve, reject) => {
        const req = https.get({ host: "127.0.0.1", port, ca: CA, servername: "localhost", agent: false }, (res) => {
          let t = "";
          res.on("data", (d) => (t += d));
          res.on("end", () => resolve(t));
        });
        req.on("error", reject);
      });
      assert.equal(body, "secure");
      const r = await exit;
      assert.equal(r.signal, null, `the process had to be killed: ${r.out}`);
      assert.equal(r.code, 0, r.out);
    });

    test("close() of an unref'd server finishes, and ref()/unref() after it do nothing", async () => {
      const r = await runModule(
        script(`
          const server = serve({ ...${opts}, fetch: () => new Response("hi") });
          server.unref();
          await server.close();
          server.ref();
          server.unref();
          console.log("closed");
        `),
        8000,
      );
      assert.equal(r.signal, null, `the process had to be killed: ${r.out}`);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /^closed$/m);
    });
  });
}

test("ref() and unref() on a server that never listened, in this process", async () => {
  const server = new Server({ port: 0 });
  assert.equal(server.unref(), undefined);
  assert.equal(server.ref(), undefined);
  await server.close();
  assert.equal(server.unref(), undefined);
});

test("an unref'd server in a worker thread lets the worker end by itself", async () => {
  const { Worker } = await import("node:worker_threads");
  for (const threads of [1, 0]) {
    const w = new Worker(
      `const { serve, Response } = await import(${dist});
      const server = serve({ port: 0, host: "127.0.0.1", workerThreads: ${threads}, fetch: () => new Response("w") });
      server.unref();
      const res = await fetch(server.url);
      (await import("node:worker_threads")).parentPort.postMessage(await res.text());`,
      { eval: true },
    );
    const got = [];
    w.on("message", (m) => got.push(m));
    const killer = setTimeout(() => void w.terminate(), 8000);
    const [code] = await once(w, "exit");
    clearTimeout(killer);
    assert.deepEqual(got, ["w"], `workerThreads: ${threads}`);
    assert.equal(code, 0, `workerThreads: ${threads}: the worker had to be terminated`);
  }
});
