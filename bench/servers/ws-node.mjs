// WebSocket benchmark server: the `ws` package on node:http. Any path echoes; /sub joins a
// set; each message on /pub goes to every member of the set (ws has no topics).
// Run with: PORT=3000 node bench/servers/ws-node.mjs
import http from "node:http";
import { WebSocketServer } from "ws";

const subs = new Set();
const server = http.createServer((_req, res) => res.end("websocket only"));
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on("connection", (ws, req) => {
  if (req.url === "/sub") {
    subs.add(ws);
    ws.on("close", () => subs.delete(ws));
  } else if (req.url === "/pub") {
    ws.on("message", (data, isBinary) => {
      for (const s of subs) s.send(data, { binary: isBinary });
    });
  } else ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
server.listen(Number(process.env.PORT ?? 3000), "127.0.0.1", () => console.log(`READY ${server.address().port}`));
process.on("SIGTERM", () => process.exit(0));
