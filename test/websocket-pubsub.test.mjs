// Pub/sub deliveries over real sockets: where a publish lands among a socket's own sends,
// a subscriber that stops reading, subscribers with and without compression, a socket not
// yet accepted, and subscribers over TLS. A publish is queued on every subscriber and
// written at the JS thread's flush, most often straight from the socket's queue
// (src/websocket.rs, `write_framed`); these hold whichever path a delivery takes.
import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { test } from "node:test";
import WebSocket from "ws";
import { serve, upgradeWebSocket } from "../dist/index.js";
import { waitFor } from "./helpers.mjs";
import { A, CA } from "./tls-helpers.mjs";

/** A server whose every request is upgraded: /sub subscribes to "t" once open, any other
 * path runs `onControl(message, server)` for each message. `subs` lists every subscriber
 * that opened; `open`, those not closed since. */
function pubsubServer(onControl, options = {}) {
  const subs = [];
  const open = new Set();
  const server = serve({
    port: 0,
    host: "127.0.0.1",
    ...options,
    fetch(req) {
      const { socket, response } = upgradeWebSocket(req);
      if (new URL(req.url).pathname === "/sub") {
        socket.onopen = () => {
          socket.subscribe("t");
          subs.push(socket);
          open.add(socket);
        };
        socket.onclose = () => open.delete(socket);
      } else socket.onmessage = (e) => onControl(String(e.data), server, subs);
      return response;
    },
  });
  return { server, subs, open };
}

function url(server, path, scheme = "ws") {
  return `${scheme}://127.0.0.1:${server.port}${path}`;
}

/** Opens a client and collects what it receives (text as strings, binary as Buffers). */
async function collector(address, opts = {}) {
  const c = new WebSocket(address, opts);
  const got = [];
  c.on("message", (d, isBinary) => got.push(isBinary ? Buffer.from(d) : String(d)));
  await once(c, "open");
  return { c, got };
}

/** A client on a raw socket (no library's own flow control in the way): the upgrade by
 * hand, then the payloads of unfragmented, unmasked server frames, as Buffers (`got`), and
 * their opcodes (`frames`). */
async function rawSubscriber(server, path) {
  const sock = net.connect(server.port, "127.0.0.1");
  await once(sock, "connect");
  sock.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  );
  const got = [];
  const frames = [];
  let buf = Buffer.alloc(0);
  let open = false;
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    if (!open) {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      assert.match(buf.subarray(0, end).toString("latin1"), /^HTTP\/1\.1 101/);
      buf = buf.subarray(end + 4);
      open = true;
    }
    for (;;) {
      if (buf.length < 2) break;
      let len = buf[1] & 0x7f;
      let at = 2;
      if (len === 126) {
        if (buf.length < 4) break;
        len = buf.readUInt16BE(2);
        at = 4;
      } else assert.ok(len < 126, "test messages stay under 64 KiB");
      if (buf.length < at + len) break;
      got.push(Buffer.from(buf.subarray(at, at + len)));
      frames.push(buf[0] & 0x0f);
      buf = buf.subarray(at + len);
    }
  });
  return { sock, got, frames };
}

const big = (tag) => tag + ".".repeat(5000);
const tagOf = (m) => String(m).split(".")[0];

/** On each round's message: sends to the subscriber and publishes, small and large, text and binary,
 * interleaved in one batch, then more in a later turn. What the subscriber must see. */
function interleave(subs, server, round) {
  const sub = subs[0];
  sub.send(`s${round}a`);
  server.publish("t", `p${round}b`);
  sub.send(big(`s${round}c`));
  server.publish("t", big(`p${round}d`));
  sub.send(`s${round}e`);
  server.publish("t", Buffer.from(`p${round}f`));
  server.publish("t", `p${round}g`);
  setTimeout(() => {
    server.publish("t", `p${round}h`);
    sub.send(`s${round}i`);
    server.publish("t", `p${round}j`);
  }, 0);
}
const interleaved = (round) =>
  ["sa", "pb", "sc", "pd", "se", "pf", "pg", "ph", "si", "pj"].map((x) => `${x[0]}${round}${x[1]}`);

async function checkInterleaved(scheme, options, clientOpts) {
  const { server, subs } = pubsubServer((m, srv, list) => interleave(list, srv, Number(m)), options);
  try {
    const { c: sub, got } = await collector(url(server, "/sub", scheme), clientOpts);
    await waitFor(() => subs.length === 1);
    const { c: ctl } = await collector(url(server, "/ctl", scheme), clientOpts);
    const want = [];
    for (let round = 0; round < 20; round++) {
      ctl.send(String(round));
      want.push(...interleaved(round));
      await waitFor(() => got.length === want.length);
    }
    assert.deepEqual(got.map(tagOf), want);
    // The large ones whole, the binary one binary.
    assert.equal(got[3], big("p0d"));
    assert.ok(Buffer.isBuffer(got[5]) && String(got[5]) === "p0f");
    sub.close();
    ctl.close();
  } finally {
    await server.close();
  }
}

test("publishes keep their place among a subscriber's own sends, small and large, in one batch and across turns", async () => {
  await checkInterleaved("ws", {}, { perMessageDeflate: false });
});

test("over TLS, publishes reach subscribers in their place among the socket's own sends", async () => {
  await checkInterleaved("wss", { tls: A }, { perMessageDeflate: false, ca: CA, servername: "localhost" });
});

test("a subscriber that stops reading misses publishes past its backpressure limit, another gets every one, and it gets its queue once it reads again", async () => {
  const limit = 256 * 1024;
  const count = 20000;
  const size = 1024;
  const { server, subs } = pubsubServer(() => {}, { websocket: { backpressureLimit: limit } });
  try {
    const reader = await collector(url(server, "/sub"), { perMessageDeflate: false });
    const stalled = await rawSubscriber(server, "/sub");
    await waitFor(() => subs.length === 2);
    const stalledSide = subs[1];
    // The stalled client's socket stops reading: the kernel's buffers fill, then the
    // server's queue for it.
    stalled.sock.pause();
    let delivered = 0;
    let maxBuffered = 0;
    // In batches the reader (in this process) takes before the next: it never falls behind
    // by its limit.
    for (let i = 0; i < count; i += 100) {
      for (let j = i; j < i + 100; j++) {
        const m = Buffer.alloc(size, j % 251);
        m.writeUInt32BE(j, 0);
        delivered += server.publish("t", m);
      }
      maxBuffered = Math.max(maxBuffered, stalledSide.bufferedAmount);
      await waitFor(() => reader.got.length === i + 100);
    }
    // The reader got every publish, whole and in order, whatever happened to the other.
    for (let j = 0; j < count; j++) assert.equal(reader.got[j].readUInt32BE(0), j);
    const toStalled = delivered - count;
    assert.ok(toStalled < count, `the stalled subscriber took ${toStalled} of ${count}`);
    assert.ok(maxBuffered <= limit + size, `bufferedAmount reached ${maxBuffered}`);
    // Reading again, it gets exactly the publishes that were queued for it, in order,
    // each whole.
    stalled.sock.resume();
    await waitFor(() => stalled.got.length === toStalled, 30000).catch((e) => {
      throw new Error(`${e.message}: ${stalled.got.length} of ${toStalled}, buffered ${stalledSide.bufferedAmount}`);
    });
    let last = -1;
    for (const m of stalled.got) {
      const j = m.readUInt32BE(0);
      assert.ok(j > last, `message ${j} after ${last}`);
      assert.equal(m.length, size);
      assert.equal(m[size - 1], j % 251);
      last = j;
    }
    await waitFor(() => stalledSide.bufferedAmount === 0);
    reader.c.close();
    stalled.sock.destroy();
  } finally {
    await server.close();
  }
});

test("one publish reaches subscribers with and without permessage-deflate, each in its form", async () => {
  const { server, subs } = pubsubServer(() => {}, { websocket: { perMessageDeflate: true } });
  try {
    const packed = await collector(url(server, "/sub"), { perMessageDeflate: { threshold: 0 } });
    const plain = await collector(url(server, "/sub"), { perMessageDeflate: false });
    await waitFor(() => subs.length === 2);
    assert.match(packed.c.extensions, /permessage-deflate/);
    assert.equal(plain.c.extensions, "");
    const text = "compress me please ".repeat(5000);
    const read = [packed, plain].map((x) => x.c._socket.bytesRead);
    // Large and small, text and binary, in one batch.
    assert.equal(server.publish("t", text), 2);
    assert.equal(server.publish("t", "small"), 2);
    assert.equal(server.publish("t", Buffer.from(text)), 2);
    assert.equal(server.publish("t", "not compressed", false), 2);
    for (const x of [packed, plain]) {
      await waitFor(() => x.got.length === 4);
      assert.equal(x.got[0], text);
      assert.equal(x.got[1], "small");
      assert.ok(Buffer.isBuffer(x.got[2]) && String(x.got[2]) === text);
      assert.equal(x.got[3], "not compressed");
    }
    const wire = [packed, plain].map((x, i) => x.c._socket.bytesRead - read[i]);
    assert.ok(wire[0] < text.length / 10, `${wire[0]} bytes to the deflating subscriber`);
    assert.ok(wire[1] > 2 * text.length, `${wire[1]} bytes to the plain one`);
    packed.c.close();
    plain.c.close();
  } finally {
    await server.close();
  }
});

test("published text keeps its characters, short and long: ASCII, Latin-1, CJK, emoji and lone surrogates", async () => {
  // Each is sent as its UTF-8, a lone surrogate as U+FFFD (WHATWG's USVString), as
  // Buffer.from writes it; strings of 255 UTF-16 units and more take the addon's other path.
  const texts = ["", "p", "é".repeat(40), "漢字", "\u{1F600}", "a\ud800b", "end\ud83d"];
  for (const n of [254, 255, 256, 20_000]) texts.push("q".repeat(n), "ÿ".repeat(n), "€".repeat(n));
  texts.push("q".repeat(254) + "\u{1F600}", "a".repeat(20_000) + "\u20ac" + "\udc00");
  const { server, subs } = pubsubServer(() => {});
  try {
    const sub = await collector(url(server, "/sub"));
    await waitFor(() => subs.length === 1);
    for (const t of texts) assert.equal(server.publish("t", t), 1);
    await waitFor(() => sub.got.length === texts.length);
    assert.deepEqual(
      sub.got.map((g) => Buffer.from(g).toString("hex")),
      texts.map((t) => Buffer.from(t, "utf8").toString("hex")),
    );
    sub.c.close();
  } finally {
    await server.close();
  }
});

test("topics are their characters, short and long: ASCII, Latin-1, CJK, emoji, 255 units and more, a lone surrogate as U+FFFD", async () => {
  // Topics are read in the addon as the messages are (strings of 255 UTF-16 units and more
  // take its other path); a lone surrogate becomes U+FFFD, as Web IDL's USVString makes it.
  const topics = ["", "t", "é", "漢字", "\u{1F600}", "a\ufffdb", "q".repeat(254), "q".repeat(255)];
  topics.push("q".repeat(20_000), "€".repeat(300), "ÿ".repeat(255), "q".repeat(254) + "\u{1F600}");
  const near = ["T", "e", "q".repeat(253), "q".repeat(256), "q".repeat(19_999), "€".repeat(299), "a\ufffd"];
  let socket;
  const server = serve({
    port: 0,
    host: "127.0.0.1",
    fetch(req) {
      const up = upgradeWebSocket(req);
      up.socket.onopen = () => {
        for (const t of topics) up.socket.subscribe(t);
        socket = up.socket;
      };
      return up.response;
    },
  });
  try {
    const sub = await collector(url(server, "/"));
    await waitFor(() => socket !== undefined);
    assert.deepEqual(new Set(socket.subscriptions), new Set(topics));
    for (const t of topics) assert.equal(socket.isSubscribed(t), true, `isSubscribed ${t.slice(0, 20)}`);
    for (const t of near) assert.equal(socket.isSubscribed(t), false, `isSubscribed ${t.slice(0, 20)}`);
    // The same topic written with a lone surrogate.
    assert.equal(socket.isSubscribed("a\ud800b"), true);
    for (const t of near) assert.equal(server.publish(t, "no"), 0);
    for (const [i, t] of topics.entries()) assert.equal(server.publish(t, `m${i}`), 1);
    assert.equal(server.publish("a\udc00b", Buffer.from("lone")), 1);
    await waitFor(() => sub.got.length === topics.length + 1);
    assert.deepEqual(sub.got.map(String), [...topics.map((_, i) => `m${i}`), "lone"]);
    for (const t of topics.slice(0, 6)) socket.unsubscribe(t);
    assert.deepEqual(new Set(socket.subscriptions), new Set(topics.slice(6)));
    for (const t of topics.slice(0, 6)) assert.equal(server.publish(t, "gone"), 0);
    sub.c.close();
  } finally {
    await server.close();
  }
});

test("server.subscriberCount(topic) counts the open sockets subscribed, as they come and go", async () => {
  const { server, subs, open } = pubsubServer(() => {});
  try {
    assert.equal(server.subscriberCount("t"), 0);
    const a = await collector(url(server, "/sub"));
    const b = await collector(url(server, "/sub"));
    await waitFor(() => subs.length === 2);
    assert.equal(server.subscriberCount("t"), 2);
    assert.equal(server.subscriberCount("T"), 0);
    assert.equal(server.subscriberCount("other"), 0);
    subs[0].subscribe("other");
    assert.equal(server.subscriberCount("other"), 1);
    subs[1].unsubscribe("t");
    assert.equal(server.subscriberCount("t"), 1);
    a.c.close();
    await waitFor(() => open.size === 1);
    assert.equal(server.subscriberCount("t"), 0);
    assert.equal(server.subscriberCount("other"), 0);
    assert.throws(() => server.subscriberCount(7), TypeError);
    b.c.close();
  } finally {
    await server.close();
  }
  assert.equal(server.subscriberCount("t"), 0);
});

test("a socket subscribed before it is accepted gets no publish until it is open", async () => {
  const early = [];
  let sock;
  const server = serve({
    port: 0,
    host: "127.0.0.1",
    fetch(req) {
      const { socket, response } = upgradeWebSocket(req);
      sock = socket;
      socket.subscribe("t");
      // Subscribed, not yet answered with its 101: no frame may reach it.
      early.push(server.publish("t", "too early"));
      return response;
    },
  });
  try {
    const { c, got } = await collector(url(server, "/"));
    await waitFor(() => sock?.readyState === 1);
    assert.deepEqual(early, [0]);
    assert.equal(server.publish("t", "on time"), 1);
    await waitFor(() => got.length === 1);
    assert.deepEqual(got, ["on time"]);
    c.close();
  } finally {
    await server.close();
  }
});

test("publishes and sends queued just before the server closes a subscriber reach it ahead of the close frame", async () => {
  // The queue's last run of small frames is held apart from its list of items until
  // something else is queued behind it (src/websocket.rs, `SendQueue::tail`): a close
  // queued after publishes must still go after them, in this turn and in a later one.
  const { server, subs } = pubsubServer((m, srv, list) => {
    const sub = list[0];
    srv.publish("t", "p1");
    sub.send("s2");
    srv.publish("t", Buffer.from("p3"));
    if (m === "now") sub.close(4001, "now");
    else setTimeout(() => (srv.publish("t", "p4"), sub.close(4002, "later")), 0);
  });
  try {
    for (const [m, want, code] of [
      ["now", ["p1", "s2", "p3"], 4001],
      ["later", ["p1", "s2", "p3", "p4"], 4002],
    ]) {
      const before = subs.length;
      const { c: sub, got } = await collector(url(server, "/sub"), { perMessageDeflate: false });
      await waitFor(() => subs.length === before + 1);
      subs.splice(0, subs.length, subs[before]);
      const closed = once(sub, "close");
      const { c: ctl } = await collector(url(server, "/ctl"), { perMessageDeflate: false });
      ctl.send(m);
      const [gotCode] = await closed;
      assert.deepEqual(got.map(String), want);
      assert.equal(gotCode, code);
      ctl.close();
    }
  } finally {
    await server.close();
  }
});

test("a batch's publishes mixed with a subscriber's own sends, a publish it skips as the sender, a full subscriber and one that unsubscribes mid-batch: every byte in order", async () => {
  // A guard of the in-thread fan-out's shared buffer (src/pubsub.rs, `JsSide::published`):
  // a subscriber that gets only a batch's publishes is written from one buffer of the
  // batch, and copied into its own queue when anything else joins it, when its socket is
  // full, or when it skips a publish. With a network thread each queue has its own copy.
  const rounds = 24;
  const perRound = 150;
  // Each message's bytes follow from its number; sizes up to the frames of 2 KiB framed
  // when queued, and in half the rounds a few larger ones (a frame of their own, queued behind
  // a subscriber's shared run: in even rounds the runs last until the flush).
  const large = new Set();
  const body = (n) => {
    const size = large.has(n) ? 3000 + (n % 7) : 4 + ((n * 37) % 2000);
    const b = Buffer.alloc(size);
    b.writeUInt32BE(n, 0);
    for (let i = 4; i < size; i++) b[i] = (n * 31 + i * 7) & 0xff;
    return b;
  };
  // What each subscriber must get, as the server queues it: mine (own sends too), skip
  // (the sender of some publishes), full (a stalled reader), part (unsubscribed mid-batch).
  const want = { mine: [], skip: [], full: [], part: [] };
  let next = 1;
  const { server, subs } = pubsubServer(
    (m, srv, list) => {
      const [mine, skip, , part] = list;
      const round = () => {
        part.subscribe("t");
        for (let i = 0; i < perRound; i++) {
          const n = next++;
          if (Number(m) % 4 >= 2 && i % 50 === 7) large.add(n);
          const data = body(n);
          if (i % 9 === 4) {
            // Published by a subscriber: everyone but it.
            assert.equal(skip.publish("t", data), i < perRound / 2 ? 3 : 2);
            for (const k of ["mine", "full"]) want[k].push(n);
            if (i < perRound / 2) want.part.push(n);
          } else {
            srv.publish("t", data);
            for (const k of ["mine", "skip", "full"]) want[k].push(n);
            if (i < perRound / 2) want.part.push(n);
          }
          if (i % 13 === 6) {
            const own = next++;
            if (i % 26 === 6) large.add(own);
            assert.notEqual(mine.send(body(own)), 0);
            want.mine.push(own);
          }
          if (i === perRound / 2 - 1) part.unsubscribe("t");
        }
      };
      // Half the rounds in the batch of the control message, half from a timer (flushed
      // by a microtask).
      if (Number(m) % 2 === 0) round();
      else setTimeout(round, 0);
    },
    { websocket: { backpressureLimit: 64 * 1024 * 1024, perMessageDeflate: false } },
  );
  try {
    const clients = [];
    for (let i = 0; i < 4; i++) {
      clients.push(await rawSubscriber(server, "/sub"));
      await waitFor(() => subs.length === i + 1);
    }
    const [mine, skip, full, part] = clients;
    // The full subscriber stops reading: its socket fills, and the rest waits in its queue.
    full.sock.pause();
    const { c: ctl } = await collector(url(server, "/ctl"), { perMessageDeflate: false });
    // Rounds until the full subscriber's socket has been full for a few: the flush that
    // fills it writes part of a shared run, later ones none.
    let fullSince = -1;
    let maxFull = 0;
    for (let r = 0; r < rounds || fullSince < 0 || r < fullSince + 8; r++) {
      assert.ok(r < 600, "the full subscriber's socket never filled");
      ctl.send(String(r));
      const n = want.mine.length;
      await waitFor(() => want.mine.length > n && mine.got.length === want.mine.length);
      if (fullSince < 0 && subs[2].bufferedAmount > 0) fullSince = r;
      maxFull = Math.max(maxFull, subs[2].bufferedAmount);
    }
    await waitFor(() => skip.got.length === want.skip.length && part.got.length === want.part.length);
    // Its queue took what the socket did not (the kernel's buffers may grow after).
    assert.ok(fullSince >= 0, "the full subscriber's socket filled");
    full.sock.resume();
    await waitFor(() => full.got.length === want.full.length, 30000).catch((e) => {
      throw new Error(`${e.message}: ${full.got.length} of ${want.full.length}, queued up to ${maxFull}`);
    });
    for (const [k, c] of Object.entries({ mine, skip, full, part })) {
      assert.equal(c.got.length, want[k].length, k);
      for (let i = 0; i < c.got.length; i++) {
        if (!c.got[i].equals(body(want[k][i]))) {
          assert.fail(`${k}: message ${i} is not ${want[k][i]} (${c.got[i].length} bytes)`);
        }
      }
    }
    await waitFor(() => subs.every((s) => s.bufferedAmount === 0));
    for (const c of clients) c.sock.destroy();
    ctl.close();
  } finally {
    await server.close();
  }
});

/** Rounds of publishes to `count` subscribers while some leave and new ones connect in
 * their place (taking the file descriptors the leavers' sockets had): each client must
 * get exactly the publishes made while it was subscribed, in order, each whole. */
async function checkChurn(scheme, options, clientOpts, count) {
  const rounds = 10;
  const perRound = 30;
  // Sizes from a few bytes to a 16-bit length, each message's text following from its number.
  const message = (r, i) => `${r}.${i}.` + "abcdefghij".repeat((r * 7 + i * 13) % 40);
  const { server, open } = pubsubServer((m, srv) => {
    const r = Number(m);
    // Half the round in the control message's batch, half in a later turn.
    for (let i = 0; i < perRound / 2; i++) assert.equal(srv.publish("t", message(r, i)), open.size);
    setTimeout(() => {
      for (let i = perRound / 2; i < perRound; i++) srv.publish("t", message(r, i));
    }, 0);
  }, options);
  try {
    const clients = [];
    const join = async (round) => {
      const c = await collector(url(server, "/sub", scheme), clientOpts);
      c.from = round;
      clients.push(c);
      const n = clients.filter((x) => x.to === undefined).length;
      await waitFor(() => open.size === n);
    };
    for (let i = 0; i < count; i++) await join(0);
    const { c: ctl } = await collector(url(server, "/ctl", scheme), clientOpts);
    for (let r = 0; r < rounds; r++) {
      if (r > 0) {
        // The oldest fifth leave; as many join, on the descriptors just freed.
        const leaving = clients.filter((x) => x.to === undefined).slice(0, Math.ceil(count / 5));
        for (const c of leaving) {
          c.to = r;
          c.c.close();
        }
        await waitFor(() => open.size === count - leaving.length);
        for (let i = 0; i < leaving.length; i++) await join(r);
      }
      ctl.send(String(r));
      const live = clients.filter((x) => x.to === undefined);
      const due = (c) => (r + 1 - c.from) * perRound;
      await waitFor(() => live.every((c) => c.got.length === due(c))).catch((e) => {
        const off = live.map((c) => `${c.got.length} of ${due(c)}`).filter((x) => !/^(\d+) of \1$/.test(x));
        throw new Error(`${e.message} in round ${r}: ${off.slice(0, 4).join(", ")}`);
      });
    }
    for (const [k, c] of clients.entries()) {
      const want = [];
      for (let r = c.from; r < (c.to ?? rounds); r++) for (let i = 0; i < perRound; i++) want.push(message(r, i));
      assert.equal(c.got.length, want.length, `client ${k}`);
      for (let i = 0; i < want.length; i++) {
        if (c.got[i] !== want[i])
          assert.fail(`client ${k}: message ${i} is ${c.got[i].slice(0, 12)}, not ${want[i].slice(0, 12)}`);
      }
    }
    for (const c of clients) c.c.close();
    ctl.close();
  } finally {
    await server.close();
  }
}

test("publishes to subscribers that come and go, new ones on the descriptors of those gone: each gets exactly its publishes", async () => {
  // A guard of the flush's write (src/websocket.rs, `Writer::fd`, `send_each`): the flush
  // sends on the socket's descriptor as the writer keeps it, and asks for the next
  // socket's state ahead; a descriptor kept past its socket, or another socket's, would
  // put one subscriber's bytes on another.
  await checkChurn("ws", {}, { perMessageDeflate: false }, 40);
});

test("over TLS, publishes to subscribers that come and go: each gets exactly its publishes", async () => {
  await checkChurn("wss", { tls: A }, { perMessageDeflate: false, ca: CA, servername: "localhost" }, 10);
});

/** Publish `seq` of the 1,000-subscriber test: its number, then bytes that depend on it,
 * 5 to 300 bytes in all. */
function numbered(seq) {
  const m = Buffer.alloc(5 + ((seq * 37) % 296));
  m.writeUInt32BE(seq, 0);
  for (let i = 4; i < m.length; i++) m[i] = (seq + i) & 0xff;
  return m;
}

test(
  "a topic of 1,000 subscribers, one stalled past its backpressure limit and one closing mid-run: each other gets every publish byte for byte and in order, the stalled one exactly those counted for it, and bufferedAmount returns to 0",
  { timeout: 120000 },
  async () => {
    // A guard of a publish's accounting (src/websocket.rs, `admit` and `written`): the bytes
    // queued on each subscriber decide which publishes a full one takes, and
    // `server.publish` counts the subscribers that took each.
    const limit = 256 * 1024;
    const { server, subs, open } = pubsubServer(() => {}, {
      websocket: { backpressureLimit: limit, perMessageDeflate: false },
    });
    try {
      // The stalled subscriber opens first and the closing one second, so that the server's
      // sockets for them are subs[0] and subs[1].
      const stalled = await rawSubscriber(server, "/sub");
      await waitFor(() => subs.length === 1);
      const closer = await rawSubscriber(server, "/sub");
      await waitFor(() => subs.length === 2);
      const others = [];
      for (let i = 0; i < 998; i += 100) {
        others.push(
          ...(await Promise.all(Array.from({ length: Math.min(100, 998 - i) }, () => rawSubscriber(server, "/sub")))),
        );
      }
      await waitFor(() => subs.length === 1000);
      const stalledSide = subs[0];

      // Fill the stalled subscriber through a topic of its own until it takes nothing more,
      // not even one byte: the kernel's buffers first, then its queue up to the limit. With
      // worker threads the writes to the kernel happen there, after the publishes: topped
      // up again after each pause until three in a row find it full (no event says that
      // the kernel's buffers are full; a pause only lets the other thread run).
      stalled.sock.pause();
      stalledSide.subscribe("big");
      const big = [];
      const topUp = () => {
        let taken = 0;
        // Bounded: a subscriber that took everything would otherwise keep this turn forever.
        for (let size = 16384; size >= 1 && taken < 1024;) {
          const m = Buffer.alloc(size, big.length % 251);
          if (server.publish("big", m) === 1) {
            big.push(m);
            taken++;
          } else size = Math.floor(size / 2);
        }
        return taken;
      };
      for (let full = 0, turns = 0; full < 3 && turns < 200; turns++) {
        full = topUp() === 0 ? full + 1 : 0;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(stalledSide.bufferedAmount >= limit, `bufferedAmount ${stalledSide.bufferedAmount}`);

      // 200 publishes to all 1,000, in rounds of 20 from one turn; the closing subscriber
      // sends its close frame at the start of round 4, while the rounds go on.
      const rounds = 10;
      const per = 20;
      const counted = [];
      for (let r = 0; r < rounds; r++) {
        if (r === 4) closer.sock.write(Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]));
        for (let j = 0; j < per; j++) counted.push(server.publish("t", numbered(r * per + j)));
        const due = (r + 1) * per;
        await waitFor(() => others.every((o) => o.got.length === due), 20000).catch((e) => {
          const behind = others.filter((o) => o.got.length !== due).map((o) => o.got.length);
          throw new Error(`${e.message} in round ${r}: ${behind.length} behind (${behind.slice(0, 5)})`);
        });
      }
      const total = rounds * per;
      for (const o of others) {
        assert.equal(o.got.length, total);
        for (let seq = 0; seq < total; seq++) assert.deepEqual(o.got[seq], numbered(seq));
      }

      // The closing subscriber: the publishes up to its close, in order, then the close.
      await waitFor(() => !open.has(subs[1]));
      await waitFor(() => closer.frames.at(-1) === 0x8);
      const closerData = closer.frames.length - 1;
      assert.ok(closer.frames.slice(0, -1).every((op) => op === 0x2));
      for (let seq = 0; seq < closerData; seq++) assert.deepEqual(closer.got[seq], numbered(seq));
      assert.ok(closerData >= 4 * per && closerData < total, `the closing subscriber got ${closerData}`);

      // Every count is the others', the closing one's while it took them, and the stalled
      // one's: whatever the counts give the stalled one beyond that is what it must get.
      const delivered = counted.reduce((a, b) => a + b, 0);
      const toStalled = delivered - 998 * total - closerData;
      assert.ok(counted.every((n) => n >= 998 && n <= 1000));
      assert.ok(toStalled >= 0 && toStalled < total / 2, `the stalled subscriber took ${toStalled} of ${total}`);
      stalled.sock.resume();
      await waitFor(() => stalled.got.length === big.length + toStalled, 30000).catch((e) => {
        throw new Error(`${e.message}: ${stalled.got.length} of ${big.length} + ${toStalled}`);
      });
      assert.ok(stalled.frames.every((op) => op === 0x2));
      for (let i = 0; i < big.length; i++) assert.deepEqual(stalled.got[i], big[i]);
      let last = -1;
      for (const m of stalled.got.slice(big.length)) {
        const seq = m.readUInt32BE(0);
        assert.ok(seq > last, `publish ${seq} after ${last}`);
        assert.deepEqual(m, numbered(seq));
        last = seq;
      }
      await waitFor(() => subs.every((s) => s.bufferedAmount === 0));
      for (const o of [stalled, ...others]) o.sock.destroy();
      closer.sock.destroy();
    } finally {
      await server.close();
    }
  },
);
