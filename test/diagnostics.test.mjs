// Diagnostics (src/diagnostics.rs): tracing events on stderr when FETCH_RS_LOG asks for
// them, nothing otherwise; the addon loaded by several threads at once installs one logger.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";

const INDEX = new URL("../dist/index.js", import.meta.url).href;

/** Runs `body` (an ES module) in a fresh node with `env` added; returns its stderr. */
function run(body, env) {
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", body], {
    env: { ...process.env, FETCH_RS_LOG: "", ...env },
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return r.stderr;
}

const ONE_REQUEST = `
  import { Server } from ${JSON.stringify(INDEX)};
  const server = new Server({ port: 0, host: "127.0.0.1" });
  server.addEventListener("fetch", (e) => e.respondWith(new Response("ok")));
  await server.listen();
  const r = await fetch("http://127.0.0.1:" + server.port + "/");
  await r.text();
  await server.close();
`;

test("FETCH_RS_LOG=debug logs connections, their protocol and why they closed", () => {
  const log = run(ONE_REQUEST, { FETCH_RS_LOG: "debug" });
  assert.match(log, /connection accepted.*http\/1\.1/);
  assert.match(log, /connection closed/);
  assert.match(log, /close: no connection left/);
});

test("without FETCH_RS_LOG the server writes nothing to stderr", () => {
  assert.equal(run(ONE_REQUEST, {}), "");
});

test("an invalid FETCH_RS_LOG is reported once and leaves logging off", () => {
  const log = run(ONE_REQUEST, { FETCH_RS_LOG: "fetch_rs=[" });
  assert.match(log, /FETCH_RS_LOG=.* is not a valid filter/);
  assert.doesNotMatch(log, /connection accepted/);
});

test("worker threads loading the addon at once with FETCH_RS_LOG set all serve", () => {
  const log = run(
    `
    import { Worker } from "node:worker_threads";
    const code = ${JSON.stringify(ONE_REQUEST)} + "; process.exit(0);";
    const workers = Array.from({ length: 4 }, () => new Worker(code, { eval: true, type: "module" }));
    const codes = await Promise.all(workers.map((w) => new Promise((res, rej) => { w.on("exit", res); w.on("error", rej); })));
    if (codes.some((c) => c !== 0)) throw new Error("a worker failed: " + codes);
  `,
    { FETCH_RS_LOG: "debug" },
  );
  assert.equal(log.match(/close: no connection left/g)?.length, 4);
});
