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
import net from "node:net";
import { setImmediate as turn } from "node:timers/promises";
import v8 from "node:v8";
import vm from "node:vm";
import { after, before, describe, test } from "node:test";
import { pattern, start } from "./helpers.mjs";

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

/** A keep-alive connection that sends one POST at a time and returns its answer's body. */
function connection(port) {
  const sock = net.connect(port, "127.0.0.1");
  let buf = Buffer.alloc(0);
  let waiting = null;
  const check = () => {
    if (waiting === null) return;
    const end = buf.indexOf("\r\n\r\n", 0, "latin1");
    if (end === -1) return;
    const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
    const cl = lines.find((l) => /^content-length:/i.test(l));
    if (cl === undefined) return waiting.reject(new Error(`no content-length: ${lines.join(" | ")}`));
    const n = Number(cl.split(":")[1]);
    if (buf.length < end + 4 + n) return;
    const res = { status: Number(lines[0].split(" ")[1]), body: Buffer.from(buf.subarray(end + 4, end + 4 + n)) };
    buf = buf.subarray(end + 4 + n);
    const w = waiting;
    waiting = null;
    w.resolve(res);
  };
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    check();
  });
  const fail = (e) => waiting?.reject(e ?? new Error("the server closed the connection"));
  sock.on("error", fail);
  sock.on("close", () => fail());
  const ready = new Promise((resolve, reject) => {
    sock.once("connect", resolve);
    sock.once("error", reject);
  });
  return {
    async post(path, body, extra = "") {
      await ready;
      const p = new Promise((resolve, reject) => (waiting = { resolve, reject }));
      sock.write(`POST ${path} HTTP/1.1\r\nHost: x\r\n${extra}Content-Length: ${body.length}\r\n\r\n`);
      sock.write(body);
      return p;
    },
    close: () => sock.destroy(),
  };
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
      const conns = Array.from({ length: 40 }, () => connection(srv.server.port));
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
      const conns = Array.from({ length: 8 }, () => connection(srv.server.port));
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
