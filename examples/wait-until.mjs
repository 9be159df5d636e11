// Run with: node examples/wait-until.mjs   (then: curl http://localhost:3000/anything)
// The response goes out at once; the background task runs on, and close() waits for it.
import { Server, Response } from "fetch-rs";
import { appendFile } from "node:fs/promises";

const server = new Server({ port: Number(process.env.PORT ?? 3000) });
const log = process.env.ANALYTICS_LOG ?? "analytics.log";

server.addEventListener("fetch", (event) => {
  // Respond immediately
  event.respondWith(Response.json({ status: "accepted" }, { status: 202 }));

  // Continue processing in background
  event.waitUntil(
    (async () => {
      // Log analytics, send notifications, etc.
      await new Promise((resolve) => setTimeout(resolve, 50));
      await appendFile(log, JSON.stringify({ path: event.request.url, at: Date.now() }) + "\n");
    })(),
  );
});

await server.listen();
console.log(`Server listening on ${server.url}, logging to ${log}`);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => server.close().then(() => process.exit(0)));
}
