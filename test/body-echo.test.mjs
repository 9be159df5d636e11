// Echo of request bodies around the sizes where their path changes: read with the head (up
// to 64 KiB), read past hyper into a Buffer of the declared length (up to 1 MiB), collected
// in pieces (over 1 MiB). The handler is the benchmark's `/echo`; each body is checked byte
// for byte, many in a row on keep-alive connections so that the memory of bodies V8 has
// collected is reused for later ones. A guard of the echo path (the body read into its
// Buffer, that Buffer lent back as the response body from 64 KiB) and of where the bodies'
// memory comes from (glibc's thresholds, src/alloc.rs). Both modes.
import { strict as assert } from "node:assert";
import { after, before, describe, test } from "node:test";
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
