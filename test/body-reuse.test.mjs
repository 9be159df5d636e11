// Request bodies of 64 KiB + 1 to 1 MiB + 1 read into Buffers while the memory of earlier
// ones is reused: bodies around 256 KiB (the block size of a body pool tried in round
// twenty-three, docs/network-thread.md) and the 64 KiB / 1 MiB edges of the body paths,
// more at once than such a pool's 32 blocks, and bodies a handler keeps while hundreds of
// later ones come and go with the garbage collected between them. A guard (it passes on
// main): memory handed to a later body while a Buffer over it is still reachable, or to two
// bodies at once, shows here as a kept body overwritten or an echo with another body's
// bytes (a throwaway pool that gave its block back at once failed all four tests). Over raw
// sockets, both modes.
import { strict as assert } from "node:assert";
import { setImmediate as turn } from "node:timers/promises";
import v8 from "node:v8";
import vm from "node:vm";
import { after, before, describe, test } from "node:test";
import { pattern, postConnection, start } from "./helpers.mjs";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc");

const KiB = 1024;
const MiB = 1024 * KiB;
// Around 256 KiB (the tried pool's block) and the 64 KiB / 1 MiB edges of the body paths.
const SIZES = [
  64 * KiB - 1,
  64 * KiB,
  64 * KiB + 1,
  100 * KiB,
  256 * KiB - 1,
  256 * KiB,
  256 * KiB + 1,
  MiB - 1,
  MiB,
  MiB + 1,
];

/** Collects the garbage and lets Node run the finalizers it queued for the next turns. */
async function collect() {
  gc();
  await turn();
  await turn();
}

for (const [mode, options] of [
  ["worker threads", {}],
  ["workerThreads: 0", { workerThreads: 0 }],
]) {
  describe(`request bodies while earlier bodies' memory is reused (${mode})`, () => {
    let srv;
    /** Bodies `/keep` holds: [seed, ArrayBuffer]. */
    const kept = [];
    before(async () => {
      srv = await start(
        (event) => {
          const path = new URL(event.request.url).pathname;
          if (path === "/keep") {
            const seed = Number(event.request.headers.get("x-seed") ?? 0);
            event.respondWith(
              event.request.arrayBuffer().then((body) => {
                kept.push([seed, body]);
                return new Response(String(body.byteLength));
              }),
            );
          } else {
            event.respondWith(event.request.arrayBuffer().then((body) => new Response(body)));
          }
        },
        { ...options, maxBodySize: 4 * MiB },
      );
    });
    after(() => srv.server.close());

    test("bodies around 256 KiB and the 64 KiB / 1 MiB edges come back whole, 40 at once", async () => {
      const conns = Array.from({ length: 40 }, () => postConnection(srv.server.port));
      try {
        for (let round = 0; round < 2; round++) {
          await Promise.all(
            conns.map(async (c, i) => {
              for (let k = 0; k < SIZES.length; k++) {
                const size = SIZES[(k + i + round) % SIZES.length];
                const seed = 1 + round * 1000 + i * 20 + k;
                const body = pattern(size, seed);
                const res = await c.post("/echo", body);
                assert.equal(res.status, 200, `${size} bytes`);
                assert.equal(res.body.length, size, `${size} bytes: the length`);
                assert.ok(res.body.equals(body), `${size} bytes: the bytes`);
              }
            }),
          );
          // The bodies' memory is freed once their Buffers are collected; the next round reuses it.
          await collect();
        }
      } finally {
        for (const c of conns) c.close();
      }
    });

    test("a body the handler keeps stays as sent while many later bodies reuse memory", async () => {
      const sizes = [64 * KiB + 1, 100 * KiB, 200 * KiB, 256 * KiB];
      const sizeOf = (seed) => sizes[seed % sizes.length];
      const conns = Array.from({ length: 8 }, () => postConnection(srv.server.port));
      try {
        // 48 kept, more than the tried pool's blocks.
        for (let n = 0; n < 48; n += conns.length) {
          await Promise.all(
            conns.map(async (c, i) => {
              const seed = 5000 + n + i;
              const res = await c.post("/keep", pattern(sizeOf(seed), seed), `x-seed: ${seed}\r\n`);
              assert.equal(res.status, 200);
              assert.equal(res.body.toString(), String(sizeOf(seed)));
            }),
          );
        }
        // Then rounds of echoes, the garbage collected between them so that the memory of
        // every body not held is freed and written again.
        for (let round = 0; round < 10; round++) {
          await collect();
          await Promise.all(
            conns.map(async (c, i) => {
              for (let k = 0; k < 6; k++) {
                const seed = 9000 + round * 100 + i * 10 + k;
                const body = pattern(sizeOf(seed), seed);
                const res = await c.post("/echo", body);
                assert.ok(res.body.equals(body), `round ${round}, connection ${i}, body ${k}`);
              }
            }),
          );
        }
        await collect();
        assert.equal(kept.length, 48);
        for (const [seed, body] of kept) {
          assert.ok(Buffer.from(body).equals(pattern(sizeOf(seed), seed)), `the body kept with seed ${seed}`);
        }
      } finally {
        for (const c of conns) c.close();
      }
    });
  });
}
