// WebSocket benchmark server: fetch-rs with Bun's handler API (server.upgrade and the
// `websocket` handlers), written as bench/servers/ws-bun.mjs is. Any path echoes; /sub
// subscribes to topic "t"; each message on /pub is published to "t".
// Run with: PORT=3000 node bench/servers/ws-fetch-rs-handlers.mjs
// FETCH_RS_PACKAGE: another build's dist/index.js, relative to this file;
// FETCH_RS_OPTIONS: extra serve() options as JSON (the in-thread row: {"workerThreads":0}).
const { serve } = await import(process.env.FETCH_RS_PACKAGE ?? "../../dist/index.js");
const extra = process.env.FETCH_RS_OPTIONS ? JSON.parse(process.env.FETCH_RS_OPTIONS) : {};

const server = serve({
  ...extra,
  host: "127.0.0.1",
  port: Number(process.env.PORT ?? 3000),
  fetch(req, server) {
    if (server.upgrade(req, { data: { path: new URL(req.url).pathname } })) return;
    return new Response("websocket only", { status: 426 });
  },
  websocket: {
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
process.on("SIGTERM", () => server.close({ force: true }).then(() => process.exit(0)));
