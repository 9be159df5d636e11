// Whether a server answers pipelined async requests side by side or one after another: 16
// `GET /async` (a 1 ms timer, then JSON) in one write on one connection, timed from the write
// to the last answer's end, repeated; one at a time takes 16 timers (>= 16 ms), side by side
// about one. Prints each server's median and range in milliseconds.
// Run with: node bench/pipeline-overlap.mjs [--servers=fetch-rs,node-http,deno,bun] [--rounds=30]
import net from "node:net";
import { fileURLToPath } from "node:url";
import { serverByName, startServer, stopServer } from "./lib/servers.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const arg = (name, fallback) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const names = arg("servers", "fetch-rs,node-http,deno,bun").split(",");
const rounds = Number(arg("rounds", "30"));
const DEPTH = 16;
const request = "GET /async HTTP/1.1\r\nHost: bench\r\n\r\n";

/** Sends DEPTH pipelined requests on `sock` and resolves with the milliseconds to the last
 * answer (each answer has a Content-Length: counted by their heads and bodies), or with what
 * came when not all answers did within 2 s or the connection closed first. */
function burst(sock) {
  return new Promise((resolve, reject) => {
    let text = "";
    let done = 0;
    const t0 = process.hrtime.bigint();
    const fail = (why) => resolve(`${done} of ${DEPTH} answers, then ${why}`);
    const timer = setTimeout(() => fail("nothing for 2 s"), 2000);
    const onClose = () => fail("the connection closed");
    sock.once("close", onClose);
    sock.once("error", reject);
    const onData = (d) => {
      text += d.toString("latin1");
      let at = 0;
      done = 0;
      for (;;) {
        const end = text.indexOf("\r\n\r\n", at);
        if (end === -1) break;
        const len = Number(/content-length: *(\d+)/i.exec(text.slice(at, end))?.[1] ?? 0);
        if (text.length < end + 4 + len) break;
        at = end + 4 + len;
        done++;
      }
      if (done === DEPTH) {
        clearTimeout(timer);
        sock.off("close", onClose);
        sock.off("error", reject);
        sock.off("data", onData);
        resolve(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    };
    sock.on("data", onData);
    sock.write(request.repeat(DEPTH));
  });
}

for (const name of names) {
  const server = await startServer(serverByName(name), { root: ROOT, pinCore: 0 });
  const sock = net.connect(server.port, "127.0.0.1");
  await new Promise((r) => sock.once("connect", r));
  sock.setNoDelay(true);
  const times = [];
  let failed;
  for (let i = 0; i < rounds + 3 && !failed; i++) {
    const ms = await burst(sock);
    if (typeof ms === "string") failed = ms;
    else if (i >= 3) times.push(ms); // the first bursts warm the server up
  }
  sock.destroy();
  await stopServer(server);
  if (failed) {
    console.log(`${name}: ${failed}`);
    continue;
  }
  times.sort((a, b) => a - b);
  const med = times[times.length >> 1];
  console.log(
    `${name}: ${DEPTH} pipelined /async in ${med.toFixed(2)} ms (median; ${times[0].toFixed(2)}-${times.at(-1).toFixed(2)})`,
  );
}
