// HTTPS: certificates, ALPN, SNI, reload, client certificates and configuration errors,
// with real clients (node:https, node:http2, node:tls, curl) over the fixture certificates.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import https from "node:https";
import net from "node:net";
import { once } from "node:events";
import { Duplex } from "node:stream";
import { test } from "node:test";
import { promisify } from "node:util";
import { Response, Server } from "../dist/index.js";
import { sleep, waitFor } from "./helpers.mjs";
import {
  A,
  B,
  CA,
  h1TextClient,
  h2Request,
  h2Session,
  httpsRequest,
  peerName,
  pem,
  tlsConnect,
} from "./tls-helpers.mjs";

const run = promisify(execFile);

async function startTls(listener, options = {}) {
  const server = new Server({ port: 0, host: "127.0.0.1", tls: A, ...options });
  if (listener) server.addEventListener("fetch", listener);
  await server.listen();
  return server;
}

/** The handshake failure count reaches `n` (it is counted just after the socket closes). */
async function failuresReach(server, n) {
  for (let i = 0; i < 100 && server.stats().tlsHandshakeFailures < n; i++) await sleep(20);
  assert.ok(server.stats().tlsHandshakeFailures >= n, JSON.stringify(server.stats()));
}

const echoUrl = (e) => e.respondWith(Response.json({ url: e.request.url, cert: e.clientCertificate }));

async function hasCurl() {
  try {
    await run("curl", ["--version"]);
    return true;
  } catch {
    return false;
  }
}

test("node:https gets HTTP/1.1 over TLS, with https:// request and server URLs", async () => {
  const server = await startTls(echoUrl);
  try {
    const r = await httpsRequest(server.port, "/a?b=1");
    assert.equal(r.status, 200);
    assert.equal(r.alpn, false, "node:https offers no ALPN");
    assert.equal(JSON.parse(r.body).url, `https://127.0.0.1:${server.port}/a?b=1`);
    assert.equal(JSON.parse(r.body).cert, null);
    assert.equal(server.url.protocol, "https:");
    const s = server.stats();
    assert.ok(s.tlsHandshakes >= 1);
    assert.equal(s.tlsHandshakeFailures, 0);
  } finally {
    await server.close();
  }
});

test("ALPN: a client offering h2 and http/1.1 gets h2; node:http2 is served", async () => {
  const server = await startTls(echoUrl);
  try {
    const s = await tlsConnect(server.port, { ALPNProtocols: ["h2", "http/1.1"] });
    assert.equal(s.alpnProtocol, "h2");
    s.destroy();
    const h1 = await tlsConnect(server.port, { ALPNProtocols: ["http/1.1"] });
    assert.equal(h1.alpnProtocol, "http/1.1");
    h1.destroy();
    const session = await h2Session(server.port);
    assert.equal(session.alpnProtocol, "h2");
    const r = await h2Request(session, { ":path": "/x" });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).url, `https://localhost:${server.port}/x`);
    session.close();
  } finally {
    await server.close();
  }
});

test("http2: false offers only http/1.1", async () => {
  const server = await startTls(echoUrl, { http2: false });
  try {
    const s = await tlsConnect(server.port, { ALPNProtocols: ["h2", "http/1.1"] });
    assert.equal(s.alpnProtocol, "http/1.1");
    s.destroy();
    // A client that speaks only h2 has nothing in common with the server.
    await assert.rejects(tlsConnect(server.port, { ALPNProtocols: ["h2"] }));
  } finally {
    await server.close();
  }
});

test("SNI picks the certificate of each name; others get the default", async () => {
  const server = await startTls(echoUrl, {
    tls: [
      { ...B, serverName: "b.test" },
      { ...A, serverName: "a.test" },
      { ...A }, // the default
    ],
  });
  try {
    assert.equal(await peerName(server.port, "a.test"), "a.test");
    assert.equal(await peerName(server.port, "b.test"), "b.test");
    assert.equal(await peerName(server.port, "B.TEST"), "b.test");
    assert.equal(await peerName(server.port, "other.test"), "a.test");
    // The b.test certificate verifies against the CA for its name.
    const r = await httpsRequest(server.port, "/", { servername: "b.test" });
    assert.equal(r.status, 200);
  } finally {
    await server.close();
  }
});

test("SNI: a wildcard serverName matches one label; without a default the first entry serves", async () => {
  const server = await startTls(echoUrl, {
    tls: [
      { ...A, serverName: "a.test" },
      { ...B, serverName: "*.b.test" },
    ],
  });
  try {
    assert.equal(await peerName(server.port, "x.b.test"), "b.test");
    assert.equal(await peerName(server.port, "x.y.b.test"), "a.test");
    assert.equal(await peerName(server.port, "unknown.test"), "a.test");
  } finally {
    await server.close();
  }
});

test("top-level key and cert are aliases of tls", async () => {
  const server = new Server({ port: 0, host: "127.0.0.1", key: Buffer.from(A.key), cert: [A.cert] });
  server.addEventListener("fetch", echoUrl);
  await server.listen();
  try {
    const r = await httpsRequest(server.port);
    assert.equal(r.status, 200);
    assert.equal(server.url.protocol, "https:");
  } finally {
    await server.close();
  }
});

test("an encrypted PKCS#8 key with its passphrase serves", async () => {
  const server = await startTls(echoUrl, { tls: { cert: A.cert, key: pem("a-encrypted.key"), passphrase: "secret" } });
  try {
    assert.equal((await httpsRequest(server.port)).status, 200);
  } finally {
    await server.close();
  }
});

test("setTls: new connections get the new certificate, an open one keeps its own", async () => {
  const server = await startTls(echoUrl);
  try {
    const old = await h2Session(server.port, { servername: "a.test" });
    assert.equal((await h2Request(old)).status, 200);
    await server.setTls({ ...B });
    assert.equal(await peerName(server.port, "localhost"), "b.test");
    // The connection opened before the swap goes on with its handshake's certificate.
    assert.equal(old.socket.getPeerCertificate().subject.CN, "a.test");
    assert.equal((await h2Request(old, { ":path": "/again" })).status, 200);
    old.close();
    // A bad config is refused and the current one stays.
    await assert.rejects(server.setTls({ cert: "not pem", key: A.key }), { code: "ERR_TLS_CONFIG" });
    assert.equal(await peerName(server.port, "localhost"), "b.test");
    await server.setTls([{ ...A }, { ...B, serverName: "b.test" }]);
    assert.equal(await peerName(server.port, "localhost"), "a.test");
    assert.equal(await peerName(server.port, "b.test"), "b.test");
  } finally {
    await server.close();
  }
});

test("setTls before listen changes what listen uses; on a plain server it is refused", async () => {
  const server = new Server({ port: 0, host: "127.0.0.1", tls: B });
  server.addEventListener("fetch", echoUrl);
  await server.setTls(A);
  await server.listen();
  const plain = new Server({ port: 0, host: "127.0.0.1" });
  await plain.listen();
  try {
    assert.equal(await peerName(server.port, "localhost"), "a.test");
    await assert.rejects(plain.setTls(A), { code: "ERR_INVALID_STATE" });
  } finally {
    await server.close();
    await plain.close();
  }
});

test("mTLS: a client certificate signed by ca is accepted and reaches the event", async () => {
  const server = await startTls(echoUrl, { tls: { ...A, ca: CA, requestCert: true } });
  try {
    const r = await httpsRequest(server.port, "/", { key: pem("client.key"), cert: pem("client.pem") });
    assert.equal(r.status, 200);
    const { cert } = JSON.parse(r.body);
    assert.equal(cert.subject, "CN=test client,O=fetch-rs tests");
    assert.equal(cert.issuer, "CN=fetch-rs test CA,O=fetch-rs tests");
    assert.match(cert.fingerprint256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.ok(Date.parse(cert.validFrom) < Date.now() && Date.parse(cert.validTo) > Date.now());
    // The same fingerprint node computes for the certificate.
    const { X509Certificate } = await import("node:crypto");
    assert.equal(cert.fingerprint256, new X509Certificate(pem("client.pem")).fingerprint256);
  } finally {
    await server.close();
  }
});

test("mTLS: no client certificate, or one from another CA, fails the handshake; the listener never runs", async () => {
  let calls = 0;
  const server = await startTls(
    (e) => {
      calls++;
      e.respondWith(new Response("no"));
    },
    { tls: { ...A, ca: CA, requestCert: true } },
  );
  try {
    await assert.rejects(httpsRequest(server.port));
    await assert.rejects(
      httpsRequest(server.port, "/", { key: pem("untrusted-client.key"), cert: pem("untrusted-client.pem") }),
    );
    assert.equal(calls, 0);
    await failuresReach(server, 2);
  } finally {
    await server.close();
  }
});

test("ERR_TLS_CONFIG: listen() rejects and names the problem", async () => {
  const cases = [
    [{ cert: "garbage", key: A.key }, /tls\.cert contains no PEM certificate/],
    [
      { cert: "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n", key: A.key },
      /tls\.cert is not valid PEM/,
    ],
    [{ cert: A.cert, key: "garbage" }, /tls\.key contains no PEM private key/],
    [{ cert: A.cert, key: B.key }, /tls\.key does not match the certificate/],
    [{ cert: A.cert, key: pem("a-encrypted.key") }, /tls\.key is encrypted and no passphrase was given/],
    [
      { cert: A.cert, key: pem("a-encrypted.key"), passphrase: "wrong" },
      /tls\.key could not be decrypted: wrong passphrase/,
    ],
    [{ ...A, requestCert: true }, /tls\.requestCert needs ca/],
    [{ ...A, ca: "nothing", requestCert: true }, /tls\.ca contains no PEM certificate/],
    [[{ ...A }, { ...B }], /tls\[1\]: only one entry may leave out serverName/],
    [[{ ...A }, { ...B, key: A.key, serverName: "b.test" }], /tls\[1\] \(b\.test\)\.key does not match/],
  ];
  for (const [tls, message] of cases) {
    const server = new Server({ port: 0, host: "127.0.0.1", tls });
    await assert.rejects(server.listen(), (e) => {
      assert.equal(e.code, "ERR_TLS_CONFIG", e.message);
      assert.match(e.message, message);
      return true;
    });
    await server.close();
  }
  // Shapes the JS layer refuses at once.
  assert.throws(() => new Server({ tls: { cert: A.cert } }), {
    code: "ERR_TLS_CONFIG",
    message: /tls\.key is required/,
  });
  assert.throws(() => new Server({ tls: { cert: 42, key: A.key } }), { code: "ERR_TLS_CONFIG" });
  assert.throws(() => new Server({ tls: [] }), { code: "ERR_TLS_CONFIG" });
});

test("garbage and plain HTTP on the TLS port are closed; other clients are served", async () => {
  const server = await startTls(echoUrl);
  try {
    const junk = (data) =>
      new Promise((resolve) => {
        const s = net.connect(server.port, "127.0.0.1", () => s.write(data));
        s.on("data", () => {});
        s.on("close", resolve);
        s.on("error", () => {});
      });
    await Promise.all([
      junk("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
      junk(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])),
      junk(Buffer.alloc(4096, 0xff)),
    ]);
    assert.equal((await httpsRequest(server.port)).status, 200);
    await failuresReach(server, 3);
  } finally {
    await server.close();
  }
});

test("tlsHandshakeTimeout closes a connection that never finishes its handshake", async () => {
  const server = await startTls(echoUrl, { tlsHandshakeTimeout: 200 });
  try {
    const s = net.connect(server.port, "127.0.0.1");
    s.on("error", () => {});
    const started = Date.now();
    // Half a ClientHello, then nothing.
    s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    await new Promise((r) => s.on("close", r));
    assert.ok(Date.now() - started < 5000);
    await failuresReach(server, 1);
  } finally {
    await server.close();
  }
});

test("close() sends GOAWAY to TLS HTTP/2 clients and lets open streams finish", async () => {
  let release;
  const gate = new Promise((r) => (release = r));
  const server = await startTls(async (e) => {
    await gate;
    e.respondWith(new Response("finished"));
  });
  const session = await h2Session(server.port);
  const goaway = new Promise((r) => session.once("goaway", r));
  const pending = h2Request(session);
  await sleep(100);
  const closed = server.close();
  await goaway;
  release();
  const r = await pending;
  assert.equal(r.body, "finished");
  await closed;
  session.destroy();
});

test("curl: --http2 and --http1.1 over TLS with --cacert, and mTLS with --cert/--key", async (t) => {
  if (!(await hasCurl())) return t.skip("curl is not installed (apt-get install curl)");
  const { mkdtempSync, writeFileSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "fetch-rs-tls-"));
  const file = (name, text) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const ca = file("ca.pem", CA);
  const server = await startTls(echoUrl, { tls: { ...A, ca: CA, requestCert: true } });
  const plainTls = await startTls(echoUrl);
  try {
    const curl = async (port, ...args) => {
      const { stdout } = await run("curl", [
        "-sS",
        "--cacert",
        ca,
        "-w",
        "\n%{http_version}",
        ...args,
        `https://localhost:${port}/c`,
      ]);
      const nl = stdout.lastIndexOf("\n");
      return { body: stdout.slice(0, nl), version: stdout.slice(nl + 1) };
    };
    const v2 = await curl(plainTls.port, "--http2");
    assert.equal(v2.version, "2");
    assert.equal(JSON.parse(v2.body).url, `https://localhost:${plainTls.port}/c`);
    assert.equal((await curl(plainTls.port, "--http1.1")).version, "1.1");
    const m = await curl(
      server.port,
      "--http2",
      "--cert",
      file("client.pem", pem("client.pem")),
      "--key",
      file("client.key", pem("client.key")),
    );
    assert.equal(JSON.parse(m.body).cert.subject, "CN=test client,O=fetch-rs tests");
    await assert.rejects(curl(server.port, "--http2"));
  } finally {
    await server.close();
    await plainTls.close();
  }
});

test("a large HTTPS/1.1 response reaches a client that starts reading late", async () => {
  // rustls keeps records it could not write to a full socket until the stream is flushed;
  // the end of a response must not wait for a write that never comes.
  const big = new Uint8Array(8 * 1024 * 1024).fill(42);
  const server = await startTls((e) => e.respondWith(new Response(big)));
  try {
    for (let i = 0; i < 3; i++) {
      const s = await tlsConnect(server.port, { ALPNProtocols: ["http/1.1"] });
      s.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
      s.pause();
      await sleep(300);
      let received = 0;
      const done = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`stalled after ${received} bytes`)), 10_000);
        s.on("data", (d) => {
          received += d.length;
          if (received >= big.length) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      // Then slowly, so the server often finds the socket full, the last write included.
      const tick = setInterval(() => (s.isPaused() ? s.resume() : s.pause()), 2);
      await done.finally(() => clearInterval(tick));
      s.destroy();
    }
  } finally {
    await server.close({ force: true });
  }
});

test("HTTPS/1.1 responses of every size reach a client that reads only once the socket is full", async () => {
  // A response is encrypted and sent as hyper writes it. The write during which the socket
  // fills leaves records in rustls; when it is the response's last, nothing else is written
  // after it, and the connection must still send them once the socket has room. Which size
  // ends on that write depends on the socket buffers, so sizes are tried 61 KiB apart
  // (rustls takes at most 64 KiB a write), eight connections at a time.
  const body = new Uint8Array(8 * 1024 * 1024).fill(3);
  const server = await startTls((e) => {
    e.respondWith(new Response(body.subarray(0, Number(new URL(e.request.url).searchParams.get("n")))));
  });
  const fetchPaused = async (n) => {
    const s = await tlsConnect(server.port, { ALPNProtocols: ["http/1.1"] });
    let got = Buffer.alloc(0);
    let bodyBytes = -1;
    s.on("data", (d) => {
      if (bodyBytes >= 0) return void (bodyBytes += d.length);
      got = Buffer.concat([got, d]);
      const head = got.indexOf("\r\n\r\n");
      if (head >= 0) bodyBytes = got.length - head - 4;
    });
    s.pause();
    s.write(`GET /?n=${n} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    await sleep(50);
    s.resume();
    try {
      await waitFor(() => bodyBytes >= n, 5_000);
    } catch {
      return `${n} bytes: stalled after ${bodyBytes}`;
    } finally {
      s.destroy();
    }
    return null;
  };
  try {
    const sizes = [];
    for (let n = 1024 * 1024; n < body.length; n += 61 * 1024) sizes.push(n);
    const stalled = [];
    for (let i = 0; i < sizes.length; i += 8) {
      stalled.push(...(await Promise.all(sizes.slice(i, i + 8).map(fetchPaused))).filter(Boolean));
    }
    assert.deepEqual(stalled, []);
  } finally {
    await server.close({ force: true });
  }
});

test("HTTPS/1.1 responses of one record each reach a client that stops reading until the socket is full", async () => {
  // Guard for the write half's socket writes: a record the socket has no room for must
  // leave the task woken for room. Requests go one at a time (no pipelining, so each
  // response is written as hyper flushes it, in one record of its own) to a client that
  // does not read, until the server stops taking them; then the client reads everything.
  let handled = 0;
  const body = new Uint8Array(16_000).fill(4);
  const server = await startTls((e) => {
    handled++;
    e.respondWith(new Response(body));
  });
  try {
    const s = await tlsConnect(server.port, { ALPNProtocols: ["http/1.1"] });
    let bytes = 0;
    let heads = 0;
    s.on("data", (d) => {
      bytes += d.length;
      heads += d.toString("latin1").split("HTTP/1.1 200 OK").length - 1;
    });
    s.pause();
    let sent = 0;
    while (sent < 4000) {
      s.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
      sent++;
      try {
        await waitFor(() => handled === sent, 300);
      } catch {
        break;
      }
    }
    assert.ok(sent < 4000, "the socket never filled");
    s.resume();
    try {
      await waitFor(() => heads === sent && bytes >= sent * body.length, 5_000);
    } catch {
      assert.fail(`${heads} of ${sent} responses (${bytes} bytes; ${handled} handled)`);
    }
    s.destroy();
  } finally {
    await server.close({ force: true });
  }
});

/** Decodes a chunked body that starts at `at` in `buf`; null until its last chunk is in. */
function dechunk(buf, at) {
  const parts = [];
  for (;;) {
    const eol = buf.indexOf("\r\n", at);
    if (eol < 0) return null;
    const size = parseInt(buf.subarray(at, eol).toString("latin1"), 16);
    if (size === 0) return buf.length >= eol + 4 ? Buffer.concat(parts) : null;
    if (buf.length < eol + 2 + size + 2) return null;
    parts.push(buf.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

test("a streamed HTTPS/1.1 response reaches a client that keeps stopping, and the connection serves on", async () => {
  // A response is encrypted and sent as hyper writes it; records that the full socket has no
  // room for wait in rustls, and must go out once it has room even when nothing else is
  // written after them (the stream's last chunk, then nothing until the next request).
  const chunk = new Uint8Array(256 * 1024).fill(7);
  const server = await startTls((e) => {
    if (new URL(e.request.url).pathname === "/small") return e.respondWith(new Response("small"));
    let sent = 0;
    e.respondWith(
      new Response(
        new ReadableStream({
          pull(c) {
            if (sent++ < 16) return c.enqueue(chunk);
            c.enqueue(new TextEncoder().encode("end"));
            c.close();
          },
        }),
      ),
    );
  });
  try {
    for (let i = 0; i < 3; i++) {
      const s = await tlsConnect(server.port, { ALPNProtocols: ["http/1.1"] });
      let got = Buffer.alloc(0);
      s.on("data", (d) => (got = Buffer.concat([got, d])));
      s.write("GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n");
      s.pause();
      await sleep(200);
      // Read in bursts, so the server often finds the socket full, the last write included.
      const tick = setInterval(() => (s.isPaused() ? s.resume() : s.pause()), 2);
      let body = null;
      try {
        await waitFor(() => {
          const head = got.indexOf("\r\n\r\n");
          body = head < 0 ? null : dechunk(got, head + 4);
          return body !== null;
        });
      } catch {
        assert.fail(`stalled after ${got.length} bytes`);
      } finally {
        clearInterval(tick);
      }
      s.resume();
      assert.equal(body.length, 16 * chunk.length + 3);
      assert.equal(body.subarray(-3).toString(), "end");
      assert.ok(body.subarray(0, -3).every((b) => b === 7));
      got = Buffer.alloc(0);
      s.write("GET /small HTTP/1.1\r\nHost: localhost\r\n\r\n");
      await waitFor(() => got.toString("latin1").endsWith("\r\n\r\nsmall"));
      s.destroy();
    }
  } finally {
    await server.close({ force: true });
  }
});

test("HTTPS/1.1 on one connection: requests one at a time, sixteen in one write, then Connection: close", async () => {
  const server = await startTls((e) => e.respondWith(Response.json({ path: new URL(e.request.url).pathname })));
  try {
    const { s, text, ended } = await h1TextClient(server.port);
    const paths = () => [...text().matchAll(/\{"path":"([^"]*)"\}/g)].map((m) => m[1]);
    const get = (path, extra = "") => `GET ${path} HTTP/1.1\r\nHost: localhost\r\n${extra}\r\n`;
    const expected = [];
    for (let i = 0; i < 20; i++) {
      expected.push(`/one/${i}`);
      s.write(get(`/one/${i}`));
      await waitFor(() => paths().length === expected.length);
    }
    const batch = Array.from({ length: 16 }, (_, i) => `/batch/${i}`);
    expected.push(...batch);
    s.write(batch.map((p) => get(p)).join(""));
    await waitFor(() => paths().length === expected.length);
    // The client closes after this answer: all of it comes, then the end of the stream.
    expected.push("/last");
    s.write(get("/last", "Connection: close\r\n"));
    await ended;
    assert.deepEqual(paths(), expected);
    assert.equal(text().split("HTTP/1.1 200 OK").length - 1, expected.length);
    assert.match(text().slice(text().lastIndexOf("HTTP/1.1 200")), /\r\nconnection: close\r\n/i);
  } finally {
    await server.close();
  }
});

test("HTTPS/1.1 reads: a request over many records, two in one record, a body over many, then close_notify", async () => {
  const server = await startTls(async (e) => {
    const len = (await e.request.arrayBuffer()).byteLength;
    e.respondWith(new Response(`${new URL(e.request.url).pathname}:${len};`));
  });
  try {
    const { s, text, ended } = await h1TextClient(server.port);
    // One record per byte: several arrive in one read of the socket.
    for (const c of "GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n") s.write(c);
    // Two requests in one record.
    s.write("GET /two HTTP/1.1\r\nHost: localhost\r\n\r\nGET /three HTTP/1.1\r\nHost: localhost\r\n\r\n");
    // A body of many records (16 KiB each at most).
    const body = Buffer.alloc(100_000, 7);
    s.write(`POST /four HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${body.length}\r\n\r\n`);
    s.write(body);
    // close_notify while answers may still be on their way: all of them still come.
    s.end();
    await ended;
    const bodies = text()
      .split("\r\n\r\n")
      .slice(1)
      .map((b) => b.split("HTTP/1.1")[0]);
    assert.deepEqual(bodies, ["/one:0;", "/two:0;", "/three:0;", `/four:${body.length};`], text());
  } finally {
    await server.close();
  }
});

test("HTTPS/1.1 reads that wait: records cut into pauses, a request in pieces, and an upload the socket cannot hold", async () => {
  // Guard for the read half's socket reads: a read that finds part of a record, or nothing,
  // must leave the task woken when the rest comes; one that fills its buffer reads on.
  const server = await startTls(async (e) => {
    const len = (await e.request.arrayBuffer()).byteLength;
    e.respondWith(new Response(`${new URL(e.request.url).pathname}:${len};`));
  });
  try {
    // Between the client's TLS and the socket: once `trickle` is set, every write goes out
    // in pieces of 7 bytes a few milliseconds apart, so the server sees records in parts.
    const raw = net.connect(server.port, "127.0.0.1");
    await new Promise((resolve) => raw.once("connect", resolve));
    let trickle = false;
    const pipe = new Duplex({
      read() {},
      write(chunk, _enc, done) {
        if (!trickle) return raw.write(chunk, done);
        (async () => {
          for (let at = 0; at < chunk.length; at += 7) {
            raw.write(chunk.subarray(at, at + 7));
            await sleep(2);
          }
        })().then(() => done(), done);
      },
      final(done) {
        raw.end(done);
      },
    });
    raw.on("data", (d) => pipe.push(d));
    raw.on("end", () => pipe.push(null));
    raw.on("error", (err) => pipe.destroy(err));
    const s = await tlsConnect(server.port, { socket: pipe, ALPNProtocols: ["http/1.1"] });
    let text = "";
    s.setEncoding("latin1");
    s.on("data", (d) => (text += d));
    const ended = new Promise((resolve) => s.on("end", resolve));
    trickle = true;
    s.write("GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n");
    await waitFor(() => text.includes("/one:0;"));
    // A request written in three records with pauses between them, a body in two.
    s.write("POST /two HTTP/1.1\r\nHost: loc");
    await sleep(30);
    s.write("alhost\r\nContent-Length: 10\r\n\r\n01234");
    await sleep(30);
    s.write("56789");
    await waitFor(() => text.includes("/two:10;"));
    // 4 MiB at full speed, in 16 KiB records: the server's reads fill their buffer.
    trickle = false;
    const body = Buffer.alloc(4 * 1024 * 1024, 5);
    s.write(`POST /three HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${body.length}\r\n\r\n`);
    s.write(body);
    await waitFor(() => text.includes(`/three:${body.length};`), 10_000);
    // A last request in pieces, then close_notify: its answer still comes.
    trickle = true;
    s.end("GET /four HTTP/1.1\r\nHost: localhost\r\n\r\n");
    await ended;
    const bodies = text
      .split("\r\n\r\n")
      .slice(1)
      .map((b) => b.split("HTTP/1.1")[0]);
    assert.deepEqual(bodies, ["/one:0;", "/two:10;", `/three:${body.length};`, "/four:0;"], text);
    raw.destroy();
  } finally {
    await server.close({ force: true });
  }
});

test("HTTPS/1.1 ends: a request and close_notify in one read are answered; a socket that ends without close_notify is closed", async () => {
  // Guard for the read half's calls of rustls' reader, made only where the records processed
  // brought bytes or an end (a close_notify, or the socket's end, which only the reader
  // reports): a read that missed the socket's end would read it again and again, and here
  // the network may run on this very thread.
  const server = await startTls(async (e) => {
    const len = (await e.request.arrayBuffer()).byteLength;
    e.respondWith(new Response(`${new URL(e.request.url).pathname}:${len};`));
  });
  // A TLS client whose bytes go to the socket at once, or, while `hold` is set, are kept
  // and sent in one write (`flush`), so that the server reads them in one go. Its TLS end
  // (close_notify) does not end the socket: `raw.end()` does, with or without one.
  async function client() {
    const raw = net.connect(server.port, "127.0.0.1");
    await once(raw, "connect");
    const state = { hold: false, held: [] };
    const pipe = new Duplex({
      read() {},
      write(chunk, _enc, done) {
        if (state.hold) state.held.push(chunk);
        else raw.write(chunk);
        done();
      },
      final(done) {
        done();
      },
    });
    raw.on("data", (d) => pipe.push(d));
    raw.on("end", () => pipe.push(null));
    raw.on("error", (err) => pipe.destroy(err));
    const s = await tlsConnect(server.port, { socket: pipe, ALPNProtocols: ["http/1.1"] });
    s.on("error", () => {});
    let text = "";
    s.setEncoding("latin1");
    s.on("data", (d) => (text += d));
    const closed = new Promise((resolve) => raw.on("close", resolve));
    const flush = () => {
      raw.write(Buffer.concat(state.held));
      state.held = [];
      state.hold = false;
    };
    return { raw, s, state, flush, closed, text: () => text };
  }
  // The timer is cleared once the promise settles: no failure left to fire after the test.
  async function within(promise, ms, what) {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new assert.AssertionError({ message: `${what}: not within ${ms} ms` })), ms);
    });
    try {
      return await Promise.race([promise, late]);
    } finally {
      clearTimeout(timer);
    }
  }
  try {
    // A request, a second one and close_notify, all in one write: both are answered, then
    // the server ends the connection.
    {
      const c = await client();
      c.state.hold = true;
      c.s.write("GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n");
      c.s.end("POST /two HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc");
      await waitFor(() => c.state.held.length >= 3);
      await sleep(20);
      c.flush();
      await within(c.closed, 5000, "the connection's end after close_notify");
      assert.match(c.text(), /\/one:0;[^]*\/two:3;/, c.text());
    }
    // The socket ends without close_notify in the middle of a head, and after a whole
    // request: the server closes the connection (the answer may or may not come first).
    for (const sent of ["GET /three HTTP/1.1\r\nHo", "GET /four HTTP/1.1\r\nHost: localhost\r\n\r\n"]) {
      const c = await client();
      c.s.write("GET /warm HTTP/1.1\r\nHost: localhost\r\n\r\n");
      await waitFor(() => c.text().includes("/warm:0;"));
      c.s.write(sent);
      await sleep(30);
      c.raw.end();
      await within(c.closed, 5000, `the connection's end after ${JSON.stringify(sent)}`);
    }
    assert.equal((await httpsRequest(server.port)).status, 200);
  } finally {
    await server.close({ force: true });
  }
});

test("a corrupted record after the handshake closes that connection only", async () => {
  const server = await startTls(echoUrl);
  try {
    const raw = net.connect(server.port, "127.0.0.1");
    const s = await tlsConnect(server.port, { socket: raw, ALPNProtocols: ["http/1.1"] });
    s.on("error", () => {});
    const closed = new Promise((resolve) => s.on("close", resolve));
    // Application data whose authentication tag cannot match.
    raw.write(Buffer.concat([Buffer.from([0x17, 0x03, 0x03, 0x00, 0x40]), Buffer.alloc(0x40, 0x5a)]));
    await closed;
    assert.equal((await httpsRequest(server.port)).status, 200);
  } finally {
    await server.close();
  }
});

test("AES-128-GCM is chosen over the client's AES-256-GCM; a client listing ChaCha20 first gets it", async () => {
  const server = await startTls(echoUrl);
  try {
    const suite = async (ciphers) => {
      const s = await tlsConnect(server.port, ciphers ? { ciphers } : {});
      const name = s.getCipher().standardName;
      s.destroy();
      return name;
    };
    // Node's (OpenSSL's) default order puts AES-256-GCM first.
    assert.equal(await suite(), "TLS_AES_128_GCM_SHA256");
    const chacha = "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384";
    assert.equal(await suite(chacha), "TLS_CHACHA20_POLY1305_SHA256");
    assert.equal(await suite("TLS_AES_256_GCM_SHA384"), "TLS_AES_256_GCM_SHA384");
    // TLS 1.2 alike.
    const s = await tlsConnect(server.port, { maxVersion: "TLSv1.2" });
    assert.match(s.getCipher().standardName, /AES_128_GCM/);
    s.destroy();
  } finally {
    await server.close();
  }
});

test("a returning client resumes its TLS session", async () => {
  const server = await startTls(echoUrl);
  try {
    // TLS 1.3 sends the ticket after the handshake: read a response first.
    const first = await tlsConnect(server.port, { ALPNProtocols: ["http/1.1"] });
    const session = await new Promise((resolve) => {
      first.once("session", resolve);
      first.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    });
    first.destroy();
    const second = await tlsConnect(server.port, { ALPNProtocols: ["http/1.1"], session });
    assert.equal(second.isSessionReused(), true);
    second.destroy();
  } finally {
    await server.close({ force: true });
  }
});

test("serve() passes the client certificate in its info", async () => {
  const { serve } = await import("../dist/index.js");
  const server = serve({
    port: 0,
    host: "127.0.0.1",
    tls: { ...A, ca: CA, requestCert: true },
    fetch: (_req, info) => new Response(info.clientCertificate?.subject ?? "none"),
  });
  try {
    const r = await httpsRequest(server.port, "/", { key: pem("client.key"), cert: pem("client.pem") });
    assert.equal(r.body, "CN=test client,O=fetch-rs tests");
  } finally {
    await server.close();
  }
});

test("headerTimeout holds over TLS: a client that shakes hands and sends no request is closed", async () => {
  const server = await startTls(echoUrl, { headerTimeout: 300, idleTimeout: 0 });
  try {
    const s = await tlsConnect(server.port, { ALPNProtocols: ["http/1.1"] });
    const started = Date.now();
    await new Promise((r) => s.on("close", r));
    const took = Date.now() - started;
    assert.ok(took >= 250 && took < 5000, `closed after ${took} ms`);
  } finally {
    await server.close({ force: true });
  }
});

test("key exchange: X25519, P-256 and P-384 each complete over TLS 1.3, X25519 and P-256 over 1.2", async () => {
  const server = await startTls(echoUrl);
  try {
    // Over TLS 1.2 the client's groups also bound the curve of an ECDSA certificate (P-256 here):
    // the client offers P-256 too, and the server's order picks X25519.
    const cases = { "TLSv1.3": ["X25519", "P-256", "P-384"], "TLSv1.2": ["X25519:P-256", "P-256"] };
    for (const [maxVersion, curves] of Object.entries(cases)) {
      for (const ecdhCurve of curves) {
        const s = await tlsConnect(server.port, { ecdhCurve, maxVersion, ALPNProtocols: ["http/1.1"] });
        assert.equal(s.getProtocol(), maxVersion);
        const key = s.getEphemeralKeyInfo();
        assert.equal(
          key.name ?? key.type,
          ecdhCurve === "P-256" ? "prime256v1" : ecdhCurve === "P-384" ? "secp384r1" : "X25519",
        );
        s.write("GET /kx HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let text = "";
        for await (const d of s) text += d;
        assert.match(text, /^HTTP\/1\.1 200 [^]*"url":"https:\/\/localhost(:\d+)?\/kx"/);
      }
    }
  } finally {
    await server.close();
  }
});

test("a 3 MiB body each way keeps every byte over TLS 1.3 and 1.2 (records of 16 KiB, read in pieces)", async () => {
  // Bytes that differ record to record, so a lost, repeated or reordered record shows.
  const body = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < body.length; i++) body[i] = (i * 7919 + (i >>> 11)) & 0xff;
  const server = await startTls(async (e) => e.respondWith(new Response(await e.request.arrayBuffer())));
  try {
    for (const maxVersion of ["TLSv1.3", "TLSv1.2"]) {
      const received = await new Promise((resolve, reject) => {
        const options = { host: "127.0.0.1", port: server.port, method: "POST", ca: CA, servername: "localhost" };
        const req = https.request({ ...options, agent: false, maxVersion }, (res) => {
          const chunks = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () => resolve(Buffer.concat(chunks)));
          res.on("error", reject);
        });
        req.on("error", reject);
        req.end(body);
      });
      assert.equal(received.length, body.length, maxVersion);
      assert.ok(received.equals(body), `${maxVersion}: the echoed body differs`);
    }
  } finally {
    await server.close();
  }
});

test("HTTPS/1.1 guard: answers around the 16 KiB record size, pipelined and one at a time, byte-exact; a request one byte a record with pauses", async () => {
  // Guard for the read half's socket reads (after a wait the socket is read at once; after a
  // read that drained it, its readiness is asked first) and for the records of each answer.
  const bytes = (n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + n) % 251));
  const server = await startTls((e) => {
    const n = Number(new URL(e.request.url).pathname.split("/")[2]);
    e.respondWith(new Response(bytes(n), { headers: { "content-type": "application/octet-stream" } }));
  });
  try {
    const { s, text, ended } = await h1TextClient(server.port);
    // The answers read so far, in order: each body by its Content-Length.
    const answers = () => {
      const out = [];
      const all = text();
      let at = 0;
      for (;;) {
        const end = all.indexOf("\r\n\r\n", at);
        if (end < 0) return out;
        const len = Number(/content-length: (\d+)/i.exec(all.slice(at, end))?.[1]);
        if (all.length < end + 4 + len) return out;
        out.push(all.slice(end + 4, end + 4 + len));
        at = end + 4 + len;
      }
    };
    const get = (n) => `GET /size/${n} HTTP/1.1\r\nHost: localhost\r\n\r\n`;
    const sizes = [];
    // Head and body across one record's 16,384 bytes, two records' and four's.
    for (const edge of [16_384, 32_768, 65_536]) for (let d = -320; d <= 64; d += 32) sizes.push(edge + d);
    const expected = [];
    // All pipelined in one write.
    s.write(sizes.map(get).join(""));
    expected.push(...sizes);
    await waitFor(() => answers().length === expected.length, 10_000);
    // One at a time.
    for (const n of [16_300, 16_384, 16_500]) {
      s.write(get(n));
      expected.push(n);
      await waitFor(() => answers().length === expected.length);
    }
    // One byte a record, a pause after each: every read finds one record, drains the socket
    // and waits for the next.
    for (const c of get(16_380)) {
      s.write(c);
      await sleep(2);
    }
    expected.push(16_380);
    await waitFor(() => answers().length === expected.length);
    s.end();
    await ended;
    const got = answers();
    assert.equal(got.length, expected.length);
    expected.forEach((n, i) => assert.ok(got[i] === bytes(n).toString("latin1"), `answer ${i} (${n} bytes)`));
    assert.equal(text().split("HTTP/1.1 200 OK").length - 1, expected.length);
  } finally {
    await server.close();
  }
});
