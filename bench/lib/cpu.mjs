// CPU time of a server under load, read from /proc (Linux only): the whole process and its JS
// main thread, whose thread id equals the process id. Also checks which cores its threads may use.
// Used by bench/run.mjs. Run with: node bench/run.mjs (not run on its own)

import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";

/** Clock ticks per second, the unit of utime/stime in /proc/<pid>/stat. */
export function clockTicksPerSecond() {
  try {
    const ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    if (Number.isInteger(ticks) && ticks > 0) return ticks;
  } catch {
    // getconf missing: fall through to the value Linux uses on every common architecture.
  }
  return 100;
}

/** utime + stime (fields 14 and 15 of a stat file), in clock ticks. */
export function readCpuTicks(statPath) {
  const text = readFileSync(statPath, "utf8");
  // Field 2 (comm) is in parentheses and may hold spaces, so count fields after the last ")".
  // What follows starts at field 3, so field N is at index N - 3.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return Number(fields[14 - 3]) + Number(fields[15 - 3]);
}

/** CPU ticks of the process (all threads, live and exited) and of its main (JS) thread. */
export function sampleCpu(pid) {
  return {
    process: readCpuTicks(`/proc/${pid}/stat`),
    jsThread: readCpuTicks(`/proc/${pid}/task/${pid}/stat`),
  };
}

/** The command name the kernel holds for a pid (after any exec). */
export function processName(pid) {
  return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
}

/** Cpus_allowed_list of every thread of a process, e.g. ["0", "0", "0"]. */
export function threadAffinities(pid) {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const status = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
    return /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1] ?? "?";
  });
}
