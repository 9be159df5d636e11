// The lingering close: a client still sending a body the server will not read (413, or a
// listener that answered without reading it) must read the response, not a reset. Real
// clients (Node's fetch and node:http), ten tries each; every try must see the status.
//
// Run with: node --test test/lingering-close.test.mjs
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { Response } from "../dist/index.js";
import { pattern, start } from "./helpers.mjs";

const TRIES = 10;
const MiB = 1024 * 1024;
// Bodies large enough that the client is still writing when the response comes (smaller
// ones fit in the socket buffers, and a reset after them does no harm): one over the
// default 10 MiB maxBodySize (413 before the listener runs), one under it that the
// listener answers without reading.
const OVER = pattern(12 * MiB, 7);
const UNDER = pattern(8 * MiB, 8);

let ctx;
before(async () => {
  ctx = await start((event) => {
    // /early answers without reading a body it will not take.
    if (new URL(event.request.url).pathname === "/early") event.respondWith(new Response("no thanks", { status: 403 }));
    else event.respondWith(new Response("ok"));
  });
});
after(() => ctx.server.close());

/** POST with node:http, one connection per try; resolves with the status or the error code. */
function nodeHttpPost(path, body) {
  return new Promise((resolve) => {
    const req = http.request(`${ctx.base}${path}`, { method: "POST", agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
      res.on("error", (e) => resolve(e.code ?? e.message));
    });
    req.on("error", (e) => resolve(e.code ?? e.message));
    req.setHeader("content-length", body.length);
    req.end(body);
  });
}

async function fetchPost(path, body) {
  try {
    const res = await fetch(`${ctx.base}${path}`, { method: "POST", body });
    await res.arrayBuffer();
    return res.status;
  } catch (e) {
    return e.cause?.code ?? e.message;
  }
}

describe("a refused upload still gets its response", () => {
  for (const [client, post] of [
    ["Node's fetch", fetchPost],
    ["node:http", nodeHttpPost],
  ]) {
    test(`${client}: a declared body over maxBodySize gets 413 in ${TRIES} of ${TRIES} tries`, async () => {
      const got = [];
      for (let i = 0; i < TRIES; i++) got.push(await post("/", OVER));
      assert.deepEqual(got, Array(TRIES).fill(413));
    });

    test(`${client}: a listener that answers without reading the body is heard in ${TRIES} of ${TRIES} tries`, async () => {
      const got = [];
      for (let i = 0; i < TRIES; i++) got.push(await post("/early", UNDER));
      assert.deepEqual(got, Array(TRIES).fill(403));
    });
  }
});
