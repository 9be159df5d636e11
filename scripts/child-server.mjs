// Starts scripts/soak-server.mjs in a child process for the soak and the fuzzer, and reads
// its resident set size. Not run on its own.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/**
 * Resolves with { child, port, stderr() } once the server prints "listening <port>".
 * `nodeFlags` go to node itself (e.g. V8 heap sizes), `args` to the server script.
 */
export function startServer(args = [], nodeFlags = []) {
  const child = spawn(process.execPath, [...nodeFlags, join(here, "soak-server.mjs"), ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
    // Keep the tail only: a long run may log a lot.
    if (stderr.length > 256 * 1024) stderr = stderr.slice(-128 * 1024);
  });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`the server did not start within 10 s: ${stderr}`)), 10_000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = /listening (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]), stderr: () => stderr });
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the server exited before listening (${code ?? signal}): ${stderr}`));
    });
  });
}

/** The process's resident set size in KiB, from /proc/<pid>/status, or null. */
export function rssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
