// A real browser: headless Chromium loads a page and its script over HTTPS from fetch-rs and
// reports, from the Resource Timing API, the protocol each came over (h2 by ALPN).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { Response, Server } from "../dist/index.js";
import { A } from "./tls-helpers.mjs";

const run = promisify(execFile);

async function findChromium() {
  for (const name of [process.env.CHROMIUM_PATH, "chromium", "chromium-browser", "google-chrome"]) {
    if (!name) continue;
    try {
      await run(name, ["--version"]);
      return name;
    } catch {}
  }
  return null;
}

const PAGE = `<!doctype html><title>fetch-rs</title><body>loading<script src="/app.js"></script></body>`;
// Runs before the load event, so --dump-dom sees what it writes.
const APP = `
const nav = performance.getEntriesByType("navigation")[0];
const self = performance.getEntriesByType("resource").find((e) => e.name.endsWith("/app.js"));
document.body.textContent = "page=" + nav.nextHopProtocol + " script=" + self.nextHopProtocol;
`;

test("headless Chromium loads a page over HTTPS and HTTP/2", async (t) => {
  const chromium = await findChromium();
  if (chromium === null)
    return t.skip("Chromium is not installed (apt-get install chromium); set CHROMIUM_PATH to use another");
  const server = new Server({ port: 0, host: "127.0.0.1", tls: A });
  const paths = [];
  server.addEventListener("fetch", (e) => {
    const path = new URL(e.request.url).pathname;
    paths.push(path);
    if (path === "/app.js") e.respondWith(new Response(APP, { headers: { "content-type": "text/javascript" } }));
    else e.respondWith(new Response(PAGE, { headers: { "content-type": "text/html" } }));
  });
  await server.listen();
  const profile = mkdtempSync(join(tmpdir(), "fetch-rs-chromium-"));
  try {
    const args = [
      "--headless",
      "--no-sandbox", // CI runs as root, where Chromium's sandbox cannot start
      "--disable-gpu",
      "--no-first-run",
      `--user-data-dir=${profile}`,
      "--ignore-certificate-errors", // the test CA is not in the browser's store
      "--dump-dom",
      `https://localhost:${server.port}/`,
    ];
    let out;
    try {
      out = await run(chromium, args, { timeout: 60_000 });
    } catch (e) {
      if (/cannot open display|Missing X server|error while loading shared libraries/.test(String(e.stderr)))
        return t.skip(`Chromium cannot run here: ${String(e.stderr).slice(0, 300)}`);
      throw e;
    }
    assert.match(out.stdout, /page=h2 script=h2/, out.stdout + out.stderr.slice(-2000));
    assert.ok(paths.includes("/") && paths.includes("/app.js"));
    assert.ok(server.stats().tlsHandshakes >= 1);
  } finally {
    rmSync(profile, { recursive: true, force: true });
    await server.close({ force: true });
  }
});
