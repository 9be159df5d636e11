// Run with: node examples/chat/server.mjs   (then open http://localhost:3000 in two tabs)
// A chat room: the page and the WebSocket come from the same server; every message is
// published to the room's topic, framed and compressed once for all its members.
import { readFileSync } from "node:fs";
import { Server, Response, upgradeWebSocket } from "fetch-rs";

const page = readFileSync(new URL("./index.html", import.meta.url), "utf8");

export function startChat(port = Number(process.env.PORT ?? 3000)) {
  const server = new Server({ port, websocket: { perMessageDeflate: true } });
  let guests = 0;
  server.addEventListener("fetch", (event) => {
    const url = new URL(event.request.url);
    if (url.pathname !== "/chat") {
      event.respondWith(new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } }));
      return;
    }
    const name = (url.searchParams.get("name") || `guest${++guests}`).slice(0, 32);
    const { socket, response } = upgradeWebSocket(event.request, { data: { name } });
    socket.onopen = () => {
      socket.subscribe("room");
      server.publish("room", JSON.stringify({ system: `${name} joined` }));
    };
    socket.onmessage = (e) => {
      if (typeof e.data !== "string" || e.data.length > 4096) return;
      server.publish("room", JSON.stringify({ from: socket.data.name, text: e.data }));
    };
    socket.onclose = () => server.publish("room", JSON.stringify({ system: `${name} left` }));
    event.respondWith(response);
  });
  return server.listen().then(() => server);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const server = await startChat();
  console.log(`chat on http://localhost:${server.port}`);
}
