// One HTTP/2 cleartext stream moving a large body each way on loopback: how fast a single
// upload and a single download go under the server's flow-control windows
// (docs/network-thread.md, "HTTP/2 with large bodies, round nineteen").
// Not under the bench lock by itself; run it under it:
//   flock /tmp/bench.lock node bench/h2-stream.mjs [--package=bench/baseline/dist/index.js] [--mib=1024]
// --window=BYTES sets http2WindowSize. --delay=MS puts a relay between client and server that holds every chunk MS ms each way (a
// round trip of twice that), as a network path would: the windows then bound the speed.
// Server and client share this process's two threads of work: the server's network threads and
// its JS thread, and node:http2's client on the same JS thread.

import http2 from "node:http2";
import net from "node:net";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const { values: o } = parseArgs({
  options: {
    package: { type: "string" },
    mib: { type: "string", default: "1024" },
    rounds: { type: "string", default: "3" },
    delay: { type: "string", default: "0" },
    window: { type: "string" },
  },
});
// --package is a path from the working directory; without it, this checkout's build.
const { Server } = await import(o.package ? pathToFileURL(resolve(o.package)).href : "../dist/index.js");
const total = Number(o.mib) * 1024 * 1024;
const CHUNK = 64 * 1024;

const server = new Server({
  host: "127.0.0.1",
  port: 0,
  maxBodySize: total,
  ...(o.window ? { http2WindowSize: Number(o.window) } : {}),
});
server.addEventListener("fetch", (event) => {
  const req = event.request;
  if (req.method === "POST") {
    event.respondWith(
      (async () => {
        let n = 0;
        for await (const chunk of req.body) n += chunk.byteLength;
        return new Response(String(n));
      })(),
    );
  } else {
    const chunk = new Uint8Array(CHUNK).fill(0x78);
    let sent = 0;
    const body = new ReadableStream({
      pull(c) {
        if (sent >= total) return c.close();
        sent += CHUNK;
        c.enqueue(chunk.slice());
      },
    });
    event.respondWith(new Response(body));
  }
});
await server.listen();

const delay = Number(o.delay);
let port = server.port;
if (delay > 0) {
  const later = (from, to) => from.on("data", (d) => setTimeout(() => to.write(d), delay));
  const relay = net.createServer((down) => {
    const up = net.connect(server.port, "127.0.0.1");
    later(down, up);
    later(up, down);
    down.on("close", () => up.destroy());
    up.on("close", () => down.destroy());
  });
  await new Promise((r) => relay.listen(0, "127.0.0.1", r));
  relay.unref();
  port = relay.address().port;
}
// The client's own receive window large, so that a download is bounded by the server alone.
const client = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: 16 * 1024 * 1024 } });
client.on("connect", () => client.setLocalWindowSize(16 * 1024 * 1024));
const MiBs = (ms) => (total / 1024 / 1024 / (ms / 1000)).toFixed(0);

function upload() {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = client.request({ ":method": "POST", ":path": "/up", "content-length": String(total) });
    let text = "";
    s.setEncoding("utf8").on("data", (d) => (text += d));
    let status = 0;
    s.on("response", (h) => (status = h[":status"]));
    s.on("end", () =>
      text === String(total) ? resolve(performance.now() - t0) : reject(new Error(`upload: ${status} ${text}`)),
    );
    s.on("error", reject);
    const chunk = Buffer.alloc(CHUNK, 0x78);
    let left = total / CHUNK;
    const write = () => {
      while (left > 0) {
        left--;
        if (!s.write(chunk)) return void s.once("drain", write);
      }
      s.end();
    };
    write();
  });
}

function download() {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = client.request({ ":path": "/down" });
    let n = 0;
    s.on("data", (d) => (n += d.length));
    s.on("end", () => (n === total ? resolve(performance.now() - t0) : reject(new Error(`${n} bytes`))));
    s.on("error", reject);
  });
}

for (let r = 1; r <= Number(o.rounds); r++) {
  const up = await upload();
  const down = await download();
  console.log(
    `round ${r}: upload ${MiBs(up)} MiB/s (${up.toFixed(0)} ms), download ${MiBs(down)} MiB/s (${down.toFixed(0)} ms)`,
  );
}
client.close();
await server.close();
