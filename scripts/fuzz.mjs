// Fuzz: random and mutated HTTP/1.1 request bytes against a fetch-rs server in a child process,
// each case on a fresh connection, for a bounded time. After every --check-every cases it checks
// that the process is alive and still answers a normal GET. Exits non-zero if the server crashed,
// stopped answering, or logged a panic.
// Run with: node scripts/fuzz.mjs [--seconds 60] [--seed N] [--concurrency 16] [--check-every 200]
//           [--targets http1,h1-fast,h1-fast-tls,h2c,tls,tls-h2,tls-records,ws]
//
// Targets: `http1` mutated HTTP/1.1 requests; `h1-fast` pipelined runs of the plain requests the
// fast HTTP/1.1 path takes (src/fast_h1.rs: GET, HEAD, a method with a body of declared length,
// now and then at or over the 64 KiB the path reads, 100 KiB read past hyper (direct.rs) or
// over 1 MiB, with `Expect: 100-continue` or declared longer than sent; a quarter in
// HTTP/1.0, with keep-alive or without; any header names, cases and values; now and then a
// streamed answer), now and then one of them mutated, so that a connection goes from the
// fast path to hyper's at any point; `h1-fast-tls` the same over TLS 1.3 or 1.2 (ALPN
// http/1.1), where the fast path reads on while a request is out; `h2c` the HTTP/2 preface then mutated frames on the
// plain port; `tls` random bytes and mutated ClientHello records on the TLS port of a second
// server (test/fixtures/tls certificates); `tls-h2` a real TLS handshake (ALPN h2), then mutated
// frames; `tls-records` a real TLS 1.3 or 1.2 handshake (ALPN http/1.1; records done by fetch-rs,
// src/records.rs), sometimes a request, then raw record bytes past the TLS client: headers of any
// type and length, random bodies (a bad tag), in pieces; `ws` random and mutated WebSocket frames on a freshly upgraded connection, while a
// WebSocket opened at the start must keep echoing (other sockets unaffected). Each case picks one
// of the targets given (default: all eight).
//
// Reproduce a run with the same --seed (the cases depend only on it; timing can still differ).
// On failure the last cases sent are written to fuzz-failure-<seed>.json in the OS temp dir.
import { readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateRawSync, constants as zlib } from "node:zlib";
import WebSocket from "ws";
import { rssKiB, startServer } from "./child-server.mjs";
import { maskedFrame } from "./ws-frame.mjs";


function parseArgs(argv) {
  const o = { seconds: 60, seed: Date.now() % 2 ** 31, concurrency: 16, checkEvery: 200, idleMs: 150, targets: ["http1", "h1-fast", "h1-fast-tls", "h2c", "tls", "tls-h2", "tls-records", "ws"] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v < 0) throw new Error(`${a} needs a non-negative number`);
      return v;
    };
    if (a === "--seconds") o.seconds = num();
    else if (a === "--seed") o.seed = Math.floor(num());
    else if (a === "--concurrency") o.concurrency = Math.max(1, Math.floor(num()));
    else if (a === "--check-every") o.checkEvery = Math.max(1, Math.floor(num()));
    else if (a === "--targets") {
      o.targets = String(argv[++i]).split(",");
      for (const t of o.targets) if (!["http1", "h1-fast", "h1-fast-tls", "h2c", "tls", "tls-h2", "tls-records", "ws"].includes(t)) throw new Error(`unknown target ${t}`);
    }
    else if (a === "--help") {
      console.log("node scripts/fuzz.mjs [--seconds S] [--seed N] [--concurrency C] [--check-every K] [--targets http1,h1-fast,h1-fast-tls,h2c,tls,tls-h2,tls-records,ws]");
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));

// --- deterministic randomness (xorshift32), so a seed reproduces the cases

let state = opts.seed >>> 0 || 0x9e3779b9;
function rand() {
  state ^= state << 13;
  state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return state / 2 ** 32;
}
const int = (n) => Math.floor(rand() * n);
const pick = (a) => a[int(a.length)];

// --- the server process (the soak server: /json, /echo, /throw, /reject, /slow)

// A small body limit and header timeout so oversized and stalled cases resolve quickly.
const SERVER_OPTIONS = {
  maxBodySize: 64 * 1024,
  headerTimeout: 2000,
  timeout: 2000,
  websocket: { maxPayloadLength: 64 * 1024, idleTimeout: 2 },
};


// --- cases: a corpus of valid requests, mutated

const CORPUS = [
  "GET /json HTTP/1.1\r\nHost: fuzz\r\n\r\n",
  "GET /json?a=1&b=%20 HTTP/1.1\r\nHost: fuzz\r\nAccept: */*\r\nUser-Agent: fuzz/1\r\nCookie: a=b; c=d\r\n\r\n",
  "POST /echo HTTP/1.1\r\nHost: fuzz\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
  "POST /echo HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
  "PUT /echo HTTP/1.1\r\nHost: fuzz\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
  "GET /json HTTP/1.1\r\nHost: fuzz\r\n\r\nGET /slow HTTP/1.1\r\nHost: fuzz\r\n\r\nPOST /echo HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 3\r\n\r\nabc",
  "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
  "GET http://fuzz/json HTTP/1.1\r\nHost: fuzz\r\n\r\n",
  "OPTIONS * HTTP/1.1\r\nHost: fuzz\r\n\r\n",
  "DELETE /throw HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n",
  "GET /reject HTTP/1.1\r\nHost: fuzz\r\n\r\n",
  "HEAD /json HTTP/1.1\r\nHost: fuzz\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: fuzz\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  // Declared lengths whose bodies are read past hyper (src/direct.rs), the body cut short: the
  // pieces' splits then fall inside the head (most after the length's line), and the client
  // leaves mid-body.
  `POST /e HTTP/1.1\r\nContent-Length: 70000\r\nX-Pad: ${"p".repeat(120)}\r\nHost: fuzz\r\n\r\nbody`,
  "POST /echo HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 0065537\r\n\r\nbodyGET /json HTTP/1.1\r\nHost: fuzz\r\n\r\n",
].map((s) => Buffer.from(s, "latin1"));

const TOKENS = [
  "\r\n", "\r\n\r\n", "\r", "\n", " ", "\t", "\0", ":", ";", ",", "\"", "%00", "%", "/", "?", "#",
  "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "Host: fuzz\r\n", "Content-Length: ", "Transfer-Encoding: chunked\r\n",
  "Transfer-Encoding: chunked, identity\r\n", "Transfer-Encoding: xchunked\r\n", "Content-Length: 5\r\n",
  "Content-Length: 18446744073709551616\r\n", "Content-Length: -1\r\n", "Expect: 100-continue\r\n",
  "Connection: close\r\n", "Connection: keep-alive\r\n", "\r\n ", "ffffffffffffffffff\r\n", "0\r\n\r\n",
  "GET /json HTTP/1.1\r\nHost: fuzz\r\n\r\n", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "\xff\xfe", "\x80",
].map((s) => Buffer.from(s, "latin1"));

const NUMBERS = [
  "0", "1", "-1", "+1", "65535", "65536", "4294967295", "4294967296", "18446744073709551615",
  "18446744073709551616", "1e3", "0x10", " 5", "5 ", "99999999999999999999999999", "65537",
  "70000", "1048576", "1048577",
];

const randomBytes = (n) => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = int(256);
  return b;
};

const MUTATORS = [
  function flipBit(b) {
    if (b.length === 0) return b;
    const c = Buffer.from(b);
    c[int(c.length)] ^= 1 << int(8);
    return c;
  },
  function setByte(b) {
    if (b.length === 0) return b;
    const c = Buffer.from(b);
    c[int(c.length)] = pick([0, 9, 10, 13, 32, 58, 127, 128, 255, int(256)]);
    return c;
  },
  function insertBytes(b) {
    const at = int(b.length + 1);
    return Buffer.concat([b.subarray(0, at), randomBytes(1 + int(8)), b.subarray(at)]);
  },
  function insertToken(b) {
    const at = int(b.length + 1);
    return Buffer.concat([b.subarray(0, at), pick(TOKENS), b.subarray(at)]);
  },
  function deleteRange(b) {
    if (b.length === 0) return b;
    const at = int(b.length);
    return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + int(16))]);
  },
  function duplicateRange(b) {
    if (b.length === 0) return b;
    const at = int(b.length);
    const len = 1 + int(Math.min(64, b.length - at));
    return Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]);
  },
  function duplicateHeaderLine(b) {
    const s = b.toString("latin1");
    const lines = s.split("\r\n");
    const end = lines.indexOf("");
    if (end < 2) return b;
    const i = 1 + int(end - 1);
    lines.splice(i, 0, lines[i]);
    return Buffer.from(lines.join("\r\n"), "latin1");
  },
  function replaceNumber(b) {
    const s = b.toString("latin1");
    const numbers = [...s.matchAll(/\d+/g)];
    if (numbers.length === 0) return b;
    const m = pick(numbers);
    return Buffer.from(s.slice(0, m.index) + pick(NUMBERS) + s.slice(m.index + m[0].length), "latin1");
  },
  function lineEndings(b) {
    const s = b.toString("latin1");
    const all = rand() < 0.5;
    const out = all ? s.replaceAll("\r\n", pick(["\n", "\r", "\r\r\n", "\n\r"])) : s.replace("\r\n", pick(["\n", "\r", " \r\n"]));
    return Buffer.from(out, "latin1");
  },
  function truncate(b) {
    return b.subarray(0, int(b.length + 1));
  },
  function spliceCorpus(b) {
    const other = pick(CORPUS);
    return Buffer.concat([b.subarray(0, int(b.length + 1)), other.subarray(int(other.length))]);
  },
  function longField(b) {
    const s = b.toString("latin1");
    const at = s.indexOf("\r\n") + 2;
    const size = pick([100, 4000, 8200, 16 * 1024, 40 * 1024]);
    return Buffer.from(`${s.slice(0, at)}X-Long: ${"a".repeat(size)}\r\n${s.slice(at)}`, "latin1");
  },
  function manyHeaders(b) {
    const s = b.toString("latin1");
    const at = s.indexOf("\r\n") + 2;
    const n = pick([50, 101, 500]);
    const lines = Array.from({ length: n }, (_, i) => `X-${i}: ${i}\r\n`).join("");
    return Buffer.from(s.slice(0, at) + lines + s.slice(at), "latin1");
  },
  function caseChange(b) {
    const s = b.toString("latin1");
    return Buffer.from(rand() < 0.5 ? s.toLowerCase() : s.toUpperCase(), "latin1");
  },
];

// --- HTTP/2 frames (RFC 9113 section 4.1) and TLS records

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

function h2Frame(type, flags, stream, payload = Buffer.alloc(0)) {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream >>> 0, 5);
  return Buffer.concat([h, payload]);
}

const u32 = (n) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
// HPACK without Huffman: :method GET/POST (static 2/3), :scheme http/https (6/7), :path and
// :authority as literals with indexed names (4 and 1).
const hpack = (method, path, scheme = 7) =>
  Buffer.concat([Buffer.from([method === "POST" ? 0x83 : 0x82, 0x80 | scheme, 0x04, path.length]), Buffer.from(path), Buffer.from([0x01, 4]), Buffer.from("fuzz")]);

/** Valid frame sequences to mutate (sent after the preface). */
const H2_CORPUS = [
  Buffer.concat([h2Frame(4, 0, 0), h2Frame(1, 5, 1, hpack("GET", "/json"))]),
  Buffer.concat([h2Frame(4, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100, 0, 4, 0, 1, 0, 0])), h2Frame(1, 4, 1, hpack("POST", "/echo")), h2Frame(0, 1, 1, Buffer.from("hello"))]),
  Buffer.concat([h2Frame(4, 0, 0), h2Frame(1, 5, 1, hpack("GET", "/slow")), h2Frame(3, 0, 1, u32(8)), h2Frame(1, 5, 3, hpack("GET", "/json"))]),
  Buffer.concat([h2Frame(4, 0, 0), h2Frame(6, 0, 0, Buffer.alloc(8, 7)), h2Frame(8, 0, 0, u32(65535)), h2Frame(2, 0, 1, Buffer.from([0, 0, 0, 0, 16]))]),
  Buffer.concat([h2Frame(4, 0, 0), h2Frame(1, 1, 1, hpack("GET", "/json").subarray(0, 3)), h2Frame(9, 4, 1, hpack("GET", "/json").subarray(3))]),
  Buffer.concat([h2Frame(4, 0, 0), h2Frame(1, 5, 1, hpack("GET", "/throw")), h2Frame(7, 0, 0, Buffer.concat([u32(1), u32(0)]))]),
];

const FRAME_MUTATORS = [
  function frameType(b) {
    const c = Buffer.from(b);
    if (c.length >= 9) c[3] = int(12);
    return c;
  },
  function frameFlags(b) {
    const c = Buffer.from(b);
    if (c.length >= 9) c[4] = int(256);
    return c;
  },
  function frameStream(b) {
    const c = Buffer.from(b);
    if (c.length >= 9) c.writeUInt32BE(pick([0, 1, 2, 3, 0x7fffffff, 0x80000001, int(2 ** 32)]), 5);
    return c;
  },
  function frameLength(b) {
    const c = Buffer.from(b);
    if (c.length >= 9) c.writeUIntBE(pick([0, 1, 8, 16384, 16385, 0xffffff, int(64)]), 0, 3);
    return c;
  },
  function extraFrame(b) {
    const f = h2Frame(int(12), int(256), pick([0, 1, 3, 5, int(100)]), randomBytes(int(24)));
    const at = pick([0, b.length]);
    return Buffer.concat([b.subarray(0, at), f, b.subarray(at)]);
  },
  function repeatFrames(b) {
    return Buffer.concat(Array.from({ length: 2 + int(50) }, () => b));
  },
];
const BYTE_MUTATORS = ["flipBit", "setByte", "insertBytes", "deleteRange", "duplicateRange", "truncate"];
const byteMutator = () => {
  const name = pick(BYTE_MUTATORS);
  return MUTATORS.find((f) => f.name === name);
};

function mutateFrames(bytes) {
  const names = [];
  const n = 1 + int(3);
  for (let i = 0; i < n; i++) {
    const m = rand() < 0.6 ? pick(FRAME_MUTATORS) : byteMutator();
    names.push(m.name);
    bytes = m(bytes);
  }
  return { bytes, how: names.join("+") };
}

/** ClientHellos of real clients (captured at start), to mutate on the TLS port. */
const CLIENT_HELLOS = [];

async function captureClientHello(options) {
  const sink = net.createServer();
  await new Promise((r) => sink.listen(0, "127.0.0.1", r));
  const got = new Promise((resolve) => sink.once("connection", (s) => s.once("data", (d) => (resolve(d), s.destroy()))));
  const c = tls.connect({ port: sink.address().port, host: "127.0.0.1", servername: "localhost", ...options });
  c.on("error", () => {});
  const hello = await got;
  c.destroy();
  sink.close();
  return hello;
}

// --- WebSocket cases: frames after a handshake, valid ones mutated, or random bytes

/** A masked client frame, its key from the run's seed. */
function wsFrame(opcode, payload, { fin = true, rsv1 = false } = {}) {
  return maskedFrame(opcode, payload, { fin, rsv1, mask: [int(256), int(256), int(256), int(256)] });
}

/** permessage-deflate's form of a message: raw deflate, sync flush, tail removed. */
function deflated(text) {
  const z = deflateRawSync(Buffer.from(text), { finishFlush: zlib.Z_SYNC_FLUSH });
  return z.subarray(0, z.length - 4);
}

const WS_CORPUS = () => [
  wsFrame(1, "hello"),
  wsFrame(2, Buffer.from([0, 1, 2, 255])),
  Buffer.concat([wsFrame(1, "frag", { fin: false }), wsFrame(9, "ping"), wsFrame(0, "ment")]),
  wsFrame(1, "é€😀"),
  wsFrame(9, "are you there"),
  wsFrame(10, "unsolicited"),
  wsFrame(8, Buffer.from([0x03, 0xe8, 0x62, 0x79, 0x65])),
  wsFrame(1, deflated("compressed ".repeat(20)), { rsv1: true }),
  Buffer.concat([wsFrame(2, deflated("ab".repeat(500)).subarray(0, 5), { fin: false, rsv1: true }), wsFrame(0, deflated("ab".repeat(500)).subarray(5))]),
  wsFrame(2, Buffer.alloc(300, 7)),
];

function makeWsCase() {
  let bytes;
  let how;
  if (rand() < 0.1) {
    bytes = randomBytes(1 + int(256));
    how = "ws-random";
  } else {
    const corpus = WS_CORPUS();
    bytes = Buffer.concat(Array.from({ length: 1 + int(3) }, () => pick(corpus)));
    const names = [];
    const n = int(4);
    for (let i = 0; i < n; i++) {
      const m = pick(MUTATORS);
      names.push(m.name);
      bytes = m(bytes);
    }
    how = `ws:${names.join("+") || "valid"}`;
  }
  return { ws: true, compress: rand() < 0.5, bytes, how, pieces: rand() < 0.2 ? 2 + int(4) : 1, halfClose: rand() < 0.1 };
}

/** How a case's connection ends, once: the server closes it, or the client gives up after
 * `opts.idleMs` without a byte (`arm()` on each read restarts that) or 3 s in all. `settle`
 * gets who ended it, after the socket is destroyed. */
function caseEnd(sock, settle) {
  let done = false;
  let idle;
  const finish = (how) => {
    if (done) return;
    done = true;
    clearTimeout(idle);
    clearTimeout(hard);
    sock.destroy();
    settle(how);
  };
  const hard = setTimeout(() => finish("client"), 3000);
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(() => finish("client"), opts.idleMs);
  };
  return { finish, arm, ended: () => done };
}

/** Upgrades a fresh connection, then sends the case's frames; resolves with the close code seen. */
function runWsCase(port, c) {
  return new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1");
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const { finish, arm, ended } = caseEnd(sock, (how) => {
      let status = upgraded ? "ws-open" : "ws-no-upgrade";
      // The first close frame the server sent, if any.
      for (let i = 0; i + 2 <= buf.length; ) {
        const op = buf[i] & 0x0f;
        let len = buf[i + 1] & 0x7f;
        let at = i + 2;
        if (len === 126) (len = buf.readUInt16BE(at)), (at += 2);
        else if (len === 127) (len = Number(buf.readBigUInt64BE(at))), (at += 8);
        if (op === 8) {
          status = `ws-close-${len >= 2 && at + 2 <= buf.length ? buf.readUInt16BE(at) : 1005}`;
          break;
        }
        i = at + len;
      }
      resolve({ status, closedBy: how });
    });
    const send = async () => {
      const size = Math.ceil(c.bytes.length / c.pieces) || 1;
      for (let i = 0; i < c.bytes.length; i += size) {
        if (ended()) return;
        sock.write(c.bytes.subarray(i, i + size));
        if (c.pieces > 1) await new Promise((r) => setTimeout(r, 1));
      }
      if (c.halfClose && !ended()) sock.end();
      arm();
    };
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        if (!/^HTTP\/1\.1 101/.test(buf.toString("latin1", 0, 16))) return finish("server");
        upgraded = true;
        buf = buf.subarray(end + 4);
        void send();
      }
      arm();
    });
    sock.on("end", () => finish("server"));
    sock.on("close", () => finish("server"));
    sock.on("error", () => finish("server"));
    sock.on("connect", () => {
      sock.write(
        `GET /ws${c.compress ? "?z" : ""} HTTP/1.1\r\nHost: fuzz\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
          "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
          (c.compress ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "") +
          "\r\n",
      );
      arm();
    });
  });
}

/** One case: bytes, how to split the write, and whether to half-close afterwards. */
function makeCase() {
  const target = pick(opts.targets);
  if (target === "ws") return { target, ...makeWsCase() };
  if (target === "h2c" || target === "tls-h2") {
    const r = rand() < 0.1 ? { bytes: randomBytes(1 + int(256)), how: "random" } : mutateFrames(pick(H2_CORPUS));
    // h2c needs the preface first; over TLS it is sent after the handshake with the rest.
    const bytes = Buffer.concat([H2_PREFACE, r.bytes]);
    return { target, bytes, how: `${target}:${r.how}`, pieces: rand() < 0.2 ? 2 + int(4) : 1, halfClose: rand() < 0.2 };
  }
  if (target === "tls-records") {
    // Records after the handshake, as the server's record layer reads them: a header (the
    // usual type, TLS 1.2's alert and handshake, or any; a length up to past the limit,
    // 16,640 bytes in TLS 1.3, 18,432 in TLS 1.2) and a random body.
    const version = rand() < 0.5 ? "TLSv1.3" : "TLSv1.2";
    const records = [];
    let how = version === "TLSv1.2" ? "1.2:" : "";
    for (let i = 0, n = 1 + int(3); i < n; i++) {
      const type = rand() < 0.6 ? 0x17 : rand() < 0.5 ? 0x15 + int(2) : int(256);
      const limit = version === "TLSv1.2" ? 18_432 : 16_640;
      const len = rand() < 0.2 ? limit - 40 + int(100) : int(300);
      const body = randomBytes(rand() < 0.5 ? len : int(len + 1));
      records.push(Buffer.from([type, 3, 3, len >> 8, len & 0xff]), body);
      how += `${how ? "+" : ""}${type.toString(16)}/${len}`;
    }
    if (rand() < 0.1) records.push(randomBytes(1 + int(64)));
    const request = rand() < 0.5;
    return { target, version, bytes: Buffer.concat(records), request, how: `tls-records:${request ? "req+" : ""}${how}`, pieces: rand() < 0.3 ? 2 + int(4) : 1, halfClose: rand() < 0.2 };
  }
  if (target === "tls") {
    let bytes;
    let how;
    if (rand() < 0.15 || CLIENT_HELLOS.length === 0) {
      bytes = randomBytes(1 + int(512));
      how = "random";
    } else {
      bytes = pick(CLIENT_HELLOS);
      const names = [];
      for (let i = 0, n = 1 + int(3); i < n; i++) {
        const m = byteMutator();
        names.push(m.name);
        bytes = m(bytes);
      }
      how = names.join("+");
    }
    return { target, bytes, how: `tls:${how}`, pieces: rand() < 0.2 ? 2 + int(4) : 1, halfClose: rand() < 0.2 };
  }
  if (target === "h1-fast") return { target, ...makeFastCase() };
  if (target === "h1-fast-tls") {
    const version = rand() < 0.5 ? "TLSv1.3" : "TLSv1.2";
    const c = makeFastCase();
    return { target, version, ...c, how: `${version === "TLSv1.2" ? "1.2:" : ""}${c.how}` };
  }
  const c = makeHttp1Case();
  c.target = "http1";
  return c;
}

/** A pipelined run of requests the fast path takes, one of them sometimes mutated. */
function makeFastCase() {
  const names = ["Accept", "X-A", "x-a", "Connection", "connection", "User-Agent", "Cookie", "X-Long", "accept"];
  const values = ["", "x", "keep-alive", "close", "a, b", "0", "1", "\t v \t", "caf\xe9", "x".repeat(200), "example.test:8080", "[::1]", "u@h"];
  const targets = ["/", "/a?b=c", "/a/../b", "/%2e/x", "/a'b", "/?", "//x", "/" + "p".repeat(300), "/slow", "/stream?mib=0.125"];
  const parts = [];
  const n = 1 + int(6);
  let how = `${n}`;
  for (let i = 0; i < n; i++) {
    const method = pick(["GET", "GET", "HEAD", "POST", "DELETE", "PURGE"]);
    // A quarter HTTP/1.0 (no Host needed; a streamed answer close-delimited), most of them
    // asking to keep the connection.
    const http10 = rand() < 0.25;
    let head = `${method} ${pick(targets)} HTTP/1.${http10 ? 0 : 1}\r\n`;
    if (http10 && rand() < 0.7) head += `Connection: ${pick(["keep-alive", "Keep-Alive", "x, keep-alive"])}\r\n`;
    // Usually the one Host the path needs (1.1); sometimes none or two.
    const hosts = rand() < (http10 ? 0.5 : 0.9) ? 1 : int(3);
    for (let h = 0; h < hosts; h++) head += `Host: ${pick(["x", "Example.TEST", "h:80", ""])}\r\n`;
    let body = "";
    if (method !== "GET" && method !== "HEAD" && rand() < 0.9) {
      // A body the fast path reads (up to 64 KiB), sometimes one it leaves to hyper, and now
      // and then declared longer than sent: the next request's bytes complete it, or the
      // stream ends or the timeout passes mid-body.
      const n = rand() < 0.4 ? 0 : pick([1, 11, 300, 4096, 65536, 65537, 100 * 1024, 1024 * 1024 + 1]);
      body = "b".repeat(n);
      head = head.replace(/^\S+ \S+/, (line) => (rand() < 0.7 ? `${method} /echo` : line));
      head += `Content-Length: ${rand() < 0.05 ? n + 1 + int(20) : n}\r\n`;
      // `Expect: 100-continue` in any case (the fast path answers the 100 as hyper does), now
      // and then another expectation or two of them (hyper's).
      if (rand() < 0.2) head += `Expect: ${pick(["100-continue", "100-Continue", "100-continue", "foo"])}\r\n`;
      if (rand() < 0.02) head += "Expect: 100-continue\r\n";
    }
    for (let h = 0, m = int(6); h < m; h++) head += `${pick(names)}: ${pick(values)}\r\n`;
    // Now and then a field the path leaves to hyper (a second Host, a length, a coding).
    if (rand() < 0.05) head += `${pick(["HOST", "Content-Length", "Transfer-Encoding", "Expect", "Upgrade"])}: ${pick(values)}\r\n`;
    let bytes = Buffer.from(head + "\r\n" + body, "latin1");
    if (rand() < 0.15) {
      const m = pick(MUTATORS);
      how += `+${i}:${m.name}`;
      bytes = m(bytes);
    }
    parts.push(bytes);
  }
  return { bytes: Buffer.concat(parts), how: `h1-fast:${how}`, pieces: rand() < 0.4 ? 2 + int(6) : 1, halfClose: rand() < 0.2 };
}

function makeHttp1Case() {
  let bytes;
  let how;
  const r = rand();
  if (r < 0.05) {
    bytes = randomBytes(1 + int(512));
    how = "random";
  } else {
    bytes = pick(CORPUS);
    const names = [];
    const n = 1 + int(4);
    for (let i = 0; i < n; i++) {
      const m = pick(MUTATORS);
      names.push(m.name);
      bytes = m(bytes);
    }
    how = names.join("+");
  }
  // Sometimes split into pieces written 1 ms apart, to exercise partial parses.
  const pieces = rand() < 0.2 ? 2 + int(4) : 1;
  return { bytes, how, pieces, halfClose: rand() < 0.2 };
}

/** Runs one case on a fresh connection; resolves with the first status seen (or none/garbage). */
function runCase(ports, c) {
  return new Promise((resolve) => {
    const secure = ["tls", "tls-h2", "tls-records", "h1-fast-tls"].includes(c.target);
    const port = secure ? ports.tls : ports.plain;
    // tls-records: the raw socket under a TLS client, written to past it after the handshake.
    const raw = c.target === "tls-records" ? net.connect(port, "127.0.0.1") : null;
    const sock =
      c.target === "tls-h2"
        ? tls.connect({ port, host: "127.0.0.1", servername: "localhost", ALPNProtocols: ["h2"], rejectUnauthorized: false })
        : raw !== null || c.target === "h1-fast-tls"
          ? tls.connect({ ...(raw ? { socket: raw } : { port, host: "127.0.0.1" }), servername: "localhost", ALPNProtocols: ["http/1.1"], minVersion: c.version, maxVersion: c.version, rejectUnauthorized: false })
          : net.connect(port, "127.0.0.1");
    const chunks = [];
    // What is kept of the answer: its start is all a case looks at, and a mutated
    // `/stream?mib=` can ask for an endless body (4 GiB within the 3 s once).
    let kept = 0;
    const { finish, arm, ended } = caseEnd(sock, (how) => {
      const data = Buffer.concat(chunks);
      const text = data.toString("latin1", 0, 64);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      let status = m ? m[1] : text.length === 0 ? "none" : "non-http1";
      // HTTP/2 and TLS: whether the server answered with frames / an alert at all.
      if (c.target === "h2c" || c.target === "tls-h2") status = data.length >= 9 ? `h2-frames` : "none";
      if (c.target === "tls") status = data.length > 0 && data[0] === 0x15 ? "tls-alert" : data.length > 0 ? "tls-other" : "none";
      if (c.target === "tls-records") status = data.length > 0 ? "answered" : "none";
      raw?.destroy();
      resolve({ status: `${c.target}:${status}`, closedBy: how });
    });
    sock.on("data", (d) => {
      if (kept < 1024 * 1024) chunks.push(d);
      kept += d.length;
      arm();
    });
    sock.on("end", () => finish("server"));
    sock.on("close", () => finish("server"));
    sock.on("error", () => finish("server"));
    const secureFirst = c.target === "tls-h2" || c.target === "tls-records" || c.target === "h1-fast-tls";
    sock.on(secureFirst ? "secureConnect" : "connect", async () => {
      if (c.request) {
        sock.write("GET / HTTP/1.1\r\nHost: fuzz\r\n\r\n");
        await new Promise((r) => setTimeout(r, 5));
      }
      const out = raw ?? sock;
      const size = Math.ceil(c.bytes.length / c.pieces) || 1;
      for (let i = 0; i < c.bytes.length || i === 0; i += size) {
        if (ended()) return;
        out.write(c.bytes.subarray(i, i + size));
        if (c.pieces > 1) await new Promise((r) => setTimeout(r, 1));
      }
      if (c.halfClose && !ended()) sock.end();
      arm();
    });
  });
}

/**
 * A normal GET on a fresh connection must get 200 within 5 s: over plain TCP, or with `secure`
 * over TLS (HTTP/1.1 by ALPN).
 */
/** The sentinel WebSocket, opened at the start, must still echo within 5 s. */
let sentinel = null;
let sentinelSeq = 0;
function sentinelCheck() {
  if (sentinel === null || sentinel.readyState !== WebSocket.OPEN) return Promise.resolve(false);
  const want = `sentinel ${++sentinelSeq}`;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      sentinel.off("message", on);
      resolve(false);
    }, 5000);
    const on = (d) => {
      if (String(d) !== want) return;
      clearTimeout(timer);
      sentinel.off("message", on);
      resolve(true);
    };
    sentinel.on("message", on);
    sentinel.send(want);
  });
}

function healthCheck(port, secure = false) {
  return new Promise((resolve) => {
    const sock = secure
      ? tls.connect({ port, host: "127.0.0.1", servername: "localhost", rejectUnauthorized: false, ALPNProtocols: ["http/1.1"] })
      : net.connect(port, "127.0.0.1");
    let text = "";
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(false);
    }, 5000);
    sock.on(secure ? "secureConnect" : "connect", () => sock.write("GET /json HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n"));
    sock.on("data", (d) => {
      text += d.toString("latin1");
    });
    const end = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(/^HTTP\/1\.1 200 /.test(text) && text.includes('"ok":true'));
    };
    sock.on("end", end);
    sock.on("error", end);
  });
}

// --- the run

const fixture = (name) => readFileSync(new URL(`../test/fixtures/tls/${name}`, import.meta.url), "utf8");
const needsTls = opts.targets.some((t) => t.includes("tls"));
for (const o of [{ ALPNProtocols: ["h2", "http/1.1"] }, {}, { maxVersion: "TLSv1.2" }, { ALPNProtocols: ["http/1.1"], servername: "a.test" }])
  if (needsTls) CLIENT_HELLOS.push(await captureClientHello(o));

const server = await startServer(["--options", JSON.stringify(SERVER_OPTIONS)]);
const pid = server.child.pid;
let serverExit = null;
server.child.on("exit", (code, signal) => {
  serverExit = { code, signal };
});
// The TLS server: a second process, so a crash is told apart (its exit counts the same).
const tlsServer = needsTls
  ? await startServer(["--options", JSON.stringify({ ...SERVER_OPTIONS, tlsHandshakeTimeout: 2000, tls: { cert: fixture("a.pem"), key: fixture("a.key") } })])
  : null;
tlsServer?.child.on("exit", (code, signal) => {
  serverExit ??= { code, signal, server: "tls" };
});
const ports = { plain: server.port, tls: tlsServer?.port };
// A fuzzer that dies of its own error must not leave its servers running.
process.on("exit", () => {
  for (const s of [server, tlsServer]) if (s && s.child.exitCode === null && s.child.signalCode === null) s.child.kill("SIGKILL");
});
const healthy = async () =>
  serverExit === null &&
  (sentinel === null || (await sentinelCheck())) &&
  (await healthCheck(server.port)) &&
  (tlsServer === null || (await healthCheck(tlsServer.port, true)));
if (opts.targets.includes("ws")) {
  // The sentinel answers the server's pings, so its 2 s idle timeout never closes it.
  sentinel = new WebSocket(`ws://127.0.0.1:${server.port}/ws`);
  await new Promise((resolve, reject) => {
    sentinel.once("open", resolve);
    sentinel.once("error", reject);
  });
  sentinel.on("error", () => {});
}

const rssStart = rssKiB(pid);
const started = Date.now();
const deadline = started + opts.seconds * 1000;
const recent = []; // the last cases, for a failure report
const byStatus = {};
const closedByServer = { yes: 0, no: 0 };
let cases = 0;
let checks = 0;
let failedChecks = 0;
let sinceCheck = 0;
let stop = false;

async function fuzzWorker() {
  while (!stop && Date.now() < deadline && serverExit === null) {
    const c = makeCase();
    recent.push({ target: c.target, how: c.how, pieces: c.pieces, halfClose: c.halfClose, bytes: c.bytes.toString("base64") });
    if (recent.length > 64) recent.shift();
    const r = c.target === "ws" ? await runWsCase(ports.plain, c) : await runCase(ports, c);
    cases++;
    byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
    closedByServer[r.closedBy === "server" ? "yes" : "no"]++;
    if (++sinceCheck >= opts.checkEvery) {
      sinceCheck = 0;
      checks++;
      if (!(await healthy())) {
        failedChecks++;
        stop = true;
      }
    }
  }
}

const progress = setInterval(() => {
  process.stderr.write(`fuzz: ${cases} cases, ${Math.round((Date.now() - started) / 1000)} s, RSS ${((rssKiB(pid) ?? 0) / 1024).toFixed(1)} MiB\n`);
}, 10_000);
await Promise.all(Array.from({ length: opts.concurrency }, fuzzWorker));
clearInterval(progress);

// One last check after everything settled.
checks++;
const finalOk = await healthy();
if (!finalOk) failedChecks++;
const rssEnd = rssKiB(pid);
const crashed = serverExit !== null;
const stderrOf = () => server.stderr() + (tlsServer?.stderr() ?? "");
const panics = (stderrOf().match(/panicked at/g) ?? []).length;
sentinel?.terminate();

for (const s of [server, tlsServer]) {
  if (s === null || s.child.exitCode !== null || s.child.signalCode !== null) continue;
  const exited = new Promise((r) => s.child.once("exit", r));
  s.child.kill("SIGTERM");
  const ok = await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 15_000))]);
  if (!ok) s.child.kill("SIGKILL");
}

const seconds = (Date.now() - started) / 1000;
const failed = crashed || failedChecks > 0 || panics > 0;
console.log(`fuzz: ${cases} cases in ${seconds.toFixed(1)} s (seed ${opts.seed}, concurrency ${opts.concurrency})`);
console.log(`  first response status per case: ${JSON.stringify(Object.fromEntries(Object.entries(byStatus).sort()))}`);
console.log(`  connection closed by the server: ${closedByServer.yes}, left open until the client gave up: ${closedByServer.no}`);
console.log(`  health checks: ${checks - failedChecks}/${checks} answered 200`);
console.log(`  crashes: ${crashed ? 1 : 0}${crashed ? ` (${JSON.stringify(serverExit)})` : ""}; panics logged: ${panics}`);
console.log(`  server RSS: ${((rssStart ?? 0) / 1024).toFixed(1)} MiB at start, ${((rssEnd ?? 0) / 1024).toFixed(1)} MiB at the end`);
if (stderrOf().trim()) console.log(`  server stderr (tail):\n${stderrOf().trim().split("\n").slice(-20).join("\n")}`);
if (failed) {
  const file = join(tmpdir(), `fuzz-failure-${opts.seed}.json`);
  writeFileSync(file, JSON.stringify({ seed: opts.seed, serverExit, recent }, null, 1));
  console.log(`  FAILED; the last ${recent.length} cases are in ${file}`);
}
console.log(
  JSON.stringify({
    seed: opts.seed,
    seconds: Number(seconds.toFixed(1)),
    cases,
    byStatus,
    closedByServer,
    checks,
    failedChecks,
    crashes: crashed ? 1 : 0,
    panics,
    rssStartKiB: rssStart,
    rssEndKiB: rssEnd,
  }),
);
process.exit(failed ? 1 : 0);
