// Run with: node examples/hello-world.mjs   (then: curl http://localhost:3000/)
import { Server } from "fetch-rs";

const server = new Server({ port: Number(process.env.PORT ?? 3000) });

server.addEventListener("fetch", (event) => {
  event.respondWith(
    new Response("Hello, World!", {
      headers: { "Content-Type": "text/plain" },
    }),
  );
});

await server.listen();
console.log(`Server listening on ${server.url}`);
