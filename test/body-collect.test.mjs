// Request bodies read whole, byte for byte, on every path the native side takes: with the
// head (declared, up to 64 KiB), into a Buffer made for a declared length (up to 1 MiB),
// and collected in the pieces they arrived in (chunked, or declared over 1 MiB), where
// pieces of 8 KiB and more are kept as read and shorter ones are copied together. Sizes
// and chunk sizes sit on each side of those thresholds; both network modes.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { pattern, send, start } from "./helpers.mjs";

const KiB = 1024;
const MiB = 1024 * KiB;
const sha = (b) => createHash("sha256").update(b).digest("hex");

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
