// Hono's WebSocket helper on fetch-rs: `upgradeWebSocket` from "fetch-rs/hono" works as
// hono/bun's and @hono/node-ws's do, built on hono/ws's `defineWebSocketHelper`.
//   app.get("/ws", upgradeWebSocket((c) => ({ onMessage(e, ws) { ws.send(e.data) } })))
// Hono is a peer dependency of this entry point only.
import { defineWebSocketHelper, WSContext, type WSEvents } from "hono/ws";
import { upgradeWebSocket as upgrade, type ServerWebSocket, type UpgradeWebSocketOptions } from "./websocket.js";

/** Hono's `upgradeWebSocket()` for fetch-rs; `options` are `upgradeWebSocket`'s own. */
export const upgradeWebSocket = defineWebSocketHelper<ServerWebSocket, UpgradeWebSocketOptions>(
  (c, events: WSEvents<ServerWebSocket>, options) => {
    // Not an upgrade: on to the next handler, as the other adapters do.
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") return;
    const { socket, response } = upgrade(c.req.raw as unknown as Parameters<typeof upgrade>[0], options);
    const ctx = new WSContext<ServerWebSocket>({
      send: (data, opts) => void socket.send(data, opts?.compress),
      close: (code, reason) => socket.close(code, reason),
      raw: socket,
      get readyState() {
        return socket.readyState as 0 | 1 | 2 | 3;
      },
      url: socket.url,
      protocol: socket.protocol,
    });
    socket.addEventListener("open", (e) => events.onOpen?.(e, ctx));
    socket.addEventListener("message", (e) => events.onMessage?.(e as MessageEvent, ctx));
    socket.addEventListener("close", (e) => events.onClose?.(e as CloseEvent, ctx));
    socket.addEventListener("error", (e) => events.onError?.(e, ctx));
    return response as unknown as globalThis.Response;
  },
);
