// WebSocket benchmark server: Deno.serve with Deno.upgradeWebSocket. Any path echoes; /sub
// joins a set; each message on /pub goes to every member (Deno has no topics).
// Run with: PORT=3000 bench/node_modules/.bin/deno run -A bench/servers/ws-deno.mjs
const subs = new Set();
const server = Deno.serve(
  { hostname: "127.0.0.1", port: Number(Deno.env.get("PORT") ?? 3000), onListen: ({ port }) => console.log(`READY ${port}`) },
  (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    const path = new URL(req.url).pathname;
    socket.binaryType = "arraybuffer";
    if (path === "/sub") {
      socket.onopen = () => subs.add(socket);
      socket.onclose = () => subs.delete(socket);
    } else if (path === "/pub") {
      socket.onmessage = (e) => {
        for (const s of subs) if (s.readyState === 1) s.send(e.data);
      };
    } else socket.onmessage = (e) => socket.send(e.data);
    return response;
  },
);
Deno.addSignalListener("SIGTERM", () => server.shutdown().then(() => Deno.exit(0)));
