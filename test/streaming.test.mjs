// Streaming both ways, server-sent events and request.signal, over real sockets.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { describe, test } from "node:test";
import { Response } from "../dist/index.js";
import { request, sleep, start } from "./helpers.mjs";

const MiB = 1024 * 1024;

/** Resolves with the signal's reason once it aborts. */
const abortOf = (signal) => new Promise((resolve) => signal.addEventListener("abort", () => resolve(signal.reason)));

function rssOf(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m[1]) * 1024;
}

/** Starts a server in a child process (so its RSS is its own); resolves with pid and port. */
async function child(source) {
  const dist = JSON.stringify(new URL("../dist/index.js", import.meta.url).href);
  const code = `import { Server, Response } from ${dist};\n${source}\nawait server.listen();\nconsole.log("PORT " + server.port);`;
  // --expose-gc: the producers below collect their own garbage, so RSS shows what the
  // server holds rather than when V8 gets round to freeing chunks already sent.
  const proc = spawn(process.execPath, ["--expose-gc", "--input-type=module", "-e", code], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let buf = "";
  const port = await new Promise((resolve, reject) => {
    proc.stdout.on("data", (d) => {
      buf += d;
      const m = /PORT (\d+)/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    proc.on("exit", (c) => reject(new Error(`server exited with ${c}`)));
  });
  return { proc, port, stop: () => proc.kill("SIGKILL") };
}

/** Samples a process's RSS until stopped; returns the peak. */
function sampler(pid) {
  let peak = rssOf(pid);
  const t = setInterval(() => {
    try {
      peak = Math.max(peak, rssOf(pid));
    } catch {}
  }, 20);
  return () => {
    clearInterval(t);
    return peak;
  };
}

describe("large bodies stream without being held in memory", () => {
  test("a 256 MiB upload read through request.body", { timeout: 120_000 }, async () => {
    const srv = await child(`
      const server = new Server({ port: 0, host: "127.0.0.1", maxBodySize: 512 * 1024 * 1024 });
      server.addEventListener("fetch", async (event) => {
        let total = 0, sum = 0;
        for await (const chunk of event.request.body) { total += chunk.byteLength; sum = (sum + chunk[0]) % 65521; }
        event.respondWith(Response.json({ total }));
      });`);
    try {
      const before = rssOf(srv.proc.pid);
      const stop = sampler(srv.proc.pid);
      const size = 256 * MiB;
      const chunk = Buffer.alloc(MiB, 7);
      const res = await new Promise((resolve, reject) => {
        const req = http.request(
          { port: srv.port, host: "127.0.0.1", method: "POST", headers: { "content-length": size } },
          (r) => {
            let body = "";
            r.on("data", (d) => (body += d));
            r.on("end", () => resolve({ status: r.statusCode, body }));
          },
        );
        req.on("error", reject);
        let sent = 0;
        const write = () => {
          while (sent < size) {
            sent += chunk.length;
            if (!req.write(chunk)) return req.once("drain", write);
          }
          req.end();
        };
        write();
      });
      const peak = stop();
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.body), { total: size });
      const rise = peak - before;
      assert.ok(rise < 64 * MiB, `RSS rose by ${(rise / MiB).toFixed(1)} MiB for a 256 MiB upload`);
    } finally {
      srv.stop();
    }
  });

  test("a 64 MiB streamed download, byte-exact", { timeout: 120_000 }, async () => {
    const srv = await child(`
      const server = new Server({ port: 0, host: "127.0.0.1" });
      server.addEventListener("fetch", (event) => {
        let i = 0;
        event.respondWith(new Response(new ReadableStream({
          pull(c) {
            if (i === 64) return c.close();
            if (i % 8 === 0) globalThis.gc();
            c.enqueue(new Uint8Array(1024 * 1024).fill(i++ & 0xff));
          },
        })));
      });`);
    try {
      const before = rssOf(srv.proc.pid);
      const stop = sampler(srv.proc.pid);
      const r = await fetch(`http://127.0.0.1:${srv.port}/`);
      let total = 0;
      let ok = true;
      for await (const part of r.body) {
        for (let j = 0; j < part.length; j += 4096) if (part[j] !== (Math.floor((total + j) / MiB) & 0xff)) ok = false;
        total += part.length;
      }
      const peak = stop();
      assert.equal(total, 64 * MiB);
      assert.ok(ok, "content differs");
      // Measured 22-27 MiB on a quiet machine, up to 38 MiB with other builds running beside
      // it (garbage waits longer for its GC); a body held whole would take 64 MiB and more.
      assert.ok(
        peak - before < 44 * MiB,
        `RSS rose by ${((peak - before) / MiB).toFixed(1)} MiB for a 64 MiB download`,
      );
    } finally {
      srv.stop();
    }
  });

  for (const proto of ["HTTP/1.1", "h2c"]) {
    test(
      `a producer the client keeps up with (${proto}): chunks are let go as they are written, not at the stream's end`,
      { timeout: 120_000 },
      async () => {
        // Chunks of 64 KiB and more are lent to the network, not copied. While the socket
        // takes every write at once, the producer never waits, so the event loop gets no turn
        // until the stream ends; the written chunks must be let go all the same (they were
        // held to the end: 109-127 MiB alive for 128 MiB sent, over HTTP/1.1 and h2c, with the network
        // on its own thread).
        const srv = await child(`
        const server = new Server({ port: 0, host: "127.0.0.1" });
        let peak = 0;
        server.addEventListener("fetch", (event) => {
          if (new URL(event.request.url).pathname === "/peak") return event.respondWith(Response.json({ peak }));
          let i = 0;
          event.respondWith(new Response(new ReadableStream({
            pull(c) {
              if (i === 128) return c.close();
              globalThis.gc();
              peak = Math.max(peak, process.memoryUsage().arrayBuffers);
              c.enqueue(new Uint8Array(1024 * 1024).fill(i++ & 0xff));
            },
          })));
        });`);
        const session = proto === "h2c" ? http2.connect(`http://127.0.0.1:${srv.port}`) : null;
        /** The body of GET `path`, as an async iterable of chunks. */
        const get = async (path) => {
          if (!session) return (await fetch(`http://127.0.0.1:${srv.port}${path}`)).body;
          const stream = session.request({ ":path": path });
          const [headers] = await once(stream, "response");
          assert.equal(headers[":status"], 200);
          return stream;
        };
        try {
          let total = 0;
          let ok = true;
          for await (const part of await get("/")) {
            for (let j = 0; j < part.length; j += 4096)
              if (part[j] !== (Math.floor((total + j) / MiB) & 0xff)) ok = false;
            total += part.length;
          }
          assert.equal(total, 128 * MiB);
          assert.ok(ok, "content differs");
          const parts = [];
          for await (const part of await get("/peak")) parts.push(part);
          const { peak } = JSON.parse(Buffer.concat(parts).toString());
          // Measured 9-17 MiB: the queue's 8 chunks, the one being written, the one being made.
          assert.ok(peak < 40 * MiB, `${(peak / MiB).toFixed(1)} MiB of ArrayBuffers alive at once`);
        } finally {
          session?.close();
          srv.stop();
        }
      },
    );
  }

  test("a body read whole is a Buffer V8 owns and frees itself, declared length or chunked", async () => {
    // Not an external buffer over Rust memory: Node frees those with a finalizer on a later
    // turn of its loop, and with the network on the JS thread those turns came so rarely
    // under 1 MiB uploads that 0.9-2.4 GiB of read bodies waited for them. V8's own buffers
    // count in memoryUsage().arrayBuffers; external ones do not.
    const srv = await child(`
      const server = new Server({ port: 0, host: "127.0.0.1" });
      // Each body is kept and the garbage collected before the read, so that a GC inside the
      // measured await frees nothing older: an earlier request's 4 MiB freed there once made
      // the delta negative.
      const kept = [];
      server.addEventListener("fetch", async (event) => {
        globalThis.gc();
        const before = process.memoryUsage().arrayBuffers;
        const body = await event.request.arrayBuffer();
        const counted = process.memoryUsage().arrayBuffers - before;
        kept.push(body);
        event.respondWith(Response.json({ length: body.byteLength, counted, first: new Uint8Array(body)[0] }));
      });`);
    try {
      const body = Buffer.alloc(4 * MiB, 9);
      // Up to 1 MiB the Buffer is made when the body is asked for and filled as it comes;
      // a longer one is collected, then copied, as a chunked one is.
      const small = body.subarray(0, 768 * 1024);
      const declaredSmall = await request(`http://127.0.0.1:${srv.port}`, "/", { method: "POST", body: small });
      const declared = await request(`http://127.0.0.1:${srv.port}`, "/", { method: "POST", body });
      // No Content-Length: node:http sends the writes as chunks.
      const chunked = await new Promise((resolve, reject) => {
        const req = http.request({ port: srv.port, host: "127.0.0.1", method: "POST" }, (res) => {
          let text = "";
          res.on("data", (d) => (text += d));
          res.on("end", () => resolve({ body: text }));
        });
        req.on("error", reject);
        for (let i = 0; i < 4; i++) req.write(body.subarray(i * MiB, (i + 1) * MiB));
        req.end();
      });
      for (const [how, r, size] of [
        ["declared 768 KiB", declaredSmall, small.length],
        ["declared 4 MiB", declared, body.length],
        ["chunked 4 MiB", chunked, body.length],
      ]) {
        const { length, counted, first } = JSON.parse(r.body);
        assert.equal(length, size, how);
        assert.equal(first, 9, how);
        assert.ok(counted >= size * 0.75, `${how}: arrayBuffers grew by ${counted} bytes`);
      }
    } finally {
      srv.stop();
    }
  });

  test("bodies read whole are freed by young-generation GCs, without full ones", { timeout: 60_000 }, async () => {
    // Bodies of 64 KiB and more reach JS as Buffers V8 allocated (a declared length) or as
    // external buffers (chunked). V8 frees short-lived ones at a scavenge, started early
    // once they add up, but only if it sees them; unseen external buffers (300 MiB of them)
    // forced four full mark-compacts here (and one scavenge), against none (and ten).
    const srv = await child(`
      const { PerformanceObserver, constants } = await import("node:perf_hooks");
      const gcs = { major: 0, minor: 0 };
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) gcs.major++;
          if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MINOR) gcs.minor++;
        }
      }).observe({ entryTypes: ["gc"] });
      const server = new Server({ port: 0, host: "127.0.0.1" });
      server.addEventListener("fetch", (event) => {
        if (event.request.method === "GET") {
          event.respondWith(new Promise((r) => setTimeout(() => r(Response.json(gcs)), 100)));
          return;
        }
        event.respondWith(event.request.arrayBuffer().then((b) => Response.json({ length: b.byteLength })));
      });`);
    try {
      const base = `http://127.0.0.1:${srv.port}`;
      const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
      const get = () => request(base, "/", { agent }).then((r) => JSON.parse(r.body));
      const before = await get();
      const body = Buffer.alloc(MiB, 1);
      const COUNT = 300;
      let next = 0;
      const worker = async () => {
        while (next < COUNT) {
          next++;
          const r = await request(base, "/", { method: "POST", body, agent });
          assert.equal(JSON.parse(r.body).length, body.length);
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
      const after = await get();
      agent.destroy();
      const major = after.major - before.major;
      const minor = after.minor - before.minor;
      assert.ok(minor >= 2, `${minor} scavenges for 300 MiB of bodies`);
      assert.ok(major <= 1, `${major} full GCs (and ${minor} scavenges) for 300 MiB of bodies`);
    } finally {
      srv.stop();
    }
  });
});

test("a client that stops reading pauses the producer; resuming gets every byte", { timeout: 60_000 }, async () => {
  const CHUNK = 64 * 1024;
  const COUNT = 512; // 32 MiB, far more than socket buffers hold
  let pulls = 0;
  const { server } = await start((event) => {
    event.respondWith(
      new Response(
        new ReadableStream({
          pull(c) {
            if (pulls === COUNT) return c.close();
            pulls++;
            c.enqueue(new Uint8Array(CHUNK).fill(pulls & 0xff));
          },
        }),
      ),
    );
  });
  try {
    const sock = net.connect(server.port, "127.0.0.1");
    await once(sock, "connect");
    sock.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    sock.pause();
    await sleep(1000);
    const pausedPulls = pulls;
    assert.ok(pausedPulls < COUNT / 2, `the stream was pulled ${pausedPulls} times while the client read nothing`);
    let bytes = 0;
    sock.on("data", (d) => (bytes += d.length));
    sock.resume();
    await once(sock, "end");
    assert.equal(pulls, COUNT);
    assert.ok(bytes > COUNT * CHUNK, `received ${bytes} bytes`);
    assert.ok(bytes < COUNT * CHUNK + 64 * 1024, "more than the body plus framing arrived");
  } finally {
    await server.close();
  }
});

test("server-sent events arrive as they are enqueued", { timeout: 20_000 }, async () => {
  const sent = [];
  const { server, base } = await start((event) => {
    let timer;
    let n = 0;
    event.respondWith(
      new Response(
        new ReadableStream({
          start(c) {
            timer = setInterval(() => {
              sent.push(performance.now());
              c.enqueue(new TextEncoder().encode(`data: ${n++}\n\n`));
              if (n === 3) {
                clearInterval(timer);
                c.close();
              }
            }, 150);
          },
          cancel() {
            clearInterval(timer);
          },
        }),
        { headers: { "content-type": "text/event-stream", "cache-control": "no-store" } },
      ),
    );
  });
  try {
    const r = await fetch(base);
    assert.equal(r.headers.get("content-type"), "text/event-stream");
    const got = [];
    const reader = r.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      got.push([performance.now(), new TextDecoder().decode(value)]);
    }
    assert.equal(got.map((g) => g[1]).join(""), "data: 0\n\ndata: 1\n\ndata: 2\n\n");
    assert.ok(got.length >= 3, "events were coalesced");
    const delay = got[0][0] - sent[0];
    assert.ok(delay < 50, `first event took ${delay.toFixed(1)} ms to arrive`);
  } finally {
    await server.close();
  }
});

describe("request.signal and cancel()", () => {
  test("a client leaving mid-stream runs cancel() and aborts request.signal within a second", async () => {
    let cancelledAt = 0;
    let abortedAt = 0;
    let reason;
    const { server } = await start((event) => {
      event.request.signal.addEventListener("abort", () => {
        abortedAt = performance.now();
        reason = event.request.signal.reason;
      });
      event.respondWith(
        new Response(
          new ReadableStream({
            start(c) {
              c.enqueue(new TextEncoder().encode("data: hello\n\n"));
            },
            cancel() {
              cancelledAt = performance.now();
            },
          }),
        ),
      );
    });
    try {
      const sock = net.connect(server.port, "127.0.0.1");
      await once(sock, "connect");
      sock.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      await once(sock, "data");
      const leftAt = performance.now();
      sock.destroy();
      for (let i = 0; i < 100 && (cancelledAt === 0 || abortedAt === 0); i++) await sleep(10);
      assert.ok(cancelledAt > 0 && cancelledAt - leftAt < 1000, "cancel() did not run within a second");
      assert.ok(abortedAt > 0 && abortedAt - leftAt < 1000, "request.signal did not abort within a second");
      assert.equal(reason?.name, "AbortError");
    } finally {
      await server.close();
    }
  });

  test("a client leaving before the response aborts request.signal", async () => {
    let aborted;
    const { server } = await start(async (event) => {
      aborted = abortOf(event.request.signal);
      await aborted;
      event.respondWith(new Response("too late"));
    });
    try {
      const sock = net.connect(server.port, "127.0.0.1");
      await once(sock, "connect");
      sock.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      await sleep(50);
      sock.destroy();
      const reason = await Promise.race([aborted, sleep(1000).then(() => "timeout")]);
      assert.equal(reason?.name, "AbortError");
    } finally {
      await server.close();
    }
  });

  // After an answered request the connection's reads skip the socket until it signals
  // readiness (cork.rs, `ReadWake`): the next request, and the client's leaving while it
  // waits, must still be seen.
  test("a client leaving while its second keep-alive request waits aborts request.signal", async () => {
    let aborted;
    let served = 0;
    const { server } = await start(async (event) => {
      served += 1;
      if (served === 1) return event.respondWith(new Response("first"));
      aborted = abortOf(event.request.signal);
      await aborted;
      event.respondWith(new Response("too late"));
    });
    try {
      const sock = net.connect(server.port, "127.0.0.1");
      await once(sock, "connect");
      sock.write("GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
      const [first] = await once(sock, "data");
      assert.match(first.toString(), /^HTTP\/1\.1 200[^]*first$/);
      await sleep(50);
      sock.write("GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
      for (let i = 0; i < 100 && served < 2; i++) await sleep(10);
      assert.equal(served, 2, "the second request did not reach the handler");
      await sleep(50);
      sock.destroy();
      const reason = await Promise.race([aborted, sleep(1000).then(() => "timeout")]);
      assert.equal(reason?.name, "AbortError");
    } finally {
      await server.close();
    }
  });

  // While a request is out hyper does not read the socket (its `half_close`, plain TCP):
  // the connection task watches it (cork.rs, `Cork::watch`). These cases follow a request
  // whose whole body was read before the handler waits.
  test("a client that half-closes after a 100 KiB body aborts request.signal and still gets its answer", async () => {
    let reason;
    const { server } = await start(async (event) => {
      const body = await event.request.arrayBuffer();
      reason = await abortOf(event.request.signal);
      event.respondWith(new Response(`got ${body.byteLength}`));
    });
    try {
      const sock = net.connect(server.port, "127.0.0.1");
      await once(sock, "connect");
      const chunks = [];
      sock.on("data", (d) => chunks.push(d));
      const ended = once(sock, "end");
      sock.write(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${100 * 1024}\r\n\r\n`);
      sock.write(Buffer.alloc(100 * 1024, 0x61));
      await sleep(100);
      sock.end();
      const outcome = await Promise.race([ended.then(() => "ended"), sleep(2000).then(() => "timeout")]);
      sock.destroy();
      assert.equal(outcome, "ended", "no answer: the half-close was not seen");
      assert.equal(reason?.name, "AbortError");
      assert.match(Buffer.concat(chunks).toString(), /^HTTP\/1\.1 200 [^]*\r\n\r\ngot 102400$/);
    } finally {
      await server.close();
    }
  });

  test("a client that resets while its request waits aborts request.signal", async () => {
    let aborted;
    const { server } = await start(async (event) => {
      await event.request.arrayBuffer();
      aborted = abortOf(event.request.signal);
      await aborted;
      event.respondWith(new Response("too late"));
    });
    try {
      const sock = net.connect(server.port, "127.0.0.1");
      await once(sock, "connect");
      sock.write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
      await sleep(100);
      assert.ok(aborted !== undefined, "the request did not reach the handler");
      sock.resetAndDestroy();
      const reason = await Promise.race([aborted, sleep(1000).then(() => "timeout")]);
      assert.equal(reason?.name, "AbortError");
    } finally {
      await server.close();
    }
  });

  test("a request that comes while another waits is answered after it, and waiting on it takes no CPU", async () => {
    let release;
    const gate = new Promise((resolve) => (release = resolve));
    const { server } = await start(async (event) => {
      const body = await event.request.text();
      if (body === "first") await gate;
      event.respondWith(new Response(`answer to ${body}`));
    });
    try {
      const sock = net.connect(server.port, "127.0.0.1");
      await once(sock, "connect");
      const chunks = [];
      sock.on("data", (d) => chunks.push(d));
      sock.write("POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst");
      await sleep(100);
      // Bytes while the first waits: they stay in the socket for hyper, and the watch
      // must not find them again and again.
      sock.write("POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond");
      await sleep(100);
      const before = process.cpuUsage();
      await sleep(500);
      const used = process.cpuUsage(before);
      release();
      for (let i = 0; i < 100 && !/answer to second/.test(Buffer.concat(chunks).toString()); i++) await sleep(10);
      sock.destroy();
      const text = Buffer.concat(chunks).toString();
      assert.match(text, /^HTTP\/1\.1 200 [^]*answer to first(HTTP\/1\.1 200 [^]*answer to second)$/);
      // A busy loop would take a good part of the half second; waiting takes a few ms.
      assert.ok(
        used.user + used.system < 100_000,
        `the process used ${(used.user + used.system) / 1000} ms of CPU while it waited`,
      );
    } finally {
      await server.close();
    }
  });

  test("the request timeout aborts request.signal with a TimeoutError and answers 503", async () => {
    let reason;
    const { server, base } = await start(
      async (event) => {
        reason = await abortOf(event.request.signal);
      },
      { timeout: 200 },
    );
    try {
      const r = await fetch(base);
      assert.equal(r.status, 503);
      await sleep(50);
      assert.equal(reason?.name, "TimeoutError");
    } finally {
      await server.close();
    }
  });

  test("request.signal never aborts after a successful response", async () => {
    let signal;
    const { server, base } = await start((event) => {
      signal = event.request.signal;
      event.respondWith(new Response("ok"));
    });
    try {
      const r = await fetch(base);
      assert.equal(await r.text(), "ok");
      await sleep(200);
      assert.equal(signal.aborted, false);
    } finally {
      await server.close();
    }
  });
});
