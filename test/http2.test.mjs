// HTTP/2 hardening over TLS: concurrency, stream limits, rapid reset, header floods, PING
// and WINDOW_UPDATE floods, and flow control for a slow reader. Floods use hand-written
// frames (test/h2-frames.mjs); the victims are ordinary node:http2 clients.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Response, Server } from "../dist/index.js";
import { rssKiB, startServer } from "../scripts/child-server.mjs";
import {
  CONTINUATION,
  END_HEADERS,
  END_STREAM,
  frame,
  getHeaderBlock,
  GOAWAY,
  HEADERS,
  literalHeader,
  PING,
  rawH2,
  RST_STREAM,
  rstStream,
  SETTINGS,
  waitFrame,
  WINDOW_UPDATE,
} from "./h2-frames.mjs";
import { sleep } from "./helpers.mjs";
import { A, CA, h2Request, h2Session } from "./tls-helpers.mjs";

async function startTls(listener, options = {}) {
  const server = new Server({ port: 0, host: "127.0.0.1", tls: A, ...options });
  server.addEventListener("fetch", listener);
  server.addEventListener("error", () => {});
  await server.listen();
  return server;
}

const ok = (e) => e.respondWith(new Response("ok"));

/** Requests from a well-behaved client, one after another, until `stop()`; resolves with
 * how many succeeded and the errors. */
function steadyClient(port) {
  let running = true;
  const done = (async () => {
    const session = await h2Session(port);
    let served = 0;
    const errors = [];
    while (running) {
      try {
        const r = await h2Request(session, { ":path": "/victim" });
        if (r.status === 200) served++;
        else errors.push(r.status);
      } catch (e) {
        errors.push(e.code ?? e.message);
      }
    }
    session.close();
    return { served, errors };
  })();
  return {
    stop: () => {
      running = false;
      return done;
    },
  };
}

test("100 concurrent streams on one TLS connection are served together", async () => {
  let waiting = [];
  const server = await startTls((e) => {
    e.respondWith(new Promise((resolve) => waiting.push(resolve)).then(() => new Response(e.request.url)));
    // Every request is in before any is answered: they ran concurrently.
    if (waiting.length === 100) for (const w of waiting) w();
  });
  try {
    const session = await h2Session(server.port);
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => h2Request(session, { ":path": `/${i}` })));
    for (let i = 0; i < 100; i++) {
      assert.equal(results[i].status, 200);
      assert.ok(results[i].body.endsWith(`/${i}`));
    }
    session.close();
  } finally {
    waiting = [];
    await server.close({ force: true });
  }
});

test("http2MaxConcurrentStreams is advertised and a stream beyond it is refused", async () => {
  const server = await startTls(() => new Promise(() => {}), { http2MaxConcurrentStreams: 4, timeout: 0 });
  try {
    const session = await h2Session(server.port);
    await new Promise((r) =>
      session.remoteSettings.maxConcurrentStreams === 4 ? r() : session.once("remoteSettings", r),
    );
    assert.equal(session.remoteSettings.maxConcurrentStreams, 4);
    session.destroy();
    const conn = await rawH2(server.port);
    await waitFrame(conn, (f) => f.type === SETTINGS && !(f.flags & 1));
    const opens = [];
    for (let id = 1; id <= 9; id += 2) opens.push(frame(HEADERS, END_STREAM | END_HEADERS, id, getHeaderBlock()));
    conn.socket.write(Buffer.concat(opens));
    const refused = await waitFrame(conn, (f) => f.type === RST_STREAM && f.stream === 9);
    assert.ok(refused, "stream 9 was not reset");
    assert.equal(refused.payload.readUInt32BE(0), 7 /* REFUSED_STREAM */);
    conn.socket.destroy();
  } finally {
    await server.close({ force: true });
  }
});

test("rapid reset: a client resetting thousands of streams a second gets GOAWAY; others are served", async () => {
  let served = 0;
  const server = await startTls((e) => {
    served++;
    e.respondWith(new Response("ok"));
  });
  try {
    const victim = steadyClient(server.port);
    let sent = 0;
    let goaways = 0;
    const until = Date.now() + 1500;
    while (Date.now() < until) {
      const conn = await rawH2(server.port);
      const burst = [];
      for (let i = 0, id = 1; i < 2000; i++, id += 2)
        burst.push(frame(HEADERS, END_STREAM | END_HEADERS, id, getHeaderBlock()), rstStream(id));
      conn.socket.write(Buffer.concat(burst));
      sent += 2000;
      const g = await waitFrame(conn, (f) => f.type === GOAWAY, 5000);
      if (g) {
        goaways++;
        assert.equal(g.payload.readUInt32BE(4), 11 /* ENHANCE_YOUR_CALM */);
      }
      conn.socket.destroy();
    }
    const v = await victim.stop();
    assert.ok(goaways >= 1, "no GOAWAY");
    assert.deepEqual(v.errors, []);
    assert.ok(v.served > 0);
    // The flood's streams were cut off long before they could all reach the listener.
    assert.ok(served - v.served < sent / 10, `${served - v.served} of ${sent} flood streams reached the listener`);
  } finally {
    await server.close({ force: true });
  }
});

test("a CONTINUATION flood and an HPACK bomb end at maxHeaderSize; others are served", async () => {
  const server = await startTls(ok, { maxHeaderSize: 8192 });
  try {
    const victim = steadyClient(server.port);
    // 1. A header block that never ends: HEADERS without END_HEADERS, then CONTINUATION
    //    frames of 1 KB headers, 4 MB in all.
    const conn = await rawH2(server.port);
    conn.socket.write(frame(HEADERS, END_STREAM, 1, getHeaderBlock()));
    const filler = literalHeader("x-filler", "f".repeat(1000));
    let written = 0;
    while (written < 4096 && !conn.closed) {
      const ok = conn.socket.write(Buffer.concat(Array.from({ length: 64 }, () => frame(CONTINUATION, 0, 1, filler))));
      written += 64;
      if (!ok) await Promise.race([new Promise((r) => conn.socket.once("drain", r)), sleep(1000)]);
      if (
        conn.frames.some((f) => f.type === GOAWAY || (f.stream === 1 && (f.type === HEADERS || f.type === RST_STREAM)))
      )
        break;
    }
    const answer = await waitFrame(
      conn,
      (f) => f.type === GOAWAY || (f.stream === 1 && (f.type === HEADERS || f.type === RST_STREAM)),
    );
    assert.ok(answer || conn.closed, "the server kept reading an endless header block");
    if (answer?.type === GOAWAY) assert.equal(answer.payload.readUInt32BE(4), 11 /* ENHANCE_YOUR_CALM */);
    assert.ok(written < 4096, "the server read all 4 MB of CONTINUATION frames");
    conn.socket.destroy();
    // 2. An HPACK bomb: one 4000-byte header added to the dynamic table, then referenced by
    //    its one-byte index 4000 times (16 MB once decoded, from a 4 KB block).
    const bomb = await rawH2(server.port);
    const add = Buffer.concat([
      Buffer.from([0x40, 7]),
      Buffer.from("x-bombx"),
      Buffer.from([0x7f, ...[4000 - 127].flatMap((n) => [(n % 128) + 128, n >> 7])]),
      Buffer.from("b".repeat(4000)),
    ]);
    const block = Buffer.concat([getHeaderBlock(), add, Buffer.alloc(4000, 0xbe /* index 62 */)]);
    bomb.socket.write(frame(HEADERS, END_STREAM | END_HEADERS, 1, block));
    const reply = await waitFrame(
      bomb,
      (f) => f.type === GOAWAY || (f.stream === 1 && (f.type === HEADERS || f.type === RST_STREAM)),
    );
    assert.ok(reply || bomb.closed, "no answer to the HPACK bomb");
    if (reply?.type === GOAWAY) assert.equal(reply.payload.readUInt32BE(4), 11 /* ENHANCE_YOUR_CALM */);
    bomb.socket.destroy();
    const v = await victim.stop();
    assert.deepEqual(v.errors, []);
    assert.ok(v.served > 0);
  } finally {
    await server.close({ force: true });
  }
});

test("PING and WINDOW_UPDATE floods do not stop the server serving others", async () => {
  const server = await startTls(ok);
  try {
    const victim = steadyClient(server.port);
    const conn = await rawH2(server.port);
    const ping = frame(PING, 0, 0, Buffer.alloc(8, 1));
    const inc = Buffer.alloc(4);
    inc.writeUInt32BE(1);
    const wu = frame(WINDOW_UPDATE, 0, 0, inc);
    // The flooder never reads: its pongs back up, and the server must stop reading it
    // rather than queue pongs without bound.
    conn.socket.pause();
    for (let i = 0; i < 20 && !conn.closed; i++) {
      const ok = conn.socket.write(Buffer.concat(Array.from({ length: 2000 }, (_, k) => (k % 2 ? ping : wu))));
      if (!ok) await Promise.race([new Promise((r) => conn.socket.once("drain", r)), sleep(300)]);
    }
    await sleep(200);
    const v = await victim.stop();
    assert.deepEqual(v.errors, []);
    assert.ok(v.served > 0);
    conn.socket.destroy();
    // And the server still takes new connections.
    const s = await h2Session(server.port);
    assert.equal((await h2Request(s)).status, 200);
    s.close();
  } finally {
    await server.close({ force: true });
  }
});

test("a 1 GiB streamed HTTP/2 response to a slow reader holds bounded memory", async () => {
  const { child, port } = await startServer(["--options", JSON.stringify({ tls: A, timeout: 0 })]);
  try {
    const session = await h2Session(port);
    const req = session.request({ ":path": "/stream?mib=1024" });
    const baseline = rssKiB(child.pid);
    let peak = baseline;
    const sample = setInterval(() => (peak = Math.max(peak, rssKiB(child.pid) ?? 0)), 50);
    let received = 0;
    // Slow at first: nothing read for a second while the handler would happily produce.
    req.pause();
    await sleep(1000);
    const afterStall = rssKiB(child.pid);
    req.on("data", (c) => (received += c.length));
    req.resume();
    await new Promise((resolve, reject) => {
      req.on("end", resolve);
      req.on("error", reject);
    });
    clearInterval(sample);
    session.close();
    assert.equal(received, 1024 * 1024 * 1024);
    const grewMiB = (peak - baseline) / 1024;
    assert.ok(
      grewMiB < 64,
      `the server grew by ${grewMiB.toFixed(0)} MiB (baseline ${baseline} KiB, after the stall ${afterStall} KiB)`,
    );
  } finally {
    child.kill("SIGKILL");
  }
});
