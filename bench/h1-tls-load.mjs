// A small HTTP/1.1-over-TLS load for bench/instructions.mjs --tls12: h2load cannot be held to
// TLS 1.2 (OpenSSL offers TLS 1.3 whenever it has a TLS 1.3 suite, and refuses to run
// without one). N GET requests over C new connections, one at a time on each (keep-alive),
// with node:tls at the TLS version asked; prints "<n> succeeded" as h2load does.
// Run with: node bench/h1-tls-load.mjs URL N C [TLSv1.2]
import tls from "node:tls";

const [url, n, c, version = "TLSv1.2"] = process.argv.slice(2);
const { hostname, port, pathname } = new URL(url);
const total = Number(n);
const request = Buffer.from(`GET ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n\r\n`);
let started = 0;
let done = 0;

function connection() {
  return new Promise((resolve, reject) => {
    if (started >= total) return resolve();
    const s = tls.connect({
      host: hostname,
      port: Number(port),
      rejectUnauthorized: false,
      minVersion: version,
      maxVersion: version,
    });
    let buf = Buffer.alloc(0);
    const next = () => {
      if (started >= total) return s.end();
      started++;
      s.write(request);
    };
    s.once("secureConnect", next);
    s.on("data", (d) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.subarray(0, end).toString("latin1");
        if (!head.startsWith("HTTP/1.1 200")) return reject(new Error(`unexpected answer: ${head.slice(0, 80)}`));
        const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        buf = buf.subarray(end + 4 + length);
        done++;
        next();
      }
    });
    s.on("close", resolve);
    s.on("error", reject);
  });
}

await Promise.all(Array.from({ length: Number(c) }, connection));
console.log(`${done} succeeded`);
