// Run with: node examples/https.mjs   (uses the test certificates in test/fixtures/tls/)
// Then: curl --cacert test/fixtures/tls/ca.pem https://localhost:3443/   (HTTP/2 by ALPN)
// Send SIGHUP to reload the certificates without dropping a connection: kill -HUP <pid>
import { readFileSync } from "node:fs";
import { Server, Response } from "fetch-rs";

const dir = new URL("../test/fixtures/tls/", import.meta.url);
const tls = () => ({ cert: readFileSync(new URL("a.pem", dir)), key: readFileSync(new URL("a.key", dir)) });

const server = new Server({ port: Number(process.env.PORT ?? 3443), tls: tls() });
server.addEventListener("fetch", (event) => {
  event.respondWith(Response.json({ url: event.request.url, client: event.clientAddress }));
});
await server.listen();
console.log(`listening on ${server.url} (pid ${process.pid})`);

process.on("SIGHUP", () => {
  server.setTls(tls()).then(
    () => console.log("certificates reloaded"),
    (e) => console.error(`reload refused, the old certificates stay: ${e.message}`),
  );
});
process.on("SIGINT", () => server.close().then(() => process.exit(0)));
