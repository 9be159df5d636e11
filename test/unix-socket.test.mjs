// Listening on a Unix domain socket (`unix`, Deno's and node:http's `path`): HTTP/1.1, h2c,
// TLS and WebSockets over the socket, with node:http, raw `net`, curl and `ws` as clients,
// in both network modes (worker threads, and `workerThreads: 0`); the socket file's life;
// each error. FETCH_RS_IN_THREAD=1 runs the whole file in the in-thread mode again.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import tls from "node:tls";
import { promisify } from "node:util";
import WebSocket from "ws";
import { Server, serve } from "../dist/index.js";
import { parseRaw, readResponse, sleep, waitFor } from "./helpers.mjs";
import { A, CA } from "./tls-helpers.mjs";

const linux = process.platform === "linux";
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), "fetch-rs-unix-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
/** A fresh socket path in the test's directory. */
const sockPath = () => join(dir, `s${++n}.sock`);

let curl = true;
try {
  execFileSync("curl", ["--version"], { stdio: "ignore" });
} catch {
  curl = false;
}

const MODES = linux
  ? [
      ["worker threads", {}],
      ["workerThreads: 0", { workerThreads: 0 }],
    ]
  : [["worker threads", {}]];

/** node:http request over the socket at `path`; resolves with status, headers and body text. */
function get(path, urlPath = "/", { method = "GET", headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: path, path: urlPath, method, headers, agent: false }, (res) =>
      readResponse(res).then((r) => resolve({ ...r, body: r.body.toString() }), reject),
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** Raw bytes over the socket; resolves with all the server sent until it closed. */
function rawUnix(path, data) {
  return new Promise((resolve, reject) => {
    const s = net.connect(path);
    const chunks = [];
    s.on("connect", () => s.end(data));
    s.on("data", (d) => chunks.push(d));
    s.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")));
    s.on("error", reject);
  });
}

/** What a request saw of its address, as JSON. */
const describe = (req, info) =>
  Response.json({
    url: req.url,
    ip: info.requestIP(req),
    clientAddress: info.clientAddress,
    remoteAddr: info.remoteAddr,
    version: req.headers.get("host"),
  });

/** `code` and a message naming `path`. */
function listenError(path, pattern) {
  return (e) => {
    assert.equal(e.code, "ERR_LISTEN", e.message);
    assert.ok(e.message.includes(path.replaceAll("\0", "\\0")), e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  };
}

for (const [mode, opts] of MODES) {
  test(`${mode}: node:http over a Unix socket; the address members; close() removes the file`, async () => {
    const path = sockPath();
    const server = serve({ unix: path, ...opts, fetch: describe });
    try {
      const st = statSync(path);
      assert.ok(st.isSocket());
      // The mode bind(2) gives, as node:http's: 0777 less the umask.
      assert.equal(st.mode & 0o777, 0o777 & ~process.umask());
      assert.equal(server.port, undefined);
      assert.equal(server.hostname, undefined);
      assert.deepEqual(server.addr, { transport: "unix", path });
      assert.equal(String(server.url), `unix://${path}`);
      const r = await get(path, "/a?b=1");
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body), {
        // node:http sends Host: localhost over a socket path.
        url: "http://localhost/a?b=1",
        ip: null,
        clientAddress: "",
        remoteAddr: { transport: "unix", path },
        version: "localhost",
      });
      // Another Host: the URL's authority, as over TCP.
      const other = await get(path, "/x", { headers: { host: "app.internal:8080" } });
      assert.equal(JSON.parse(other.body).url, "http://app.internal:8080/x");
    } finally {
      await server.close();
    }
    assert.equal(existsSync(path), false, "close() left the socket file");
  });

  test(`${mode}: raw net over a Unix socket: HTTP/1.0 without Host, keep-alive pipelining`, async () => {
    const path = sockPath();
    const server = serve({ unix: path, ...opts, fetch: (req) => new Response(`${req.method} ${req.url}`) });
    try {
      const old = parseRaw(await rawUnix(path, "GET /old HTTP/1.0\r\n\r\n"));
      assert.equal(old.status, 200);
      assert.equal(old.body, "GET http://localhost/old");
      const text = await rawUnix(
        path,
        "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
      );
      assert.equal(text.match(/HTTP\/1\.1 200/g)?.length, 3, text);
      assert.ok(text.includes("GET http://h/1") && text.includes("GET http://h/3"), text);
    } finally {
      await server.close();
    }
  });

  test(`${mode}: curl --unix-socket, HTTP/1.1 and h2c with prior knowledge`, { skip: !curl && "no curl" }, async () => {
    const path = sockPath();
    const server = serve({ unix: path, ...opts, fetch: (req) => new Response(`${req.url} ${req.method}`) });
    try {
      const h1 = await run("curl", ["-s", "-w", " %{http_version}", "--unix-socket", path, "http://svc/p?q"]);
      assert.equal(h1.stdout, "http://svc/p?q GET 1.1");
      const h2 = await run("curl", [
        "-s",
        "-w",
        " %{http_version}",
        "--http2-prior-knowledge",
        "--unix-socket",
        path,
        "http://svc/p?q",
      ]);
      assert.equal(h2.stdout, "http://svc/p?q GET 2");
    } finally {
      await server.close();
    }
  });

  test(`${mode}: node:http2 (h2c) over a Unix socket`, async () => {
    const path = sockPath();
    const server = serve({ unix: path, ...opts, fetch: (req) => new Response(req.url) });
    const session = http2.connect("http://svc", { createConnection: () => net.connect(path) });
    try {
      const req = session.request({ ":path": "/h2" });
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (d) => (body += d));
      const [head] = await once(req, "response");
      await once(req, "end");
      assert.equal(head[":status"], 200);
      assert.equal(body, "http://svc/h2");
    } finally {
      session.close();
      await server.close();
    }
  });

  test(`${mode}: a WebSocket over a Unix socket (ws+unix:)`, async () => {
    const path = sockPath();
    let remote;
    const server = serve({
      unix: path,
      ...opts,
      fetch(req, server) {
        if (server.upgrade(req, { data: new URL(req.url).pathname })) return;
        return new Response("no", { status: 400 });
      },
      websocket: {
        open(ws) {
          remote = ws.remoteAddress;
        },
        message(ws, m) {
          ws.send(`${ws.data}: ${m}`);
        },
      },
    });
    const ws = new WebSocket(`ws+unix://${path}:/chat`);
    try {
      await once(ws, "open");
      ws.send("hi");
      const [m] = await once(ws, "message");
      assert.equal(String(m), "/chat: hi");
      assert.equal(remote, "");
      assert.equal(server.stats().webSockets, 1);
      ws.close(1000);
      await once(ws, "close");
    } finally {
      await server.close({ force: true });
    }
  });

  test(`${mode}: TLS over a Unix socket, HTTP/1.1 and h2 by ALPN`, async () => {
    const path = sockPath();
    const server = serve({ unix: path, tls: A, ...opts, fetch: (req) => new Response(req.url) });
    try {
      const h1 = await new Promise((resolve, reject) => {
        const req = https.request(
          { socketPath: path, path: "/s", servername: "localhost", ca: CA, agent: false },
          (res) => readResponse(res).then((r) => resolve({ ...r, alpn: res.socket.alpnProtocol }), reject),
        );
        req.on("error", reject);
        req.end();
      });
      assert.equal(h1.status, 200);
      assert.equal(h1.body.toString(), "https://localhost/s");
      const session = http2.connect("https://localhost", {
        createConnection: () => tls.connect({ path, servername: "localhost", ca: CA, ALPNProtocols: ["h2"] }),
      });
      try {
        const req = session.request({ ":path": "/h2" });
        let body = "";
        req.setEncoding("utf8");
        req.on("data", (d) => (body += d));
        await once(req, "end");
        assert.equal(body, "https://localhost/h2");
        assert.equal(session.alpnProtocol, "h2");
      } finally {
        session.close();
      }
      assert.ok(server.stats().tlsHandshakes >= 2);
    } finally {
      await server.close();
    }
  });

  test(`${mode}: limits, timeouts and stats over a Unix socket`, async () => {
    const path = sockPath();
    const server = serve({
      unix: path,
      ...opts,
      maxBodySize: 10,
      idleTimeout: 200,
      fetch: async (req) => new Response(await req.text()),
    });
    try {
      assert.equal((await get(path, "/", { method: "POST", body: "small" })).body, "small");
      assert.equal((await get(path, "/", { method: "POST", body: "x".repeat(100) })).status, 413);
      // An idle keep-alive connection is closed after idleTimeout.
      const s = net.connect(path);
      await once(s, "connect");
      s.write("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
      await once(s, "data");
      assert.equal(server.stats().activeConnections, 1);
      const t0 = Date.now();
      await once(s, "close");
      assert.ok(Date.now() - t0 >= 100, "closed before idleTimeout");
      await waitFor(() => server.stats().activeConnections === 0);
      assert.ok(server.stats().totalRequests >= 3);
    } finally {
      await server.close();
    }
  });

  test(`${mode}: close() is graceful: the file goes at once, the request in flight is answered`, async () => {
    const path = sockPath();
    let release;
    const gate = new Promise((r) => (release = r));
    let entered;
    const inHandler = new Promise((r) => (entered = r));
    const server = serve({
      unix: path,
      ...opts,
      fetch: async () => {
        entered();
        await gate;
        return new Response("late");
      },
    });
    const pending = get(path, "/");
    await inHandler;
    const closed = server.close();
    assert.equal(existsSync(path), false, "the socket file outlived close()");
    await assert.rejects(get(path, "/"), { code: "ENOENT" });
    release();
    assert.equal((await pending).body, "late");
    await closed;
    // The path is free again.
    const again = serve({ unix: path, ...opts, fetch: () => new Response("again") });
    try {
      assert.equal((await get(path, "/")).body, "again");
    } finally {
      await again.close();
    }
  });

  // The name is exactly the bytes given, as Bun's and curl's (Node 20's net pads it with NULs
  // to the whole sun_path: another name, so curl is the client here).
  test(`${mode}: an abstract socket name (Linux)`, { skip: (!linux || !curl) && "Linux and curl only" }, async () => {
    const name = `\0fetch-rs-test-${process.pid}-${++n}`;
    const server = serve({ unix: name, ...opts, fetch: (req) => new Response(req.url) });
    try {
      assert.equal(String(server.url), `abstract://${encodeURIComponent(name.slice(1))}`);
      const r = await run("curl", ["-s", "--abstract-unix-socket", name.slice(1), "http://svc/abs"]);
      assert.equal(r.stdout, "http://svc/abs");
      // No file for it.
      assert.throws(() => serve({ unix: name, ...opts, fetch: () => new Response("") }), listenError(name));
    } finally {
      await server.close();
    }
    const again = serve({ unix: name, ...opts, fetch: () => new Response("again") });
    await again.close();
  });
}

test("Deno's and node:http's spelling: path, transport, onListen", async () => {
  const path = sockPath();
  let heard;
  const server = serve({ path, transport: "unix", onListen: (addr) => (heard = addr), fetch: () => new Response("d") });
  try {
    assert.deepEqual(heard, { transport: "unix", path });
    assert.equal((await get(path)).body, "d");
  } finally {
    await server.close();
  }
  const s = new Server({ path });
  s.addEventListener("fetch", (e) => e.respondWith(new Response("s")));
  await s.listen();
  try {
    assert.equal((await get(path)).body, "s");
  } finally {
    await s.close();
  }
  assert.equal(existsSync(path), false);
});

test("a relative path is the working directory's; the URL has it absolute", async () => {
  const cwd = process.cwd();
  process.chdir(dir);
  let server;
  try {
    server = serve({ unix: "rel.sock", fetch: () => new Response("rel") });
  } finally {
    process.chdir(cwd);
  }
  try {
    assert.equal(String(server.url), `unix://${join(dir, "rel.sock")}`);
    assert.equal((await get(join(dir, "rel.sock"))).body, "rel");
  } finally {
    await server.close();
  }
  // Removed where it was made, though the working directory changed.
  assert.equal(existsSync(join(dir, "rel.sock")), false);
});

test("a second server on a path in use: ERR_LISTEN, and the first one serves on", async () => {
  const path = sockPath();
  const first = serve({ unix: path, fetch: () => new Response("first") });
  try {
    assert.throws(
      () => serve({ unix: path, fetch: () => new Response("second") }),
      listenError(path, /another server/),
    );
    const s = new Server({ unix: path });
    await assert.rejects(s.listen(), listenError(path));
    assert.equal((await get(path)).body, "first");
  } finally {
    await first.close();
  }
});

test("a stale socket file is ERR_LISTEN naming it stale (as node:http, Bun and Deno fail), and is left there", async () => {
  const path = sockPath();
  // A process that listens there and dies without closing.
  const child = execFile(process.execPath, [
    "-e",
    `require("net").createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, "SIGKILL"))`,
  ]);
  await once(child, "exit");
  assert.ok(statSync(path).isSocket());
  assert.throws(() => serve({ unix: path, fetch: () => new Response("") }), listenError(path, /no server answers/));
  assert.ok(existsSync(path));
  rmSync(path);
  const server = serve({ unix: path, fetch: () => new Response("fresh") });
  assert.equal((await get(path)).body, "fresh");
  await server.close();
});

test("bad paths: ERR_LISTEN with the path, no file left, no crash", () => {
  const regular = join(dir, "regular");
  writeFileSync(regular, "x");
  const cases = [
    [regular, /not a socket/],
    [join(dir, "missing", "s.sock"), /No such file/],
    [join(regular, "s.sock"), /Not a directory/],
    [join(dir, "a".repeat(120)), /longer than the 10[37]/],
  ];
  // sysfs refuses a socket file even to root.
  if (linux) cases.push(["/sys/fetch-rs.sock", /denied|not permitted|read-only/i]);
  for (const [path, pattern] of cases) {
    assert.throws(() => serve({ unix: path, fetch: () => new Response("") }), listenError(path, pattern));
  }
  assert.equal(existsSync(join(dir, "a".repeat(120))), false);
  assert.equal(statSync(regular).isFile(), true, "the regular file was touched");
});

test("unix options that conflict or make no sense: ERR_INVALID_OPTION", () => {
  const path = sockPath();
  const fetch = () => new Response("");
  for (const bad of [
    { unix: path, port: 3000 },
    { unix: path, host: "127.0.0.1" },
    { path, hostname: "localhost" },
    { unix: path, reusePort: true },
    { unix: path, path: path + "x" },
    { unix: "" },
    { unix: 5 },
    { path, transport: "tcp" },
    { transport: "unix" },
    { transport: "udp" },
    { unix: "/tmp/a\0b" },
  ]) {
    assert.throws(
      () => serve({ ...bad, fetch }),
      (e) => e.code === "ERR_INVALID_OPTION",
      JSON.stringify(bad),
    );
  }
  assert.equal(existsSync(path), false);
});

test("many connections at once over a Unix socket, with maxConnections", async () => {
  const path = sockPath();
  const server = serve({ unix: path, maxConnections: 4, fetch: async () => (await sleep(5), new Response("ok")) });
  try {
    const bodies = await Promise.all(Array.from({ length: 40 }, () => get(path).then((r) => r.body)));
    assert.deepEqual(new Set(bodies), new Set(["ok"]));
  } finally {
    await server.close();
  }
});
