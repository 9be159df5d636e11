// The benchmark scenarios (RFC 5.4) and load modes, as tables. Every server in servers/ answers
// each scenario on its path; the runner checks one response per scenario and server before it
// measures (`checkResponse`). Used by bench/run.mjs. Run with: node bench/run.mjs (not on its own)

import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import net from "node:net";

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * name: what --scenarios= takes. method/path: the request. bodyBytes: request body size (0: none;
 * the body is that many 'x' bytes, application/octet-stream). expect: the response the check wants
 * (status 200 always): `type` a content-type prefix or null for "any", and `body` exact text or
 * `length` a byte count, or `echo` (the request body back).
 */
export const SCENARIOS = [
  { name: "json", title: 'JSON {"ok":true}', method: "GET", path: "/json", bodyBytes: 0, expect: { type: "application/json", body: '{"ok":true}' } },
  { name: "text", title: "plain text", method: "GET", path: "/text", bodyBytes: 0, expect: { type: "text/plain", body: "Hello, World!" } },
  { name: "echo1k", title: "echo 1 KiB", method: "POST", path: "/echo", bodyBytes: 1 * KiB, expect: { type: null, echo: true } },
  { name: "echo100k", title: "echo 100 KiB", method: "POST", path: "/echo", bodyBytes: 100 * KiB, expect: { type: null, echo: true } },
  { name: "download100k", title: "100 KiB response", method: "GET", path: "/download", bodyBytes: 0, expect: { type: null, length: 100 * KiB } },
  { name: "upload1m", title: "1 MiB upload, length as JSON", method: "POST", path: "/upload", bodyBytes: 1 * MiB, expect: { type: "application/json", body: `{"length":${MiB}}` } },
  { name: "async", title: "await a 1 ms timer, then JSON", method: "GET", path: "/async", bodyBytes: 0, expect: { type: "application/json", body: '{"ok":true}' } },
];

/** Connections per run, every mode but those that set their own. */
export const CONNECTIONS = 50;
/** Requests per write (pipelined) or concurrent streams per connection (h2c). */
export const PIPELINE_DEPTH = 16;
/** Concurrent streams per connection over HTTP/2 with TLS, as browsers and h2load users run it. */
export const H2_TLS_STREAMS = 100;

/**
 * protocol: what a server must speak to take part ("h1", "h2c", "tls-h1": HTTPS/1.1, "tls-h2":
 * HTTP/2 over TLS by ALPN). depth: requests in flight per connection. scheme: the URL's.
 * newConnection: every request on a new connection (a full TLS handshake each).
 * The h2c mode runs only with --h2 (or --modes=h2c) and uses h2load; the TLS modes only with
 * --tls (or --modes=https,h2,handshake), h2load for h2 and wrk for the others.
 */
export const MODES = [
  { name: "plain", protocol: "h1", depth: 1, title: "one request at a time per connection (keep-alive)" },
  { name: "pipelined", protocol: "h1", depth: PIPELINE_DEPTH, title: `${PIPELINE_DEPTH} requests per write` },
  { name: "h2c", protocol: "h2c", depth: PIPELINE_DEPTH, title: `HTTP/2 prior knowledge, ${PIPELINE_DEPTH} concurrent streams per connection` },
  { name: "https", protocol: "tls-h1", depth: 1, scheme: "https", title: "HTTPS/1.1 keep-alive, one request at a time per connection" },
  // 10 connections: with 50 x 100 streams in flight, h2load never finished against node:http2.
  { name: "h2", protocol: "tls-h2", depth: H2_TLS_STREAMS, connections: 10, scheme: "https", title: `HTTP/2 over TLS (ALPN), 10 connections x ${H2_TLS_STREAMS} concurrent streams` },
  { name: "handshake", protocol: "tls-h1", depth: 1, scheme: "https", newConnection: true, title: "HTTPS/1.1, a new TLS connection (full handshake) per request" },
];

export const TLS_MODES = ["https", "h2", "handshake"];

export const DEFAULT_MODES = ["plain", "pipelined"];

/** The request body of a scenario ('x' repeated), or null. */
export function requestBody(scenario) {
  return scenario.bodyBytes > 0 ? Buffer.alloc(scenario.bodyBytes, 0x78) : null;
}

const CHECK_TIMEOUT_MS = 5000;

/**
 * One request of the scenario to check the server answers it as specified before it is measured.
 * Resolves with null when it does, or a short description of what was wrong.
 */
export async function checkResponse(scenario, port, protocol) {
  const body = requestBody(scenario);
  let res;
  try {
    const secure = protocol.startsWith("tls-");
    res = await (protocol === "h2c" || protocol === "tls-h2" ? requestH2c : requestH1)(scenario, port, body, secure);
  } catch (err) {
    return `no answer to ${scenario.method} ${scenario.path}: ${err.message}`;
  }
  const { expect } = scenario;
  const type = String(res.headers["content-type"] ?? "").toLowerCase();
  const what = `${scenario.method} ${scenario.path} answered ${res.status} ${JSON.stringify(type)} with ${res.body.length} bytes`;
  if (res.status !== 200) return `${what}, expected 200`;
  if (expect.type && !type.startsWith(expect.type)) return `${what}, expected content-type ${expect.type}`;
  if (expect.body !== undefined && res.body.toString("utf8") !== expect.body) {
    return `${what} ${JSON.stringify(res.body.toString("utf8").slice(0, 80))}, expected ${JSON.stringify(expect.body)}`;
  }
  if (expect.length !== undefined && res.body.length !== expect.length) return `${what}, expected ${expect.length} bytes`;
  if (expect.echo && !res.body.equals(body)) return `${what}, expected the ${body.length}-byte request body back`;
  return null;
}

// The benchmark's certificate is self-signed for the test CA; the check only wants the answer.
const TLS_CLIENT = { rejectUnauthorized: false, servername: "localhost" };

function requestH1(scenario, port, body, secure) {
  return new Promise((resolve, reject) => {
    const headers = body ? { "content-type": "application/octet-stream", "content-length": body.length } : {};
    // agent: false sends "Connection: close", so no idle keep-alive connection lingers during the run.
    const req = (secure ? https : http).request(
      { host: "127.0.0.1", port, method: scenario.method, path: scenario.path, headers, agent: false, timeout: CHECK_TIMEOUT_MS, ...(secure ? TLS_CLIENT : {}) },
      (res) => {
        const chunks = [];
        res.on("data", (chunk) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${CHECK_TIMEOUT_MS / 1000} s`)));
    req.on("error", reject);
    req.end(body ?? undefined);
  });
}

function requestH2c(scenario, port, body, secure) {
  return new Promise((resolve, reject) => {
    const session = secure ? http2.connect(`https://127.0.0.1:${port}`, TLS_CLIENT) : http2.connect(`http://127.0.0.1:${port}`);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`no answer within ${CHECK_TIMEOUT_MS / 1000} s`));
    }, CHECK_TIMEOUT_MS);
    const fail = (err) => {
      clearTimeout(timer);
      session.destroy();
      reject(err);
    };
    session.on("error", fail);
    const headers = { ":method": scenario.method, ":path": scenario.path };
    if (body) headers["content-type"] = "application/octet-stream";
    const stream = session.request(headers, { endStream: !body });
    let status = 0;
    let resHeaders = {};
    const chunks = [];
    stream.on("response", (h) => {
      status = h[":status"];
      resHeaders = h;
    });
    stream.on("data", (chunk) => chunks.push(chunk));
    stream.on("end", () => {
      clearTimeout(timer);
      session.close();
      resolve({ status, headers: resHeaders, body: Buffer.concat(chunks) });
    });
    stream.on("error", fail);
    if (body) stream.end(body);
  });
}

/**
 * Two requests of the scenario in one write, the second with "Connection: close": the server must
 * answer both, in order, then close. Catches a server that cannot take pipelined requests (one
 * that drops the connection instead, say) before the pipelined mode measures only its errors.
 * Resolves with null when both answers came, or what went wrong.
 */
export function checkPipelined(scenario, port) {
  const body = requestBody(scenario);
  const head = (close) =>
    `${scenario.method} ${scenario.path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
    (body ? `Content-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n` : "") +
    (close ? "Connection: close\r\n" : "") +
    "\r\n";
  const request = Buffer.concat([Buffer.from(head(false)), body ?? Buffer.alloc(0), Buffer.from(head(true)), body ?? Buffer.alloc(0)]);
  return new Promise((resolve) => {
    const chunks = [];
    // No half-close: a server may rightly drop pending responses when the client sends FIN.
    const socket = net.connect(port, "127.0.0.1", () => socket.write(request));
    const finish = (why) => {
      clearTimeout(timer);
      socket.destroy();
      // Bodies here are 'x' bytes or JSON: "HTTP/1.1 " only appears at the start of a response.
      const text = Buffer.concat(chunks).toString("latin1");
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
      if (statuses.length === 2 && statuses.every((code) => code === "200")) resolve(null);
      else resolve(`two pipelined ${scenario.method} ${scenario.path} in one write got ${statuses.length ? statuses.join(", ") : "no response"} (${why})`);
    };
    const timer = setTimeout(() => finish(`no close within ${CHECK_TIMEOUT_MS / 1000} s`), CHECK_TIMEOUT_MS);
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("close", () => finish("connection closed"));
    socket.on("error", (err) => finish(err.message));
  });
}
