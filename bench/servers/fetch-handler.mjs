// The benchmark scenarios as one Fetch API handler, `handle(request) -> Response | Promise`,
// shared by every server whose API is Request -> Response: fetch-rs (both styles), Bun.serve
// and Deno.serve. Routes and bodies are the ones in ../lib/scenarios.mjs; node:http, fastify,
// Hono and the hyper baseline implement the same routes in their own idiom.
// Imported by bench/servers/{fetch-rs,fetch-rs-serve,bun,deno}.mjs (not run on its own).
//
// Sync routes return a Response, not a Promise: each runtime gets its fast path, as a real
// handler that awaits nothing would. `Response.json` serializes per request, like c.json(),
// reply.send(object) and JSON.stringify in the other servers.

/** The 100 KiB response body, allocated once (a Response copies a BufferSource it is given). */
const BIG = new Uint8Array(100 * 1024).fill(0x78); // 'x'

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The path of an absolute URL without building a URL object ("http://h:1/p?q" -> "/p"). */
export function pathOf(url) {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  const query = url.indexOf("?", start);
  return query < 0 ? url.slice(start) : url.slice(start, query);
}

export function handle(request) {
  const path = pathOf(request.url);
  const method = request.method;
  if (method === "GET") {
    switch (path) {
      case "/json":
        return Response.json({ ok: true });
      case "/text":
        return new Response("Hello, World!");
      case "/download":
        return new Response(BIG);
      // Not a scenario of run.mjs: what an API handler does (the URL parsed, a request header
      // read, a header list of its own), for `bench/instructions.mjs --path=/app?q=1`.
      case "/app": {
        const url = new URL(request.url);
        const ua = request.headers.get("user-agent");
        return new Response(JSON.stringify({ path: url.pathname, q: url.searchParams.get("q"), ua }), {
          headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
        });
      }
      case "/async":
        return sleep(1).then(() => Response.json({ ok: true }));
    }
  } else if (method === "POST") {
    switch (path) {
      case "/echo":
        return request.arrayBuffer().then((body) => new Response(body));
      case "/upload":
        return request.arrayBuffer().then((body) => Response.json({ length: body.byteLength }));
    }
  }
  return new Response("Not Found", { status: 404 });
}
