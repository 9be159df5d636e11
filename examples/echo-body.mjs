// Run with: node examples/echo-body.mjs
// Then: curl -d '{"a":1}' -H 'content-type: application/json' http://localhost:3000/api/json
import { Server, Response } from "fetch-rs";

const server = new Server({
  port: Number(process.env.PORT ?? 3000),
  maxBodySize: 10 * 1024 * 1024, // 10MB limit
});

server.addEventListener("fetch", async (event) => {
  const { request } = event;
  const url = new URL(request.url);

  if (url.pathname === "/api/echo" && request.method === "POST") {
    // Echo the request body
    const body = await request.text();
    event.respondWith(
      new Response(body, {
        headers: { "Content-Type": request.headers.get("Content-Type") || "text/plain" },
      }),
    );
    return;
  }

  if (url.pathname === "/api/json" && request.method === "POST") {
    // Parse and transform JSON
    const data = await request.json();
    event.respondWith(
      Response.json({
        received: data,
        processedAt: new Date().toISOString(),
      }),
    );
    return;
  }

  event.respondWith(new Response("Not Found", { status: 404 }));
});

await server.listen();
console.log(`Server listening on ${server.url}`);
