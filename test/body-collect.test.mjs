// Request bodies read whole, byte for byte, on every path the native side takes: with the
// head (declared, up to 64 KiB), into a Buffer made for a declared length (up to 1 MiB),
// and collected in the pieces they arrived in (chunked, or declared over 1 MiB), where
// pieces of 8 KiB and more are kept as read and shorter ones are copied together. Sizes
// and chunk sizes sit on each side of those thresholds; both network modes.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { once } from "node:events";
import http from "node:http";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { pattern, send, start, waitFor } from "./helpers.mjs";

const KiB = 1024;
const MiB = 1024 * KiB;
const sha = (b) => createHash("sha256").update(b).digest("hex");

/** A POST to `/` on `port` through `agent`; `write` sends the body. Resolves with the status and body. */
function postWith(agent, port, headers, write) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method: "POST", path: "/", agent, headers }, (res) => {
      const parts = [];
      res.on("data", (d) => parts.push(d));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(parts) }));
    });
    req.on("error", reject);
    write(req);
  });
}

/** `body` cut into pieces whose sizes cycle through `sizes`. */
function cut(body, sizes) {
  const out = [];
  for (let at = 0, i = 0; at < body.length; i++) {
    const n = sizes[i % sizes.length];
    out.push(body.subarray(at, at + n));
    at += n;
  }
  return out;
}

for (const [mode, options] of [
  ["worker threads", {}],
  ["workerThreads: 0", { workerThreads: 0 }],
]) {
  describe(`request bodies read whole (${mode})`, () => {
    let srv;
    before(async () => {
      srv = await start(
        async (event) => {
          const how = event.request.headers.get("x-read");
          const r = event.request;
          if (how === "json") {
            // What json() settles with, for a body that arrives after its head too.
            const settled = await r.json().then(
              (v) => ({ items: v.length }),
              (e) => ({ error: e.name }),
            );
            return event.respondWith(Response.json(settled));
          }
          const bytes =
            how === "text"
              ? Buffer.from(await r.text(), "latin1")
              : how === "stream"
                ? Buffer.from(await new Response(r.body).arrayBuffer())
                : Buffer.from(await r.arrayBuffer());
          event.respondWith(Response.json({ length: bytes.length, sha: sha(bytes) }));
        },
        { ...options, maxBodySize: 8 * MiB },
      );
    });
    after(() => srv.server.close());

    const port = () => srv.server.port;
    const check = async (name, body, res) => {
      assert.equal(res.status, 200, name);
      const got = JSON.parse(res.body.toString());
      assert.equal(got.length, body.length, name);
      assert.equal(got.sha, sha(body), name);
    };

    test("declared lengths around 64 KiB and 1 MiB", async () => {
      for (const size of [0, 1, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 100 * KiB, MiB - 1, MiB, MiB + 1, 3 * MiB + 7]) {
        const body = pattern(size, size + 1);
        const res = await send(port(), { method: "POST", path: "/", body });
        await check(`declared ${size}`, body, res);
      }
    });

    test("chunked bodies with chunks on each side of 8 KiB", async () => {
      const cases = [
        ["1-byte chunks", 3000, [1]],
        ["8 KiB - 1", 100 * KiB, [8 * KiB - 1]],
        ["8 KiB", 100 * KiB, [8 * KiB]],
        ["8 KiB + 1", 100 * KiB, [8 * KiB + 1]],
        ["mixed small and large", 700 * KiB, [1, 8 * KiB, 3, 8 * KiB - 1, 40000, 8 * KiB + 1, 5, 100 * KiB]],
        ["small runs past one tail", 200 * KiB, [4000, 4000, 4000, 4000, 4000, 4000, 4000, 4000, 4000, 70000]],
        ["large, past 1 MiB", 2 * MiB + 5, [64 * KiB, 1, 100 * KiB + 3]],
      ];
      for (const [name, size, sizes] of cases) {
        const body = pattern(size, sizes.length + size);
        const res = await send(port(), { method: "POST", path: "/", chunks: cut(body, sizes) });
        await check(name, body, res);
      }
    });

    test("json() of bodies with the head and after it: parsed, or a SyntaxError", async () => {
      const items = Array.from({ length: 20000 }, (_, i) => i); // about 110 KB as JSON
      const valid = Buffer.from(JSON.stringify(items));
      const small = Buffer.from("[1,2,3]");
      const invalid = Buffer.alloc(100 * KiB, "x");
      const headers = { "x-read": "json" };
      for (const [name, body, want] of [
        ["small", small, { items: 3 }],
        ["valid, declared", valid, { items: items.length }],
        ["invalid, declared", invalid, { error: "SyntaxError" }],
      ]) {
        const res = await send(port(), { method: "POST", path: "/", headers, body });
        assert.equal(res.status, 200, name);
        assert.deepEqual(JSON.parse(res.body.toString()), want, name);
        const chunked = await send(port(), { method: "POST", path: "/", headers, chunks: cut(body, [8 * KiB + 1]) });
        assert.equal(chunked.status, 200, `${name}, chunked`);
        assert.deepEqual(JSON.parse(chunked.body.toString()), want, `${name}, chunked`);
      }
    });

    test("the same bodies through text() and a stream", async () => {
      // Printable ASCII, which text() decodes to the same characters.
      const body = pattern(300 * KiB + 11, 7).map((b) => 0x20 + (b % 95));
      for (const how of ["text", "stream"]) {
        const chunked = await send(port(), {
          method: "POST",
          path: "/",
          headers: { "x-read": how },
          chunks: cut(body, [3, 9000, 8 * KiB - 1, 65536]),
        });
        await check(`${how}, chunked`, body, chunked);
        const declared = await send(port(), { method: "POST", path: "/", headers: { "x-read": how }, body });
        await check(`${how}, declared`, body, declared);
      }
    });
  });
}

// Bodies of declared length asked for together: the Buffers of one turn add up to 1 MiB (or
// one body), and the rest start on later turns, their bytes waiting in the socket meanwhile
// (docs/network-thread.md, "Large request bodies, round six"). Every body arrives whole, one
// whose request is answered or whose client leaves while it waits takes nothing from the
// others, and the server keeps serving.
for (const [mode, options] of [
  ["worker threads", {}],
  ["workerThreads: 0", { workerThreads: 0 }],
]) {
  describe(`request bodies asked for together (${mode})`, () => {
    const SIZES = [MiB, MiB, 300 * KiB, MiB, 100 * KiB + 1, 700 * KiB, MiB, 65 * KiB];
    let srv;
    let batch = [];
    let want = 0;
    // What the handler of each request with "x-how: leaves" saw of its body.
    const left = [];
    before(async () => {
      srv = await start(
        (event) => {
          const how = event.request.headers.get("x-how");
          if (how === "plain") {
            event.respondWith(event.request.arrayBuffer().then((b) => Response.json({ length: b.byteLength })));
            return;
          }
          let done;
          event.respondWith(new Promise((r) => (done = r)));
          batch.push({ event, how, done });
          if (batch.length < want) return;
          // Every body asked for in one synchronous loop, so in one turn; the requests
          // answered early or left come last, so that theirs are among the bodies that wait.
          const order = { collect: 0, answered: 1, leaves: 2 };
          const all = batch.sort((a, b) => order[a.how] - order[b.how]);
          batch = [];
          for (const { event: ev, how: h, done: answer } of all) {
            const read = ev.request.arrayBuffer();
            if (h === "answered") {
              read.catch(() => {});
              answer(new Response("answered before its body"));
            } else if (h === "leaves") {
              read.then(
                () => left.push("resolved"),
                (e) => left.push(e.code),
              );
              read.finally(() => answer(new Response("unreachable"))).catch(() => {});
            } else {
              read.then(
                (b) => answer(Response.json({ length: b.byteLength, sha: sha(Buffer.from(b)) })),
                (e) => answer(new Response(String(e), { status: 500 })),
              );
            }
          }
        },
        { ...options, maxBodySize: 8 * MiB },
      );
    });
    after(() => srv.server.close());

    const check = (name, body, res) => {
      assert.equal(res.status, 200, name);
      const got = JSON.parse(res.body.toString());
      assert.equal(got.length, body.length, name);
      assert.equal(got.sha, sha(body), name);
    };

    test("declared bodies past one turn's 1 MiB of Buffers all arrive whole", async () => {
      const bodies = SIZES.map((size, i) => pattern(size, 1000 + i));
      want = bodies.length;
      const results = await Promise.all(
        bodies.map((body) =>
          send(srv.server.port, { method: "POST", path: "/", headers: { "x-how": "collect" }, body }),
        ),
      );
      results.forEach((res, i) => check(`body ${i} (${SIZES[i]} bytes)`, bodies[i], res));
      // And again, with the server past its first turns.
      const again = await Promise.all(
        bodies.map((body) =>
          send(srv.server.port, { method: "POST", path: "/", headers: { "x-how": "collect" }, body }),
        ),
      );
      again.forEach((res, i) => check(`again, body ${i}`, bodies[i], res));
    });

    test("a request answered while its body waits, and a client that leaves then, take nothing from the others", async () => {
      const bodies = [pattern(MiB, 1), pattern(MiB, 2), pattern(MiB, 3), pattern(MiB, 4)];
      want = bodies.length + 1;
      // Half of a declared 1 MiB body, then the client waits, and leaves once the others
      // are answered.
      const leaver = net.connect(srv.server.port, "127.0.0.1");
      await once(leaver, "connect");
      leaver.on("error", () => {});
      leaver.write(`POST / HTTP/1.1\r\nhost: x\r\nx-how: leaves\r\ncontent-length: ${MiB}\r\n\r\n`);
      leaver.write(pattern(MiB / 2, 9));
      const hows = ["collect", "answered", "collect", "collect"];
      const results = await Promise.all(
        bodies.map((body, i) =>
          send(srv.server.port, { method: "POST", path: "/", headers: { "x-how": hows[i] }, body }),
        ),
      );
      results.forEach((res, i) => {
        if (hows[i] === "answered") {
          assert.equal(res.status, 200);
          assert.equal(res.body.toString(), "answered before its body");
        } else check(`body ${i}`, bodies[i], res);
      });
      leaver.destroy();
      await waitFor(() => left.length === 1);
      assert.deepEqual(left, ["ERR_BODY_ABORTED"]);
      // The server still reads bodies, one at a time and together.
      const one = pattern(MiB, 5);
      const res = await send(srv.server.port, { method: "POST", path: "/", headers: { "x-how": "plain" }, body: one });
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.body.toString()), { length: MiB });
    });

    test("a server closed at once while a body waits for its turn: the read rejects, the client is cut off", async () => {
      const { server } = await start(null, options);
      const reads = [];
      server.addEventListener("fetch", (event) => {
        const read = event.request.arrayBuffer();
        reads.push(
          read.then(
            () => "resolved",
            (e) => e.code,
          ),
        );
        event.respondWith(read.then(() => new Response("unreachable")));
        server.close({ force: true });
      });
      const res = await send(server.port, { method: "POST", path: "/", body: pattern(MiB, 6) }).then(
        (r) => r.status,
        (e) => e.code,
      );
      assert.equal(res, "ECONNRESET");
      await waitFor(() => reads.length === 1);
      assert.equal(await reads[0], "ERR_BODY_ABORTED");
    });
  });
}

// Many keep-alive connections reading bodies at once, so that in the in-thread mode the body
// readers run from the polls of the connections that woke them (body.rs, `SharedReader`),
// as well as from their own tasks: every body arrives whole, one cut off mid-body among them
// fails alone, and the connections serve their next requests.
for (const [mode, options] of [
  ["worker threads", {}],
  ["workerThreads: 0", { workerThreads: 0 }],
]) {
  describe(`request bodies of many connections at once (${mode})`, () => {
    let srv;
    const failed = [];
    before(async () => {
      srv = await start(
        async (event) => {
          try {
            const b = Buffer.from(await event.request.arrayBuffer());
            event.respondWith(Response.json({ length: b.length, sha: sha(b) }));
          } catch (e) {
            failed.push(e.code);
            event.respondWith(new Response("failed", { status: 500 }));
          }
        },
        { ...options, maxBodySize: 8 * MiB },
      );
    });
    after(() => srv.server.close());

    test("bodies on 24 keep-alive connections, declared and chunked, and one cut off, each whole or failed alone", async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 24 });
      const post = (body, chunked) =>
        postWith(
          agent,
          srv.server.port,
          chunked ? { "transfer-encoding": "chunked" } : { "content-length": body.length },
          (req) => {
            if (chunked) for (const piece of cut(body, [40000, 8 * KiB + 1])) req.write(piece);
            req.end(chunked ? undefined : body);
          },
        );
      const SIZES = [100 * KiB, 64 * KiB + 1, 300 * KiB, MiB, 200 * KiB, 90 * KiB, 180 * KiB];
      // Half of a declared 100 KiB body, then the client leaves.
      const leaver = net.connect(srv.server.port, "127.0.0.1");
      await once(leaver, "connect");
      leaver.on("error", () => {});
      leaver.write(`POST / HTTP/1.1\r\nhost: x\r\ncontent-length: ${100 * KiB}\r\n\r\n`);
      leaver.write(pattern(50 * KiB, 3));
      const rounds = [];
      for (let round = 0; round < 3; round++) {
        const bodies = Array.from({ length: 24 }, (_, i) =>
          pattern(SIZES[(i + round) % SIZES.length], 100 * round + i),
        );
        if (round === 1) setTimeout(() => leaver.destroy(), 5);
        const results = await Promise.all(bodies.map((body, i) => post(body, i % 5 === 4)));
        results.forEach((res, i) => {
          assert.equal(res.status, 200, `round ${round}, body ${i}`);
          const got = JSON.parse(res.body.toString());
          assert.equal(got.length, bodies[i].length, `round ${round}, body ${i}`);
          assert.equal(got.sha, sha(bodies[i]), `round ${round}, body ${i}`);
        });
        rounds.push(results.length);
      }
      agent.destroy();
      assert.deepEqual(rounds, [24, 24, 24]);
      await waitFor(() => failed.length === 1);
      assert.deepEqual(failed, ["ERR_BODY_ABORTED"]);
    });
  });
}

// Requests whose declared bodies get a Buffer of their own when read (256 KiB to 1 MiB) reach
// the listeners one a turn of the loop, and not while a body waits for its turn
// (lib/server.ts, `#hold`): four such heads that come in one turn are not given to the
// listeners in one go, each body still arrives whole, and a held request whose client leaves
// fails its own read only.
for (const [mode, options] of [
  ["worker threads", {}],
  ["workerThreads: 0", { workerThreads: 0 }],
]) {
  describe(`requests with large declared bodies, held for their turn (${mode})`, () => {
    const SIZES = [256 * KiB, 300 * KiB, 512 * KiB, MiB];
    let srv;
    /** Raw client sockets, connected before the test's /block request. */
    let socks = [];
    /** What `/block` writes to each of `socks`, then whether it ends the socket. */
    let writes = [];
    /** Per large request given to the listeners: whether another was given in the same tick. */
    const together = [];
    /** Per large request given to the listeners: its declared length and when. */
    const calls = [];
    /** Called with the number of large requests given to the listeners so far. */
    let onCall = () => {};
    const outcomes = [];
    let inTick = false;
    before(async () => {
      srv = await start(
        async (event) => {
          const r = event.request;
          if (new URL(r.url).pathname === "/block") {
            // The heads written now come in while this turn lasts, so that the server finds
            // them all at its next turn.
            socks.forEach((s, i) => {
              s.write(writes[i].data);
              if (writes[i].end) s.destroy();
            });
            const until = Date.now() + 100;
            while (Date.now() < until);
            return event.respondWith(new Response("blocked"));
          }
          together.push(inTick);
          calls.push({ length: Number(r.headers.get("content-length")), at: performance.now() });
          onCall(calls.length);
          inTick = true;
          process.nextTick(() => (inTick = false));
          try {
            const b = Buffer.from(await r.arrayBuffer());
            event.respondWith(Response.json({ length: b.length, sha: sha(b) }));
          } catch (e) {
            outcomes.push(e.code);
            event.respondWith(new Response("failed", { status: 500 }));
          }
        },
        { ...options, maxBodySize: 8 * MiB },
      );
    });
    after(() => srv.server.close());

    async function connect(n) {
      socks = [];
      for (let i = 0; i < n; i++) {
        const s = net.connect(srv.server.port, "127.0.0.1");
        s.on("error", () => {});
        await once(s, "connect");
        socks.push(s);
      }
    }

    /** The JSON body of the one response on `sock`. */
    function response(sock) {
      return new Promise((resolve, reject) => {
        let got = Buffer.alloc(0);
        sock.on("data", (d) => {
          got = Buffer.concat([got, d]);
          const end = got.indexOf("\r\n\r\n");
          if (end < 0) return;
          const length = Number(/content-length: (\d+)/i.exec(got.subarray(0, end).toString())[1]);
          if (got.length >= end + 4 + length) {
            sock.destroy();
            resolve(JSON.parse(got.subarray(end + 4, end + 4 + length).toString()));
          }
        });
        sock.on("close", () => reject(new Error("closed before its response")));
      });
    }

    const post = (body) =>
      Buffer.concat([Buffer.from(`POST / HTTP/1.1\r\nhost: x\r\ncontent-length: ${body.length}\r\n\r\n`), body]);

    test("four heads in one turn reach the listeners one a turn, each body whole", async () => {
      const bodies = SIZES.map((size, i) => pattern(size, 2000 + i));
      await connect(bodies.length);
      writes = bodies.map((body) => ({ data: post(body), end: false }));
      together.length = 0;
      const answers = socks.map(response);
      const res = await send(srv.server.port, { path: "/block" });
      assert.equal(res.status, 200);
      const got = await Promise.all(answers);
      got.forEach((g, i) => {
        assert.equal(g.length, bodies[i].length, `body ${i}`);
        assert.equal(g.sha, sha(bodies[i]), `body ${i}`);
      });
      assert.deepEqual(together, [false, false, false, false]);
    });

    test("a held request whose client left fails its read alone, the others whole", async () => {
      const bodies = [pattern(MiB, 3000), pattern(MiB, 3001)];
      await connect(3);
      // The second client sends its head and a little of its body, and leaves.
      writes = [
        { data: post(bodies[0]), end: false },
        { data: post(pattern(MiB, 3002)).subarray(0, 1000), end: true },
        { data: post(bodies[1]), end: false },
      ];
      together.length = 0;
      outcomes.length = 0;
      const answers = [socks[0], socks[2]].map(response);
      await send(srv.server.port, { path: "/block" });
      const got = await Promise.all(answers);
      got.forEach((g, i) => assert.equal(g.sha, sha(bodies[i]), `body ${i}`));
      await waitFor(() => outcomes.length === 1);
      assert.deepEqual(outcomes, ["ERR_BODY_ABORTED"]);
      assert.equal(together.length, 3);
    });

    test("with two large bodies still coming, a third waits until no body ended for 10 ms", async () => {
      const bodies = [pattern(MiB, 4000), pattern(MiB, 4001), pattern(256 * KiB, 4002)];
      const requests = bodies.map(post);
      await connect(3);
      writes = [];
      calls.length = 0;
      // The third request is sent once the two others reached the listeners: it comes in
      // at once, and waits for a body being read to end, or for LARGE_READ_WAIT_MS.
      onCall = (n) => {
        if (n === 2) socks[2].write(requests[2]);
      };
      const answers = socks.map(response);
      // The first two send their heads and a little of their bodies, and wait.
      socks[0].write(requests[0].subarray(0, 1000));
      socks[1].write(requests[1].subarray(0, 1000));
      try {
        const third = await answers[2];
        assert.equal(third.sha, sha(bodies[2]));
        assert.deepEqual(
          calls.map((c) => c.length),
          [MiB, MiB, 256 * KiB],
        );
        // On the build before, 1-3 ms.
        const waited = calls[2].at - calls[1].at;
        assert.ok(waited >= 9, `the third reached the listeners ${waited.toFixed(1)} ms after the second`);
      } finally {
        onCall = () => {};
        socks[0].write(requests[0].subarray(1000));
        socks[1].write(requests[1].subarray(1000));
      }
      const got = await Promise.all(answers.slice(0, 2));
      got.forEach((g, i) => assert.equal(g.sha, sha(bodies[i]), `body ${i}`));
    });
  });
}

// In the in-thread mode a body that has all come when JS asks for it is copied in that call
// and given back by it, not by a later BODY_FULL record (body.rs, `spawn_body_reader`'s first
// poll; a guard of the behaviour that speed change touched): echoed bodies on each side of 64
// KiB come back whole and in order on keep-alive and pipelined connections, whether the
// handler reads at once or from a timer's callback, answers at once, later or with a stream,
// or throws; and a handler that closes its server once it has its body answers or cuts its
// client off, nothing worse.
for (const [mode, options] of [
  ["worker threads", {}],
  ["workerThreads: 0", { workerThreads: 0 }],
]) {
  describe(`bodies read whole at once and echoed (${mode})`, () => {
    let srv;
    before(async () => {
      srv = await start(
        async (event) => {
          const then = event.request.headers.get("x-then");
          // Read from a timer's callback, outside the network's turn.
          if (then === "read-later") await new Promise((r) => setTimeout(r, 2));
          const body = await event.request.arrayBuffer();
          if (then === "later") await new Promise((r) => setTimeout(r, 2));
          if (then === "throw") throw new Error("thrown after the body");
          if (then === "stream") {
            const half = body.byteLength >> 1;
            const parts = [new Uint8Array(body, 0, half), new Uint8Array(body, half)];
            return event.respondWith(
              new Response(new ReadableStream({ pull: (c) => (parts.length ? c.enqueue(parts.shift()) : c.close()) })),
            );
          }
          event.respondWith(new Response(body));
        },
        { ...options, maxBodySize: 8 * MiB },
      );
      srv.server.addEventListener("error", () => {});
    });
    after(() => srv.server.close());

    const SIZES = [64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 100 * KiB, 256 * KiB - 1];
    const THENS = ["now", "later", "stream", "throw", "read-later"];

    test("echoes on 12 keep-alive connections, read at once or later, answered at once, later, streamed or thrown", async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 12 });
      const post = (body, then) =>
        postWith(agent, srv.server.port, { "content-length": body.length, "x-then": then }, (req) => req.end(body));
      for (let round = 0; round < 3; round++) {
        const cases = Array.from({ length: 24 }, (_, i) => ({
          body: pattern(SIZES[(i + round) % SIZES.length], 50 * round + i + 1),
          then: THENS[(Math.floor(i / SIZES.length) + round) % THENS.length],
        }));
        const results = await Promise.all(cases.map((c) => post(c.body, c.then)));
        results.forEach((res, i) => {
          const name = `round ${round}, ${cases[i].body.length} bytes, ${cases[i].then}`;
          if (cases[i].then === "throw") return assert.equal(res.status, 500, name);
          assert.equal(res.status, 200, name);
          assert.equal(res.body.length, cases[i].body.length, name);
          assert.ok(res.body.equals(cases[i].body), name);
        });
      }
      agent.destroy();
    });

    test("pipelined echoes come back whole and in order", async () => {
      const bodies = SIZES.map((size, i) => pattern(size, 300 + i));
      const wire = Buffer.concat(
        bodies.flatMap((b) => [Buffer.from(`POST / HTTP/1.1\r\nhost: x\r\ncontent-length: ${b.length}\r\n\r\n`), b]),
      );
      const sock = net.connect(srv.server.port, "127.0.0.1");
      await once(sock, "connect");
      const chunks = [];
      sock.on("data", (d) => chunks.push(d));
      sock.end(wire);
      await once(sock, "close");
      let rest = Buffer.concat(chunks);
      for (const [i, body] of bodies.entries()) {
        const end = rest.indexOf("\r\n\r\n");
        assert.ok(end > 0, `response ${i}`);
        const head = rest.subarray(0, end).toString("latin1");
        assert.match(head, /^HTTP\/1\.1 200 /, `response ${i}`);
        assert.match(head, new RegExp(`\\r\\ncontent-length: ${body.length}\\r\\n`, "i"), `response ${i}`);
        const got = rest.subarray(end + 4, end + 4 + body.length);
        assert.ok(got.equals(body), `response ${i}`);
        rest = rest.subarray(end + 4 + body.length);
      }
      assert.equal(rest.length, 0);
    });

    test("a handler that closes its server when its 100 KiB body is whole: answered or cut off", async () => {
      for (const force of [false, true]) {
        const { server } = await start(null, options);
        server.addEventListener("fetch", async (event) => {
          const body = await event.request.arrayBuffer();
          server.close(force ? { force: true } : undefined);
          event.respondWith(new Response(body));
        });
        const body = pattern(100 * KiB, 9);
        const res = await send(server.port, { method: "POST", path: "/", body }).then(
          (r) => r,
          (e) => e.code,
        );
        if (typeof res === "string") assert.equal(res, "ECONNRESET", `force: ${force}`);
        else {
          assert.equal(res.status, 200, `force: ${force}`);
          assert.ok(res.body.equals(body), `force: ${force}`);
        }
      }
    });
  });
}
