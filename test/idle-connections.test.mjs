// Idle keep-alive connections: after 2-3 s of quiet an HTTP/1.1 connection gives hyper's
// buffers back and is rebuilt when the next request arrives (src/connection.rs). These
// check that nothing is lost across that, and the memory an idle connection keeps.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import net from "node:net";
import { test } from "node:test";
import { Response } from "../dist/index.js";
import { sleep, start } from "./helpers.mjs";

/** Longer than the quiet time after which an idle connection is released. */
const QUIET = 3500;

/** A raw connection that collects what it receives. */
function connect(port) {
  const s = net.connect(port, "127.0.0.1");
  s.setEncoding("latin1");
  s.got = "";
  s.on("data", (d) => (s.got += d));
  s.on("error", () => {});
  return s;
}

async function until(what, ms = 10_000) {
  for (const end = Date.now() + ms; !what();) {
    if (Date.now() > end) throw new Error("gave up waiting");
    await sleep(10);
  }
}

const count = (text, s) => text.split(s).length - 1;

test("the strict framing checks still apply to a request after a quiet spell", async () => {
  const { server } = await start((e) => e.respondWith(new Response("hello")));
  try {
    const lf = connect(server.port);
    const cl = connect(server.port);
    for (const s of [lf, cl]) s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await until(() => lf.got.includes("hello") && cl.got.includes("hello"));
    await sleep(QUIET);
    // Each accepted by hyper itself; refused by the checks in front of it (src/h1_strict.rs).
    lf.write("GET / HTTP/1.1\nHost: x\n\n");
    cl.write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx");
    await until(() => count(lf.got, "HTTP/1.1") === 2 && count(cl.got, "HTTP/1.1") === 2);
    assert.match(lf.got, /HTTP\/1\.1 200[^]*HTTP\/1\.1 400/, lf.got);
    assert.match(cl.got, /HTTP\/1\.1 200[^]*HTTP\/1\.1 400/, cl.got);
    for (const s of [lf, cl]) s.destroy();
  } finally {
    await server.close();
  }
});

test("requests after a quiet spell, a head split by one, and a body paused by one all come through", async () => {
  let seenBody;
  const { server } = await start(async (e) => {
    if (e.request.method === "POST") {
      seenBody = await e.request.text();
      return e.respondWith(new Response("got " + seenBody.length));
    }
    e.respondWith(new Response("hello"));
  });
  try {
    const port = server.port;
    // 1: one request, a quiet spell, another on the same connection.
    const a = connect(port);
    a.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    // 2: a request, then half of the next head, a quiet spell, then the rest of it.
    const b = connect(port);
    b.write("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /second HT");
    // 3: a streamed upload (larger than what is read before the listener runs) that
    // stops halfway for a quiet spell while the listener waits for it.
    const c = connect(port);
    const total = 200 * 1024;
    c.write(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${total}\r\n\r\n` + "a".repeat(total / 2));
    await until(() => a.got.includes("hello") && b.got.includes("hello"));
    await sleep(QUIET);
    a.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    b.write("TP/1.1\r\nHost: x\r\n\r\n");
    c.write("b".repeat(total / 2));
    await until(() => count(a.got, "hello") === 2 && count(b.got, "hello") === 2 && c.got.includes("got "));
    assert.equal(count(a.got, "HTTP/1.1 200"), 2, a.got);
    assert.equal(count(b.got, "HTTP/1.1 200"), 2, b.got);
    assert.match(c.got, /^HTTP\/1\.1 200/);
    assert.match(c.got, new RegExp(`got ${total}$`));
    assert.equal(seenBody, "a".repeat(total / 2) + "b".repeat(total / 2));
    for (const s of [a, b, c]) s.destroy();
  } finally {
    await server.close();
  }
});

test("one connection: requests one at a time, a pipelined batch, a quiet spell, more, then close() ends it", async () => {
  // A guard for the connection's poll (`drive`, src/connection.rs): its state is boxed apart
  // from the connection's task, a new box each time hyper's state is rebuilt after a quiet
  // spell; every stage of a connection's life goes through it here.
  let n = 0;
  const { server } = await start((e) => e.respondWith(new Response(`r${++n} ${new URL(e.request.url).pathname}`)));
  let closed;
  try {
    const s = connect(server.port);
    closed = once(s, "close");
    for (let i = 1; i <= 50; i++) {
      s.write(`GET /one${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
      await until(() => s.got.endsWith(`r${i} /one${i}`));
    }
    s.write(
      "GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\nGET /p3 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    await until(() => s.got.endsWith("r53 /p3"));
    await sleep(QUIET);
    s.write("GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    await until(() => s.got.endsWith("r54 /after"));
    assert.equal(count(s.got, "HTTP/1.1 200"), 54);
    assert.match(s.got, /r51 \/p1[^]*r52 \/p2[^]*r53 \/p3/);
    // A graceful close ends the idle keep-alive connection, without a reset.
    await server.close();
    await Promise.race([closed, sleep(5000).then(() => assert.fail("the connection outlived close()"))]);
    assert.equal(s.destroyed, true);
  } finally {
    await server.close({ force: true });
  }
});

test("a head sent a byte every few seconds after a response still meets headerTimeout (slowloris)", async () => {
  const { server } = await start((e) => e.respondWith(new Response("hello")), { headerTimeout: 5000, idleTimeout: 0 });
  try {
    const s = connect(server.port);
    s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await until(() => s.got.includes("hello"));
    const started = Date.now();
    const closed = once(s, "close").then(() => Date.now() - started);
    // Gaps longer than the quiet time after which an idle connection is released: each
    // byte must not restart the header timer.
    let open = true;
    closed.then(() => (open = false));
    for (const b of "GET / HTTP/1.1\r\n") {
      if (!open) break;
      s.write(b);
      await Promise.race([sleep(QUIET), closed]);
      if (Date.now() - started > 9000) break;
    }
    const after = await Promise.race([closed, sleep(1000).then(() => Infinity)]);
    assert.ok(after < 7500, `the connection lived ${after} ms after its last response with headerTimeout 5000`);
    s.destroy();
  } finally {
    await server.close();
  }
});

test("a quiet connection is still closed by idleTimeout, headerTimeout and close()", async () => {
  const hello = (e) => e.respondWith(new Response("hello"));
  const idle = await start(hello, { idleTimeout: 4000 });
  const header = await start(hello, { idleTimeout: 0, headerTimeout: 4000 });
  const other = await start(hello);
  const servers = [idle.server, header.server, other.server];
  try {
    const [byIdle, byHeader, byClose] = servers.map((server) => {
      const s = connect(server.port);
      s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      return once(s, "close");
    });
    const started = Date.now();
    const within = (p) => Promise.race([p.then(() => Date.now() - started), sleep(10_000).then(() => Infinity)]);
    const [idleAfter, headerAfter] = await Promise.all([within(byIdle), within(byHeader)]);
    for (const after of [idleAfter, headerAfter]) assert.ok(after >= 3500 && after < 7000, `closed after ${after} ms`);
    // By now the other connection has been quiet long enough to be released.
    await other.server.close();
    await byClose;
  } finally {
    for (const server of servers) await server.close({ force: true });
  }
});

test(
  "a quiet connection gives hyper's buffers back: the server's RSS falls",
  { skip: process.platform !== "linux" },
  async () => {
    // While a connection is live its read buffer is held: on the fast HTTP/1.1 path (these
    // plain GETs) 8 KiB of which a request touches about 5 KiB (4.7 KiB fell a connection
    // when it was written); on hyper's path (FETCH_RS_H1_FAST=0) an 8 KiB read buffer and an
    // 8 KiB header buffer (9.8 KiB fell). With N connections the drop is a few
    // MiB, far above the noise of a quiet process; without the release it is about 0.
    const N = 800;
    const dist = JSON.stringify(new URL("../dist/index.js", import.meta.url).href);
    const child = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { Server, Response } from ${dist};
       const server = new Server({ port: 0, host: "127.0.0.1" });
       server.addEventListener("fetch", (e) => e.respondWith(new Response("ok")));
       await server.listen();
       console.log("listening " + server.port);`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))[1]);
    const socks = [];
    try {
      await until(() => /listening \d+/.test(out));
      const port = Number(/listening (\d+)/.exec(out)[1]);
      for (let i = 0; i < N; i++) socks.push(connect(port));
      for (const s of socks) s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      await until(() => socks.every((s) => s.got.endsWith("ok")), 30_000);
      const live = rss();
      await sleep(QUIET + 1000);
      const released = rss();
      const drop = (live - released) / N;
      assert.ok(
        drop >= 2.5,
        `RSS fell by ${drop.toFixed(1)} KiB per connection (${live} KiB live, ${released} KiB after)`,
      );
      assert.ok(socks.every((s) => !s.destroyed));
    } finally {
      for (const s of socks) s.destroy();
      child.kill();
    }
  },
);
