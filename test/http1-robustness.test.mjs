// HTTP/1.1 robustness over raw sockets (issue 4; DESIGN.md section 4): malformed and hostile
// request bytes, framing ambiguities (request smuggling), limits and slow clients. Each vector
// asserts the status sequence the server answers, whether it closed the connection, and that a
// fresh connection is still served afterwards. Expectations follow RFC 9112 / RFC 9110; where the
// RFC allows more than one answer, `any(...)` lists them and a `check` pins what must hold for all.
//
// Run with: node --test --test-concurrency=1 test/http1-robustness.test.mjs
import assert from "node:assert/strict";
import net from "node:net";
import { after, describe, test } from "node:test";
import { Response } from "../dist/index.js";
import { pattern, request, start } from "./helpers.mjs";

const KiB = 1024;

// ---------------------------------------------------------------------------------------------
// Servers: one per distinct option set, created on first use, each recording what its listener saw.

const SERVER_OPTIONS = {
  default: {},
  // Small enough that a body over it is cheap to send.
  smallBody: { maxBodySize: 1 * KiB },
  // Below hyper's 8 KiB minimum read buffer, so it shows whether the option is honoured.
  smallHeaders: { maxHeaderSize: 4 * KiB },
  // Slowloris vectors: a header timeout short enough for a test.
  slowloris: { headerTimeout: 500 },
  // A small body read before the listener runs is bounded by the listener timeout.
  slowBody: { timeout: 500 },
};

const servers = new Map();

async function serverFor(kind) {
  let s = servers.get(kind);
  if (s === undefined) {
    const seen = [];
    const errors = [];
    const ctx = await start((event) => {
      const req = event.request;
      // Recorded before anything that can throw, so `seen` counts every listener call.
      const rec = { method: req.method, url: req.url, path: null, host: null, xa: req.headers.get("x-a"), body: null };
      seen.push(rec);
      const url = new URL(req.url);
      rec.path = url.pathname;
      rec.host = url.host;
      event.respondWith(
        (async () => {
          const body = req.body === null ? "" : Buffer.from(await req.arrayBuffer()).toString("latin1");
          rec.body = body;
          return new Response(`${req.method} ${url.pathname} ${body.length}\n${body}`, {
            headers: { "x-path": url.pathname },
          });
        })(),
      );
    }, SERVER_OPTIONS[kind]);
    ctx.server.addEventListener("error", (e) => errors.push(e.error));
    s = { ...ctx, seen, errors };
    servers.set(kind, s);
  }
  return s;
}

after(async () => {
  for (const s of servers.values()) await s.server.close();
});

// ---------------------------------------------------------------------------------------------
// Raw exchange and response parsing.

/**
 * Connects, writes `parts` (`gapMs` apart), then reads until the server closes, nothing arrives
 * for `idleMs` after the last write or byte, or `maxMs` passes. `closed` is true only when the
 * server ended the connection (FIN or RST), not when we gave up waiting.
 */
function exchange(port, parts, { gapMs = 0, idleMs = 400, maxMs = 10_000, end = false } = {}) {
  return new Promise((resolve) => {
    const started = Date.now();
    const sock = net.connect(port, "127.0.0.1");
    const chunks = [];
    const receivedBeforePart = [];
    let closed = false;
    let closedAtMs = null;
    let done = false;
    let idle;
    let nextPart;
    const hard = setTimeout(() => finish(), maxMs);
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(idle);
      clearTimeout(hard);
      clearTimeout(nextPart);
      sock.destroy();
      const buf = Buffer.concat(chunks);
      resolve({ buf, text: buf.toString("latin1"), closed, closedAtMs, receivedBeforePart });
    };
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(finish, idleMs);
    };
    const serverGone = () => {
      if (!closed) {
        closed = true;
        closedAtMs = Date.now() - started;
      }
      finish();
    };
    const write = (i) => {
      if (done || closed) return;
      receivedBeforePart[i] = Buffer.concat(chunks).toString("latin1");
      sock.write(parts[i]);
      if (i + 1 < parts.length) {
        clearTimeout(idle);
        nextPart = setTimeout(() => write(i + 1), gapMs);
      } else {
        if (end) sock.end();
        arm();
      }
    };
    sock.on("connect", () => write(0));
    sock.on("data", (d) => {
      chunks.push(d);
      if (receivedBeforePart.length === parts.length) arm();
    });
    sock.on("end", serverGone);
    sock.on("close", serverGone);
    // ECONNRESET / EPIPE: the server reset or closed while we were still writing.
    sock.on("error", serverGone);
  });
}

/** Splits a byte stream into HTTP/1.x responses; anything unparseable ends the list with {garbage}. */
function parseResponses(text) {
  const out = [];
  let i = 0;
  while (i < text.length) {
    if (!text.startsWith("HTTP/", i)) {
      out.push({ garbage: text.slice(i, i + 64) });
      break;
    }
    const headEnd = text.indexOf("\r\n\r\n", i);
    if (headEnd === -1) {
      out.push({ garbage: text.slice(i, i + 64) });
      break;
    }
    const [statusLine, ...lines] = text.slice(i, headEnd).split("\r\n");
    const status = Number(statusLine.split(" ")[1]);
    const headers = {};
    for (const l of lines) {
      const c = l.indexOf(":");
      const name = l.slice(0, c).trim().toLowerCase();
      const value = l.slice(c + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    i = headEnd + 4;
    let body = "";
    if (status < 200 || status === 204 || status === 304) {
      // no body
    } else if (/chunked/i.test(headers["transfer-encoding"] ?? "")) {
      for (;;) {
        const le = text.indexOf("\r\n", i);
        if (le === -1) break;
        const size = parseInt(text.slice(i, le), 16);
        i = le + 2;
        if (!(size > 0)) {
          const te = text.indexOf("\r\n\r\n", i - 2);
          i = te === -1 ? text.length : te + 4;
          break;
        }
        body += text.slice(i, i + size);
        i += size + 2;
      }
    } else if (headers["content-length"] !== undefined) {
      const n = Number(headers["content-length"]);
      body = text.slice(i, i + n);
      i += n;
    } else {
      body = text.slice(i);
      i = text.length;
    }
    out.push({ status, headers, body });
  }
  return out;
}

/** Alternatives the RFC allows: each a status, null (no response), or a status sequence. */
const any = (...alternatives) => ({ any: alternatives });
const seq = (s) => (s === null ? [] : Array.isArray(s) ? s : [s]);

// ---------------------------------------------------------------------------------------------
// The vectors. `send` is a string (latin1) or Buffer, or an array of them written `gapMs` apart.
// status: a number, a sequence, null (answers nothing), any(...), or undefined (not checked).
// close: true / false, or undefined when either is allowed.
// check(seen, responses, result): further assertions; `seen` is what the listener recorded.

const H = "Host: x\r\n";
const GET = (path = "/", extra = "") => `GET ${path} HTTP/1.1\r\n${H}${extra}\r\n`;
const SMUGGLED = `GET /smuggled HTTP/1.1\r\n${H}\r\n`;
const notSmuggled = (seen) =>
  assert.ok(
    !seen.some((r) => r.url.includes("/smuggled")),
    `a hidden request was executed: ${JSON.stringify(seen.map((r) => r.url))}`,
  );
const listenerNotCalled = (seen) => assert.equal(seen.length, 0, `the listener ran: ${JSON.stringify(seen)}`);
const paths =
  (...expected) =>
  (seen) =>
    assert.deepEqual(
      seen.map((r) => r.path),
      expected,
    );
const cleanValue = (seen) => {
  for (const r of seen) {
    assert.ok(!/[\0\r\n]/.test(r.xa ?? ""), `a NUL/CR/LF reached the listener: ${JSON.stringify(r.xa)}`);
  }
};
const bin = (s) => Buffer.from(s, "latin1");
const manyHeaders = (count, valueSize) =>
  Array.from({ length: count }, (_, i) => `X-H${i}: ${"v".repeat(valueSize)}\r\n`).join("");
// A TLS 1.2 ClientHello record start, as a browser would send to an https:// URL on this port.
const TLS_HELLO = Buffer.from(
  "16030100a5010000a10303" + "00".repeat(32) + "000020c02bc02fc02cc030cca9cca8c013c014009c009d002f0035000a01000058",
  "hex",
);

const H2_PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/** The server's first h2 frame is SETTINGS (RFC 9113 3.4): type 0x4 on stream 0. */
const assertSettingsFrame = (buf) => {
  assert.ok(buf.length >= 9, `no h2 frame came back: ${JSON.stringify(buf.toString("latin1"))}`);
  assert.equal(buf[3], 0x4, "the first frame is not SETTINGS");
  assert.equal(buf.readUInt32BE(5) & 0x7fffffff, 0);
};

const vectors = [
  // --- baselines and request-line leniency
  {
    name: "a valid GET is answered and the connection kept alive",
    send: GET("/ok"),
    status: 200,
    close: false,
    check: paths("/ok"),
  },
  {
    name: "an empty line before the request-line is ignored (RFC 9112 2.2)",
    send: `\r\n${GET("/after-crlf")}`,
    status: 200,
    close: false,
    check: paths("/after-crlf"),
  },

  // --- Host (RFC 9112 3.2: 400 for a missing, repeated or invalid Host in HTTP/1.1)
  {
    name: "HTTP/1.1 without Host gets 400",
    send: "GET /nohost HTTP/1.1\r\n\r\n",
    status: 400,
    close: undefined,
    check: listenerNotCalled,
  },
  {
    name: "repeated identical Host gets 400",
    send: `GET /h HTTP/1.1\r\n${H}${H}\r\n`,
    status: 400,
    close: undefined,
    check: listenerNotCalled,
  },
  {
    name: "repeated differing Host gets 400",
    send: `GET /h HTTP/1.1\r\n${H}Host: y\r\n\r\n`,
    status: 400,
    close: undefined,
    check: listenerNotCalled,
  },
  {
    name: "an invalid Host value gets 400",
    send: "GET /h HTTP/1.1\r\nHost: exa mple\r\n\r\n",
    status: 400,
    close: undefined,
    check: listenerNotCalled,
  },
  {
    name: "an invalid Host value with an absolute-form target gets 400",
    send: "GET http://example.com/abs HTTP/1.1\r\nHost: exa mple\r\n\r\n",
    status: 400,
    close: undefined,
    check: listenerNotCalled,
  },
  {
    name: "HTTP/1.0 without Host is served and closed",
    send: "GET /ten HTTP/1.0\r\n\r\n",
    status: 200,
    close: true,
    check: paths("/ten"),
  },
  {
    name: "absolute-form target wins over Host (RFC 9112 3.2.2)",
    send: `GET http://example.com/abs?q=1 HTTP/1.1\r\nHost: other\r\n\r\n`,
    status: 200,
    close: false,
    check: (seen) => {
      paths("/abs")(seen);
      assert.equal(seen[0].host, "example.com");
    },
  },
  {
    name: "asterisk-form OPTIONS is answered, seen as the path /*",
    send: `OPTIONS * HTTP/1.1\r\n${H}\r\n`,
    status: any(200, 204),
    close: false,
    check: paths("/*"),
  },
  {
    name: "asterisk-form for GET gets 400",
    send: `GET * HTTP/1.1\r\n${H}\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "authority-form for GET (only CONNECT may use it) gets 400",
    send: `GET evil.example:80 HTTP/1.1\r\n${H}\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a Host with a non-numeric port gets 400",
    send: "GET /h HTTP/1.1\r\nHost: x:abc\r\n\r\n",
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a Host with a port over 65535 gets 400",
    send: "GET /h HTTP/1.1\r\nHost: x:99999\r\n\r\n",
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a Host with userinfo gets 400",
    send: "GET /h HTTP/1.1\r\nHost: good.example@evil.example\r\n\r\n",
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "an absolute-form target with userinfo gets 400",
    send: `GET http://good.example@evil.example/ HTTP/1.1\r\n${H}\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a Host in upper case with the default port is seen as the URL parser writes it",
    send: "GET /h HTTP/1.1\r\nHost: EXAMPLE.test:80\r\n\r\n",
    status: 200,
    close: false,
    check: (seen) => assert.equal(seen[0]?.url, "http://example.test/h"),
  },
  {
    name: "dot segments are resolved: /a/./x/../y is /a/y",
    send: GET("/a/./x/../y"),
    status: 200,
    close: false,
    check: paths("/a/y"),
  },
  {
    name: "%2e dot segments are resolved: /url/%2e%2e/y is /y",
    send: GET("/url/%2e%2e/y"),
    status: 200,
    close: false,
    check: (seen) => {
      paths("/y")(seen);
      assert.equal(seen[0].url, "http://x/y");
    },
  },
  {
    name: "dot segments cannot climb above the root: /../../secret.txt is /secret.txt",
    send: GET("/../../secret.txt"),
    status: 200,
    close: false,
    check: (seen) => assert.equal(seen[0]?.url, "http://x/secret.txt"),
  },

  // --- Content-Length (RFC 9112 6.3 item 5: invalid => 400 and close)
  {
    name: "non-numeric Content-Length gets 400 and closes",
    send: `POST /cl HTTP/1.1\r\n${H}Content-Length: abc\r\n\r\nhello`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "negative Content-Length gets 400 and closes",
    send: `POST /cl HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\nhello`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "Content-Length with a + sign gets 400 and closes",
    send: `POST /cl HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "hex Content-Length gets 400 and closes",
    send: `POST /cl HTTP/1.1\r\n${H}Content-Length: 0x5\r\n\r\nhello`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "Content-Length overflowing 64 bits gets 400 or 413 and closes",
    send: `POST /cl HTTP/1.1\r\n${H}Content-Length: 99999999999999999999999\r\n\r\nhello`,
    status: any(400, 413),
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "repeated differing Content-Length gets 400 and closes",
    send: `POST /cl HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a Content-Length list of differing values gets 400 and closes",
    send: `POST /cl HTTP/1.1\r\n${H}Content-Length: 5, 6\r\n\r\nhello!`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "repeated identical Content-Length gets 400 and closes (as node:http)",
    send: `POST /cl HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello${GET("/next")}`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a Content-Length list of identical values gets 400 and closes",
    send: `POST /cl HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n\r\nhello`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a repeated Content-Length after a valid pipelined request: the first is answered, then 400",
    send: `${GET("/first")}POST /cl HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`,
    status: [200, 400],
    close: true,
    check: paths("/first"),
  },
  {
    name: "a GET with a Content-Length body is framed by it",
    send: `GET /a HTTP/1.1\r\n${H}Content-Length: 13\r\n\r\nGET /x HTTP/1${GET("/b")}`,
    status: [200, 200],
    close: false,
    check: paths("/a", "/b"),
  },

  // --- Transfer-Encoding and smuggling (RFC 9112 6.1, 6.3 items 3-4)
  {
    name: "Content-Length with Transfer-Encoding: the connection closes and a pipelined request is not run",
    send: `POST /clte HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    status: any(400, 200),
    close: true,
    check: notSmuggled,
  },
  {
    name: "Transfer-Encoding before Content-Length: same",
    send: `POST /tecl HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    status: any(400, 200),
    close: true,
    check: notSmuggled,
  },
  {
    name: "Transfer-Encoding overrides Content-Length: 0 (the chunked body is not a request)",
    send: `POST /te0 HTTP/1.1\r\n${H}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`,
    status: any(400, 200),
    close: true,
    check: (seen) => {
      notSmuggled(seen);
      if (seen.length > 0) assert.equal(seen[0].body, SMUGGLED);
    },
  },
  {
    name: "unknown Transfer-Encoding (gzip, chunked not final) gets 400/501 and closes",
    send: `POST /te HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\nhello`,
    status: any(400, 501),
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "Transfer-Encoding: identity gets 400/501 and closes",
    send: `POST /te HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello`,
    status: any(400, 501),
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "obfuscated Transfer-Encoding: xchunked with Content-Length gets 400/501, no smuggling",
    send: `POST /te HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    status: any(400, 501),
    close: true,
    check: (seen) => {
      notSmuggled(seen);
      listenerNotCalled(seen);
    },
  },
  {
    name: "Transfer-Encoding: chunked, identity (chunked not final) gets 400/501 and closes",
    send: `POST /te HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`,
    status: any(400, 501),
    close: true,
    check: (seen) => {
      notSmuggled(seen);
      listenerNotCalled(seen);
    },
  },
  {
    name: "Transfer-Encoding split over two lines (chunked then identity) gets 400/501 and closes",
    send: `POST /te HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`,
    status: any(400, 501),
    close: true,
    check: (seen) => {
      notSmuggled(seen);
      listenerNotCalled(seen);
    },
  },
  {
    name: "Transfer-Encoding: chunked twice (two lines) gets 400 and closes (as node:http)",
    send: `POST /te2 HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`,
    status: 400,
    close: true,
    check: (seen) => {
      notSmuggled(seen);
      listenerNotCalled(seen);
    },
  },
  {
    name: "Transfer-Encoding: chunked, chunked gets 400 and closes",
    send: `POST /te2 HTTP/1.1\r\n${H}Transfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "'chunked ' (trailing whitespace is OWS, RFC 9110 5.5) is chunked",
    send: `POST /tews HTTP/1.1\r\n${H}Transfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    status: 200,
    close: false,
    check: (seen) => assert.equal(seen[0]?.body, "hello"),
  },
  {
    name: "'chunked ' with Content-Length: closes, no smuggling",
    send: `POST /tews HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n${SMUGGLED}`,
    status: any(400, 200),
    close: true,
    check: notSmuggled,
  },
  {
    name: "Transfer-Encoding on a folded line with Content-Length: closes, no smuggling",
    send: `POST /tefold HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    status: any(400, 200),
    close: true,
    check: notSmuggled,
  },
  {
    name: "whitespace between a header name and its colon gets 400 (RFC 9112 5.1)",
    send: `POST /tesp HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    status: 400,
    close: true,
    check: (seen) => {
      notSmuggled(seen);
      listenerNotCalled(seen);
    },
  },
  {
    name: "Transfer-Encoding: Chunked (coding names are case-insensitive) is chunked",
    send: `POST /tecase HTTP/1.1\r\n${H}Transfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    status: 200,
    close: false,
    check: (seen) => assert.equal(seen[0]?.body, "hello"),
  },
  {
    name: "HTTP/1.0 with Transfer-Encoding is faulty framing: closes, no smuggling (RFC 9112 6.1)",
    send: `POST /te10 HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    status: any(400, 200),
    close: true,
    check: notSmuggled,
  },

  // --- invalid characters (RFC 9112 2.2: SHOULD 400 and close on a grammar violation)
  {
    name: "NUL in the method gets 400 and closes",
    send: `G\0ET / HTTP/1.1\r\n${H}\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a non-token character in the method gets 400 and closes",
    send: `GE(T / HTTP/1.1\r\n${H}\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "NUL in the target gets 400 and closes",
    send: `GET /a\0b HTTP/1.1\r\n${H}\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a control character in the target gets 400 and closes",
    send: `GET /a\x01b HTTP/1.1\r\n${H}\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a space inside the target gets 400 and closes",
    send: `GET /a b HTTP/1.1\r\n${H}\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "NUL in a header name gets 400 and closes",
    send: `GET / HTTP/1.1\r\n${H}X-\0A: 1\r\n\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a non-token character in a header name gets 400 and closes",
    send: `GET / HTTP/1.1\r\n${H}X(A): 1\r\n\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a header line without a colon gets 400 and closes",
    send: `GET / HTTP/1.1\r\n${H}NoColonHere\r\n\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "NUL in a header value is rejected or replaced (RFC 9110 5.5)",
    send: `GET /nul HTTP/1.1\r\n${H}X-A: a\0b\r\n\r\n`,
    status: any(400, 200),
    close: undefined,
    check: cleanValue,
  },
  {
    name: "bare CR in a header value is rejected or replaced (RFC 9112 2.2)",
    send: `GET /cr HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n`,
    status: any(400, 200),
    close: undefined,
    check: cleanValue,
  },
  {
    name: "bare CR in the request line gets 400 and closes",
    send: `GET /cr HTTP/1.1\r${H}\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "bare LF line endings get 400 and close (as node:http)",
    send: `GET /lf HTTP/1.1\n${H.replace("\r\n", "\n")}X-A: 1\n\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a bare LF ending the request line gets 400",
    send: `GET /lf HTTP/1.1\n${H}\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a bare LF ending the head gets 400",
    send: `GET /lf HTTP/1.1\r\n${H}\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "bare LF line endings trickled a byte at a time get 400",
    send: [..."GET /lf HTTP/1.1\nHost: x\n\n"],
    gapMs: 5,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a bare LF in the header section gets 400, never part of a value",
    send: `GET /lf HTTP/1.1\r\n${H}X-B: a\nX-A: injected\r\n\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "obs-text (bytes 0x80-0xff) in a header value is accepted",
    send: bin(`GET /obs-text HTTP/1.1\r\n${H}X-A: caf\xe9\r\n\r\n`),
    status: 200,
    close: false,
    check: (seen) => assert.equal(seen.length, 1),
  },
  {
    name: "obs-fold (a header continuation line) is rejected or unfolded (RFC 9112 5.2)",
    send: `GET /fold HTTP/1.1\r\n${H}X-A: a\r\n b\r\n\r\n`,
    status: any(400, 200),
    close: undefined,
    check: (seen) => {
      if (seen.length > 0) assert.match(seen[0].xa ?? "", /^a +b$/);
    },
  },
  {
    name: "whitespace before the first header line is rejected or that line ignored (RFC 9112 2.2)",
    send: `GET /ws HTTP/1.1\r\n Host: evil\r\n${H}\r\n`,
    status: any(400, 200),
    close: undefined,
    check: (seen) => {
      if (seen.length > 0) assert.equal(seen[0].host, "x");
    },
  },

  // --- versions
  {
    name: "a lowercase HTTP-name gets 400 and closes",
    send: `GET / http/1.1\r\n${H}\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a request line without a version (HTTP/0.9) gets 400 and closes",
    send: "GET /\r\n\r\n",
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "HTTP/3.0 in a request line gets 400/505 and closes",
    send: `GET / HTTP/3.0\r\n${H}\r\n`,
    status: any(400, 505),
    close: true,
    check: listenerNotCalled,
  },

  // --- sizes: request line (414) and header section (431)
  {
    name: "an 8 KiB target under the 16 KiB header limit is served",
    send: GET(`/${"a".repeat(8 * KiB)}`),
    status: 200,
    close: false,
  },
  {
    name: "an over-long request line (20 KiB target) gets 414",
    send: GET(`/${"a".repeat(20 * KiB)}`),
    status: 414,
    close: undefined,
    check: listenerNotCalled,
  },
  {
    name: "a 20 KiB header section of many headers gets 431",
    send: GET("/big", manyHeaders(80, 250)),
    status: 431,
    close: undefined,
    check: listenerNotCalled,
  },
  {
    name: "a single 20 KiB header value gets 431",
    send: GET("/big", `X-A: ${"v".repeat(20 * KiB)}\r\n`),
    status: 431,
    close: undefined,
    check: listenerNotCalled,
  },
  {
    name: "a 6 KiB header section over a configured maxHeaderSize of 4 KiB gets 431",
    server: "smallHeaders",
    send: GET("/big", `X-A: ${"v".repeat(6 * KiB)}\r\n`),
    status: 431,
    close: undefined,
    check: listenerNotCalled,
  },
  {
    // More than 100 header fields is refused whatever their size: hyper parses heads into
    // a fixed table of 100 (README, "Limits"), as uWebSockets caps them at 98.
    name: "120 small headers (4 KiB) are refused with 431: at most 100 fields",
    send: GET("/many", manyHeaders(120, 20)),
    status: 431,
    close: true,
    check: listenerNotCalled,
  },

  // --- chunked bodies
  {
    name: "chunk-size overflowing 64 bits gets 400/413 and closes",
    send: `POST /chunk HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n`,
    status: any(400, 413),
    close: true,
  },
  {
    name: "chunk extensions are accepted and ignored",
    send: `POST /ext HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n6;a="b c";flag\r\n world\r\n0;last=1\r\n\r\n`,
    status: 200,
    close: false,
    check: (seen) => assert.equal(seen[0]?.body, "hello world"),
  },
  {
    name: "a chunk size followed by a space gets 400 and closes (as node:http)",
    send: `POST /chunk HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n`,
    status: 400,
    close: true,
  },
  {
    name: "a chunk size followed by a tab gets 400 and closes",
    send: `POST /chunk HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\t\r\nhello\r\n0\r\n\r\n`,
    status: 400,
    close: true,
  },
  {
    name: "whitespace between a chunk size and its extension is allowed (RFC 9112 7.1.1 BWS)",
    send: `POST /chunk HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5 ;a=b\r\nhello\r\n0\r\n\r\n`,
    status: 200,
    close: false,
    check: (seen) => assert.equal(seen[0]?.body, "hello"),
  },
  {
    name: "a non-hex chunk size gets 400 and closes",
    send: `POST /chunk HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`,
    status: 400,
    close: true,
  },
  {
    name: "a negative chunk size gets 400 and closes",
    send: `POST /chunk HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n`,
    status: 400,
    close: true,
  },
  {
    name: "chunk data longer than its size gets 400 and closes",
    send: `POST /chunk HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n`,
    status: 400,
    close: true,
  },
  {
    name: "trailers after the last chunk are accepted and the next request is framed right",
    send: `POST /trailers HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: v\r\nX-Other: w\r\n\r\n${GET("/after-trailers")}`,
    status: [200, 200],
    close: false,
    check: (seen) => {
      paths("/trailers", "/after-trailers")(seen);
      assert.equal(seen[0].body, "hello");
    },
  },

  // --- pipelining and persistence
  {
    name: "three pipelined GETs in one write are answered in order",
    send: GET("/p1") + GET("/p2") + GET("/p3"),
    status: [200, 200, 200],
    close: false,
    check: (seen, responses) => {
      paths("/p1", "/p2", "/p3")(seen);
      assert.deepEqual(
        responses.map((r) => r.headers?.["x-path"]),
        ["/p1", "/p2", "/p3"],
      );
    },
  },
  {
    name: "pipelined POST (length), POST (chunked) and GET are answered in order",
    send:
      `POST /q1 HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello` +
      `POST /q2 HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n` +
      GET("/q3"),
    status: [200, 200, 200],
    close: false,
    check: (seen, responses) => {
      paths("/q1", "/q2", "/q3")(seen);
      assert.deepEqual(
        seen.map((r) => r.body),
        ["hello", "abc", ""],
      );
      assert.deepEqual(
        responses.map((r) => r.headers?.["x-path"]),
        ["/q1", "/q2", "/q3"],
      );
    },
  },
  {
    name: "Connection: close answers once and closes; a pipelined request after it is not run",
    send: GET("/last", "Connection: close\r\n") + SMUGGLED,
    status: 200,
    close: true,
    check: (seen) => {
      notSmuggled(seen);
      paths("/last")(seen);
    },
  },
  {
    name: "HTTP/1.0 without keep-alive is answered and closed",
    send: "GET /ten HTTP/1.0\r\nHost: x\r\n\r\n",
    status: 200,
    close: true,
  },
  {
    name: "HTTP/1.0 with Connection: keep-alive stays open for a second request",
    send: "GET /k1 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\nGET /k2 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    status: [200, 200],
    close: false,
    check: paths("/k1", "/k2"),
  },
  {
    name: "Expect: 100-continue gets 100 Continue before the body is sent, then the response",
    send: [`POST /expect HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 5\r\n\r\n`, "hello"],
    gapMs: 300,
    status: [100, 200],
    close: false,
    check: (seen, _responses, result) => {
      assert.match(result.receivedBeforePart[1] ?? "", /^HTTP\/1\.1 100 /, "no 100 Continue before the body was sent");
      assert.equal(seen[0]?.body, "hello");
    },
  },

  // --- half-close: the client sends its requests, then FIN (`nc -N`, `socket.end(request)`)
  {
    name: "half-close: a GET with Connection: close then FIN is answered, then closed",
    send: GET("/hc", "Connection: close\r\n"),
    end: true,
    status: 200,
    close: true,
    check: paths("/hc"),
  },
  {
    name: "half-close: a keep-alive GET then FIN is answered, then closed",
    send: GET("/hc"),
    end: true,
    status: 200,
    close: true,
    check: paths("/hc"),
  },
  {
    name: "half-close: an HTTP/1.0 GET then FIN is answered, then closed",
    send: "GET /hc HTTP/1.0\r\n\r\n",
    end: true,
    status: 200,
    close: true,
    check: paths("/hc"),
  },
  {
    name: "half-close: a POST with its body then FIN is answered, then closed",
    send: `POST /hc HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`,
    end: true,
    status: 200,
    close: true,
    check: (seen) => assert.equal(seen[0]?.body, "hello"),
  },
  {
    name: "half-close: two pipelined requests then FIN are both answered, in order",
    send: GET("/hc1") + GET("/hc2"),
    end: true,
    status: [200, 200],
    close: true,
    check: paths("/hc1", "/hc2"),
  },
  {
    name: "half-close mid-body: the incomplete request is not run",
    send: `POST /hc HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nhello`,
    end: true,
    status: any(null, 400),
    close: true,
    check: (seen) =>
      assert.ok(
        seen.every((r) => r.body === null),
        "the listener read a truncated body",
      ),
  },

  // --- body limits (maxBodySize 1 KiB on this server)
  {
    name: "a body at exactly maxBodySize is accepted",
    server: "smallBody",
    send: `POST /limit HTTP/1.1\r\n${H}Content-Length: ${KiB}\r\n\r\n${"b".repeat(KiB)}`,
    status: 200,
    close: false,
    check: (seen) => assert.equal(seen[0]?.body.length, KiB),
  },
  {
    name: "a declared Content-Length over maxBodySize gets 413 before the listener runs",
    server: "smallBody",
    send: `POST /limit HTTP/1.1\r\n${H}Content-Length: ${4 * KiB}\r\n\r\n${"b".repeat(4 * KiB)}`,
    status: 413,
    close: undefined,
    check: listenerNotCalled,
  },
  {
    name: "Expect: 100-continue with Content-Length over maxBodySize gets 413 and no 100",
    server: "smallBody",
    send: `POST /limit HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: ${4 * KiB}\r\n\r\n`,
    status: 413,
    close: undefined,
    check: listenerNotCalled,
  },
  {
    name: "a chunked body passing maxBodySize gets 413",
    server: "smallBody",
    send: `POST /limit HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${`400\r\n${"c".repeat(KiB)}\r\n`.repeat(4)}0\r\n\r\n`,
    status: 413,
    close: undefined,
  },

  // --- slow clients (headerTimeout 500 ms on this server)
  {
    name: "slowloris: a partial header then silence is closed within the header timeout",
    server: "slowloris",
    send: `GET /slow HTTP/1.1\r\n${H}X-A: 1\r\n`,
    idleMs: 3000,
    status: any(null, 408),
    close: true,
    check: (seen, _r, result) => {
      listenerNotCalled(seen);
      assert.ok(result.closedAtMs !== null && result.closedAtMs < 2000, `closed after ${result.closedAtMs} ms`);
    },
  },
  {
    name: "slowloris: a header trickled a byte at a time is closed within the header timeout",
    server: "slowloris",
    send: [...`GET /trickle HTTP/1.1\r\n${H}X-Pad: ${"p".repeat(20)}\r\n\r\n`],
    gapMs: 100,
    idleMs: 2000,
    status: any(null, 408),
    close: true,
    check: (seen, _r, result) => {
      listenerNotCalled(seen);
      assert.ok(result.closedAtMs !== null && result.closedAtMs < 2000, `closed after ${result.closedAtMs} ms`);
    },
  },

  // --- slow small bodies (timeout 500 ms on this server): read before the listener runs
  {
    name: "a small body that stops half-way gets 408 within the timeout, and the connection closes",
    server: "slowBody",
    send: `POST /half HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\n${"h".repeat(50)}`,
    idleMs: 3000,
    status: 408,
    close: true,
    check: (seen, _r, result) => {
      listenerNotCalled(seen);
      assert.ok(result.closedAtMs !== null && result.closedAtMs < 2000, `closed after ${result.closedAtMs} ms`);
    },
  },
  {
    name: "a small body trickled a byte at a time past the timeout gets 408, and the connection closes",
    server: "slowBody",
    send: [`POST /trickle HTTP/1.1\r\n${H}Content-Length: 30\r\n\r\n`, ..."t".repeat(30)],
    gapMs: 100,
    idleMs: 2000,
    status: 408,
    close: true,
    check: (seen, _r, result) => {
      listenerNotCalled(seen);
      assert.ok(result.closedAtMs !== null && result.closedAtMs < 2500, `closed after ${result.closedAtMs} ms`);
    },
  },

  // --- not HTTP/1.1 at all
  {
    name: "plain-text garbage gets 400 and closes",
    send: "HELLO WORLD\r\n\r\n",
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "binary junk gets 400 or nothing, and closes",
    send: pattern(512, 42),
    status: any(400, null),
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a TLS ClientHello gets 400 or nothing, and closes",
    send: TLS_HELLO,
    status: any(400, null),
    close: true,
    check: listenerNotCalled,
  },
  {
    name: "a connection that sends nothing and half-closes gets nothing and is closed",
    send: "",
    end: true,
    status: null,
    close: true,
  },
  {
    // h2c with prior knowledge is supported: only require no crash and continued service.
    name: "an HTTP/2 connection preface on the cleartext port does not disturb the server",
    send: H2_PREFACE,
    status: undefined,
    close: undefined,
  },
  {
    name: "an h2c preface in a 1-byte first segment gets h2 SETTINGS",
    send: [H2_PREFACE.slice(0, 1), H2_PREFACE.slice(1)],
    gapMs: 100,
    status: undefined,
    check: (_seen, _r, result) => assertSettingsFrame(result.buf),
  },
  {
    name: "an h2c preface in a 2-byte first segment gets h2 SETTINGS",
    send: [H2_PREFACE.slice(0, 2), H2_PREFACE.slice(2)],
    gapMs: 100,
    status: undefined,
    check: (_seen, _r, result) => assertSettingsFrame(result.buf),
  },
  {
    name: "an h2c preface trickled a byte at a time gets h2 SETTINGS",
    send: [...H2_PREFACE],
    gapMs: 5,
    status: undefined,
    check: (_seen, _r, result) => assertSettingsFrame(result.buf),
  },
  {
    name: "PRIX (a method that starts like the h2 preface) is HTTP/1.1",
    send: `PRIX /prix HTTP/1.1\r\n${H}\r\n`,
    status: 200,
    close: false,
    check: (seen) => assert.equal(seen[0]?.method, "PRIX"),
  },
  {
    name: "a head that differs from the h2 preface only late (PRI * HTTP/1.1) is HTTP/1.1",
    send: `PRI * HTTP/1.1\r\n${H}\r\n`,
    status: 400,
    close: true,
    check: listenerNotCalled,
  },
];

// ---------------------------------------------------------------------------------------------

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

describe("HTTP/1.1 robustness vectors", () => {
  test("there are at least 40 vectors with distinct names", () => {
    assert.ok(vectors.length >= 40, `${vectors.length} vectors`);
    assert.equal(new Set(vectors.map((v) => v.name)).size, vectors.length);
  });

  for (const v of vectors) {
    test(v.name, async (t) => {
      const s = await serverFor(v.server ?? "default");
      s.seen.length = 0;
      const parts = (Array.isArray(v.send) ? v.send : [v.send]).map((p) => (typeof p === "string" ? bin(p) : p));
      const result = await exchange(s.server.port, parts, { gapMs: v.gapMs, idleMs: v.idleMs, end: v.end });
      const responses = parseResponses(result.text);
      const seen = s.seen.slice();
      const observed =
        `statuses ${JSON.stringify(responses.map((r) => r.status ?? "garbage"))}, ` +
        `closed ${result.closed}${result.closed ? ` after ${result.closedAtMs} ms` : ""}, ` +
        `head ${JSON.stringify(result.text.slice(0, 120))}`;

      t.diagnostic(`${observed}; listener saw ${JSON.stringify(seen.map((r) => r.path ?? r.url))}`);

      // (a) the status sequence
      if (v.status !== undefined) {
        const got = responses.map((r) => r.status ?? "garbage");
        const allowed = v.status?.any !== undefined ? v.status.any.map(seq) : [seq(v.status)];
        assert.ok(
          allowed.some((a) => JSON.stringify(a) === JSON.stringify(got)),
          `expected ${allowed.map((a) => JSON.stringify(a)).join(" or ")}; observed ${observed}`,
        );
      }
      // (b) whether the server closed the connection
      if (v.close !== undefined) {
        const want = v.close ? "closed" : "kept open";
        assert.equal(result.closed, v.close, `expected the connection ${want}; observed ${observed}`);
      }
      if (v.check) v.check(seen, responses, result);
      // request.url is always what the URL parser gives.
      for (const r of seen) assert.equal(new URL(r.url).href, r.url);

      // (c) the server still serves a normal request on a fresh connection
      const res = await withTimeout(request(s.base, "/health"), 5000, "the follow-up request");
      assert.equal(res.status, 200);
      assert.match(res.body.toString(), /^GET \/health 0/);
    });
  }
});
