// WebSocket benchmark server: fetch-rs. Any path echoes; /sub subscribes to topic "t"; each
// message on /pub is published to "t" (bench/ws.mjs, examples/ws-load.rs).
// Run with: PORT=3000 node bench/servers/ws-fetch-rs.mjs
import { serve, upgradeWebSocket } from "../../dist/index.js";

const server = serve({
  host: "127.0.0.1",
  port: Number(process.env.PORT ?? 3000),
  fetch(req) {
    const { socket, response } = upgradeWebSocket(req);
    const path = new URL(req.url).pathname;
    socket.binaryType = "nodebuffer";
    if (path === "/sub") socket.onopen = () => socket.subscribe("t");
    else if (path === "/pub") socket.onmessage = (e) => server.publish("t", e.data);
    else socket.onmessage = (e) => socket.send(e.data);
    return response;
  },
});
console.log(`READY ${server.port}`);
process.on("SIGTERM", () => server.close({ force: true }).then(() => process.exit(0)));
