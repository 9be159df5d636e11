// The benchmark's Rust reference servers (bench/README.md): examples/hyper-baseline.rs and
// examples/lean-h1.rs answer a GET and a pipelined pair over a raw socket as the bench runner
// expects, and the lean one refuses what a server must refuse. They are bench references, not
// product: each test is skipped when its binary is not built (`cargo build --release --example
// hyper-baseline --example lean-h1`).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { raw } from "./helpers.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const REFERENCES = { hyper: "target/release/examples/hyper-baseline", lean: "target/release/examples/lean-h1" };
const children = [];
after(() => children.forEach((c) => c.kill("SIGTERM")));

/** Starts `bin` on a free port; resolves with the port once it prints READY. */
function startBinary(bin) {
  const child = spawn(root + bin, [], { env: { ...process.env, PORT: "0" }, stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /READY (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`${bin} exited (${code}) before READY`)));
  });
}

/** Splits a run of HTTP/1.1 responses by their Content-Length; `head` lists which were to HEAD. */
function responses(text, head = []) {
  const list = [];
  let at = 0;
  while (at < text.length) {
    const end = text.indexOf("\r\n\r\n", at);
    assert.notEqual(end, -1, `a whole head at ${at}: ${JSON.stringify(text.slice(at))}`);
    const [statusLine, ...lines] = text.slice(at, end).split("\r\n");
    const headers = Object.fromEntries(
      lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]),
    );
    const length = head[list.length] ? 0 : Number(headers["content-length"] ?? 0);
    list.push({ status: Number(statusLine.split(" ")[1]), headers, body: text.slice(end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
  return list;
}

const GET = (path, extra = "") => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;

for (const [name, bin] of Object.entries(REFERENCES)) {
  describe(`bench reference ${name} (${bin})`, { skip: !existsSync(root + bin) && `${bin} is not built` }, () => {
    let port;
    test("starts", async () => {
      port = await startBinary(bin);
    });

    test("answers a GET of /json with its type, length and date, and keeps the connection", async () => {
      const { text, closed } = await raw(port, GET("/json"));
      const [res, ...rest] = responses(text);
      assert.equal(rest.length, 0);
      assert.equal(res.status, 200);
      assert.equal(res.headers["content-type"], "application/json");
      assert.equal(res.headers["content-length"], "11");
      assert.ok(!Number.isNaN(Date.parse(res.headers.date)), res.headers.date);
      assert.ok(Math.abs(Date.parse(res.headers.date) - Date.now()) < 5_000, res.headers.date);
      assert.equal(res.body, '{"ok":true}');
      assert.equal(closed, false);
    });

    test("answers a pipelined pair in one write, in order", async () => {
      const { text } = await raw(port, GET("/text") + GET("/json"));
      const got = responses(text);
      assert.deepEqual(
        got.map((r) => [r.status, r.headers["content-type"], r.body]),
        [
          [200, "text/plain;charset=UTF-8", "Hello, World!"],
          [200, "application/json", '{"ok":true}'],
        ],
      );
    });
  });
}

describe("lean-h1's checks", { skip: !existsSync(root + REFERENCES.lean) && `${REFERENCES.lean} is not built` }, () => {
  let port;
  test("starts", async () => {
    port = await startBinary(REFERENCES.lean);
  });

  /** The statuses answered to `data`, and whether the server closed. */
  const statuses = async (data, head) => {
    const { text, closed } = await raw(port, data);
    return { got: responses(text, head).map((r) => r.status), closed };
  };

  test("refuses a bad head after answering the requests before it, and closes", async () => {
    const cases = [
      ["GET /json HTTP/1.1\r\n\r\n", 400], // no Host
      ["GET /json HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
      ["GET /json HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400], // a bare LF
      ["GET /json HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nxx", 400],
      ["GET /json HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx", 400],
      ["GET /json HTTP/1.1\r\nHost : a\r\n\r\n", 400],
      ["GET /json HTTP/2.0\r\nHost: a\r\n\r\n", 505],
      ["POST /json HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501],
      [`GET /json HTTP/1.1\r\nHost: a\r\nX: ${"y".repeat(17_000)}\r\n\r\n`, 431],
      [`GET /json HTTP/1.1\r\nHost: a\r\n${"X: y\r\n".repeat(101)}\r\n`, 431],
    ];
    for (const [bad, status] of cases) {
      assert.deepEqual(
        await statuses(GET("/json") + bad + GET("/json")),
        { got: [200, status], closed: true },
        bad.slice(0, 60),
      );
    }
  });

  test("a head split across writes waits for its end", async () => {
    const { text } = await raw(port, "GET /js");
    assert.equal(text, "");
    // One connection, the head in three writes.
    const { connect } = await import("node:net");
    const sock = connect(port, "127.0.0.1");
    const chunks = [];
    sock.on("data", (d) => chunks.push(d));
    for (const part of ["GET /js", "on HTTP/1.1\r\nHo", "st: a\r\n\r\n"]) {
      sock.write(part);
      await new Promise((r) => setTimeout(r, 30));
    }
    await new Promise((r) => setTimeout(r, 100));
    sock.destroy();
    assert.deepEqual(
      responses(Buffer.concat(chunks).toString("latin1")).map((r) => [r.status, r.body]),
      [[200, '{"ok":true}']],
    );
  });

  test("drops a request body by its length, answers HEAD without a body, 404 elsewhere", async () => {
    const post = "POST /json HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nGET /";
    const headReq = "HEAD /json HTTP/1.1\r\nHost: a\r\n\r\n";
    assert.deepEqual(await statuses(post + GET("/nope") + headReq + GET("/json?x=1"), [false, false, true, false]), {
      got: [404, 404, 200, 200],
      closed: false,
    });
  });

  test("keep-alive by version and Connection", async () => {
    assert.deepEqual(await statuses("GET /json HTTP/1.0\r\n\r\n" + GET("/json")), { got: [200], closed: true });
    const keep = await raw(port, "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + GET("/json"));
    const both = responses(keep.text);
    assert.deepEqual(
      [both.map((r) => r.status), both[0].headers.connection, keep.closed],
      [[200, 200], "keep-alive", false],
    );
    const close = await raw(port, GET("/json", "Connection: close\r\n") + GET("/json"));
    assert.deepEqual([responses(close.text).map((r) => r.headers.connection), close.closed], [["close"], true]);
  });

  test("answers Expect: 100-continue before reading the body", async () => {
    const { text } = await raw(
      port,
      "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nab",
    );
    assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 404 /);
  });
});
