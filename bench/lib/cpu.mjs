// CPU time of a server under load, read from /proc (Linux only): the whole process and its JS
// main thread, whose thread id equals the process id. Also checks which cores its threads may use.
// Used by bench/run.mjs. Run with: node bench/run.mjs (not run on its own)

import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";

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

/** A taskset cpu list ("0", "0-3", "0,2-3") as sorted cpu numbers; throws on a malformed list. */
export function parseCpuList(list) {
  const cpus = new Set();
  for (const part of String(list).split(",")) {
    const m = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(part);
    if (!m) throw new Error(`not a cpu list: ${JSON.stringify(list)}`);
    const [from, to] = [Number(m[1]), Number(m[2] ?? m[1])];
    if (to < from) throw new Error(`not a cpu list: ${JSON.stringify(list)}`);
    for (let cpu = from; cpu <= to; cpu++) cpus.add(cpu);
  }
  return [...cpus].sort((a, b) => a - b);
}

/** Resident set size of a process now (VmRSS), in KiB; NaN once it is gone. */
export function readRssKiB(pid) {
  try {
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/**
 * Resets the kernel's peak-RSS mark (VmHWM) of a process: writing 5 to clear_refs (Linux 4.0+).
 * Returns whether it worked; then VmHWM read later is the peak since this call.
 */
export function resetPeakRss(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/** The kernel's peak RSS mark (VmHWM) of a process, in KiB; NaN when unreadable. */
export function readPeakRssKiB(pid) {
  try {
    return Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/**
 * CPU time of the whole machine from /proc/stat, summed over all cpus, in ticks: `busy` (time
 * this machine's processes and kernel ran) and `steal` (time a virtual machine's host ran
 * something else while this machine wanted its cpus).
 */
export function machineCpuTicks() {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]; // "cpu  user nice system idle iowait irq softirq steal ..."
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1, 9).map(Number);
  return { busy: user + nice + system + irq + softirq, steal };
}

/**
 * Samples a running server and load generator every `intervalMs` until stopped: the server's
 * peak RSS (VmRSS samples, and VmHWM where the mark could be reset) and the load generator's CPU
 * ticks (its last sample before it exits). stop() returns { peakRssKiB, loadTicks }.
 */
export function startSampler(serverPid, intervalMs = 50) {
  const hwmReset = resetPeakRss(serverPid);
  let peak = readRssKiB(serverPid);
  let loadPid = null;
  let loadTicks = 0;
  const sample = () => {
    const rss = readRssKiB(serverPid);
    if (rss > peak || Number.isNaN(peak)) peak = rss;
    if (loadPid !== null) {
      try {
        loadTicks = readCpuTicks(`/proc/${loadPid}/stat`);
      } catch {
        // the load generator has exited: keep its last sample
      }
    }
  };
  const timer = setInterval(sample, intervalMs);
  return {
    setLoadPid(pid) {
      loadPid = pid;
    },
    stop() {
      clearInterval(timer);
      sample();
      const hwm = hwmReset ? readPeakRssKiB(serverPid) : NaN;
      return { peakRssKiB: Number.isNaN(hwm) ? peak : Math.max(peak, hwm), loadTicks };
    },
  };
}
