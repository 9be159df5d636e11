// Run with: node examples/routes.mjs   (or: PORT=8080 node examples/routes.mjs)
// Then: curl http://localhost:3000/posts
//       curl -d '{"title":"hi"}' http://localhost:3000/posts
//       curl http://localhost:3000/posts/1
import { serve, Response } from "fetch-rs";

const posts = new Map([[1, { id: 1, title: "Routes in fetch-rs" }]]);
let nextId = 2;

const server = serve({
  port: Number(process.env.PORT ?? 3000),
  routes: {
    // A fixed answer: read once, sent with an ETag (a matching If-None-Match gets 304).
    "/health": Response.json({ status: "ok" }),
    "/posts": {
      GET: () => Response.json([...posts.values()]),
      POST: async (request) => {
        const { title } = await request.json();
        if (typeof title !== "string") return Response.json({ error: "title must be a string" }, { status: 400 });
        const post = { id: nextId++, title };
        posts.set(post.id, post);
        return Response.json(post, { status: 201, headers: { location: `/posts/${post.id}` } });
      },
    },
    "/posts/:id": (request) => {
      const post = posts.get(Number(request.params.id));
      return post ? Response.json(post) : Response.json({ error: "no such post" }, { status: 404 });
    },
    "/api/*": Response.json({ error: "no such API" }, { status: 404 }),
  },
  // What no route answers.
  fetch: () => new Response("Not Found", { status: 404 }),
  // A handler that throws (a body that is not JSON) is answered here rather than with a 500.
  error: (error) => Response.json({ error: String(error) }, { status: 400 }),
});
console.log(`listening on ${server.url}`);

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => server.close().then(() => process.exit(0)));
}
