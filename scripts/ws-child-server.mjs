// A WebSocket server in a child process, for tests that measure the server's memory
// apart from the client's (test/websocket.test.mjs). Not run on its own: it is forked
// with `push` or `flood` and talks to its parent over IPC.
import { serve, upgradeWebSocket } from "../dist/index.js";

const mode = process.argv[2];
// Messages of 64 KiB the flood test sends.
const FLOOD_MESSAGES = Number(process.argv[3] ?? 4096);
const MiB = 1024 * 1024;
let peakRss = 0;
const sample = () => (peakRss = Math.max(peakRss, process.memoryUsage().rss));
setInterval(sample, 20).unref();

function busy(ms) {
  const end = Date.now() + ms;
  while (Date.now() < end);
}

const server = serve({
  port: 0,
  host: "127.0.0.1",
  fetch(req) {
    const { socket, response } = upgradeWebSocket(req);
    if (mode === "push") {
      // Pushes 256 MiB in 1 MiB messages at a client that reads nothing.
      socket.onopen = () => {
        const chunk = new Uint8Array(MiB).fill(65);
        const statuses = { written: 0, queued: 0, dropped: 0 };
        let buffered = 0;
        for (let i = 0; i < 256; i++) {
          const s = socket.send(chunk);
          if (s > 0) statuses.written++;
          else if (s === -1) statuses.queued++;
          else statuses.dropped++;
          buffered = Math.max(buffered, socket.bufferedAmount);
          if (i % 16 === 0) sample();
        }
        sample();
        socket.addEventListener("drain", () => process.send({ drain: true, bufferedAmount: socket.bufferedAmount }));
        process.send({ pushed: true, statuses, buffered, peakRss });
      };
    } else if (mode === "flood") {
      // A slow handler: blocks the JS thread now and then while the client floods.
      let expected = 0;
      let bad = 0;
      socket.onmessage = (e) => {
        const seq = new DataView(e.data).getUint32(0);
        if (seq !== expected) bad++;
        expected = seq + 1;
        if (seq % 512 === 0) busy(40);
        // With --expose-gc (the test's), V8's garbage (the messages already handled) is
        // collected on a fixed schedule, so RSS shows what the server holds, not how far
        // behind the collector is on a busy machine.
        if (seq % 128 === 0) globalThis.gc?.();
        if (seq % 64 === 0) sample();
        if (e.data.byteLength !== 64 * 1024) bad++;
        if (expected === FLOOD_MESSAGES) process.send({ received: expected, bad, peakRss });
      };
    }
    return response;
  },
});
sample();
process.send({ port: server.port, rss: process.memoryUsage().rss });
process.on("message", (m) => {
  if (m === "rss") process.send({ rss: process.memoryUsage().rss, peakRss });
  if (m === "exit") server.close().then(() => process.exit(0));
});
