// The fast HTTP/1.1 path (src/fast_h1.rs) against hyper's: a corpus of request bytes (good
// and bad heads, pipelined, split across reads, HEAD, 204/304, streamed answers, Connection:
// close, HTTP/1.0 (with and without keep-alive, pipelined, streamed answers close-delimited,
// bodies, what stays hyper's), bad Host, request bodies of declared length read on the fast path (split
// from their heads, a byte a write, pipelined behind GETs and before them, at and over the
// limits, cut short) and bodies that go to hyper after fast requests on the same
// connection) is sent over raw sockets to a server with the fast path and to one started with
// FETCH_RS_H1_FAST=0, and the answers must be the same bytes apart from `Date`, with the
// connection closed by both or by neither. The same corpus runs over TLS (node:tls raw
// sockets, ALPN http/1.1 and none), where the fast path reads on while a request is out:
// clients that leave then (close_notify, an end without it, a reset) must abort the
// handler's `request.signal` on both paths, and pipelined heads must wait their turn.
//
// Run with: node --test test/fast-h1.test.mjs
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import net from "node:net";
import tls from "node:tls";
import { after, before, describe, test } from "node:test";
import { Response } from "../dist/index.js";
import { raw, sleep, start, waitFor } from "./helpers.mjs";
import { A, CA } from "./tls-helpers.mjs";

const enc = new TextEncoder();

/** Answers by path: what the request looked like to JS, and each kind of body. */
function listener(event) {
  const req = event.request;
  const url = new URL(req.url);
  const seen = () => JSON.stringify({ method: req.method, url: req.url, headers: [...req.headers] });
  switch (url.pathname) {
    case "/text":
      return event.respondWith(new Response("hello"));
    case "/empty":
      return event.respondWith(new Response(""));
    case "/204":
      return event.respondWith(new Response(null, { status: 204, headers: { "x-a": "1" } }));
    case "/304":
      return event.respondWith(new Response(null, { status: 304, headers: { etag: '"e"' } }));
    case "/404":
      return event.respondWith(new Response("none", { status: 404, headers: { "content-type": "text/plain" } }));
    case "/599":
      return event.respondWith(new Response("odd", { status: 599 }));
    case "/headers":
      return event.respondWith(
        new Response("h", {
          headers: [
            ["x-one", "1"],
            ["set-cookie", "a=1"],
            ["x-two", "2"],
            ["set-cookie", "b=2"],
            ["cache-control", "no-store"],
          ],
        }),
      );
    case "/date":
      return event.respondWith(new Response("d", { headers: { date: "Thu, 01 Jan 1970 00:00:00 GMT" } }));
    case "/head-length":
      return event.respondWith(new Response(null, { headers: { "content-length": "42" } }));
    case "/stream":
    case "/stream-slow":
      return event.respondWith(
        new Response(
          new ReadableStream({
            async start(c) {
              c.enqueue(enc.encode("first "));
              if (url.pathname === "/stream-slow") await sleep(20);
              c.enqueue(new Uint8Array(0));
              c.enqueue(enc.encode("x".repeat(3000)));
              c.close();
            },
          }),
          { headers: { "content-type": "text/plain" } },
        ),
      );
    case "/stream-list":
      return event.respondWith(
        new Response(
          new ReadableStream({
            start(c) {
              c.enqueue(enc.encode("listed"));
              c.close();
            },
          }),
          {
            headers: [
              ["x-a", "1"],
              ["trailer", "x-t"],
              ["x-b", "2"],
              ["x-a", "3"],
            ],
          },
        ),
      );
    case "/slow":
      return event.respondWith(sleep(30).then(() => new Response(seen())));
    case "/echo":
      return event.respondWith(req.text().then((body) => new Response(`${seen()}\n${body.length}:${body}`)));
    default:
      if (url.pathname in LISTS) {
        const [body, init] = LISTS[url.pathname]();
        return event.respondWith(new Response(body, init));
      }
      return event.respondWith(Response.json(JSON.parse(seen())));
  }
}

/** Path -> a reply with a header list: `[body, init]`. */
const LISTS = {
  "/list-repeats": () => [
    "r",
    {
      headers: [
        ["a", "1"],
        ["b", "2"],
        ["a", "3"],
        ["set-cookie", "x=1"],
        ["c", ""],
        ["set-cookie", "y=2; Path=/"],
      ],
    },
  ],
  "/list-type-given": () => [
    "<p>",
    { headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" } },
  ],
  "/list-type-implied": () => ["plain", { headers: { "x-a": "1" } }],
  "/list-blob-type": () => [new Blob(["b"], { type: "application/x-thing" }), { headers: { "x-a": "1" } }],
  "/list-length-right": () => ["hello", { headers: { "content-length": "5", "x-a": "1" } }],
  "/list-length-wrong": () => ["hello", { headers: { "x-a": "1", "content-length": "99" } }],
  "/list-length-zero-empty": () => [null, { headers: { "content-length": "0", "x-a": "1" } }],
  "/list-length-204": () => [null, { status: 204, headers: { "content-length": "7", "x-a": "1" } }],
  "/list-close": () => ["c", { headers: { connection: "close", "x-a": "1" } }],
  "/list-keep-alive": () => ["k", { headers: { connection: "keep-alive", "keep-alive": "timeout=5", "x-a": "1" } }],
  "/list-connection-names": () => ["n", { headers: { connection: "x-a, close", "x-a": "1", "x-b": "2", close: "c" } }],
  "/list-date": () => ["d", { headers: { "x-a": "1", date: "Thu, 01 Jan 1970 00:00:00 GMT", "x-b": "2" } }],
  "/list-transfer-encoding": () => ["t", { headers: { "transfer-encoding": "chunked", te: "trailers", "x-a": "1" } }],
  "/list-trailer": () => [
    "t",
    {
      headers: [
        ["trailer", "x-t"],
        ["x-a", "1"],
        ["trailer", "x-u"],
      ],
    },
  ],
  "/list-empty": () => [null, { headers: {} }],
  "/list-empty-204": () => [null, { status: 204, headers: {} }],
  "/list-304": () => [null, { status: 304, headers: { etag: '"e"', "cache-control": "max-age=1", vary: "accept" } }],
  "/list-values": () => [
    "v",
    { headers: { "x-inner": "a  b\tc", "x-latin": "caf\u00e9 \u00ff\u0080", "x-empty": "" } },
  ],
  "/list-proxy": () => [null, { status: 407, headers: { "proxy-authenticate": "Basic", "proxy-connection": "x" } }],
  "/list-upgrade": () => ["u", { headers: { upgrade: "h2c", "x-a": "1" } }],
};

let fast;
let slow;
/** The same over TLS. */
let fastTls;
let slowTls;

before(async () => {
  [fast, slow] = (await pair({})).map((server) => ({ server }));
  [fastTls, slowTls] = await pair({ tls: A });
});

after(async () => {
  await fast?.server.close({ force: true });
  await slow?.server.close({ force: true });
  await fastTls?.close({ force: true });
  await slowTls?.close({ force: true });
});

/** A raw TLS connection to `port` (`alpn`: the protocols offered, none if empty). */
const tlsDial = (port, alpn = ["http/1.1"]) =>
  tls.connect({ host: "127.0.0.1", port, ca: CA, servername: "localhost", ALPNProtocols: alpn });

/** Sends `parts` (a write each, `gapMs` apart) and collects the answer until the server closes
 * or nothing came for `idleMs`; over TLS with `secure`. */
const exchange = (port, parts, { gapMs = 0, idleMs = 250, end = false, secure = false, alpn } = {}) =>
  raw(port, parts, { gapMs, idleMs, end, dial: secure ? () => [tlsDial(port, alpn), "secureConnect"] : undefined });

/** Sends `request`'s head, its body only once `100 Continue` came, then half-closes; the
 * answer until the server closes (as a client that honours `Expect` does, curl for one). */
function waitForContinue(port, request, secure) {
  const at = request.indexOf("\r\n\r\n") + 4;
  return new Promise((resolve, reject) => {
    const [sock, ready] = secure ? [tlsDial(port), "secureConnect"] : [net.connect(port, "127.0.0.1"), "connect"];
    let text = "";
    let sent = false;
    sock.on(ready, () => sock.write(request.slice(0, at)));
    sock.on("data", (d) => {
      text += d.toString("latin1");
      if (!sent && text.includes("100 Continue\r\n\r\n")) {
        sent = true;
        sock.end(request.slice(at));
      }
    });
    sock.on("close", () => resolve({ text, closed: true }));
    sock.on("error", reject);
    // A guard, not a wait: a server that never answers fails the comparison.
    setTimeout(() => sock.destroy(), 5000).unref();
  });
}

/** The answer with each `date:` value (hyper's and the fast path's own clock) masked. */
const masked = (r) => ({
  ...r,
  text: r.text.replace(/\r\ndate: [^\r]*\r\n/g, "\r\ndate: -\r\n").replace(/127\.0\.0\.1:\d+/g, "127.0.0.1:PORT"),
});

const get = (path, more = "") => `GET ${path} HTTP/1.1\r\nHost: example.test\r\n${more}\r\n`;
/** A POST of `body` with its length declared. */
const post = (path, body, more = "") =>
  `POST ${path} HTTP/1.1\r\nHost: example.test\r\nContent-Length: ${Buffer.byteLength(body, "latin1")}\r\n${more}\r\n${body}`;
/** A body of `n` bytes that shows where a byte went missing. */
const filler = (n) => Array.from({ length: n }, (_, i) => String.fromCharCode(97 + (i % 26))).join("");

/** `Connection: keep-alive`, which an HTTP/1.0 request needs to keep its connection. */
const KA = "Connection: keep-alive\r\n";
/** An HTTP/1.0 GET (no Host unless in `more`), HEAD and POST. */
const get10 = (path, more = "") => `GET ${path} HTTP/1.0\r\n${more}\r\n`;
const head10 = (path, more = "") => `HEAD ${path} HTTP/1.0\r\n${more}\r\n`;
const post10 = (path, body, more = "") =>
  `POST ${path} HTTP/1.0\r\nContent-Length: ${Buffer.byteLength(body, "latin1")}\r\n${more}\r\n${body}`;

/** Name -> the request bytes. */
const CORPUS = {
  "plain GET": get("/"),
  "GET text": get("/text"),
  "GET empty body": get("/empty"),
  "GET 404 with a type": get("/404"),
  "GET 599": get("/599"),
  "repeated and ordered response headers": get("/headers"),
  "a Date set by JS": get("/date"),
  "lists: repeated names, set-cookie twice": get("/list-repeats") + get("/list-repeats", "Connection: close\r\n"),
  "lists: a content type given, implied, a Blob's":
    get("/list-type-given") + get("/list-type-implied") + get("/list-blob-type"),
  "lists: a length right, wrong, 0 without a body, on a 204":
    get("/list-length-right") + get("/list-length-wrong") + get("/list-length-zero-empty") + get("/list-length-204"),
  "lists: connection close, keep-alive, naming fields":
    get("/list-close") + get("/list-keep-alive") + get("/list-connection-names") + get("/b"),
  "lists: a date, transfer-encoding, trailers, upgrade":
    get("/list-date") + get("/list-transfer-encoding") + get("/list-trailer") + get("/list-upgrade"),
  "lists: empty, 204, 304, 407": get("/list-empty") + get("/list-empty-204") + get("/list-304") + get("/list-proxy"),
  "lists: inner spaces and bytes past ASCII": get("/list-values"),
  "lists: a streamed body": get("/stream-list") + get("/b"),
  "lists: HEAD": ["/list-repeats", "/list-length-right", "/list-trailer", "/list-empty", "/stream-list", "/list-304"]
    .map((p) => `HEAD ${p} HTTP/1.1\r\nHost: x\r\n\r\n`)
    .join(""),
  "lists: HTTP/1.0": ["/list-repeats", "/list-close", "/list-trailer", "/list-empty-204", "/stream-list"]
    .map((p) => get10(p, KA))
    .join(""),
  "lists: HTTP/1.0 HEAD, a 304, closing": head10("/list-trailer", KA) + get10("/list-304", KA) + get10("/list-date"),
  "HEAD of a full body": "HEAD /text HTTP/1.1\r\nHost: x\r\n\r\n",
  "HEAD with a declared length": "HEAD /head-length HTTP/1.1\r\nHost: x\r\n\r\n",
  "HEAD of a stream": "HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n",
  "204 with a header": get("/204"),
  "304 with an etag": get("/304"),
  "HEAD 204": "HEAD /204 HTTP/1.1\r\nHost: x\r\n\r\n",
  "streamed answer": get("/stream"),
  "streamed answer, slow": get("/stream-slow"),
  "Connection: close": get("/", "Connection: close\r\n"),
  "Connection: keep-alive, Close": get("/", "Connection: keep-alive, Close\r\n"),
  "Connection: close on a stream": get("/stream", "Connection: close\r\n"),
  "pipelined three": get("/a") + get("/slow") + get("/b"),
  "pipelined, then close": get("/a") + get("/slow", "Connection: close\r\n") + get("/never"),
  "pipelined with a stream between": get("/a") + get("/stream") + get("/b"),
  "request headers as JS sees them":
    "GET /p?q=1&r='x' HTTP/1.1\r\nHost: Example.TEST:80\r\nX-B: 1\r\nAccept: a\r\nx-b: 2\r\nX-Empty:\r\nX-Tab: a\tb \r\n\r\n",
  "Host with a port": "GET / HTTP/1.1\r\nHost: h:8080\r\n\r\n",
  "empty Host": "GET / HTTP/1.1\r\nHost:\r\n\r\n",
  "IPv4 Host in another form": "GET / HTTP/1.1\r\nHost: 0x7f.1\r\n\r\n",
  "IPv6 Host": "GET / HTTP/1.1\r\nHost: [0:0::1]:81\r\n\r\n",
  "no Host": "GET / HTTP/1.1\r\n\r\n",
  "two Hosts": "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
  "bad Host": "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
  "Host with userinfo": "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n",
  "Host with a bad port": "GET / HTTP/1.1\r\nHost: h:99999\r\n\r\n",
  "dot segments": get("/a/./b/../c/%2e%2E/d"),
  "bytes the URL parser encodes": get('/a"b{c}|d^e`f'),
  "a fragment": get("/a#frag"),
  backslash: get("/a\\b"),
  "absolute-form target": "GET http://example.test/abs?x HTTP/1.1\r\nHost: example.test\r\n\r\n",
  "asterisk-form OPTIONS": "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
  "asterisk-form GET": "GET * HTTP/1.1\r\nHost: x\r\n\r\n",
  CONNECT: "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n",
  "POST with Content-Length: 0": "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
  "DELETE without a length": "DELETE /p HTTP/1.1\r\nHost: x\r\n\r\n",
  "an extension method with length 0": "PURGE /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
  "GET with Content-Length: 0 twice": "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
  "GET with a body": "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
  "lowercase method": "get / HTTP/1.1\r\nHost: x\r\n\r\n",
  "POST JSON": post("/echo", '{"a":1,"b":[true,null]}', "Content-Type: application/json\r\n"),
  "POST of one byte": post("/echo", "x"),
  "POST with a body of binary bytes": post("/echo", "\0\r\n\r\n\xff\x80GET / HTTP/1.1\r\n\r\n"),
  "POST, GET, POST on one connection": post("/echo", "one") + get("/a") + post("/echo", "two"),
  "pipelined POSTs behind GETs": get("/a") + get("/slow") + post("/echo", "x=1&y=2") + post("/echo", "z") + get("/b"),
  "a GET right after a body": post("/echo", "abc") + get("/after"),
  "a body read by no one": post("/text", "unread") + get("/after"),
  "PUT and PATCH with bodies": post("/echo", "p").replace("POST", "PUT") + post("/echo", "q").replace("POST", "PATCH"),
  "HEAD with a body": post("/text", "abc").replace("POST", "HEAD") + get("/after"),
  "a body and Connection: close": post("/echo", "bye", "Connection: close\r\n") + get("/never"),
  "a body of 64 KiB": post("/echo", filler(64 * 1024)) + get("/after"),
  "a body of 64 KiB and one byte": post("/echo", filler(64 * 1024 + 1)) + get("/after"),
  "a body of 64 KiB, then one over": post("/echo", filler(64 * 1024)) + post("/echo", filler(64 * 1024 + 1)),
  "Content-Length with a leading zero": post("/echo", "abc").replace("Content-Length: 3", "Content-Length: 03"),
  "Content-Length as a list": post("/echo", "abc").replace("Content-Length: 3", "Content-Length: 3, 3"),
  "Content-Length twice after a fast POST":
    post("/echo", "a") + post("/echo", "abc").replace("Content-Length: 3", "Content-Length: 3\r\nContent-Length: 3"),
  "Content-Length not a number": post("/echo", "abc").replace("Content-Length: 3", "Content-Length: 3x"),
  "a body cut short, then the end": post("/echo", "0123456789").slice(0, -4),
  "a fast POST, then a body cut short": post("/echo", "whole") + post("/echo", "0123456789").slice(0, -4),
  "POST body after fast requests":
    get("/a") + get("/b") + "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + get("/c"),
  "chunked POST after a fast request":
    get("/a") + "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + get("/d"),
  "Expect: 100-continue": "POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
  "Expect: 100-continue, echoed, then a GET": post("/echo", "hello", "Expect: 100-continue\r\n") + get("/after"),
  "Expect: 100-Continue in another case": post("/echo", "hello", "Expect: 100-Continue\r\n") + get("/after"),
  "Expect: 100-continue with length 0": post("/echo", "", "Expect: 100-continue\r\n") + get("/after"),
  "Expect: 100-continue on a GET with a body": post("/echo", "abc", "Expect: 100-continue\r\n").replace("POST", "GET"),
  "Expect: 100-continue, a body read by no one": post("/text", "unread", "Expect: 100-continue\r\n") + get("/after"),
  "Expect: 100-continue twice": post("/echo", "hi", "Expect: 100-continue\r\nExpect: 100-continue\r\n") + get("/b"),
  "an unknown expectation": post("/echo", "hi", "Expect: something-else\r\n") + get("/b"),
  "Expect: 100-continue, then an unknown one": post("/echo", "hi", "Expect: 100-continue\r\nExpect: x\r\n"),
  "Expect: 100-continue after fast requests":
    get("/a") + post("/echo", "one") + post("/echo", "two", "Expect: 100-continue\r\n") + get("/b"),
  "Expect: 100-continue with a body of 64 KiB":
    post("/echo", filler(64 * 1024), "Expect: 100-continue\r\n") + get("/b"),
  "Expect: 100-continue with a body over 64 KiB":
    post("/echo", filler(64 * 1024 + 1), "Expect: 100-continue\r\n") + get("/b"),
  "Expect: 100-continue, a body cut short": post("/echo", "0123456789", "Expect: 100-continue\r\n").slice(0, -4),
  "a body of 100 KiB, then a GET": post("/echo", filler(100 * 1024)) + get("/after"),
  "bodies of 100 KiB and 1 KiB pipelined": post("/echo", filler(100 * 1024)) + post("/echo", filler(1024)) + get("/b"),
  "a body of 1 MiB": post("/echo", filler(1024 * 1024)) + get("/after"),
  "a body of 1 MiB and one byte": post("/echo", filler(1024 * 1024 + 1)) + get("/after"),
  "a body of 100 KiB read by no one": post("/text", filler(100 * 1024)) + get("/after"),
  "a body of 100 KiB cut short, then the end": post("/echo", filler(100 * 1024)).slice(0, -1000),
  "HTTP/1.0 a body of 100 KiB, keep-alive": post10("/echo", filler(100 * 1024), KA) + get10("/after"),
  "Upgrade that is no WebSocket": get("/", "Upgrade: h2c\r\nConnection: Upgrade\r\n"),
  "Transfer-Encoding with Content-Length":
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
  "HTTP/1.0": "GET / HTTP/1.0\r\n\r\n",
  "HTTP/1.0 keep-alive, then 1.1": "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + get("/b"),
  "HTTP/1.1 then HTTP/1.0": get("/a") + "GET /b HTTP/1.0\r\nHost: x\r\n\r\n",
  "HTTP/1.0 with a Host": get10("/a", "Host: example.test:8080\r\n"),
  "HTTP/1.0 with an empty Host": get10("/a", "Host:\r\n"),
  "HTTP/1.0 with two Hosts": get10("/a", "Host: a\r\nHost: b\r\n"),
  "HTTP/1.0 without keep-alive, pipelined": get10("/a") + get10("/never"),
  "HTTP/1.0 keep-alive, pipelined":
    get10("/a", KA) + get10("/slow", KA) + get10("/b", KA) + get10("/c") + get10("/never"),
  "HTTP/1.0 as ApacheBench sends it":
    "GET /ab HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: x\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n".repeat(
      3,
    ),
  "HTTP/1.0 keep-alive and close in one value": get10("/a", "Connection: keep-alive, close\r\n") + get10("/never"),
  "HTTP/1.0 keep-alive in a second Connection":
    get10("/a", "Connection: foo\r\nConnection: Keep-Alive\r\n") + get10("/b"),
  "HTTP/1.0 close, then keep-alive": get10("/a", "Connection: close\r\nConnection: keep-alive\r\n") + get10("/never"),
  "HTTP/1.0 keep-alive-ish tokens": get10("/a", "Connection: keep-alives, alive\r\n") + get10("/never"),
  "HTTP/1.0 keep-alive, then 1.1, then 1.0": get10("/a", KA) + get("/b") + get10("/c") + get("/never"),
  "HTTP/1.0 text, 404 and 599": get10("/text", KA) + get10("/404", KA) + get10("/599"),
  "HTTP/1.0 headers and a Date set by JS": get10("/headers", KA) + get10("/date"),
  "HTTP/1.0 204 and 304": get10("/204", KA) + get10("/304", KA) + get10("/204"),
  "HTTP/1.0 HEAD of a full body": head10("/text", KA) + head10("/head-length", KA) + head10("/text"),
  "HTTP/1.0 HEAD of a stream": head10("/stream", KA) + get10("/b"),
  "HTTP/1.0 streamed answer": get10("/stream"),
  "HTTP/1.0 streamed answer, keep-alive asked": get10("/stream-slow", KA) + get10("/never"),
  "HTTP/1.0 streamed answer after a kept one": get10("/a", KA) + get10("/stream", KA) + get10("/never"),
  "HTTP/1.0 POST with a body, keep-alive": post10("/echo", "hello", KA) + post10("/echo", "") + get10("/never"),
  "HTTP/1.0 POST with a body, no keep-alive": post10("/echo", "bye") + get10("/never"),
  "HTTP/1.0 a body of 64 KiB and one byte": post10("/echo", filler(64 * 1024 + 1), KA) + get10("/after"),
  "HTTP/1.0 a body read by no one": post10("/text", "unread", KA) + get10("/after"),
  "HTTP/1.0 a body cut short, then the end": post10("/echo", "0123456789", KA).slice(0, -4),
  "HTTP/1.0 POST without a length": "POST /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\nabc",
  "HTTP/1.0 Transfer-Encoding": "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
  "HTTP/1.0 Expect": "POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
  "HTTP/1.0 Upgrade": get10("/", "Upgrade: websocket\r\nConnection: Upgrade\r\n"),
  "HTTP/1.0 absolute-form target": "GET http://example.test/abs HTTP/1.0\r\n\r\n",
  "HTTP/1.0 a target the URL parser encodes": get10('/a"b{c}'),
  "HTTP/1.0 lowercase version": "GET / http/1.0\r\n\r\n",
  "HTTP/1.0 fields over maxHeaderSize": get10("/", `X-Big: ${"b".repeat(17 * 1024)}\r\n`),
  "a Connection value with a byte past ASCII": get("/a", "Connection: close, \xff\r\n") + get("/b"),
  "HTTP/1.0 Connection value with a byte past ASCII": get10("/a", "Connection: keep-alive, \xff\r\n") + get10("/b"),
  "HTTP/2.0 request line": "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
  "HTTP/1.2": "GET / HTTP/1.2\r\nHost: x\r\n\r\n",
  "bare LF": "GET / HTTP/1.1\nHost: x\n\n",
  "bare LF after a fast request": get("/a") + "GET /b HTTP/1.1\nHost: x\n\n",
  "NUL in a value": get("/", "X-A: a\0b\r\n"),
  "obs-fold": get("/", "X-A: a\r\n b\r\n"),
  "space before a colon": get("/", "X-A : a\r\n"),
  "malformed request line": "GARBAGE\r\n\r\n",
  "malformed after a fast request": get("/a") + "GARBAGE\r\n\r\n",
  "leading empty lines": "\r\n\r\n" + get("/"),
  "a target over 16 KiB": get("/" + "a".repeat(16 * 1024 + 1)),
  "fields over maxHeaderSize": get("/", `X-Big: ${"b".repeat(17 * 1024)}\r\n`),
  "a head cut short, then the end": "GET / HTTP/1.1\r\nHost: x\r\n",
  "a head and part of the next": get("/a") + "GET /b HTT",
  "h2 preface": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
};

/** Entries after which the client half-closes. */
const END = new Set([
  "a head cut short, then the end",
  "HTTP/1.1 then HTTP/1.0",
  "a body cut short, then the end",
  "a fast POST, then a body cut short",
  "HTTP/1.0 a body cut short, then the end",
  "Expect: 100-continue, a body cut short",
  "a body of 100 KiB cut short, then the end",
]);

/** Whether the corpus entry is sent again one byte a write. */
const SPLIT = new Set([
  "plain GET",
  "HEAD of a full body",
  "streamed answer",
  "Connection: close",
  "pipelined three",
  "request headers as JS sees them",
  "two Hosts",
  "POST body after fast requests",
  "chunked POST after a fast request",
  "bare LF after a fast request",
  "HTTP/1.0 keep-alive, then 1.1",
  "malformed after a fast request",
  "a head and part of the next",
  "POST JSON",
  "POST, GET, POST on one connection",
  "pipelined POSTs behind GETs",
  "a body of 64 KiB, then one over",
  "a fast POST, then a body cut short",
  "HTTP/1.0 keep-alive, pipelined",
  "HTTP/1.0 streamed answer, keep-alive asked",
  "HTTP/1.0 POST with a body, keep-alive",
  "Expect: 100-continue, echoed, then a GET",
  "Expect: 100-continue twice",
]);

async function both(parts, opts) {
  const a = await exchange(fast.server.port, parts, opts);
  const b = await exchange(slow.server.port, parts, opts);
  return [masked(a), masked(b)];
}

describe("the fast HTTP/1.1 path answers as hyper does", () => {
  for (const [name, bytes] of Object.entries(CORPUS)) {
    test(name, async () => {
      const [a, b] = await both([bytes], { end: END.has(name) });
      assert.ok(b.text.length > 0 || b.closed, `hyper answered nothing to ${name}`);
      assert.deepEqual(a, b);
    });
    if (SPLIT.has(name)) {
      test(`${name}, one byte a write`, async () => {
        const parts = [...Buffer.from(bytes, "latin1")].map((x) => Buffer.from([x]));
        const [a, b] = await both(parts, { gapMs: 1, end: END.has(name) });
        assert.deepEqual(a, b);
      });
    }
  }

  test("a head split at every point of a pipelined pair", async () => {
    const bytes = get("/a") + get("/b", "X-Y: z\r\n");
    for (let at = 1; at < bytes.length; at += 7) {
      const parts = [bytes.slice(0, at), bytes.slice(at)];
      const [a, b] = await both(parts, { gapMs: 15 });
      assert.deepEqual(a, b, `split at ${at}`);
    }
  });

  test("a body split from its head at every point", async () => {
    const bytes = post("/echo", "0123456789abcdef") + get("/b");
    const head = bytes.indexOf("\r\n\r\n") + 4;
    for (let at = head - 3; at < bytes.length; at += 3) {
      const parts = [bytes.slice(0, at), bytes.slice(at)];
      const [a, b] = await both(parts, { gapMs: 15 });
      assert.match(b.text, /\n16:0123456789abcdef/, `split at ${at}`);
      assert.deepEqual(a, b, `split at ${at}`);
    }
  });

  test("a body in three parts, the last with the next head", async () => {
    const parts = [post("/echo", "0123456789").slice(0, -7), "3456", "789" + get("/b")];
    const [a, b] = await both(parts, { gapMs: 20 });
    assert.match(b.text, /\n10:0123456789/);
    assert.deepEqual(a, b);
  });

  test("Expect: 100-continue: the 100 comes before the body is sent, then the answer", async () => {
    for (const [body, secure] of [
      ["hello", false],
      [filler(5000), false],
      ["hello", true],
      [filler(5000), true],
    ]) {
      const servers = secure ? [fastTls, slowTls] : [fast.server, slow.server];
      const runs = await Promise.all(
        servers.map((s) => waitForContinue(s.port, post("/echo", body, "Expect: 100-continue\r\n"), secure)),
      );
      const [a, b] = runs.map(masked);
      assert.match(
        b.text,
        new RegExp(`^HTTP/1\\.1 100 Continue\r\n\r\nHTTP/1\\.1 200 OK\r\n.*\n${body.length}:${body.slice(0, 5)}`, "s"),
      );
      assert.deepEqual(a, b);
    }
  });

  test("a body of 100 KiB in pieces, the last with the next head, over TCP and TLS", async () => {
    const bytes = post("/echo", filler(100 * 1024)) + get("/b");
    const head = bytes.indexOf("\r\n\r\n") + 4;
    // The head alone, part of it with the head, and cuts inside the body.
    for (const cuts of [[head], [head + 3000], [head - 5, head + 40000, head + 90000], [head + 102390]]) {
      const parts = [0, ...cuts].map((at, i) => bytes.slice(at, cuts[i] ?? bytes.length));
      for (const secure of [false, true]) {
        const [a, b] = secure ? await bothTls(parts, { gapMs: 15 }) : await both(parts, { gapMs: 15 });
        assert.match(b.text, /\n102400:abc.*HTTP\/1\.1 200 OK\r\n/s, `cuts ${cuts}`);
        assert.deepEqual(a, b, `cuts ${cuts}, TLS ${secure}`);
      }
    }
  });

  test("a head hyper refuses after a kept HTTP/1.0 request: its 400 in 1.1 (hyper's path: in 1.0)", async () => {
    // hyper answers a head it cannot parse in the version of the connection's last request;
    // the connection it takes on from the fast path has had none. Both close after the 400.
    for (const bad of ["POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GARBAGE\r\n\r\n"]) {
      const [a, b] = await both([get10("/a", KA) + bad]);
      const at = b.text.indexOf("HTTP/1.0 400 Bad Request\r\n");
      assert.ok(at > 0, b.text);
      assert.equal(a.text.slice(0, at), b.text.slice(0, at));
      assert.equal(
        a.text.slice(at),
        b.text.slice(at).replace("HTTP/1.0 400 Bad Request\r\n", "HTTP/1.1 400 Bad Request\r\nconnection: close\r\n"),
      );
      assert.ok(a.closed && b.closed);
    }
  });

  test("a half-close after a request still gets its answer", async () => {
    const run = (port) =>
      new Promise((resolve) => {
        const sock = net.connect(port, "127.0.0.1");
        let out = "";
        sock.on("connect", () => sock.end(get("/slow")));
        sock.on("data", (d) => (out += d.toString("latin1")));
        sock.on("close", () => resolve(masked({ text: out, closed: true })));
      });
    assert.deepEqual(await run(fast.server.port), await run(slow.server.port));
  });
});

/** A server with the fast path and one without, both with `options`. */
async function pair(options, handler = listener) {
  const saved = process.env.FETCH_RS_H1_FAST;
  delete process.env.FETCH_RS_H1_FAST;
  const on = await start(handler, options);
  process.env.FETCH_RS_H1_FAST = "0";
  const off = await start(handler, options);
  if (saved === undefined) delete process.env.FETCH_RS_H1_FAST;
  else process.env.FETCH_RS_H1_FAST = saved;
  return [on.server, off.server];
}

/** Runs `fn(servers)` with a fresh `pair(options, handler)`, both closed after. */
async function withPair(options, handler, fn) {
  const servers = await pair(options, handler);
  try {
    await fn(servers);
  } finally {
    for (const s of servers) await s.close({ force: true });
  }
}

/** The same bytes sent to both servers of a pair: their exchanges, with Date masked. */
const toBoth = (servers, bytes, options) =>
  Promise.all(servers.map((s) => exchange(s.port, [bytes], options).then(masked)));

describe("answers made without JS, and shutdown, on both paths", () => {
  test("the listener's timeout: 503 with connection: close, after a fast answer", async () => {
    const never = (event) => {
      if (new URL(event.request.url).pathname === "/never") event.respondWith(new Promise(() => {}));
      else listener(event);
    };
    await withPair({ timeout: 200 }, never, async (servers) => {
      const bytes = get("/a") + get("/never") + get("/after");
      const [a, b] = await toBoth(servers, bytes, { idleMs: 600 });
      assert.match(b.text, /HTTP\/1\.1 503 Service Unavailable\r\nconnection: close\r\n/);
      assert.deepEqual(a, b);
    });
  });

  test("maxBodySize: 413, and the connection goes on when the body came with its head", async () => {
    await withPair({ maxBodySize: 10 }, listener, async (servers) => {
      for (const bytes of [
        post("/echo", "0123456789") + post("/echo", "0123456789a") + get("/after"),
        get("/a") + post("/echo", filler(5000)) + post("/echo", "ok"),
      ]) {
        const [a, b] = await toBoth(servers, bytes);
        assert.match(b.text, /\n10:0123456789|\n2:ok/);
        assert.match(b.text, /HTTP\/1\.1 413 Payload Too Large\r\ncontent-length: 0\r\n/);
        assert.equal(b.closed, false);
        assert.deepEqual(a, b);
      }
    });
  });

  test("maxBodySize: 413 with connection: close when the body is still coming", async () => {
    await withPair({ maxBodySize: 10 }, listener, async (servers) => {
      const bytes = get("/a") + post("/echo", filler(20)).slice(0, -15);
      const [a, b] = await toBoth(servers, bytes);
      assert.match(b.text, /HTTP\/1\.1 413 Payload Too Large\r\nconnection: close\r\n/);
      assert.ok(b.closed);
      assert.deepEqual(a, b);
    });
  });

  test("maxBodySize under a body read past hyper (over 64 KiB): 413, whole or still coming", async () => {
    await withPair({ maxBodySize: 70000 }, listener, async (servers) => {
      for (const bytes of [
        get("/a") + post("/echo", filler(80000)) + get("/after"),
        get("/a") + post("/echo", filler(80000)).slice(0, -5000),
        post("/echo", filler(69999)) + get("/after"),
      ]) {
        const [a, b] = await toBoth(servers, bytes);
        assert.match(b.text, /HTTP\/1\.1 413 Payload Too Large\r\n|\n69999:abc/);
        assert.deepEqual(a, b);
      }
    });
  });

  test("maxBodySize with Expect: 100-continue: 413 at once, no 100, closed unless the body came", async () => {
    await withPair({ maxBodySize: 10 }, listener, async (servers) => {
      const big = post("/echo", filler(20), "Expect: 100-continue\r\n");
      // The client waits for the 100 before it sends the body.
      const [a, b] = await toBoth(servers, big.slice(0, -20));
      assert.match(b.text, /^HTTP\/1\.1 413 Payload Too Large\r\nconnection: close\r\n/);
      assert.doesNotMatch(b.text, /100 Continue/);
      assert.ok(b.closed);
      assert.deepEqual(a, b);
      // Sent with its head anyway: consumed, and the connection goes on.
      const [c, d] = await toBoth(servers, big + post("/echo", "ok", "Expect: 100-continue\r\n"));
      assert.match(d.text, /^HTTP\/1\.1 413 .*HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n.*\n2:ok$/s);
      assert.equal(d.closed, false);
      assert.deepEqual(c, d);
    });
  });

  test("the listener's timeout while an expected body comes: 100, then 408", async () => {
    await withPair({ timeout: 200 }, listener, async (servers) => {
      const bytes = post("/echo", "0123456789", "Expect: 100-continue\r\n").slice(0, -10);
      const [a, b] = await toBoth(servers, bytes, { idleMs: 600 });
      assert.match(b.text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 408 Request Timeout\r\nconnection: close\r\n/);
      assert.ok(b.closed);
      assert.deepEqual(a, b);
    });
  });

  test("the listener's timeout while a body comes: 408 with connection: close", async () => {
    await withPair({ timeout: 200 }, listener, async (servers) => {
      const bytes = get("/a") + post("/echo", "0123456789").slice(0, -6);
      const [a, b] = await toBoth(servers, bytes, { idleMs: 600 });
      assert.match(b.text, /HTTP\/1\.1 408 Request Timeout\r\nconnection: close\r\n/);
      assert.ok(b.closed);
      assert.deepEqual(a, b);
    });
  });

  test("a client that leaves mid-body: the handler never sees the request", async () => {
    const seen = [];
    const record = (event) => {
      seen.push(new URL(event.request.url).pathname);
      listener(event);
    };
    await withPair({}, record, async (servers) => {
      for (const s of servers) {
        const sock = net.connect(s.port, "127.0.0.1");
        await new Promise((resolve) => sock.once("connect", resolve));
        let text = "";
        sock.on("data", (d) => (text += d.toString("latin1")));
        sock.write(get("/first") + post("/gone", filler(4000)).slice(0, -2000));
        await waitFor(() => text.includes("HTTP/1.1 200"), 2000);
        sock.resetAndDestroy();
        // The server serves on.
        const after = masked(await exchange(s.port, [post("/echo", "still")]));
        assert.match(after.text, /\n5:still$/);
      }
      assert.deepEqual(seen, ["/first", "/echo", "/first", "/echo"]);
    });
  });

  test("HTTP/1.0: the listener's timeout, 413, 408 and a handler's failure answer in 1.0", async () => {
    const handler = (event) => {
      const path = new URL(event.request.url).pathname;
      if (path === "/never") event.respondWith(new Promise(() => {}));
      else if (path === "/fail") event.respondWith(Promise.reject(new Error("expected by the test")));
      else listener(event);
    };
    await withPair({ timeout: 200, maxBodySize: 10 }, handler, async (servers) => {
      for (const [bytes, expected] of [
        [
          get10("/a", KA) + get10("/never", KA) + get10("/after"),
          /HTTP\/1\.0 503 Service Unavailable\r\nconnection: close, keep-alive\r\n/,
        ],
        [get10("/never"), /^HTTP\/1\.0 503 Service Unavailable\r\nconnection: close\r\n/],
        [
          post10("/echo", "0123456789a", KA) + get10("/after"),
          /^HTTP\/1\.0 413 Payload Too Large\r\nconnection: keep-alive\r\n/,
        ],
        [post10("/echo", filler(20), KA).slice(0, -15), /^HTTP\/1\.0 413 Payload Too Large\r\ncontent-length: 0\r\n/],
        [
          get10("/a", KA) + post10("/echo", "0123456789", KA).slice(0, -6),
          /HTTP\/1\.0 408 Request Timeout\r\nconnection: close, keep-alive\r\n/,
        ],
        [get10("/fail", KA) + get10("/after"), /^HTTP\/1\.0 500 Internal Server Error\r\nconnection: keep-alive\r\n/],
      ]) {
        const [a, b] = await toBoth(servers, bytes, { idleMs: 600 });
        assert.match(b.text, expected);
        assert.deepEqual(a, b);
      }
    });
  });

  // HTTP/1.0 with keep-alive: the held answer says nothing of the connection (hyper's keep-alive
  // is off by then, and 1.0's default is to close). hyper never reads `/next`; the fast path
  // handed it to JS with `/held` (pipelined, read ahead), so it answers it too, after the held
  // answer (which then keeps the connection: `asFast`), and that last answer closes.
  for (const [label, bytes, expected, asFast, last] of [
    [
      "its answer says connection: close",
      get("/a") + get("/held") + get("/next"),
      /\r\nconnection: close\r\n[^]*late$/,
      (held) => held.replace("connection: close\r\n", ""),
      /^HTTP\/1\.1 200 OK\r\ncontent-type: application\/json\r\nconnection: close\r\n[^]*\/next"[^]*\}$/,
    ],
    [
      "an HTTP/1.0 answer says no keep-alive",
      get10("/a", KA) + get10("/held", KA) + get10("/next", KA),
      /\r\n\r\n\{[^]*\}HTTP\/1\.0 200 OK\r\ncontent-type: [^\r]*\r\ncontent-length: 4\r\ndate: [^\r]*\r\n\r\nlate$/,
      (held) => held.replace("content-length: 4\r\n", "connection: keep-alive\r\ncontent-length: 4\r\n"),
      /^HTTP\/1\.0 200 OK\r\ncontent-type: application\/json\r\ncontent-length: \d+\r\ndate: -\r\n\r\n[^]*\/next"[^]*\}$/,
    ],
  ]) {
    test(`a graceful close while a request waits: ${label}`, async () => {
      let release;
      const held = new Promise((r) => (release = r));
      const waiting = [];
      const wait = (event) => {
        if (new URL(event.request.url).pathname !== "/held") return listener(event);
        waiting.push(1);
        event.respondWith(held.then(() => new Response("late")));
      };
      const servers = await pair({}, wait);
      try {
        const runs = servers.map((s) => exchange(s.port, [bytes], { idleMs: 1000 }));
        while (waiting.length < 2) await sleep(5);
        const closing = servers.map((s) => s.close());
        await sleep(50);
        release();
        const [a, b] = (await Promise.all(runs)).map(masked);
        await Promise.all(closing);
        assert.match(b.text, expected);
        assert.ok(b.closed);
        assert.ok(a.closed);
        const end = a.text.indexOf("late") + 4;
        const held = b.text.lastIndexOf("HTTP/1.");
        assert.equal(a.text.slice(0, end), b.text.slice(0, held) + asFast(b.text.slice(held)));
        assert.match(a.text.slice(end), last);
      } finally {
        for (const s of servers) await s.close({ force: true }).catch(() => {});
      }
    });
  }
});

/** The exchange over TLS with both servers at once. */
async function bothTls(parts, opts) {
  const runs = [fastTls, slowTls].map((s) => exchange(s.port, parts, { ...opts, secure: true }));
  return (await Promise.all(runs)).map(masked);
}

describe("over TLS, the fast path answers as hyper does", () => {
  for (const [name, bytes] of Object.entries(CORPUS)) {
    test(name, async () => {
      const [a, b] = await bothTls([bytes], { end: END.has(name) });
      assert.ok(b.text.length > 0 || b.closed, `hyper answered nothing to ${name}`);
      assert.deepEqual(a, b);
    });
    if (SPLIT.has(name)) {
      test(`${name}, one byte a record`, async () => {
        const parts = [...Buffer.from(bytes, "latin1")].map((x) => Buffer.from([x]));
        const [a, b] = await bothTls(parts, { gapMs: 1, end: END.has(name) });
        assert.deepEqual(a, b);
      });
    }
  }

  test("without ALPN", async () => {
    const bytes = get("/a") + get("/slow") + get("/stream");
    const [a, b] = await bothTls([bytes], { alpn: [] });
    assert.match(b.text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.deepEqual(a, b);
  });

  test("pipelined heads sent while a request is out wait their turn", async () => {
    // The first is with JS (30 ms) as the rest come, the last of them in two records.
    const parts = [get("/slow"), get("/a") + get("/stream") + "GET /b HT", "TP/1.1\r\nHost: x\r\n\r\n"];
    const [a, b] = await bothTls(parts, { gapMs: 10 });
    assert.equal(b.text.match(/HTTP\/1\.1 200/g)?.length, 4, b.text);
    assert.deepEqual(a, b);
  });

  test("a partial head over maxHeaderSize sent while a request is out", async () => {
    const parts = [get("/slow"), `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"b".repeat(40 * 1024)}`];
    const [a, b] = await bothTls(parts, { gapMs: 5, idleMs: 400 });
    assert.match(b.text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.deepEqual(a, b);
  });

  test("a partial head, then close_notify, while a request is out", async () => {
    const [a, b] = await bothTls([get("/slow") + "GET /b HTTP/1.1\r\n"], { end: true });
    assert.deepEqual(a, b);
  });
});

describe("over TLS, a client that leaves while its request is out", () => {
  /** Requests held by the handler until released, by their `x-id`. */
  const held = new Map();
  const holder = (event) => {
    const id = event.request.headers.get("x-id");
    if (!id) return listener(event);
    const { signal } = event.request;
    const entry = {};
    entry.aborted = new Promise((resolve) => signal.addEventListener("abort", () => resolve(signal.reason?.name)));
    entry.answer = new Promise((resolve) => (entry.release = resolve));
    held.set(id, entry);
    event.respondWith(entry.answer.then(() => new Response("late")));
  };
  let servers;
  before(async () => {
    servers = await pair({ tls: A }, holder);
  });
  after(async () => {
    for (const e of held.values()) e.release();
    for (const s of servers ?? []) await s.close({ force: true });
  });

  let next = 0;
  /** Sends a held request, leaves with `leave(socket)` once the handler has it, and returns
   * how the handler's signal ended (within 3 s) and what the client read. */
  async function leaveWhileOut(port, leave, wrap = false) {
    const id = String(++next);
    const tcp = wrap ? net.connect(port, "127.0.0.1") : null;
    const sock = wrap
      ? tls.connect({ socket: tcp, ca: CA, servername: "localhost", ALPNProtocols: ["http/1.1"] })
      : tlsDial(port);
    let text = "";
    sock.setEncoding("latin1");
    sock.on("data", (d) => (text += d));
    sock.on("error", () => {});
    const closed = new Promise((resolve) => sock.on("close", resolve));
    await new Promise((resolve) => sock.once("secureConnect", resolve));
    sock.write(get("/held", `x-id: ${id}\r\n`));
    await waitFor(() => held.has(id), 5000);
    const entry = held.get(id);
    leave(sock, tcp);
    const aborted = await Promise.race([entry.aborted, sleep(3000).then(() => "not aborted")]);
    entry.release();
    await Promise.race([closed, sleep(2000)]);
    sock.destroy();
    return { aborted, text: text.replace(/\r\ndate: [^\r]*\r\n/, "\r\ndate: -\r\n") };
  }

  test("close_notify (a half-close): the signal aborts, the answer still comes", async () => {
    const runs = await Promise.all(servers.map((s) => leaveWhileOut(s.port, (sock) => sock.end())));
    assert.equal(runs[1].aborted, "AbortError");
    assert.match(runs[1].text, /late$/);
    assert.deepEqual(runs[0], runs[1]);
  });

  test("the end of the socket without close_notify: the signal aborts", async () => {
    // The TCP stream ends under the TLS session: no close_notify goes out.
    const leave = (_sock, tcp) => tcp.end();
    const runs = await Promise.all(servers.map((s) => leaveWhileOut(s.port, leave, true)));
    assert.equal(runs[1].aborted, "AbortError");
    assert.deepEqual(runs[0], runs[1]);
  });

  test("a reset: the signal aborts", async () => {
    const leave = (_sock, raw) => raw.resetAndDestroy();
    const runs = await Promise.all(servers.map((s) => leaveWhileOut(s.port, leave, true)));
    assert.equal(runs[1].aborted, "AbortError");
    assert.deepEqual(runs[0], runs[1]);
  });

  test("destroy() of the TLS socket: the signal aborts", async () => {
    const runs = await Promise.all(servers.map((s) => leaveWhileOut(s.port, (sock) => sock.destroy())));
    assert.equal(runs[1].aborted, "AbortError");
    assert.deepEqual(runs[0], runs[1]);
  });
});

// In a child process with FETCH_RS_LOG=fetch_rs=debug, where the fast path logs each
// connection it hands to hyper: a marker on stderr before each exchange, so that a log line
// falls in the section of the exchange that caused it (it is written before hyper answers).
const url = (name) => JSON.stringify(new URL(name, import.meta.url).href);
const child = (secure) => `
  import tls from "node:tls";
  import { raw, sleep, start } from ${url("./helpers.mjs")};
  import { A, CA } from ${url("./tls-helpers.mjs")};
  import { Response } from ${url("../dist/index.js")};
  const enc = new TextEncoder();
  const { server } = await start((event) => {
    const req = event.request;
    const path = new URL(req.url).pathname;
    if (path === "/list") return event.respondWith(new Response("l", { headers: { "cache-control": "no-store", "x-a": "1" } }));
    // A Connection that names a field: the list is made a header map.
    if (path === "/list-map") return event.respondWith(new Response("m", { headers: { connection: "x-a", "x-a": "1" } }));
    if (path !== "/stream") return event.respondWith(req.text().then((b) => new Response(path + ":" + b)));
    const body = new ReadableStream({
      async start(c) {
        c.enqueue(enc.encode("first "));
        await sleep(20);
        c.enqueue(enc.encode("second"));
        c.close();
      },
    });
    event.respondWith(new Response(body));
  }, ${secure ? "{ tls: A }" : "{}"});
  const dial = ${secure}
    ? () => [tls.connect({ host: "127.0.0.1", port: server.port, ca: CA, servername: "localhost", ALPNProtocols: ["http/1.1"] }), "secureConnect"]
    : undefined;
  const out = {};
  // The exchanges on stdin (a 1 MiB one is too long for the environment).
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  for (const [name, bytes] of Object.entries(JSON.parse(input))) {
    process.stderr.write("--- " + name + "\\n");
    out[name] = await raw(server.port, [bytes], { dial });
  }
  await server.close();
  process.stdout.write(JSON.stringify(out));
`;
/** Runs `exchanges` (name -> bytes) in that child: the answers, and the log of each. */
function logged(secure, exchanges) {
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", child(secure)], {
    env: { ...process.env, FETCH_RS_LOG: "fetch_rs=debug" },
    input: JSON.stringify(exchanges),
    maxBuffer: 64 * 1024 * 1024,
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const log = Object.fromEntries(
    r.stderr
      .split(/^--- /m)
      .slice(1)
      .map((s) => [s.slice(0, s.indexOf("\n")), s]),
  );
  return { out: JSON.parse(r.stdout), log };
}

/** What the fast path logs when hyper takes a connection on from it. */
const HANDED = /hyper takes the connection on/;
/** What the addon logs when a reply's header list is made a header map. */
const MAPPED = /a header list goes as a header map/;

describe("replies with a header list are written without a header map", () => {
  const EXCHANGES = {
    "a list, pipelined, and HTTP/1.0": get("/list") + get("/list") + get10("/list"),
    "a list made a map": get("/list-map"),
  };

  for (const secure of [false, true]) {
    test(secure ? "over TLS" : "over TCP", () => {
      const { out, log } = logged(secure, EXCHANGES);
      assert.doesNotMatch(log["a list, pipelined, and HTTP/1.0"], MAPPED);
      assert.doesNotMatch(log["a list, pipelined, and HTTP/1.0"], HANDED);
      assert.match(log["a list made a map"], MAPPED);
      assert.deepEqual(
        out["a list, pipelined, and HTTP/1.0"].text
          .split(/(?=HTTP\/1\.)/)
          .map((t) => t.replace(/\r\ndate: [^\r]*/, "")),
        [
          ...Array(2).fill(
            "HTTP/1.1 200 OK\r\ncache-control: no-store\r\nx-a: 1\r\ncontent-type: text/plain;charset=UTF-8\r\ncontent-length: 1\r\n\r\nl",
          ),
          "HTTP/1.0 200 OK\r\ncache-control: no-store\r\nx-a: 1\r\ncontent-type: text/plain;charset=UTF-8\r\ncontent-length: 1\r\n\r\nl",
        ],
      );
      assert.match(
        out["a list made a map"].text,
        /^HTTP\/1\.1 200 OK\r\ncontent-type: [^\r]*\r\ncontent-length: 1\r\ndate: [^\r]*\r\n\r\nm$/,
      );
    });
  }
});

describe("HTTP/1.0 requests are answered on the fast path", () => {
  const EXCHANGES = {
    "keep-alive, pipelined": get10("/a", KA) + post10("/b", "hi", KA) + get10("/c") + get10("/never"),
    "no keep-alive": get10("/a", "Host: x\r\n") + get10("/never"),
    "a streamed answer": get10("/stream", KA) + get10("/never"),
    "chunked, hyper's": "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  };

  for (const secure of [false, true]) {
    test(secure ? "over TLS" : "over TCP", () => {
      const { out, log } = logged(secure, EXCHANGES);
      for (const name of Object.keys(EXCHANGES).slice(0, 3)) assert.doesNotMatch(log[name], HANDED, name);
      assert.match(log["chunked, hyper's"], HANDED);

      const ka = out["keep-alive, pipelined"];
      const answers = ka.text.split(/(?=HTTP\/1\.)/);
      assert.deepEqual(
        answers.map((t) => [t.slice(0, 9), /\r\nconnection: keep-alive\r\n/.test(t)]),
        [
          ["HTTP/1.0 ", true],
          ["HTTP/1.0 ", true],
          ["HTTP/1.0 ", false],
        ],
      );
      assert.match(ka.text, /\r\n\r\n\/a:HTTP\/1\.0 .*\r\n\r\n\/b:hiHTTP\/1\.0 .*\r\n\r\n\/c:$/s);
      assert.ok(ka.closed);

      const one = out["no keep-alive"];
      assert.match(
        one.text,
        /^HTTP\/1\.0 200 OK\r\ncontent-type: [^\r]*\r\ncontent-length: 3\r\ndate: [^\r]*\r\n\r\n\/a:$/,
      );
      assert.ok(one.closed);

      // No chunked coding to a 1.0 client: the body ends with the connection.
      const streamed = out["a streamed answer"];
      assert.match(streamed.text, /^HTTP\/1\.0 200 OK\r\nconnection: keep-alive\r\ndate: [^\r]*\r\n\r\nfirst second$/);
      assert.ok(streamed.closed);
    });
  }
});

describe("expected bodies are read on the fast path, bodies over 64 KiB are hyper's", () => {
  const big = filler(100 * 1024);
  const EXCHANGES = {
    "Expect: 100-continue": post("/exp", "hello", "Expect: 100-continue\r\n") + get("/after"),
    "Expect: 100-continue, then 1 KiB": post("/exp", "hi", "Expect: 100-continue\r\n") + post("/kib", filler(1024)),
    // Taken here once and not kept (fast_h1.rs's module comment): the connection goes to hyper.
    "100 KiB, then a GET, hyper's": post("/big", big) + get("/after"),
    "1 MiB and one byte, hyper's": post("/over", filler(1024 * 1024 + 1)),
    "Expect with 100 KiB, hyper's": post("/big", big, "Expect: 100-continue\r\n"),
  };

  for (const secure of [false, true]) {
    test(secure ? "over TLS" : "over TCP", () => {
      const { out, log } = logged(secure, EXCHANGES);
      for (const name of Object.keys(EXCHANGES)) {
        if (name.endsWith("hyper's")) assert.match(log[name], HANDED, name);
        else assert.doesNotMatch(log[name], HANDED, name);
      }
      const answers = out["100 KiB, then a GET, hyper's"].text.split(/(?=HTTP\/1\.1 )/);
      assert.deepEqual(
        answers.map((t) => [t.slice(0, 15), t.length - t.indexOf("\r\n\r\n") - 4, t.endsWith(big.slice(-20))]),
        [
          ["HTTP/1.1 200 OK", 102405, true],
          ["HTTP/1.1 200 OK", 7, false],
        ],
      );
      assert.match(
        out["Expect: 100-continue"].text,
        /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n.*\r\n\r\n\/exp:helloHTTP\/1\.1 200 OK\r\n.*\/after:$/s,
      );
      assert.match(
        out["Expect: 100-continue, then 1 KiB"].text,
        /^HTTP\/1\.1 100 Continue\r\n\r\n.*\/exp:hi.*\/kib:abc/s,
      );
    });
  }
});
