// WebSocket benchmark server: fetch-rs. Any path echoes; /sub subscribes to topic "t"; each
// message on /pub is published to "t" (bench/ws.mjs, examples/ws-load.rs).
// Run with: PORT=3000 node bench/servers/ws-fetch-rs.mjs
// FETCH_RS_PACKAGE: another build's dist/index.js, relative to this file (the fetch-rs-base row);
// FETCH_RS_OPTIONS: extra serve() options as JSON (the in-thread row: {"workerThreads":0}).
// FETCH_RS_WS_LISTENER=function: messages go to a listener added with addEventListener, not
// to `onmessage` (the two are dispatched apart: lib/websocket-events.ts).
// FETCH_RS_WS_BINARY_TYPE: the sockets' binaryType ("nodebuffer" unless set).
const { serve, upgradeWebSocket } = await import(process.env.FETCH_RS_PACKAGE ?? "../../dist/index.js");
const extra = process.env.FETCH_RS_OPTIONS ? JSON.parse(process.env.FETCH_RS_OPTIONS) : {};
const byFunction = process.env.FETCH_RS_WS_LISTENER === "function";
const onMessage = (socket, f) => {
  if (byFunction) socket.addEventListener("message", f);
  else socket.onmessage = f;
};

const server = serve({
  ...extra,
  host: "127.0.0.1",
  port: Number(process.env.PORT ?? 3000),
  fetch(req) {
    const { socket, response } = upgradeWebSocket(req);
    const path = new URL(req.url).pathname;
    socket.binaryType = process.env.FETCH_RS_WS_BINARY_TYPE ?? "nodebuffer";
    if (path === "/sub") socket.onopen = () => socket.subscribe("t");
    else if (path === "/pub") onMessage(socket, (e) => server.publish("t", e.data));
    else onMessage(socket, (e) => socket.send(e.data));
    return response;
  },
});
console.log(`READY ${server.port}`);
process.on("SIGTERM", () => server.close({ force: true }).then(() => process.exit(0)));
