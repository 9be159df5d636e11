// HTTPS/1.1 over TLS 1.3 and 1.2 has its records sealed and opened by fetch-rs after rustls'
// handshake (src/records.rs). These run real clients (node:https, node:tls, curl, openssl
// s_client) over both: every suite, key updates, renegotiation, resumption, bodies around the
// record size, and records that are tampered with or too large.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { Duplex } from "node:stream";
import { test } from "node:test";
import { promisify } from "node:util";
import { Response, Server } from "../dist/index.js";
import { sleep, waitFor } from "./helpers.mjs";
import { A, CA, h1TextClient } from "./tls-helpers.mjs";

const run = promisify(execFile);

async function startTls(options = {}) {
  const server = new Server({ port: 0, host: "127.0.0.1", tls: A, ...options });
  server.addEventListener("fetch", async (e) => {
    const url = new URL(e.request.url);
    if (e.request.method === "POST") return e.respondWith(new Response(await e.request.arrayBuffer()));
    const n = Number(url.pathname.split("/")[2] ?? 0);
    e.respondWith(new Response(pattern(n), { headers: { "content-type": "application/octet-stream" } }));
  });
  await server.listen();
  return server;
}

/** Bytes that differ along the body, so that a lost, repeated or reordered record shows. */
const pattern = (n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + (i >>> 9)) % 251));

/** One request on a fresh connection: status, body, the negotiated version and suite. */
function request(port, path, options = {}) {
  const { body, ...rest } = options;
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: "127.0.0.1", port, path, ca: CA, servername: "localhost", agent: false, ...rest },
      (res) => {
        const chunks = [];
        const { name, version } = res.socket.getCipher();
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks), name, version }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const SUITES = [
  ["TLSv1.3", "TLS_AES_128_GCM_SHA256"],
  ["TLSv1.3", "TLS_AES_256_GCM_SHA384"],
  ["TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256"],
  ["TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"],
  ["TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"],
  ["TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305"],
];

test("every suite of TLS 1.3 and 1.2: bodies around the 16 KiB record size each way, byte-exact", async () => {
  const server = await startTls();
  try {
    for (const [version, suite] of SUITES) {
      const options = { minVersion: version, maxVersion: version, ciphers: suite };
      for (const n of [0, 1, 16_366, 16_384, 16_385, 32_769, 100_003]) {
        const got = await request(server.port, `/size/${n}`, options);
        assert.equal(got.version, version);
        assert.equal(got.name, suite);
        assert.equal(got.status, 200);
        assert.ok(got.body.equals(pattern(n)), `${suite}: GET of ${n} bytes differs`);
      }
      const body = pattern(50_000).reverse();
      const echo = await request(server.port, "/", { ...options, method: "POST", body });
      assert.ok(echo.body.equals(body), `${suite}: the echoed body differs`);
    }
    assert.equal(server.stats().tlsHandshakeFailures, 0);
  } finally {
    await server.close();
  }
});

async function hasTool(name, arg) {
  try {
    await run(name, [arg]);
    return true;
  } catch {
    return false;
  }
}

test("curl --tlsv1.3 and --tls-max 1.2", async (t) => {
  if (!(await hasTool("curl", "--version"))) return t.skip("curl is not installed");
  const server = await startTls();
  const ca = new URL("./fixtures/tls/ca.pem", import.meta.url).pathname;
  try {
    for (const flags of [["--tlsv1.3"], ["--tlsv1.2", "--tls-max", "1.2"]]) {
      const { stdout } = await run(
        "curl",
        [
          "-s",
          ...flags,
          "--cacert",
          ca,
          "--resolve",
          `localhost:${server.port}:127.0.0.1`,
          "-o",
          "-",
          "-w",
          "\n%{http_code}",
          `https://localhost:${server.port}/size/20000`,
          `https://localhost:${server.port}/size/7`,
        ],
        { encoding: "latin1", maxBuffer: 1 << 20 },
      );
      // Two answers on one connection, each followed by its status.
      const expected = pattern(20_000).toString("latin1") + "\n200" + pattern(7).toString("latin1") + "\n200";
      assert.equal(stdout, expected, flags.join(" "));
    }
  } finally {
    await server.close();
  }
});

test("openssl s_client key updates (K asks for ours, k does not): requests before and after are answered", async (t) => {
  if (!(await hasTool("openssl", "version"))) return t.skip("openssl is not installed");
  const server = await startTls();
  // Not -ign_eof: with it s_client sends "K" and "k" as data, not as key updates.
  const { client, out: output } = sClient(server.port, []);
  const out = () => output.text;
  const answers = () => out().split("HTTP/1.1 200").length - 1;
  // The server's KeyUpdate as s_client's -msg shows what it receives.
  const updatesIn = () => (out().match(/<<< TLS 1\.3, Handshake \[length 0005\], KeyUpdate/g) ?? []).length;
  const get = (n) => `GET /size/${n} HTTP/1.1\nHost: localhost\n\n`;
  try {
    await waitFor(() => out().includes("Verify return code: 0"), 5_000);
    client.stdin.write(get(5));
    await waitFor(() => answers() === 1, 5_000);
    // A key update asking for the server's: the server answers with its own.
    client.stdin.write("K\n");
    await waitFor(() => updatesIn() === 1, 5_000);
    client.stdin.write(get(17_000));
    await waitFor(() => answers() === 2, 5_000);
    // One that does not ask: the server only takes the client's next key.
    client.stdin.write("k\n");
    await sleep(50);
    client.stdin.write(get(6));
    await waitFor(() => answers() === 3, 5_000);
    assert.equal(updatesIn(), 1, "the server sends a KeyUpdate only when asked");
    // Twice more, asked: each answered, and requests still served.
    for (let i = 2; i <= 3; i++) {
      client.stdin.write("K\n");
      await waitFor(() => updatesIn() === i, 5_000);
      client.stdin.write(get(100));
      await waitFor(() => answers() === 2 + i, 5_000);
    }
  } finally {
    client.kill();
    await server.close();
  }
});

test("openssl s_client with a HelloRetryRequest (a key share for P-521, which the server lacks) is served", async (t) => {
  if (!(await hasTool("openssl", "version"))) return t.skip("openssl is not installed");
  const server = await startTls();
  const { client, out: output } = sClient(server.port, ["-groups", "P-521:P-256"]);
  try {
    await waitFor(() => output.text.includes("Verify return code: 0"), 5_000);
    // Two ClientHellos: the second after the server's retry request.
    assert.equal((output.text.match(/>>> TLS 1\.3, Handshake \[length [0-9a-f]+\], ClientHello/g) ?? []).length, 2);
    client.stdin.write("GET /size/20000 HTTP/1.1\nHost: localhost\n\n");
    await waitFor(() => output.text.includes(pattern(20_000).subarray(-64).toString("latin1")), 5_000);
  } finally {
    client.kill();
    await server.close();
  }
});

/**
 * `openssl s_client` over TLS 1.3 (or `version`) to the server on `port`, trusting the test
 * CA, with `-crlf` and `-msg` (each handshake message shown) and `extra` arguments;
 * `out.text` gathers what it prints.
 */
function sClient(port, extra, version = "-tls1_3") {
  const ca = new URL("./fixtures/tls/ca.pem", import.meta.url).pathname;
  const client = spawn("openssl", [
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    "-CAfile",
    ca,
    "-servername",
    "localhost",
    version,
    ...extra,
    "-crlf",
    "-msg",
  ]);
  const out = { text: "" };
  client.stdout.setEncoding("latin1");
  client.stdout.on("data", (d) => (out.text += d));
  client.stderr.on("data", (d) => (out.text += d));
  return { client, out };
}

test("openssl s_client -tls1_2 renegotiating (R): refused with a no_renegotiation warning", async (t) => {
  if (!(await hasTool("openssl", "version"))) return t.skip("openssl is not installed");
  const server = await startTls();
  const { client, out: output } = sClient(server.port, [], "-tls1_2");
  const out = () => output.text;
  try {
    await waitFor(() => out().includes("Verify return code: 0"), 5_000);
    client.stdin.write("GET /size/5 HTTP/1.1\nHost: localhost\n\n");
    await waitFor(() => out().includes("HTTP/1.1 200"), 5_000);
    client.stdin.write("R\n");
    // As rustls answers it: a warning; s_client then gives up the connection itself.
    await waitFor(() => out().includes("<<< TLS 1.2, Alert [length 0002], warning no_renegotiation"), 5_000);
    const got = await request(server.port, "/size/7", { maxVersion: "TLSv1.2" });
    assert.ok(got.body.equals(pattern(7)));
    assert.equal(got.version, "TLSv1.2");
  } finally {
    client.kill();
    await server.close();
  }
});

/**
 * A TLS client whose records pass through `tap` on their way out: it may change them
 * (`change(chunk)` returns what is sent) once `armed`. Resolves once connected.
 */
async function tappedClient(port, options = {}) {
  const raw = net.connect(port, "127.0.0.1");
  await new Promise((resolve, reject) => raw.once("connect", resolve).once("error", reject));
  const tap = { change: null, closed: false };
  raw.on("close", () => (tap.closed = true));
  const wire = new Duplex({
    read() {},
    write(chunk, _enc, done) {
      raw.write(tap.change ? tap.change(chunk) : chunk, done);
    },
  });
  // Everything the server sent, as it came (its records).
  const received = [];
  raw.on("data", (d) => {
    received.push(d);
    wire.push(d);
  });
  raw.on("end", () => wire.push(null));
  const s = tls.connect({ socket: wire, ca: CA, servername: "localhost", ALPNProtocols: ["http/1.1"], ...options });
  await new Promise((resolve, reject) => s.once("secureConnect", resolve).once("error", reject));
  let text = "";
  let error = null;
  s.setEncoding("latin1");
  s.on("data", (d) => (text += d));
  s.on("error", (e) => (error = e));
  return { s, raw, tap, text: () => text, error: () => error, received: () => Buffer.concat(received) };
}

test("TLS 1.3 records the server seals hold whole 16-byte blocks (zero padding where there is room), full ones no padding", async () => {
  const server = await startTls();
  try {
    for (const suite of ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]) {
      const c = await tappedClient(server.port, { minVersion: "TLSv1.3", maxVersion: "TLSv1.3", ciphers: suite });
      assert.equal(c.s.getCipher().name, suite);
      const answers = () => c.text().split("HTTP/1.1 200").length - 1;
      const get = async (n) => {
        const before = answers();
        c.s.write(`GET /size/${n} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
        const tail = n === 0 ? "\r\n\r\n" : pattern(n).toString("latin1");
        await waitFor(() => answers() === before + 1 && c.text().endsWith(tail));
      };
      // The handshake's records and the tickets (sealed by rustls) come before the first answer.
      await get(3);
      const from = c.received().length;
      // Answers of every length modulo 16 (the head's length varies with the body's), and
      // bodies that fill records of 2^14 bytes of content.
      const sizes = [...Array.from({ length: 40 }, (_, i) => i), 16_366, 16_384, 16_385, 40_000];
      for (const n of sizes) await get(n);
      const wire = c.received().subarray(from);
      let at = 0;
      let records = 0;
      let full = 0;
      while (at < wire.length) {
        assert.ok(wire.length - at >= 5, `${suite}: a whole record header`);
        const len = wire.readUInt16BE(at + 3);
        assert.equal(wire[at], 0x17, `${suite}: application_data outside`);
        // The inner plaintext: content, its type, padding (RFC 8446 section 5.2), tag apart.
        const inner = len - 16;
        assert.ok(inner <= 16_385, `${suite}: inner plaintext of ${inner} bytes, over 2^14 + 1`);
        if (inner === 16_385) full++;
        else assert.equal(inner % 16, 0, `${suite}: inner plaintext of ${inner} bytes, not whole blocks`);
        at += 5 + len;
        records++;
      }
      assert.equal(at, wire.length, `${suite}: whole records`);
      assert.ok(records >= sizes.length && full > 0, `${suite}: ${records} records, ${full} full`);
      c.s.destroy();
    }
  } finally {
    await server.close();
  }
});

test("a tampered record (bad tag) closes its connection with bad_record_mac; others keep being served", async () => {
  const server = await startTls();
  try {
    for (const version of ["TLSv1.3", "TLSv1.2"]) await tampered(server, { minVersion: version, maxVersion: version });
  } finally {
    await server.close();
  }
});

async function tampered(server, options) {
  {
    const c = await tappedClient(server.port, options);
    assert.equal(c.s.getProtocol(), options.maxVersion);
    const other = await h1TextClient(server.port);
    c.s.write("GET /size/3 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    await waitFor(() => c.text().includes("\r\n\r\n"));
    // The next record's last byte (its tag) flipped.
    c.tap.change = (chunk) => {
      const b = Buffer.from(chunk);
      if (b[0] === 0x17) b[b.length - 1] ^= 1;
      return b;
    };
    c.s.write("GET /size/4 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    await waitFor(() => c.tap.closed, 5_000);
    assert.match(String(c.error()?.message), /bad record mac/i, options.maxVersion);
    assert.equal(c.text().split("HTTP/1.1 200").length - 1, 1, "the tampered request is not answered");
    // The other connection, opened before, and a new one are served.
    other.s.write("GET /size/9 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    await waitFor(() => other.text().endsWith(pattern(9).toString("latin1")));
    other.s.destroy();
    const got = await request(server.port, "/size/16385");
    assert.ok(got.body.equals(pattern(16_385)));
  }
}

test("a record over 2^14 + 256 bytes (TLS 1.2: + 2,048) closes with record_overflow; one byte under the limit waits for its rest", async () => {
  const server = await startTls();
  try {
    // The largest ciphertext each version allows: 16,640 and 18,432 bytes.
    for (const [version, limit] of [
      ["TLSv1.3", 16_640],
      ["TLSv1.2", 18_432],
    ]) {
      const options = { minVersion: version, maxVersion: version };
      const header = (len) => Buffer.from([0x17, 3, 3, len >> 8, len & 0xff, 1, 2, 3]);
      const c = await tappedClient(server.port, options);
      c.s.write("GET /size/3 HTTP/1.1\r\nHost: localhost\r\n\r\n");
      await waitFor(() => c.text().includes("\r\n\r\n"));
      // A header claiming the largest ciphertext allowed, then part of it: the server waits
      // for the rest rather than failing.
      c.raw.write(header(limit));
      await sleep(100);
      assert.equal(c.tap.closed, false, `${version}: a record at the limit is waited for`);
      c.raw.destroy();
      const d = await tappedClient(server.port, options);
      d.s.write("GET /size/3 HTTP/1.1\r\nHost: localhost\r\n\r\n");
      await waitFor(() => d.text().includes("\r\n\r\n"));
      // One byte over: closed at once, with the alert.
      d.raw.write(header(limit + 1));
      await waitFor(() => d.tap.closed, 5_000);
      assert.match(String(d.error()?.message), /record overflow/i, version);
      const got = await request(server.port, "/size/5", options);
      assert.ok(got.body.equals(pattern(5)));
    }
  } finally {
    await server.close();
  }
});

test("requests that come with the client's Finished, and a record split across reads after it, are answered", async () => {
  // A guard of the read buffer the handshake's leftover bytes start (round twenty-five).
  const server = await startTls();
  try {
    for (const version of ["TLSv1.3", "TLSv1.2"]) {
      const raw = net.connect(server.port, "127.0.0.1");
      await new Promise((resolve, reject) => raw.once("connect", resolve).once("error", reject));
      // The ClientHello goes at once; everything after it is held, then sent in two writes.
      const held = [];
      let first = true;
      const wire = new Duplex({
        read() {},
        write(chunk, _enc, done) {
          if (first) {
            first = false;
            return raw.write(chunk, done);
          }
          held.push(Buffer.from(chunk));
          done();
        },
      });
      raw.on("data", (d) => wire.push(d));
      raw.on("end", () => wire.push(null));
      const s = tls.connect({
        socket: wire,
        ca: CA,
        servername: "localhost",
        minVersion: version,
        maxVersion: version,
      });
      let text = "";
      s.setEncoding("latin1");
      s.on("data", (d) => (text += d));
      // TLS 1.2's client waits for the server's Finished, which comes after its own.
      if (version === "TLSv1.3")
        await new Promise((resolve, reject) => s.once("secureConnect", resolve).once("error", reject));
      else await waitFor(() => held.length > 0);
      const before = held.length;
      if (version === "TLSv1.2") {
        raw.write(Buffer.concat(held.splice(0)));
        await new Promise((resolve, reject) => s.once("secureConnect", resolve).once("error", reject));
      }
      s.write("GET /size/3 HTTP/1.1\r\nHost: localhost\r\n\r\n");
      s.write("GET /size/20000 HTTP/1.1\r\nHost: localhost\r\n\r\n");
      await waitFor(() => held.length >= (version === "TLSv1.3" ? before + 2 : 2));
      const all = Buffer.concat(held.splice(0));
      // All but the last 7 bytes in one write (with TLS 1.3, the client's Finished too).
      raw.write(all.subarray(0, all.length - 7));
      await sleep(50);
      raw.write(all.subarray(all.length - 7));
      const want = pattern(3).toString("latin1");
      const big = pattern(20_000).toString("latin1");
      await waitFor(() => text.includes(want) && text.endsWith(big), 5_000);
      assert.equal(text.split("HTTP/1.1 200").length - 1, 2, version);
      assert.equal(s.getProtocol(), version);
      s.destroy();
    }
  } finally {
    await server.close();
  }
});

test("a resumed session (TLS 1.3 ticket, TLS 1.2 abbreviated handshake) is served on the same record path", async () => {
  const server = await startTls();
  try {
    for (const version of ["TLSv1.3", "TLSv1.2"]) {
      const agent = new https.Agent({ keepAlive: false, maxCachedSessions: 10 });
      const reused = [];
      for (const n of [3, 20_000, 5]) {
        const got = await new Promise((resolve, reject) => {
          const options = { agent, minVersion: version, maxVersion: version, ca: CA, servername: "localhost" };
          const req = https.get({ host: "127.0.0.1", port: server.port, path: `/size/${n}`, ...options }, (res) => {
            const chunks = [];
            reused.push(res.socket.isSessionReused());
            res.on("data", (c) => chunks.push(c));
            res.on("end", () => resolve(Buffer.concat(chunks)));
            res.on("error", reject);
          });
          req.on("error", reject);
        });
        assert.ok(got.equals(pattern(n)), `${version}: ${n} bytes`);
        // A TLS 1.3 ticket comes after the handshake: one turn for it to be taken.
        await sleep(20);
      }
      assert.deepEqual(reused, [false, true, true], version);
      agent.destroy();
    }
  } finally {
    await server.close();
  }
});

test("plain HTTP and garbage on the TLS port get rustls' alert at once (the ClientHello is read in whole records)", async () => {
  const server = await startTls();
  try {
    const reply = (data) =>
      new Promise((resolve) => {
        let got = Buffer.alloc(0);
        const s = net.connect(server.port, "127.0.0.1", () => s.write(data));
        s.on("data", (d) => (got = Buffer.concat([got, d])));
        s.on("close", () => resolve(got));
        s.on("error", () => {});
      });
    // A plain request's first five bytes read as a record header would claim 12,064 bytes.
    for (const junk of [
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
      Buffer.from([0x16, 0x04, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]),
    ]) {
      const got = await reply(junk);
      assert.equal(got[0], 0x15, `an alert record answers ${JSON.stringify(String(junk).slice(0, 8))}`);
    }
    const ok = await request(server.port, "/size/2");
    assert.ok(ok.body.equals(pattern(2)));
  } finally {
    await server.close();
  }
});
