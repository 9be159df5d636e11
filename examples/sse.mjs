// Run with: node examples/sse.mjs   (then: curl -N http://localhost:3000/events)
// Server-sent events: each event reaches the client as soon as it is enqueued, no idle
// timeout cuts the stream, and the client leaving cancels the stream.
import { Server, Response } from "fetch-rs";

const server = new Server({ port: Number(process.env.PORT ?? 3000) });
const encoder = new TextEncoder();

server.addEventListener("fetch", (event) => {
  if (new URL(event.request.url).pathname !== "/events") {
    event.respondWith(new Response("GET /events for a clock, one tick a second\n"));
    return;
  }
  let timer;
  const stream = new ReadableStream({
    start(controller) {
      const tick = () => controller.enqueue(encoder.encode(`data: ${new Date().toISOString()}\n\n`));
      tick();
      timer = setInterval(tick, 1000);
    },
    cancel() {
      clearInterval(timer);
      console.log("client left");
    },
  });
  event.respondWith(
    new Response(stream, { headers: { "content-type": "text/event-stream", "cache-control": "no-store" } }),
  );
});

await server.listen();
console.log(`Server listening on ${server.url}events`);
