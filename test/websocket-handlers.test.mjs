// Bun's WebSocket API over real sockets with `ws` clients: `server.upgrade(request, { data,
// headers })` and the handlers of the server's `websocket` option (open, message, close,
// drain, ping, pong), in both the `new Server` + fetch listener and the `serve()` forms.
import assert from "node:assert/strict";
import { once } from "node:events";
import { test } from "node:test";
import WebSocket from "ws";
import { serve, Server, Response, upgradeWebSocket } from "../dist/index.js";
import { raw, waitFor } from "./helpers.mjs";

/** Opens a `ws` client on `path`; resolves with it and the 101's headers once open. */
async function client(server, path = "/ws", protocols) {
  const c = new WebSocket(`ws://127.0.0.1:${server.port}${path}`, protocols);
  let headers;
  c.once("upgrade", (res) => (headers = res.headers));
  await once(c, "open");
  return { c, headers };
}

/** Messages a client receives, as [isBinary, text or hex]. */
/**
 * A serve() server that upgrades every request (Bun's style) with these handlers; `data`, when
 * given, makes each socket's `ws.data` from its request.
 */
function upgradingServer(websocket, data) {
  return serve({
    port: 0,
    host: "127.0.0.1",
    fetch(req, srv) {
      if (srv.upgrade(req, data && { data: data(req) })) return;
      return new Response("no", { status: 400 });
    },
    websocket,
  });
}

/** `ws.data` of a socket opened at `/ws?tag=N`: { tag: N }. */
const tagOf = (req) => ({ tag: Number(new URL(req.url).searchParams.get("tag")) });

function collect(c) {
  const got = [];
  c.on("message", (d, isBinary) => got.push([isBinary, isBinary ? Buffer.from(d).toString("hex") : String(d)]));
  return got;
}

test("handlers echo text and binary: new Server with server.upgrade in a fetch listener", async () => {
  const kinds = [];
  const server = new Server({
    port: 0,
    host: "127.0.0.1",
    websocket: {
      message(ws, m) {
        kinds.push(typeof m === "string" ? "string" : Buffer.isBuffer(m) ? "Buffer" : "other");
        ws.send(m);
      },
    },
  });
  server.addEventListener("fetch", (ev) => {
    if (!server.upgrade(ev.request)) ev.respondWith(new Response("not a WebSocket", { status: 400 }));
  });
  await server.listen();
  try {
    const { c } = await client(server);
    const got = collect(c);
    c.send("hello");
    c.send(Buffer.from([1, 2, 3, 250]));
    c.send(Buffer.alloc(100_000, 7));
    c.send("wörld");
    await waitFor(() => got.length === 4);
    assert.deepEqual(got.slice(0, 2), [
      [false, "hello"],
      [true, "010203fa"],
    ]);
    assert.deepEqual(got[2], [true, Buffer.alloc(100_000, 7).toString("hex")]);
    assert.deepEqual(got[3], [false, "wörld"]);
    // Sockets of server.upgrade give binary messages as Buffers, as Bun's do.
    assert.deepEqual(kinds, ["string", "Buffer", "Buffer", "string"]);
    c.close();
  } finally {
    await server.close();
  }
});

test("serve(): fetch(req, server) upgrades with data and headers, and answers plain requests itself", async () => {
  const opened = [];
  const server = serve({
    port: 0,
    host: "127.0.0.1",
    fetch(req, server) {
      const path = new URL(req.url).pathname;
      const headers = { "X-Room": path.slice(1), "Set-Cookie": "seen=1" };
      if (path === "/chat") headers["Sec-WebSocket-Protocol"] = "chat";
      if (server.upgrade(req, { data: { path, n: 42 }, headers })) return;
      return new Response(`plain ${path}`, { status: 426 });
    },
    websocket: {
      open(ws) {
        opened.push({ data: ws.data, state: ws.readyState, protocol: ws.protocol });
      },
      message(ws, m) {
        ws.send(`${ws.data.path}:${m}`);
      },
    },
  });
  try {
    const { c, headers } = await client(server, "/lobby");
    assert.equal(headers["x-room"], "lobby");
    assert.equal(headers["set-cookie"][0], "seen=1");
    const got = collect(c);
    c.send("hi");
    c.send(Buffer.from("bin"));
    await waitFor(() => got.length === 2);
    assert.deepEqual(got, [
      [false, "/lobby:hi"],
      [false, "/lobby:bin"],
    ]);
    assert.deepEqual(opened[0], { data: { path: "/lobby", n: 42 }, state: 1, protocol: "" });
    // A Sec-WebSocket-Protocol among the headers picks the subprotocol.
    const chat = await client(server, "/chat", ["other", "chat"]);
    assert.equal(chat.c.protocol, "chat");
    await waitFor(() => opened.length === 2);
    assert.equal(opened[1].protocol, "chat");
    chat.c.close();
    // Not an upgrade: upgrade() is false and the handler's own response goes out.
    const r = await fetch(`http://127.0.0.1:${server.port}/page`);
    assert.equal(r.status, 426);
    assert.equal(await r.text(), "plain /page");
    // An upgrade request without a key is not a valid upgrade either.
    const { text: bad } = await raw(
      server.port,
      "GET /nokey HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
        "Sec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n",
      { end: true },
    );
    assert.match(bad, /^HTTP\/1\.1 426/);
    assert.match(bad, /plain \/nokey/);
    // A subprotocol the client did not offer makes the upgrade fail, not throw.
    const refused = new WebSocket(`ws://127.0.0.1:${server.port}/chat`, ["other"]);
    const [, res] = await once(refused, "unexpected-response");
    assert.equal(res.statusCode, 426);
    c.close();
  } finally {
    await server.close();
  }
});

test("an async fetch handler may upgrade after an await and return nothing", async () => {
  const server = serve({
    port: 0,
    host: "127.0.0.1",
    async fetch(req, server) {
      await new Promise((r) => setTimeout(r, 10));
      if (server.upgrade(req, { data: "late" })) return;
      return new Response("no", { status: 400 });
    },
    websocket: {
      message(ws, m) {
        ws.send(`${ws.data} ${m}`);
      },
    },
  });
  try {
    const { c } = await client(server);
    const got = collect(c);
    c.send("x");
    await waitFor(() => got.length === 1);
    assert.deepEqual(got[0], [false, "late x"]);
    c.close();
  } finally {
    await server.close();
  }
});

test("a fetch handler that returns nothing without upgrading is answered 500 and reported", async () => {
  const errors = [];
  const server = serve({ port: 0, host: "127.0.0.1", fetch() {} });
  server.addEventListener("error", (e) => errors.push(e.error));
  try {
    const r = await fetch(`http://127.0.0.1:${server.port}/`, { signal: AbortSignal.timeout(5000) });
    assert.equal(r.status, 500);
    assert.equal(errors.length, 1);
  } finally {
    await server.close();
  }
});

test("open, close, drain, ping and pong handlers get their arguments", async () => {
  const calls = [];
  let sock;
  const handlers = {
    open(ws) {
      sock = ws;
      // Called as methods of the options object, as Bun does.
      calls.push(["open", this === handlers]);
      ws.ping("from server");
    },
    message(ws, m) {
      if (m === "burst") {
        // The second and third sends queue behind the first (-1): a drain follows.
        const statuses = [ws.send("a"), ws.send("b"), ws.send("c")];
        ws.send(JSON.stringify(statuses));
      }
    },
    drain(ws) {
      calls.push(["drain", ws === sock]);
    },
    ping(ws, data) {
      calls.push(["ping", ws === sock, Buffer.isBuffer(data), String(data)]);
    },
    pong(ws, data) {
      calls.push(["pong", ws === sock, Buffer.isBuffer(data), String(data)]);
    },
    close(ws, code, reason) {
      calls.push(["close", ws === sock, code, reason, ws.readyState]);
    },
  };
  const server = serve({
    port: 0,
    host: "127.0.0.1",
    fetch(req, server) {
      if (server.upgrade(req)) return;
      return new Response("no", { status: 400 });
    },
    websocket: handlers,
  });
  try {
    const { c } = await client(server);
    await waitFor(() => calls.length > 0);
    assert.deepEqual(calls[0], ["open", true]);
    // `ws` answers the server's ping by itself: the pong handler hears it.
    await waitFor(() => calls.some((x) => x[0] === "pong"));
    assert.deepEqual(
      calls.find((x) => x[0] === "pong"),
      ["pong", true, true, "from server"],
    );
    c.ping("from client");
    await once(c, "pong");
    await waitFor(() => calls.some((x) => x[0] === "ping"));
    assert.deepEqual(
      calls.find((x) => x[0] === "ping"),
      ["ping", true, true, "from client"],
    );
    const got = collect(c);
    c.send("burst");
    await waitFor(() => got.length === 4 && calls.some((x) => x[0] === "drain"));
    assert.deepEqual(JSON.parse(got[3][1]), [1, -1, -1]);
    assert.deepEqual(
      calls.find((x) => x[0] === "drain"),
      ["drain", true],
    );
    c.close(4001, "bye now");
    await waitFor(() => calls.some((x) => x[0] === "close"));
    assert.deepEqual(calls.at(-1), ["close", true, 4001, "bye now", 3]);
    assert.equal(calls.filter((x) => x[0] === "open").length, 1);
    // A client gone without a close frame: 1006.
    const other = await client(server);
    other.c.terminate();
    await waitFor(() => calls.filter((x) => x[0] === "close").length === 2);
    assert.equal(calls.at(-1)[2], 1006);
  } finally {
    await server.close();
  }
});

test("a handler that throws or rejects is reported; the socket and other sockets carry on", async () => {
  const errors = [];
  const server = serve({
    port: 0,
    host: "127.0.0.1",
    fetch(req, server) {
      if (server.upgrade(req)) return;
      return new Response("no", { status: 400 });
    },
    websocket: {
      open(ws) {
        if (ws.data === undefined) ws.data = { opened: true };
        throw new Error("open failed");
      },
      async message(ws, m) {
        if (m === "throw") throw new Error("message failed");
        ws.send(`echo ${m}`);
      },
      close() {
        throw new Error("close failed");
      },
    },
  });
  server.addEventListener("error", (e) => errors.push(e.error.message));
  try {
    const a = await client(server);
    const b = await client(server);
    const gotA = collect(a.c);
    const gotB = collect(b.c);
    a.c.send("throw");
    a.c.send("after");
    b.c.send("other");
    await waitFor(() => gotA.length === 1 && gotB.length === 1);
    assert.deepEqual(gotA, [[false, "echo after"]]);
    assert.deepEqual(gotB, [[false, "echo other"]]);
    a.c.close();
    await waitFor(() => errors.includes("close failed"));
    assert.ok(errors.includes("open failed"));
    assert.ok(errors.includes("message failed"));
    // Still serving: a new socket, and plain requests.
    const c = await client(server);
    const gotC = collect(c.c);
    c.c.send("new");
    await waitFor(() => gotC.length === 1);
    assert.equal((await fetch(`http://127.0.0.1:${server.port}/`)).status, 400);
    b.c.close();
    c.c.close();
  } finally {
    await server.close();
  }
});

test("the message handler runs before the socket's own listeners, which still get events", async () => {
  const order = [];
  const server = serve({
    port: 0,
    host: "127.0.0.1",
    fetch(req, server) {
      if (new URL(req.url).pathname === "/deno") {
        // A socket of upgradeWebSocket on a server with handlers: the handlers get it too.
        const { socket, response } = upgradeWebSocket(req, { data: "deno" });
        socket.addEventListener("message", (e) => order.push(["deno listener", e.data instanceof ArrayBuffer]));
        return response;
      }
      if (server.upgrade(req, { data: "bun" })) return;
      return new Response("no", { status: 400 });
    },
    websocket: {
      open(ws) {
        if (ws.data !== "bun") return;
        ws.addEventListener("message", (e) => order.push(["listener", String(e.data)]));
        ws.onmessage = (e) => order.push(["onmessage", String(e.data)]);
        ws.addEventListener("close", (e) => order.push(["close listener", e.code]));
      },
      message(ws, m) {
        order.push([`handler ${ws.data}`, typeof m === "string" ? m : m.constructor.name]);
      },
      close(ws, code) {
        order.push([`close handler ${ws.data}`, code]);
      },
    },
  });
  try {
    const { c } = await client(server);
    c.send("one");
    await waitFor(() => order.length === 3);
    c.close(1000);
    await waitFor(() => order.length === 5);
    assert.deepEqual(order, [
      ["handler bun", "one"],
      ["listener", "one"],
      ["onmessage", "one"],
      ["close handler bun", 1000],
      ["close listener", 1000],
    ]);
    order.length = 0;
    const d = await client(server, "/deno");
    d.c.send(Buffer.from("xy"));
    await waitFor(() => order.length === 2);
    assert.deepEqual(order, [
      ["handler deno", "ArrayBuffer"],
      ["deno listener", true],
    ]);
    d.c.close();
  } finally {
    await server.close();
  }
});

test("handler options that are not functions are refused", () => {
  for (const name of ["open", "message", "close", "drain", "ping", "pong"]) {
    assert.throws(
      () => new Server({ port: 0, websocket: { [name]: "nope" } }),
      (e) => e.code === "ERR_INVALID_OPTION" && e.message.includes(`websocket.${name}`),
    );
  }
});

test("Bun's socket methods: sendText, sendBinary, cork, getBufferedAmount", async () => {
  const results = [];
  const server = serve({
    port: 0,
    host: "127.0.0.1",
    fetch(req, server) {
      if (server.upgrade(req)) return;
      return new Response("no", { status: 400 });
    },
    websocket: {
      message(ws) {
        const r = ws.cork((w) => {
          w.sendText("text");
          w.sendBinary(new Uint8Array([9, 8]));
          return "corked";
        });
        results.push(r, typeof ws.getBufferedAmount());
        assert.throws(() => ws.sendBinary("not bytes"), TypeError);
      },
    },
  });
  try {
    const { c } = await client(server);
    const got = collect(c);
    c.send("go");
    await waitFor(() => got.length === 2);
    assert.deepEqual(got, [
      [false, "text"],
      [true, "0908"],
    ]);
    assert.deepEqual(results, ["corked", "number"]);
    c.close();
  } finally {
    await server.close();
  }
});

test("binary sends around the staged size keep their bytes, socket and status, on sockets sending in turn", async () => {
  // Sends up to WS_STAGE_BYTES (2 KiB) go through the addon's staging area; larger ones
  // pass the typed array itself. Each reply is a view at an offset into a larger buffer.
  // An empty message is written at once too (it was left queued until the next send).
  const sizes = [0, 1, 63, 64, 2047, 2048, 2049, 5000];
  const statuses = [];
  const server = upgradingServer(
    {
      message(ws, m) {
        const n = Number(String(m));
        const backing = new Uint8Array(n + 3);
        for (let i = 0; i < n; i++) backing[i + 3] = (i * 7 + ws.data.tag) & 0xff;
        statuses.push([ws.data.tag, n, ws.send(backing.subarray(3), ws.data.tag % 2 === 0)]);
      },
    },
    tagOf,
  );
  try {
    const sockets = await Promise.all([1, 2, 3].map((tag) => client(server, `/ws?tag=${tag}`)));
    const got = sockets.map(({ c }) => collect(c));
    for (const [k, size] of sizes.entries()) {
      // One message at a time on every socket: each send finds its queue empty.
      for (const { c } of sockets) c.send(String(size));
      await waitFor(() => got.every((g) => g.length === k + 1));
    }
    for (const [s, g] of got.entries()) {
      const tag = s + 1;
      assert.deepEqual(
        g,
        sizes.map((n) => [
          true,
          Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + tag) & 0xff)).toString("hex"),
        ]),
      );
    }
    // Bun's status: the bytes handed to the connection.
    for (const [tag, n, status] of statuses) assert.equal(status, n, `socket ${tag}, ${n} bytes`);
    assert.equal(statuses.length, sizes.length * 3);
    for (const { c } of sockets) c.close();
  } finally {
    await server.close();
  }
});

test("text sends keep their characters around the one-pass sizes: ASCII, Latin-1, CJK, emoji and lone surrogates, after an ASCII head or not", async () => {
  // The addon reads a string of up to 255 UTF-16 units in one pass and encodes it itself
  // (a longer one is read as UTF-8 by V8); a lone surrogate goes out as U+FFFD, as V8's
  // encoder (and Buffer.from) makes it.
  const texts = [
    "",
    "a",
    "x".repeat(64),
    "é".repeat(64),
    "漢字".repeat(40),
    "\u{1F600}".repeat(40),
    "a\ud800b",
    "\udc00".repeat(3),
    "end\ud83d",
  ];
  // Each kind of character ending right before, at and after the boundary, an emoji's two
  // units split across it.
  for (const n of [254, 255, 256, 257]) texts.push("q".repeat(n), "ÿ".repeat(n), "€".repeat(n));
  texts.push("q".repeat(254) + "\u{1F600}", "q".repeat(255) + "\u{1F600}", "ä".repeat(100_000) + "\ud800");
  // A longer string whose first 255 units are ASCII is encoded by V8 at a byte a unit first,
  // and again at three when that falls short (a guard: such strings took the 12 KiB stack
  // buffer first before): ASCII around that buffer's size and past it, then wider characters
  // after the ASCII head, few (within the first pass's spare bytes) or many, emoji and lone
  // surrogates, at the end and throughout.
  const head = "q".repeat(255);
  for (const n of [12 * 1024 - 5, 12 * 1024, 16 * 1024, 70_000]) texts.push("a".repeat(n));
  texts.push(
    head + "€",
    head + "€".repeat(3),
    head + "€".repeat(100),
    head + "ÿ".repeat(3000),
    head + "\u{1F600}".repeat(2),
    head + "\u{1F600}".repeat(50),
    head + "\ud800",
    head + "x\udc00y".repeat(10),
    "a".repeat(16 * 1024 - 1) + "\u{1F600}",
    "a".repeat(16 * 1024) + "漢".repeat(16 * 1024),
  );
  const statuses = [];
  const server = upgradingServer({
    message(ws, m) {
      const t = texts[Number(String(m))];
      statuses.push(ws.send(t));
    },
  });
  try {
    const { c } = await client(server);
    const got = [];
    c.on("message", (d, isBinary) => got.push([isBinary, Buffer.from(d).toString("hex")]));
    for (const k of texts.keys()) {
      c.send(String(k));
      await waitFor(() => got.length === k + 1);
    }
    assert.deepEqual(
      got,
      texts.map((t) => [false, Buffer.from(t, "utf8").toString("hex")]),
    );
    // Bun's status: the UTF-8 bytes handed to the connection.
    assert.deepEqual(
      statuses,
      texts.map((t) => Buffer.byteLength(t, "utf8")),
    );
    c.close();
  } finally {
    await server.close();
  }
});

test("a received small text message sent on as it is, as an equal string, kept for later or relayed, goes out with its own characters", async () => {
  // A send of a string equal to the small ASCII text message the server was last given
  // takes its bytes from where the addon read that message, not from the string: each of
  // these must still send the characters it was given.
  const sockets = [];
  const kept = [[], []];
  const later = [];
  const server = upgradingServer(
    {
      open(ws) {
        sockets[ws.data.tag] = ws;
      },
      message(ws, m) {
        const tag = ws.data.tag;
        switch (m[0]) {
          case "a":
            ws.send(m);
            break;
          case "b":
            ws.send(m.slice(0, 1) + m.slice(1));
            break;
          case "c":
            ws.send("z" + m.slice(1));
            break;
          case "d":
            kept[tag].push(m);
            break;
          case "e":
            ws.send(kept[tag].shift());
            ws.send(m, false);
            break;
          case "f":
            sockets[1 - tag].send(m);
            ws.sendText(m);
            break;
          case "g":
            later.push(new Promise((resolve) => setTimeout(resolve, 30)).then(() => ws.send(m)));
            break;
          default:
            ws.send(m);
        }
      },
    },
    tagOf,
  );
  try {
    const clients = [];
    const got = [];
    for (const tag of [0, 1]) {
      const { c } = await client(server, `/ws?tag=${tag}`);
      got[tag] = collect(c);
      clients[tag] = c;
    }
    // Each socket's `open` handler has run (a client may see its socket open before).
    await waitFor(() => sockets[0] !== undefined && sockets[1] !== undefined);
    const ops = "abcdefg";
    const count = 140;
    const messages = [[], []];
    const expected = [[], []];
    for (let i = 0; i < count; i++)
      for (const tag of [0, 1]) {
        const op = ops[i % ops.length];
        // Every 10th one is not ASCII, so not read into the shared text.
        const filler = i % 10 === 9 ? "é" : String.fromCharCode(97 + ((i + tag) % 26));
        messages[tag].push(op + String(tag) + String(i).padStart(3, "0") + filler.repeat((i * 29) % 150));
      }
    for (const tag of [0, 1])
      for (const [i, m] of messages[tag].entries()) {
        if (m[0] === "a" || m[0] === "b" || m[0] === "g") expected[tag].push(m);
        if (m[0] === "c") expected[tag].push("z" + m.slice(1));
        if (m[0] === "e") expected[tag].push(messages[tag][i - 1], m);
        if (m[0] === "f") {
          expected[tag].push(m);
          expected[1 - tag].push(m);
        }
      }
    // Both sockets at once, so that their messages share the drains' strings.
    for (let i = 0; i < count; i++) for (const tag of [0, 1]) clients[tag].send(messages[tag][i]);
    await waitFor(() => got.every((g, tag) => g.length === expected[tag].length));
    await Promise.all(later);
    for (const tag of [0, 1])
      assert.deepEqual(
        got[tag].map(([binary, text]) => (binary ? "binary" : text)).sort(),
        [...expected[tag]].sort(),
        `socket ${tag}`,
      );
    for (const c of clients) c.close();
  } finally {
    await server.close();
  }
});

test("small messages received by one server and sent on by another keep their bytes and characters", async () => {
  // Where a message sent as it was received is read from depends on the server that
  // received it: each server's sends only take that path for its own last drain's.
  const peer = [];
  const servers = [0, 1].map((k) =>
    upgradingServer({
      open(ws) {
        peer[k] = ws;
      },
      message(ws, m) {
        peer[1 - k].send(m);
      },
    }),
  );
  try {
    const clients = [];
    const got = [];
    for (const k of [0, 1]) {
      const { c } = await client(servers[k]);
      got[k] = collect(c);
      clients[k] = c;
    }
    // Each server's `open` handler has run (a client may see its socket open before).
    await waitFor(() => peer[0] !== undefined && peer[1] !== undefined);
    const sent = [[], []];
    for (let i = 0; i < 150; i++)
      for (const k of [0, 1])
        sent[k].push(
          i % 2 === 0
            ? String(k) + "-" + String(i) + "x".repeat((i * 13) % 90)
            : Buffer.alloc(1 + ((i * 17) % 120), (i + k * 101) & 0xff),
        );
    for (let i = 0; i < 150; i++) for (const k of [0, 1]) clients[k].send(sent[k][i]);
    await waitFor(() => got.every((g) => g.length === 150));
    // What one server's client sent reaches the other's, in order.
    for (const k of [0, 1])
      assert.deepEqual(
        got[1 - k],
        sent[k].map((m) => (typeof m === "string" ? [false, m] : [true, m.toString("hex")])),
      );
    for (const c of clients) c.close();
  } finally {
    await Promise.all(servers.map((s) => s.close()));
  }
});

test("a burst of small text and binary messages arrives whole and in order, across the drain's shared arenas", async () => {
  // Small ASCII text messages reach JS as substrings of one string per 16 KiB of them, small
  // binary ones as views of one ArrayBuffer; longer or non-ASCII text comes on its own.
  const sent = [];
  for (let round = 0; round < 3; round++) {
    for (const n of [0, 1, 12, 13, 64, 1000, 1024, 1025])
      sent.push("t" + String(round) + "x".repeat(Math.max(0, n - 2)));
    sent.push("é".repeat(10), Buffer.from([round, 1, 2, 3]), "\u{1F600}");
    // Enough ASCII text for more than one shared string in a drain.
    for (let j = 0; j < 40; j++) sent.push(String(j).padStart(4, "0") + "y".repeat(996));
  }
  const received = [];
  const server = upgradingServer({
    message(ws, m) {
      received.push(m);
      ws.send(m);
    },
  });
  try {
    const { c } = await client(server);
    const got = collect(c);
    // All at once: the server reads many of them in one turn.
    for (const m of sent) c.send(m);
    await waitFor(() => got.length === sent.length);
    const expected = sent.map((m) => (typeof m === "string" ? [false, m] : [true, m.toString("hex")]));
    assert.deepEqual(got, expected);
    // What the handler was given, kept until now, is unchanged by the later drains.
    assert.deepEqual(
      received.map((m) => (typeof m === "string" ? [false, m] : [true, Buffer.from(m).toString("hex")])),
      expected,
    );
    c.close();
  } finally {
    await server.close();
  }
});

test("bursts of several sockets, interleaved in one drain, reach each socket whole and in order: small and shared binary, text, pings, a close between", async () => {
  // A guard of the drain loop's path for small binary messages, which goes straight to the
  // socket (`#wsPooled`) beside the path of every other record (`#wsRecord`), both through
  // the last socket found: records of the sockets come interleaved, of every kind.
  const burst = (tag) => {
    const out = [];
    for (let i = 0; i < 60; i++) {
      if (i % 5 === 0) out.push(`t${tag}-${i}`);
      else if (i % 7 === 0) out.push(Buffer.alloc(2000, (tag * 16 + i) & 0xff));
      else out.push(Buffer.from([tag, i, ...Buffer.alloc(i, i)]));
    }
    return out;
  };
  const received = new Map();
  const server = upgradingServer(
    {
      message(ws, m) {
        const list = received.get(ws.data.tag) ?? [];
        list.push(typeof m === "string" ? m : Buffer.from(m).toString("hex"));
        received.set(ws.data.tag, list);
        ws.send(m);
      },
    },
    tagOf,
  );
  try {
    const clients = [];
    for (const tag of [1, 2, 3]) {
      const { c } = await client(server, `/ws?tag=${tag}`);
      clients.push({ tag, c, got: collect(c), sent: burst(tag) });
    }
    // Every client's burst at once, with pings among the messages; client 2 closes right
    // after its burst, while the others' records still follow in the same drains.
    for (const { tag, c, sent } of clients) {
      sent.forEach((m, i) => {
        c.send(m);
        if (i % 11 === 0) c.ping(Buffer.from([tag, i]));
      });
    }
    clients[1].c.close(1000, "done");
    const open = [clients[0], clients[2]];
    await waitFor(() => open.every(({ got, sent }) => got.length === sent.length));
    await waitFor(() => (received.get(2) ?? []).length === clients[1].sent.length);
    for (const { tag, got, sent } of clients) {
      const expected = sent.map((m) => (typeof m === "string" ? [false, m] : [true, m.toString("hex")]));
      if (tag !== 2) assert.deepEqual(got, expected, `socket ${tag}'s echoes`);
      assert.deepEqual(
        received.get(tag),
        expected.map(([, v]) => v),
        `socket ${tag}'s messages`,
      );
    }
    for (const { c } of open) c.close();
  } finally {
    await server.close();
  }
});
