// Echo of request bodies around the sizes where their path changes: read with the head (up
// to 64 KiB), read past hyper into a Buffer of the declared length (up to 1 MiB), collected
// in pieces (over 1 MiB). The handler is the benchmark's `/echo`; each body is checked byte
// for byte, many in a row on keep-alive connections so that the memory of bodies V8 has
// collected is reused for later ones. A guard of the echo path (the body read into its
// Buffer, that Buffer lent back as the response body from 64 KiB) and of where the bodies'
// memory comes from (glibc's thresholds, src/alloc.rs). Both modes.
import { strict as assert } from "node:assert";
import { after, before, describe, test } from "node:test";
import net from "node:net";
import { pattern, postConnection, start } from "./helpers.mjs";

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZES = [64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 100 * KiB, MiB - 1, MiB, MiB + 1];

for (const [mode, options] of [
  ["worker threads", {}],
  ["workerThreads: 0", { workerThreads: 0 }],
]) {
  describe(`echo of bodies around 64 KiB and 1 MiB (${mode})`, () => {
    let srv;
    before(async () => {
      srv = await start((event) => event.respondWith(event.request.arrayBuffer().then((body) => new Response(body))), {
        ...options,
        maxBodySize: 4 * MiB,
      });
    });
    after(() => srv.server.close());

    test("each size comes back whole and byte-exact, many times on keep-alive connections", async () => {
      const conns = Array.from({ length: 4 }, () => postConnection(srv.server.port));
      try {
        let seed = 1;
        // Each connection runs through the sizes in its own order, so that bodies of every
        // size are alive and freed at once, then again.
        await Promise.all(
          conns.map(async (c, i) => {
            for (let round = 0; round < 3; round++) {
              for (let k = 0; k < SIZES.length; k++) {
                const size = SIZES[(k + i + round) % SIZES.length];
                const body = pattern(size, seed++);
                const res = await c.post("/echo", body);
                assert.equal(res.status, 200, `${size} bytes`);
                assert.equal(res.body.length, size, `${size} bytes: the length`);
                assert.ok(res.body.equals(body), `${size} bytes: the bytes`);
              }
            }
          }),
        );
      } finally {
        for (const c of conns) c.close();
      }
    });

    test("hundreds of 100 KiB bodies in a row, each its own bytes", async () => {
      const conns = Array.from({ length: 8 }, () => postConnection(srv.server.port));
      try {
        await Promise.all(
          conns.map(async (c, i) => {
            for (let n = 0; n < 40; n++) {
              // The size varies by a few bytes so that no two bodies in a row are alike.
              const body = pattern(100 * KiB + ((n * 7 + i) % 13), 1000 + i * 100 + n);
              const res = await c.post("/echo", body);
              assert.equal(res.status, 200);
              assert.ok(res.body.equals(body), `connection ${i}, body ${n}`);
            }
          }),
        );
      } finally {
        for (const c of conns) c.close();
      }
    });

    // Many bodies read in one turn, and bodies behind others on one connection: written for a
    // byte budget of a drain's bodies that left requests queued for a later call of JS
    // (docs/network-thread.md, "Echo of 100 KiB bodies, round twenty-four", not kept), and
    // kept as guards of the batch's answers, whole and in order.
    test("sixty connections send bodies of 64 KiB to 1 MiB at once, each echoed whole", async () => {
      const sizes = [64 * KiB + 1, 100 * KiB, 200 * KiB, 256 * KiB - 1, 256 * KiB, 512 * KiB, MiB];
      const conns = Array.from({ length: 60 }, () => postConnection(srv.server.port));
      try {
        for (let round = 0; round < 3; round++) {
          await Promise.all(
            conns.map(async (c, i) => {
              const size = sizes[(i + round) % sizes.length];
              const body = pattern(size, 5000 + round * 100 + i);
              const res = await c.post("/echo", body);
              assert.equal(res.status, 200, `round ${round}, connection ${i}`);
              assert.ok(res.body.equals(body), `round ${round}, connection ${i}: ${size} bytes`);
            }),
          );
        }
      } finally {
        for (const c of conns) c.close();
      }
    });

    test("pipelined bodies in one write on each of eight connections: every answer, in order", async () => {
      const sizes = [100 * KiB, 10, 100 * KiB + 3, 200 * KiB, 0, 64 * KiB + 1, 300 * KiB, 100 * KiB, 1000, 150 * KiB];
      await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          const bodies = sizes.map((size, k) => pattern(size, 9000 + i * 100 + k));
          const answers = await pipelined(srv.server.port, bodies);
          assert.equal(answers.length, bodies.length, `connection ${i}`);
          for (let k = 0; k < bodies.length; k++) {
            assert.equal(answers[k].status, 200, `connection ${i}, request ${k}`);
            assert.ok(answers[k].body.equals(bodies[k]), `connection ${i}, request ${k}: ${bodies[k].length} bytes`);
          }
        }),
      );
    });

    test("Node's fetch gets a 100 KiB body back as sent", async () => {
      for (let n = 0; n < 5; n++) {
        const body = pattern(100 * KiB, 7 + n);
        const res = await fetch(`${srv.base}/echo`, { method: "POST", body });
        assert.equal(res.status, 200);
        assert.ok(Buffer.from(await res.arrayBuffer()).equals(body));
      }
    });
  });
}

/** POSTs each of `bodies` to /echo on one connection, all in one write, and resolves with the
 * answers (status, body) in the order they came. */
function pipelined(port, bodies) {
  const parts = [];
  for (const body of bodies) {
    parts.push(Buffer.from(`POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`), body);
  }
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1", () => sock.write(Buffer.concat(parts)));
    const answers = [];
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`${answers.length} of ${bodies.length} answers in 20 s`));
    }, 20_000);
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf("\r\n\r\n", 0, "latin1");
        if (end === -1) return;
        const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
        const cl = lines.find((l) => /^content-length:/i.test(l));
        const n = cl === undefined ? 0 : Number(cl.split(":")[1]);
        if (buf.length < end + 4 + n) return;
        answers.push({ status: Number(lines[0].split(" ")[1]), body: Buffer.from(buf.subarray(end + 4, end + 4 + n)) });
        buf = buf.subarray(end + 4 + n);
        if (answers.length === bodies.length) {
          clearTimeout(timer);
          sock.destroy();
          resolve(answers);
          return;
        }
      }
    });
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on("close", () => {
      clearTimeout(timer);
      resolve(answers);
    });
  });
}
