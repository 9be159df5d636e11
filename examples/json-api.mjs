// Run with: npm start   (or: PORT=8080 node examples/json-api.mjs)
// Then: curl http://localhost:3000/api/users
import { Server, Response } from "fetch-rs";

const server = new Server({ port: Number(process.env.PORT ?? 3000) });

server.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);

  if (url.pathname === "/api/users") {
    event.respondWith(
      Response.json({
        users: [
          { id: 1, name: "Alice" },
          { id: 2, name: "Bob" },
        ],
      }),
    );
    return;
  }

  if (url.pathname === "/api/health") {
    event.respondWith(Response.json({ status: "ok", timestamp: Date.now() }));
    return;
  }

  event.respondWith(Response.json({ error: "Not Found" }, { status: 404 }));
});

await server.listen();
console.log(`Server listening on ${server.url}`);

// Ctrl-C or SIGTERM: finish in-flight requests, then exit.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => server.close().then(() => process.exit(0)));
}
