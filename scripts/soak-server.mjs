// The fetch-rs server that scripts/soak.mjs and scripts/fuzz.mjs drive in a child process.
// Run with: node scripts/soak-server.mjs [--options '{"maxBodySize":65536}']
//
// Routes: GET /json, POST /echo (body back), /throw (listener throws), /reject (its promise
// rejects), /slow (answers after 1-20 ms), /stream?mib=N (N MiB streamed), /ws (a WebSocket
// echo; /ws?z also agrees on permessage-deflate; every socket subscribes to "all"), /__stats (server.stats(), error count, memory, V8 heap spaces).
// Prints "listening <port>" on stdout once it accepts connections; SIGTERM closes it gracefully.
import { getHeapSpaceStatistics } from "node:v8";
import { Response, Server, upgradeWebSocket } from "../dist/index.js";

const optionsArg = process.argv.indexOf("--options");
const extra = optionsArg === -1 ? {} : JSON.parse(process.argv[optionsArg + 1]);

// A short listener timeout so a stuck request shows up as a 503 in the driver's totals
// rather than as a 30 s stall.
const server = new Server({ port: 0, host: "127.0.0.1", timeout: 5000, ...extra });

let errorsReported = 0;
// Counted, not logged: the soak throws on purpose hundreds of thousands of times.
server.addEventListener("error", () => {
  errorsReported++;
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The path of an absolute URL without the URL parser: this runs once per request. */
function pathOf(url) {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start === -1) return "/";
  const q = url.indexOf("?", start);
  return q === -1 ? url.slice(start) : url.slice(start, q);
}

let served = 0;

server.addEventListener("fetch", (event) => {
  const request = event.request;
  served++;
  switch (pathOf(request.url)) {
    case "/json":
      event.respondWith(Response.json({ ok: true, served }));
      return;
    case "/echo":
      event.respondWith(
        request
          .arrayBuffer()
          .then((body) => new Response(body, { headers: { "content-type": "application/octet-stream" } })),
      );
      return;
    case "/throw":
      throw new Error("soak: thrown on purpose");
    case "/reject":
      event.respondWith(Promise.reject(new Error("soak: rejected on purpose")));
      return;
    case "/slow":
      event.respondWith(sleep(1 + (served % 20)).then(() => new Response("slow")));
      return;
    case "/ws": {
      let upgraded;
      try {
        upgraded = upgradeWebSocket(request, { compress: request.url.endsWith("?z") });
      } catch {
        event.respondWith(new Response("not an upgrade", { status: 426 }));
        return;
      }
      const { socket, response } = upgraded;
      socket.binaryType = "nodebuffer";
      socket.onopen = () => socket.subscribe("all");
      socket.onmessage = (e) => {
        socket.send(e.data);
        if (served % 16 === 0) socket.publish("all", "fan-out");
      };
      event.respondWith(response);
      return;
    }
    case "/stream": {
      // ?mib=N: N MiB in 64 KiB chunks, produced only as fast as the client takes them.
      const mib = Number(new URL(request.url).searchParams.get("mib") ?? "1");
      const chunk = new Uint8Array(64 * 1024).fill(120);
      let left = mib * 16;
      const body = new ReadableStream({
        pull(c) {
          if (left-- > 0) c.enqueue(chunk);
          else c.close();
        },
      });
      event.respondWith(new Response(body, { headers: { "content-type": "application/octet-stream" } }));
      return;
    }
    case "/__stats":
      event.respondWith(
        Response.json({
          stats: server.stats(),
          errorsReported,
          served,
          memory: process.memoryUsage(),
          // Committed bytes per V8 heap space: tells a young generation that grew to its
          // working size from an old generation that keeps growing.
          heapSpaces: Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size])),
        }),
      );
      return;
    default:
      event.respondWith(new Response("not found", { status: 404 }));
  }
});

await server.listen();
process.stdout.write(`listening ${server.port}\n`);

let closing = false;
process.on("SIGTERM", async () => {
  if (closing) return;
  closing = true;
  await server.close();
  process.exit(0);
});
