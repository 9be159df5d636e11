// WebSocket benchmark server: Bun.serve. Any path echoes; /sub subscribes to topic "t"; each
// message on /pub is published to "t".
// Run with: PORT=3000 bench/node_modules/.bin/bun bench/servers/ws-bun.mjs
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.env.PORT ?? 3000),
  fetch(req, server) {
    if (server.upgrade(req, { data: { path: new URL(req.url).pathname } })) return;
    return new Response("websocket only", { status: 426 });
  },
  websocket: {
    perMessageDeflate: false,
    open(ws) {
      if (ws.data.path === "/sub") ws.subscribe("t");
    },
    message(ws, message) {
      if (ws.data.path === "/pub") server.publish("t", message);
      else ws.send(message);
    },
  },
});
console.log(`READY ${server.port}`);
process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
