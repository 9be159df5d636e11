// The chat example (examples/chat/) in headless Chromium: two pages exchange messages
// through the server, with Chromium's own permessage-deflate offer agreed.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { startChat } from "../examples/chat/server.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

test("two Chromium pages chat through the example server", { timeout: 60_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) return t.skip(`no Chromium at ${CHROMIUM} (apt-get install chromium)`);
  const { default: puppeteer } = await import("puppeteer-core");
  const server = await startChat(0);
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const base = `http://127.0.0.1:${server.port}/`;
    const alice = await browser.newPage();
    const bob = await browser.newPage();
    await alice.goto(`${base}?name=alice`);
    await bob.goto(`${base}?name=bob`);
    for (const page of [alice, bob]) {
      await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("connected"));
      const ext = await page.evaluate(() => window.chat.extensions);
      assert.match(ext, /permessage-deflate/);
    }
    await alice.type("#text", "hello from alice");
    await alice.keyboard.press("Enter");
    await bob.waitForFunction(() =>
      [...document.querySelectorAll(".message")].some((m) => m.textContent === "alice: hello from alice"),
    );
    await bob.type("#text", "hi alice, " + "long ".repeat(200));
    await bob.keyboard.press("Enter");
    await alice.waitForFunction(() =>
      [...document.querySelectorAll(".message")].some((m) => m.textContent.startsWith("bob: hi alice")),
    );
    assert.equal(server.stats().webSockets, 2);
  } finally {
    await browser.close();
    await server.close();
  }
});
