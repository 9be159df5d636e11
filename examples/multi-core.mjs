// Run with: node examples/multi-core.mjs   (then: curl http://localhost:3000/)
// One JS thread per core: worker threads each run a Server on the same port with
// reusePort, and the kernel spreads connections across them (Linux).
import { availableParallelism } from "node:os";
import { isMainThread, threadId, Worker } from "node:worker_threads";
import { Server, Response } from "fetch-rs";

const port = Number(process.env.PORT ?? 3000);

if (isMainThread) {
  const count = Number(process.env.WORKERS ?? availableParallelism());
  const workers = Array.from({ length: count }, () => new Worker(new URL(import.meta.url)));
  console.log(`${count} workers serving http://localhost:${port}/`);
  const stop = () => Promise.all(workers.map((w) => w.terminate())).then(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
} else {
  const server = new Server({ port, reusePort: true, workerThreads: 1 });
  server.addEventListener("fetch", (event) => event.respondWith(Response.json({ thread: threadId })));
  await server.listen();
}
