// Benchmark server: Deno.serve, every scenario of ../lib/scenarios.mjs answered by the shared
// Fetch handler (fetch-handler.mjs). Run by the deno binary from the deno npm package with
// --allow-net=127.0.0.1 --allow-env=PORT (bench/lib/servers.mjs).
// Started by bench/run.mjs; prints "READY <port>" once listening, exits on SIGTERM.
// Run with: PORT=3000 bench/node_modules/.bin/deno run --allow-net=127.0.0.1 --allow-env=PORT,TLS_CERT_PEM,TLS_KEY_PEM bench/servers/deno.mjs

import { handle } from "./fetch-handler.mjs";

const server = Deno.serve(
  {
    hostname: "127.0.0.1",
    port: Number(Deno.env.get("PORT") ?? 3000),
    // With TLS_CERT_PEM / TLS_KEY_PEM (the deno-tls entry): HTTPS, h2 and HTTP/1.1 by ALPN.
    ...(Deno.env.get("TLS_CERT_PEM") ? { cert: Deno.env.get("TLS_CERT_PEM"), key: Deno.env.get("TLS_KEY_PEM") } : {}),
    // Without onListen Deno prints its own "Listening on" line.
    onListen: ({ port }) => console.log(`READY ${port}`),
  },
  handle,
);

Deno.addSignalListener("SIGTERM", async () => {
  await server.shutdown();
  Deno.exit(0);
});
