// HTTP/2 flow control (`http2WindowSize`): the window the server advertises, each stream's in
// SETTINGS and the connection's in a WINDOW_UPDATE, and request bodies larger than it, on one
// stream and on many at once, that still arrive whole. Also a guard of large bodies (256 KiB to
// 1 MiB, which HTTP/1.1 holds a turn at a time) on many streams of one connection, read in each
// way a handler can, and of 1 MiB uploads cut off on many connections before a batch read all at
// once. Over h2c with node:http2 clients and a raw socket for the frames.
import assert from "node:assert/strict";
import http2 from "node:http2";
import http from "node:http";
import net from "node:net";
import { test } from "node:test";
import { Response, Server } from "../dist/index.js";
import { PREFACE, SETTINGS, WINDOW_UPDATE, frame } from "./h2-frames.mjs";

async function start(listener, options = {}) {
  const server = new Server({ port: 0, host: "127.0.0.1", maxBodySize: 64 * 1024 * 1024, ...options });
  server.addEventListener("fetch", listener);
  server.addEventListener("error", () => {});
  await server.listen();
  return server;
}

/** The server's first SETTINGS (INITIAL_WINDOW_SIZE, or undefined) and the increment of its
 * first connection-level WINDOW_UPDATE (0 when none came within 2 s). */
function advertised(port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    let buf = Buffer.alloc(0);
    let initial;
    let settings = false;
    const done = (increment) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ settings, initial, increment });
    };
    const timer = setTimeout(() => done(0), 2000);
    socket.on("error", reject);
    socket.on("connect", () => socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0)])));
    socket.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
        const len = buf.readUIntBE(0, 3);
        const [type, flags, stream] = [buf[3], buf[4], buf.readUInt32BE(5) & 0x7fffffff];
        const payload = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === SETTINGS && !(flags & 1)) {
          settings = true;
          for (let i = 0; i + 6 <= payload.length; i += 6) {
            if (payload.readUInt16BE(i) === 4) initial = payload.readUInt32BE(i + 2);
          }
        } else if (type === WINDOW_UPDATE && stream === 0) {
          return done(payload.readUInt32BE(0) & 0x7fffffff);
        }
      }
    });
  });
}

/** POSTs `body` on `session` and resolves with the response's status and body. */
function post(session, body) {
  return postWith(session, body, {});
}

function postWith(session, body, headers) {
  return new Promise((resolve, reject) => {
    const req = session.request({
      ":method": "POST",
      ":path": "/",
      "content-length": String(body.length),
      ...headers,
    });
    const chunks = [];
    let status = 0;
    req.on("response", (h) => (status = h[":status"]));
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve({ status, body: Buffer.concat(chunks) }));
    req.on("error", reject);
    req.end(body);
  });
}

const echo = (e) => e.respondWith(e.request.arrayBuffer().then((b) => new Response(b)));

/** A body whose every 4-byte word is its own offset, so a lost or moved chunk shows. */
function patterned(n, seed) {
  const b = Buffer.alloc(n);
  for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32LE((i + seed) >>> 0, i);
  return b;
}

test("the default window: 1 MiB for each stream (SETTINGS) and for the connection (WINDOW_UPDATE)", async () => {
  const server = await start(echo);
  try {
    const a = await advertised(server.port);
    assert.ok(a.settings, "no SETTINGS from the server");
    assert.equal(a.initial, 1024 * 1024);
    assert.equal(a.increment, 1024 * 1024 - 65_535);
  } finally {
    await server.close({ force: true });
  }
});

test("http2WindowSize is advertised for each stream and for the connection", async () => {
  for (const size of [65_535, 256 * 1024]) {
    const server = await start(echo, { http2WindowSize: size });
    try {
      const a = await advertised(server.port);
      assert.ok(a.settings, "no SETTINGS from the server");
      // 65535 is the spec's initial value: SETTINGS may omit it and no WINDOW_UPDATE is due.
      assert.equal(a.initial ?? 65_535, size);
      assert.equal(a.increment, size - 65_535);
    } finally {
      await server.close({ force: true });
    }
  }
});

test("bodies many times the window arrive whole, on one stream and on 32 streams at once", async () => {
  for (const size of [65_535, 256 * 1024]) {
    const server = await start(echo, { http2WindowSize: size });
    // node:http2's own limit (10 MB of a session's buffers) refuses streams with
    // ENHANCE_YOUR_CALM when the bodies all go at once.
    const session = http2.connect(`http://127.0.0.1:${server.port}`, { maxSessionMemory: 1024 });
    try {
      const one = patterned(8 * 1024 * 1024, 7);
      const r = await post(session, one);
      assert.equal(r.status, 200);
      assert.ok(r.body.equals(one), `window ${size}: the 8 MiB body came back changed`);
      const bodies = Array.from({ length: 32 }, (_, i) => patterned(300 * 1024 + i, i * 1_000_003));
      const results = await Promise.all(bodies.map((b) => post(session, b)));
      for (let i = 0; i < 32; i++) {
        assert.equal(results[i].status, 200);
        assert.ok(results[i].body.equals(bodies[i]), `window ${size}: stream ${i}'s body came back changed`);
      }
    } finally {
      session.close();
      await server.close({ force: true });
    }
  }
});

test("large bodies on 40 streams of one connection come back whole, however their handlers read", async () => {
  // Sizes around the bounds of the bodies read into a Buffer of their own (256 KiB to 1 MiB).
  const sizes = [256 * 1024 - 1, 256 * 1024, 512 * 1024 + 3, 1024 * 1024, 1024 * 1024 + 1];
  const ways = {
    now: (req) => req.arrayBuffer(),
    late: (req) => new Promise((r) => setTimeout(r, 5)).then(() => req.arrayBuffer()),
    stream: async (req) => {
      const chunks = [];
      for await (const c of req.body) chunks.push(c);
      return Buffer.concat(chunks);
    },
    text: (req) => req.blob().then((b) => b.arrayBuffer()),
  };
  const server = await start((e) => {
    const way = ways[e.request.headers.get("x-way")];
    e.respondWith(way(e.request).then((b) => new Response(b)));
  });
  // node:http2's own limit (10 MB of a session's buffers) refuses streams with
  // ENHANCE_YOUR_CALM when the bodies all go at once.
  const session = http2.connect(`http://127.0.0.1:${server.port}`, { maxSessionMemory: 1024 });
  try {
    const jobs = [];
    for (const [w, way] of Object.keys(ways).entries()) {
      for (const [i, size] of sizes.entries()) {
        for (const copy of [0, 1]) {
          const body = patterned(size, (w * 10 + i) * 7919 + copy);
          jobs.push(postWith(session, body, { "x-way": way }).then((r) => ({ r, body, what: `${way} ${size}` })));
        }
      }
    }
    for (const { r, body, what } of await Promise.all(jobs)) {
      assert.equal(r.status, 200, what);
      assert.ok(r.body.equals(body), `${what}: the body came back changed`);
    }
  } finally {
    session.close();
    await server.close({ force: true });
  }
});

test("an HTTP/1.1 upload of 512 KiB is served while HTTP/2 streams upload such bodies without a pause", async () => {
  // HTTP/1.1 requests with bodies of 256 KiB to 1 MiB wait while two such bodies are being
  // read; HTTP/2 streams' bodies, read as they come, must not count there, or a steady
  // HTTP/2 upload would keep them waiting for as long as it lasts.
  const server = await start((e) =>
    e.respondWith(e.request.arrayBuffer().then((b) => new Response(String(b.byteLength)))),
  );
  const session = http2.connect(`http://127.0.0.1:${server.port}`, { maxSessionMemory: 1024 });
  const big = Buffer.alloc(512 * 1024, 7);
  let running = true;
  let h2Done = 0;
  const stream = async () => {
    while (running) {
      const r = await post(session, big);
      assert.equal(r.body.toString(), String(big.length));
      h2Done++;
    }
  };
  try {
    const streams = Array.from({ length: 32 }, stream);
    while (h2Done < 8) await new Promise((r) => setTimeout(r, 5));
    const h1 = new Promise((resolve, reject) => {
      const req = http.request(
        { port: server.port, host: "127.0.0.1", method: "POST", path: "/", agent: false },
        (res) => {
          let text = "";
          res.setEncoding("utf8").on("data", (d) => (text += d));
          res.on("end", () => resolve(text));
        },
      );
      req.on("error", reject);
      req.end(big);
    });
    const limit = new Promise((r) => setTimeout(() => r("still waiting after 10 s of HTTP/2 uploads"), 10_000));
    const answer = await Promise.race([h1, limit]);
    running = false;
    await Promise.all(streams);
    assert.equal(answer, String(big.length));
  } finally {
    running = false;
    session.close();
    await server.close({ force: true });
  }
});

test("a body streamed through a window of 65,535 comes in the client's frames, not in ever smaller ones", async () => {
  // The handler reads `request.body` and counts its chunks, one a DATA frame; the third
  // upload's handler pauses now and then, so that frames wait for it.
  const server = await start(
    (e) => {
      e.respondWith(
        (async () => {
          const pause = e.request.headers.get("x-pause") === "1";
          const chunks = [];
          for await (const c of e.request.body) {
            chunks.push(c);
            if (pause && chunks.length % 16 === 0) await new Promise((r) => setTimeout(r, 1));
          }
          const body = Buffer.concat(chunks);
          const whole = body.equals(patterned(body.length, Number(e.request.headers.get("x-seed"))));
          return new Response(`${body.length} ${chunks.length} ${whole}`);
        })(),
      );
    },
    { http2WindowSize: 65_535 },
  );
  const session = http2.connect(`http://127.0.0.1:${server.port}`);
  const total = 8 * 1024 * 1024;
  try {
    for (const [i, pause] of ["0", "0", "1"].entries()) {
      const body = patterned(total, i * 7919);
      const text = await new Promise((resolve, reject) => {
        const req = session.request({
          ":method": "POST",
          ":path": "/",
          "content-length": String(total),
          "x-seed": String(i * 7919),
          "x-pause": pause,
        });
        let t = "";
        req.setEncoding("utf8").on("data", (d) => (t += d));
        req.on("end", () => resolve(t));
        req.on("error", reject);
        // Written 64 KiB at a time, as an upload from a stream is.
        let at = 0;
        const write = () => {
          while (at < total) {
            const piece = body.subarray(at, at + 64 * 1024);
            at += piece.length;
            if (!req.write(piece)) return void req.once("drain", write);
          }
          req.end();
        };
        write();
      });
      const [n, chunks, whole] = text.split(" ");
      assert.equal(Number(n), total, `upload ${i}`);
      assert.equal(whole, "true", `upload ${i}: the body came in changed`);
      // node:http2 sends frames of 16 KiB and, each time a 65,535-byte window is used up, one
      // of a byte: 640 for 8 MiB. Reading a frame a pull, the server's WINDOW_UPDATEs split
      // into ever smaller increments, which the client sent on as ever smaller frames (1,644,
      // 4,579 and 7,817 chunks in three uploads on one connection; a 64 MiB upload ran at 2-3
      // MiB/s).
      assert.ok(Number(chunks) <= (2 * total) / 16384, `upload ${i}: ${chunks} chunks for 8 MiB`);
    }
  } finally {
    session.close();
    await server.close({ force: true });
  }
});

test("1 MiB uploads on many connections, cut off mid-body, leave the next batch whole", async () => {
  // What a load generator does between its warm-up and its measured run: every connection
  // drops 16 uploads part-way, then new connections start 16 each at once, so that every
  // body is being read at the same time. A guard: the aborted reads end and free their
  // Buffers, and the bodies read after them, all at once, arrive whole.
  const MiB = 1024 * 1024;
  const aborted = [];
  let seen = 0;
  const server = await start((e) => {
    seen++;
    const read = e.request.arrayBuffer();
    read.catch((err) => aborted.push(err));
    e.respondWith(read.then((b) => Response.json({ length: b.byteLength, sum: checksum(Buffer.from(b)) })));
  });
  const url = `http://127.0.0.1:${server.port}`;
  const connect = () => http2.connect(url, { maxSessionMemory: 1024 });
  try {
    // Half of each body, then the connection goes away without a word.
    const cut = Array.from({ length: 4 }, connect);
    await Promise.all(
      cut.map(async (session) => {
        const streams = Array.from({ length: 16 }, () => {
          const req = session.request({ ":method": "POST", ":path": "/", "content-length": String(MiB) });
          req.on("error", () => {});
          req.write(patterned(MiB / 2, 3));
          return req;
        });
        // Cut once the server has every head (their bodies are on their way).
        for (let i = 0; i < 250 && seen < 64; i++) await new Promise((r) => setTimeout(r, 20));
        for (const req of streams) req.destroy();
        session.destroy();
      }),
    );
    const sessions = Array.from({ length: 4 }, connect);
    const jobs = [];
    for (const [c, session] of sessions.entries()) {
      for (let i = 0; i < 16; i++) {
        const body = patterned(MiB, (c * 16 + i) * 104_729);
        jobs.push(post(session, body).then((r) => ({ r, want: { length: MiB, sum: checksum(body) }, i, c })));
      }
    }
    for (const { r, want, i, c } of await Promise.all(jobs)) {
      assert.equal(r.status, 200, `connection ${c} stream ${i}`);
      assert.deepEqual(JSON.parse(r.body.toString()), want, `connection ${c} stream ${i}: the body arrived changed`);
    }
    for (const s of sessions) s.close();
    // The cut bodies' reads ended (with an error in their handlers), none is left waiting.
    for (let i = 0; i < 100 && aborted.length < 64; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(aborted.length, 64, "every cut upload's read ended");
  } finally {
    await server.close({ force: true });
  }
});

/** A position-sensitive checksum of `b` (so a moved chunk shows as well as a changed one). */
function checksum(b) {
  let sum = 0;
  for (let i = 0; i + 4 <= b.length; i += 4) sum = (sum * 31 + b.readUInt32LE(i)) % 1_000_000_007;
  return sum;
}

test("http2WindowSize out of range or not an integer is refused with a clear error", () => {
  for (const bad of [0, 65_534, 2 ** 31, 1.5, "1048576", -1]) {
    assert.throws(() => new Server({ port: 0, http2WindowSize: bad }), /http2WindowSize/, `accepted ${bad}`);
  }
  assert.doesNotThrow(() => new Server({ port: 0, http2WindowSize: 2 ** 31 - 1 }));
});
