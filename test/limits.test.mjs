// Limits, timeouts, overload and shutdown behaviour (DESIGN.md section 4), over real sockets.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import net from "node:net";
import { test } from "node:test";
import { Response } from "../dist/index.js";
import { parseRaw, raw, request, sleep, start, waitFor } from "./helpers.mjs";

test("a request head over maxHeaderSize gets 431", async () => {
  const { server } = await start((e) => e.respondWith(new Response("ok")), { maxHeaderSize: 16 * 1024 });
  try {
    const big = "x".repeat(20 * 1024);
    const r = await raw(server.port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${big}\r\n\r\n`);
    assert.equal(parseRaw(r.text).status, 431);
    const ok = await raw(server.port, `GET / HTTP/1.1\r\nHost: x\r\nX-Small: ${"y".repeat(8 * 1024)}\r\n\r\n`);
    assert.equal(parseRaw(ok.text).status, 200);
  } finally {
    await server.close();
  }
});

test("a chunked body that passes maxBodySize is cut off with 413", async () => {
  let error;
  const { server } = await start(
    async (e) => {
      try {
        await e.request.text();
      } catch (err) {
        error = err;
        throw err;
      }
      e.respondWith(new Response("read it all"));
    },
    { maxBodySize: 100_000 },
  );
  server.addEventListener("error", () => {});
  try {
    const chunk = "x".repeat(70_000);
    const size = chunk.length.toString(16);
    const body = `${size}\r\n${chunk}\r\n${size}\r\n${chunk}\r\n0\r\n\r\n`;
    const r = await raw(server.port, `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${body}`);
    assert.equal(parseRaw(r.text).status, 413);
    await sleep(50);
    assert.equal(error?.code, "ERR_BODY_TOO_LARGE");
    const ok = await request(`http://127.0.0.1:${server.port}`, "/", { method: "POST", body: "small" });
    assert.equal(ok.body.toString(), "read it all");
  } finally {
    await server.close();
  }
});

test("beyond maxPendingRequests new requests get 503 with Retry-After", async () => {
  let release;
  const gate = new Promise((r) => (release = r));
  const { server, base } = await start(
    async (e) => {
      await gate;
      e.respondWith(new Response("done"));
    },
    { maxPendingRequests: 2 },
  );
  try {
    const first = [fetch(base), fetch(base)];
    await sleep(100);
    assert.equal(server.stats().pendingRequests, 2);
    const third = await fetch(base);
    assert.equal(third.status, 503);
    assert.equal(third.headers.get("retry-after"), "1");
    release();
    for (const r of await Promise.all(first)) assert.equal(await r.text(), "done");
  } finally {
    await server.close();
  }
});

test("beyond maxConnections a new connection waits in the backlog until one closes", async () => {
  const { server } = await start((e) => e.respondWith(new Response("served")), { maxConnections: 2 });
  try {
    const held = [];
    for (let i = 0; i < 2; i++) {
      const s = net.connect(server.port, "127.0.0.1");
      await once(s, "connect");
      held.push(s);
    }
    await sleep(50);
    assert.equal(server.stats().activeConnections, 2);
    const third = net.connect(server.port, "127.0.0.1");
    let reply = "";
    third.on("data", (d) => (reply += d));
    await once(third, "connect");
    third.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await sleep(300);
    assert.equal(reply, "", "a third connection was served past maxConnections");
    held[0].destroy();
    for (let i = 0; i < 100 && !reply.includes("served"); i++) await sleep(10);
    assert.match(reply, /served$/);
    third.destroy();
    held[1].destroy();
  } finally {
    await server.close();
  }
});

test("close() answers an in-flight request with Connection: close and drops idle keep-alive connections", async () => {
  let release;
  const gate = new Promise((r) => (release = r));
  const { server } = await start(async (e) => {
    await gate;
    e.respondWith(new Response("last"));
  });
  const idle = net.connect(server.port, "127.0.0.1");
  await once(idle, "connect");
  const idleClosed = once(idle, "close");
  const busy = raw(server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", { idleMs: 2000 });
  await sleep(100);
  const closing = server.close();
  await idleClosed;
  release();
  const r = await busy;
  const p = parseRaw(r.text);
  assert.equal(p.status, 200);
  assert.ok(p.lines.includes("connection: close"), p.lines.join("|"));
  assert.equal(p.body, "last");
  assert.equal(r.closed, true);
  await closing;
});

test("after shutdownTimeout close() forces the remaining connections closed", async () => {
  const { server, base } = await start(() => new Promise(() => {}), { shutdownTimeout: 200 });
  const hung = fetch(base).catch((e) => e);
  await sleep(50);
  const t0 = performance.now();
  await server.close();
  const took = performance.now() - t0;
  assert.ok((await hung) instanceof Error);
  assert.ok(took >= 150 && took < 2000, `close() took ${took.toFixed(0)} ms`);
});

test("stats() gives the latency of handlers that wait, asynchronously or not", async () => {
  // A request's start and end are clock readings shared with the rest of their poll or
  // turn: JS running between the two must never be inside one reading.
  for (const wait of [
    async () => sleep(50),
    async () => {
      const until = performance.now() + 50;
      while (performance.now() < until);
    },
  ]) {
    const { server, base } = await start(async (e) => {
      await wait();
      e.respondWith(new Response("x"));
    });
    try {
      for (let i = 0; i < 4; i++) await (await fetch(base)).text();
      const s = server.stats();
      assert.equal(s.totalRequests, 4);
      assert.ok(s.avgLatencyMs >= 45 && s.avgLatencyMs < 1000, `avgLatencyMs ${s.avgLatencyMs}`);
    } finally {
      await server.close();
    }
  }
});

test("stats() is exact under concurrency", async () => {
  const created = performance.now();
  const { server, base } = await start(async (e) => {
    await sleep(Math.random() * 10);
    e.respondWith(new Response("x"));
  });
  const listening = performance.now();
  try {
    await Promise.all(Array.from({ length: 300 }, () => fetch(base).then((r) => r.text())));
    await Promise.all(Array.from({ length: 200 }, () => fetch(base).then((r) => r.text())));
    const before = performance.now();
    const s = server.stats();
    const after = performance.now();
    assert.equal(s.totalRequests, 500);
    assert.equal(s.pendingRequests, 0);
    assert.ok(s.avgLatencyMs > 0 && s.avgLatencyMs < 1000);
    // requestsPerSecond is the answers of the window (its last 5 s) over the time the server
    // has been up, up to 5 s: with every answer inside it, that time times the rate is 500.
    // The server was made after `created` and before `listening`, and read between `before`
    // and `after`, so the time lies between the two spans below.
    const longest = Math.min(after - created, 5000) / 1000;
    const shortest = (before - listening) / 1000;
    if (after - created < 4000) {
      assert.ok(s.requestsPerSecond * longest >= 499.5, `${s.requestsPerSecond} req/s over at most ${longest} s`);
      assert.ok(s.requestsPerSecond * shortest <= 500.5, `${s.requestsPerSecond} req/s over at least ${shortest} s`);
    } else {
      assert.ok(s.requestsPerSecond > 0);
    }
  } finally {
    await server.close();
  }
});

test("an idle keep-alive connection is closed after idleTimeout; a quiet stream is not", async () => {
  const { server } = await start(
    (e) => {
      if (e.request.url.endsWith("/quiet")) {
        let timer;
        return e.respondWith(
          new Response(
            new ReadableStream({
              start(c) {
                // One event after a silence three times the idle timeout, then the end.
                timer = setTimeout(() => {
                  c.enqueue(new TextEncoder().encode("late"));
                  c.close();
                }, 600);
              },
              cancel() {
                clearTimeout(timer);
              },
            }),
          ),
        );
      }
      e.respondWith(new Response("ok"));
    },
    { idleTimeout: 200, headerTimeout: 0 },
  );
  try {
    const idle = net.connect(server.port, "127.0.0.1");
    await once(idle, "connect");
    const t0 = performance.now();
    idle.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    idle.resume();
    await once(idle, "close");
    const took = performance.now() - t0;
    assert.ok(took >= 150 && took < 1500, `the idle connection closed after ${took.toFixed(0)} ms`);
    const quiet = await raw(server.port, "GET /quiet HTTP/1.1\r\nHost: x\r\n\r\n", { idleMs: 1200 });
    assert.match(quiet.text, /late/);
  } finally {
    await server.close();
  }
});

test(
  "out of file descriptors, accept backs off and logs once per episode, then serves again",
  { skip: process.platform !== "linux" },
  async () => {
    // A server in a child process with few descriptors; connections from here use them up.
    const dist = JSON.stringify(new URL("../dist/index.js", import.meta.url).href);
    const source = `
    import { Server, Response } from ${dist};
    const server = new Server({ port: 0, host: "127.0.0.1", headerTimeout: 120000, idleTimeout: 120000 });
    server.addEventListener("fetch", (e) => e.respondWith(new Response("ok")));
    await server.listen();
    console.log("listening " + server.port);
  `;
    const child = spawn(
      "sh",
      ["-c", 'ulimit -n 64 && exec "$0" "$@"', process.execPath, "--input-type=module", "-e", source],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const until = async (what, ms = 20_000) => {
      for (const end = Date.now() + ms; !what();) {
        if (Date.now() > end || child.exitCode !== null)
          throw new Error(`gave up waiting; stdout: ${out} stderr: ${err}`);
        await sleep(20);
      }
    };
    const cpuTicks = () => {
      const f = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1].split(" ");
      return Number(f[11]) + Number(f[12]); // utime + stime, in clock ticks (1/100 s)
    };
    const sockets = [];
    try {
      await until(() => /listening \d+/.test(out));
      const port = Number(/listening (\d+)/.exec(out)[1]);
      // More connections than the child has descriptors: the rest wait in the backlog.
      for (let i = 0; i < 80; i++) {
        const s = net.connect(port, "127.0.0.1");
        s.on("error", () => {});
        sockets.push(s);
      }
      await until(() => err.includes("accept failed"));
      const ticks = cpuTicks();
      await sleep(2000);
      const spent = (cpuTicks() - ticks) / 100;
      const failures = err.match(/accept failed/g).length;
      assert.equal(failures, 1, `one line for the episode, not one per try:\n${err}`);
      assert.ok(spent < 0.5, `the child used ${spent} s of CPU in 2 s while out of descriptors`);
      for (const s of sockets) s.destroy();
      await until(() => err.includes("accepting again"));
      assert.match(err, /accepting again after \d+ failed accepts/);
      const r = await request(`http://127.0.0.1:${port}`, "/");
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), "ok");
      assert.equal(err.match(/accept failed/g).length, 1, err);
    } finally {
      for (const s of sockets) s.destroy();
      child.kill("SIGKILL");
    }
  },
);

// Request deadlines of an HTTP/1.1 connection share one timer (src/deadline.rs), armed at the
// earliest deadline asked for and otherwise at the connection's 1 s quiet-time tick. A short
// limit must still fire on time, not at that tick, also for a later request of a connection.
/** Writes `text` on `socket` and resolves with the ms until the data seen matches `until`, or the socket closes. */
function timeUntil(socket, text, until) {
  return new Promise((resolve) => {
    const began = performance.now();
    let seen = "";
    const done = () => {
      socket.off("data", onData);
      socket.off("close", done);
      resolve({ ms: performance.now() - began, seen });
    };
    const onData = (d) => {
      seen += d;
      if (until.test(seen)) done();
    };
    socket.on("data", onData);
    socket.on("close", done);
    socket.write(text);
  });
}

test("a short timeout fires on time for a later request of a keep-alive connection", async () => {
  const { server } = await start(
    (e) => {
      // /never: an answer that never comes, so the 150 ms limit answers 503.
      const fast = new URL(e.request.url).pathname === "/fast";
      e.respondWith(fast ? new Response("fast") : new Promise(() => {}));
    },
    { timeout: 150 },
  );
  const socket = net.connect(server.port, "127.0.0.1");
  try {
    await once(socket, "connect");
    const first = await timeUntil(socket, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n", /\r\n\r\nfast$/);
    assert.match(first.seen, /^HTTP\/1\.1 200/);
    const second = await timeUntil(socket, "GET /never HTTP/1.1\r\nHost: x\r\n\r\n", /\r\n\r\n$/);
    assert.match(second.seen, /^HTTP\/1\.1 503/);
    // Not before the limit, and well before the connection's 1 s tick.
    assert.ok(second.ms >= 140 && second.ms < 800, `503 after ${second.ms.toFixed(0)} ms`);
  } finally {
    socket.destroy();
    await server.close();
  }
});

test("one keep-alive connection: every answer counted with its latency, a pipelined pair, then a timeout on time", async () => {
  // Guard for what a request's answer and the connection's poll read: the server's counts
  // and the round clock (reached from the request's own state), the deadline a waiting
  // request notes for the connection's timer, and the heads read against those handed over.
  const { server } = await start(
    async (e) => {
      const path = new URL(e.request.url).pathname;
      if (path === "/never") return e.respondWith(new Promise(() => {}));
      if (path === "/slow") await sleep(60);
      e.respondWith(new Response(path));
    },
    { timeout: 200 },
  );
  const socket = net.connect(server.port, "127.0.0.1");
  try {
    await once(socket, "connect");
    for (let i = 0; i < 3; i++) {
      const slow = await timeUntil(socket, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", /\r\n\r\n\/slow$/);
      assert.match(slow.seen, /^HTTP\/1\.1 200/);
    }
    // Two in one write, answered in order.
    const pair = await timeUntil(
      socket,
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
      /\r\n\r\n\/a[^]*\r\n\r\n\/b$/,
    );
    assert.equal(pair.seen.split("HTTP/1.1 200").length - 1, 2, pair.seen);
    let s = server.stats();
    assert.equal(s.totalRequests, 5);
    assert.equal(s.pendingRequests, 0);
    // Three of 60 ms or more and two of about none.
    assert.ok(s.avgLatencyMs >= 30 && s.avgLatencyMs < 1000, `avgLatencyMs ${s.avgLatencyMs}`);
    const late = await timeUntil(socket, "GET /never HTTP/1.1\r\nHost: x\r\n\r\n", /\r\n\r\n$/);
    assert.match(late.seen, /^HTTP\/1\.1 503/);
    // Not before the limit, and well before the connection's 1 s tick.
    assert.ok(late.ms >= 190 && late.ms < 800, `503 after ${late.ms.toFixed(0)} ms`);
    s = server.stats();
    assert.equal(s.totalRequests, 6);
    assert.equal(s.pendingRequests, 0);
  } finally {
    socket.destroy();
    await server.close();
  }
});

test("a short headerTimeout closes a keep-alive connection on time after its last response", async () => {
  const { server } = await start((e) => e.respondWith(new Response("ok")), { headerTimeout: 200 });
  const socket = net.connect(server.port, "127.0.0.1");
  try {
    await once(socket, "connect");
    const first = await timeUntil(socket, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", /\r\n\r\nok$/);
    assert.match(first.seen, /^HTTP\/1\.1 200/);
    // Part of a second head, then silence: the header timer runs from the last response.
    const second = await timeUntil(socket, "GET /slow HTTP/1.1\r\nHost: x\r\n", /^$/);
    assert.ok(second.ms < 800, `closed after ${second.ms.toFixed(0)} ms`);
    assert.ok(socket.destroyed || socket.readableEnded, "the connection is closed");
  } finally {
    socket.destroy();
    await server.close();
  }
});

// headerTimeout limits the wait for a request head only: a response that takes longer than it
// to stream, or to be read by a slow client, and a request whose body arrives slowly while
// the listener waits for it, are not cut short.
test("headerTimeout does not cut a slow streamed response, a slow reader or a slow request body", async () => {
  let lateBody;
  const big = new Uint8Array(48 * 1024 * 1024).fill(0x61);
  const { server, base } = await start(
    (e) => {
      const path = new URL(e.request.url).pathname;
      if (path === "/stream") {
        let n = 0;
        const body = new ReadableStream({
          async pull(c) {
            await sleep(150);
            if (n++ === 5) c.close();
            else c.enqueue(new TextEncoder().encode(`chunk${n};`));
          },
        });
        e.respondWith(new Response(body));
      } else if (path === "/big") e.respondWith(new Response(big));
      else if (path === "/early") {
        // Answered at once; the body, still arriving, is read afterwards.
        e.respondWith(new Response("early"));
        e.request.text().then(
          (t) => (lateBody = t),
          (err) => (lateBody = err),
        );
      } else e.respondWith(e.request.text().then((t) => new Response(`got ${t.length}`)));
    },
    { headerTimeout: 250 },
  );
  try {
    const streamed = await (await fetch(`${base}/stream`)).text();
    assert.equal(streamed, "chunk1;chunk2;chunk3;chunk4;chunk5;");

    // A client that reads nothing for 700 ms, then all of a 48 MiB response (more than the
    // socket buffers of both ends hold, so the server waits on a full socket).
    const socket = net.connect(server.port, "127.0.0.1");
    await once(socket, "connect");
    socket.pause();
    socket.write("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    await sleep(700);
    let received = 0;
    socket.on("data", (d) => (received += d.length));
    socket.resume();
    const deadline = Date.now() + 10_000;
    while (received < big.length && Date.now() < deadline && !socket.destroyed) await sleep(20);
    socket.destroy();
    assert.ok(received > big.length, `received ${received} bytes of a ${big.length}-byte body and its head`);

    // A body sent in pieces over 750 ms, which the listener waits for.
    const slow = net.connect(server.port, "127.0.0.1");
    await once(slow, "connect");
    let answer = "";
    slow.on("data", (d) => (answer += d));
    slow.write("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
    for (const ch of "hello") {
      await sleep(150);
      slow.write(ch);
    }
    const until = Date.now() + 5000;
    while (!answer.includes("got 5") && Date.now() < until && !slow.destroyed) await sleep(20);
    slow.destroy();
    assert.match(answer, /^HTTP\/1\.1 200[\s\S]*got 5$/);

    // The same body read after an answer that did not wait for it: the listener still
    // reads it, so the connection is not between requests while the body comes in.
    const early = net.connect(server.port, "127.0.0.1");
    await once(early, "connect");
    early.write("POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
    for (const ch of "hello") {
      await sleep(150);
      early.write(ch);
    }
    const by = Date.now() + 5000;
    while (lateBody === undefined && Date.now() < by) await sleep(20);
    early.destroy();
    assert.equal(lateBody, "hello");
  } finally {
    await server.close();
  }
});

test("after the listener's 503, a body nobody began to read is let go of and the connection ends at once", async () => {
  // hyper keeps a connection until its request's body is read or dropped: the 503 said
  // `connection: close`, yet the connection stayed until the idle timeout (10 s).
  const late = [];
  const { server } = await start(
    async (e) => {
      if (new URL(e.request.url).pathname === "/late") {
        // Reads the body after the limit passed: an error with a code, not a hang.
        await sleep(400);
        try {
          await e.request.text();
          late.push("read");
        } catch (err) {
          late.push(err.code);
        }
      }
      e.respondWith(new Promise(() => {}));
    },
    { timeout: 150 },
  );
  server.addEventListener("error", () => {});
  const exchange = (text) =>
    new Promise((resolve, reject) => {
      const t0 = performance.now();
      const socket = net.connect(server.port, "127.0.0.1", () => socket.write(text));
      let seen = "";
      socket.setEncoding("latin1");
      socket.on("data", (d) => (seen += d));
      socket.on("error", reject);
      socket.on("end", () => {
        socket.destroy();
        resolve({ seen, ms: performance.now() - t0 });
      });
    });
  try {
    const big = "x".repeat(200 * 1024);
    for (const [how, text] of [
      ["chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"],
      ["200 KiB declared", `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\n\r\n${big}`],
      [
        "chunked, read late",
        "POST /late HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
      ],
    ]) {
      const r = await exchange(text);
      assert.match(r.seen, /^HTTP\/1\.1 503/, how);
      assert.ok(r.ms < 2000, `${how}: the connection ended ${r.ms.toFixed(0)} ms after the request`);
    }
    await waitFor(() => late.length === 1);
    assert.deepEqual(late, ["ERR_BODY_ABORTED"]);
    // The server goes on: the next request gets its own 503.
    const again = await request(`http://127.0.0.1:${server.port}`, "/", { method: "POST", body: "x" });
    assert.equal(again.status, 503);
  } finally {
    await server.close();
  }
});
