// Hand-written HTTP/2 frames (RFC 9113 section 4.1) over a TLS socket, for tests of what a
// well-behaved client library will not send: floods, resets, CONTINUATION chains.
import { CA } from "./tls-helpers.mjs";
import tls from "node:tls";

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
export const DATA = 0;
export const HEADERS = 1;
export const RST_STREAM = 3;
export const SETTINGS = 4;
export const PING = 6;
export const GOAWAY = 7;
export const WINDOW_UPDATE = 8;
export const CONTINUATION = 9;
export const END_STREAM = 0x1;
export const END_HEADERS = 0x4;
export const ACK = 0x1;

export function frame(type, flags, stream, payload = Buffer.alloc(0)) {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** HPACK for `GET https://localhost/path` without Huffman or indexing (RFC 7541). */
export function getHeaderBlock(path = "/") {
  const literal = (index, value) => Buffer.concat([Buffer.from([index, value.length]), Buffer.from(value)]);
  // :method GET (static 2), :scheme https (7), then :path and :authority as literals with
  // indexed names (4 and 1).
  return Buffer.concat([Buffer.from([0x82, 0x87]), literal(0x04, path), literal(0x01, "localhost")]);
}

/** A literal header with a new name, not indexed, for padding header blocks. */
export function literalHeader(name, value) {
  const len = (n) => (n < 127 ? Buffer.from([n]) : Buffer.from([127, ...intTail(n - 127)]));
  return Buffer.concat([
    Buffer.from([0x00]),
    len(name.length),
    Buffer.from(name),
    len(value.length),
    Buffer.from(value),
  ]);
}

function intTail(n) {
  const out = [];
  while (n >= 128) {
    out.push((n % 128) + 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

export function rstStream(stream, code = 8 /* CANCEL */) {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code);
  return frame(RST_STREAM, 0, stream, p);
}

/** A TLS connection speaking h2 by ALPN, preface and empty SETTINGS sent, that parses the
 * frames it receives into `frames` ({ type, flags, stream, payload }). */
export function rawH2(port) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca: CA, servername: "localhost", ALPNProtocols: ["h2"] });
    const conn = { socket, frames: [], closed: false, onFrame: null };
    let buf = Buffer.alloc(0);
    socket.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const f = {
          type: buf[3],
          flags: buf[4],
          stream: buf.readUInt32BE(5) & 0x7fffffff,
          payload: buf.subarray(9, 9 + len),
        };
        buf = buf.subarray(9 + len);
        conn.frames.push(f);
        // Keep the list short under floods: the tests look for kinds, not every frame.
        if (conn.frames.length > 10_000) conn.frames.splice(0, 5_000);
        conn.onFrame?.(f);
      }
    });
    socket.on("close", () => (conn.closed = true));
    socket.on("error", () => {});
    socket.once("secureConnect", () => {
      if (socket.alpnProtocol !== "h2") return reject(new Error(`ALPN gave ${socket.alpnProtocol}`));
      socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0)]));
      resolve(conn);
    });
    socket.once("error", reject);
  });
}

/** Resolves with the first received frame matching `pred`, or null after `ms`. */
export function waitFrame(conn, pred, ms = 5000) {
  const found = conn.frames.find(pred);
  if (found || conn.closed) return Promise.resolve(found ?? null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      conn.onFrame = null;
      resolve(null);
    }, ms);
    conn.onFrame = (f) => {
      if (!pred(f)) return;
      clearTimeout(timer);
      conn.onFrame = null;
      resolve(f);
    };
    conn.socket.once("close", () => {
      clearTimeout(timer);
      resolve(conn.frames.find(pred) ?? null);
    });
  });
}
