// The public entry point: the server, the event, and the Fetch classes.
export { Server, serve } from "./server.js";
export type {
  ServerOptions,
  ServerStats,
  ServerAddr,
  ServerErrorEvent,
  ServeOptions,
  ServeHandler,
  ServeInfo,
  ExecutionContext,
  WebSocketOptions,
} from "./server.js";
export type { Routes, RouteValue, RouteHandler, RouteRequest } from "./routes.js";
export { upgradeWebSocket, ServerWebSocket } from "./websocket.js";
export type { UpgradeWebSocketOptions, BinaryType, WebSocketHandlers } from "./websocket.js";
export { FetchEvent } from "./fetch-event.js";
export type { ClientCertificate } from "./fetch-event.js";
export type { TlsOptions, PemInput } from "./tls.js";
export { Request } from "./request.js";
export type { RequestInitLike as RequestInit } from "./request.js";
export { Response } from "./response.js";
export type { ResponseInitLike as ResponseInit } from "./response.js";
export { Headers } from "./headers.js";
export { formDataLimits, setFormDataLimits } from "./form-data.js";
export type { FormDataLimits } from "./form-data.js";
