// Turns the measured runs into medians per scenario, mode and server, and renders them as Markdown.
// Used by bench/run.mjs. Run with: node bench/run.mjs (not run on its own)

/** The median of a list of numbers (NaN entries ignored). */
export function median(values) {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** (max - min) / median of a list, in % (NaN for fewer than two values). */
export function spread(values) {
  const valid = values.filter((v) => !Number.isNaN(v));
  const mid = median(valid);
  return valid.length < 2 || !(mid > 0) ? NaN : ((Math.max(...valid) - Math.min(...valid)) / mid) * 100;
}

/** A run's problems as text ("12 non-2xx/3xx, 3 socket errors"), or "" when clean. */
export function runProblems(run) {
  const socket = Object.values(run.socketErrors).reduce((a, b) => a + b, 0);
  const problems = [];
  if (!(run.requests > 0)) problems.push("NO RESPONSE COMPLETED");
  if (run.non2xx > 0) problems.push(`${run.non2xx} NON-2XX/3XX`);
  if (socket > 0) {
    const kinds = Object.entries(run.socketErrors).filter(([, n]) => n > 0);
    problems.push(`${socket} socket errors (${kinds.map(([k, n]) => `${k} ${n}`).join(", ")})`);
  }
  return problems.join(", ");
}

/**
 * One summary row per (scenario, mode, server), in the order first measured, with medians over
 * rounds. `baselineFor(mode)` names the server whose req/s the ratio divides by.
 */
export function summarize(runs, baselineFor) {
  const groups = new Map();
  for (const run of runs) {
    const key = `${run.scenario}\0${run.mode}\0${run.server}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(run);
  }
  const rows = [...groups.values()].map((group) => ({
    scenario: group[0].scenario,
    mode: group[0].mode,
    server: group[0].server,
    mainThread: group[0].mainThread,
    rounds: group.length,
    requestsPerSec: median(group.map((r) => r.requestsPerSec)),
    // How far apart the rounds were: (max - min) / median, in %.
    spreadPercent: spread(group.map((r) => r.requestsPerSec)),
    p50Ms: median(group.map((r) => r.p50Ms)),
    p99Ms: median(group.map((r) => r.p99Ms)),
    cpuUsProcess: median(group.map((r) => r.cpuUsPerReqProcess)),
    cpuUsMainThread: median(group.map((r) => r.cpuUsPerReqMainThread)),
    peakRssMiB: median(group.map((r) => r.peakRssKiB / 1024)),
    serverCpuPercent: median(group.map((r) => r.serverCpuPercent)),
    loadCpuPercent: median(group.map((r) => r.loadCpuPercent)),
    problems: group.map(runProblems).filter(Boolean).join("; "),
  }));
  for (const row of rows) {
    const base = rows.find((r) => r.scenario === row.scenario && r.mode === row.mode && r.server === baselineFor(row.mode));
    row.baseline = baselineFor(row.mode);
    row.ratio = base && base.requestsPerSec > 0 ? row.requestsPerSec / base.requestsPerSec : NaN;
  }
  return rows;
}

/** Number formats shared by the tables and the progress lines; NaN (not measured) shows as n/a. */
export const fmt = {
  int: (n) => (Number.isNaN(n) ? "n/a" : Math.round(n).toLocaleString("en-US")),
  ratio: (n) => (Number.isNaN(n) ? "n/a" : `${n.toFixed(2)}x`),
  ms: (n) => (Number.isNaN(n) ? "n/a" : n.toFixed(3)),
  us: (n) => (Number.isNaN(n) ? "n/a" : n.toFixed(1)),
  mib: (n) => (Number.isNaN(n) ? "n/a" : n.toFixed(0)),
};

/** The main-thread CPU cell: a number for a JS thread, starred for Bun/Deno's main thread, "-" for none. */
function mainThreadCell(kind, value) {
  if (kind === null) return "-";
  return kind === "main" ? `${fmt.us(value)}*` : fmt.us(value);
}

function table(header, rows, align) {
  const line = (cells) => `| ${cells.join(" | ")} |`;
  return [line(header), line(align ?? header.map(() => "---")), ...rows.map(line)].join("\n");
}

/** The summary table: medians per scenario, mode and server. */
export function summaryTable(rows) {
  const header = [
    "scenario", "mode", "server", "req/s", "spread %", "vs node", "p50 ms", "p99 ms",
    "CPU us/req process", "CPU us/req JS thread", "peak RSS MiB", "server CPU %", "load CPU %", "errors",
  ];
  const align = header.map((_, i) => (i < 3 || i === header.length - 1 ? "---" : "---:"));
  return table(
    header,
    rows.map((r) => [
      r.scenario, r.mode, r.server, fmt.int(r.requestsPerSec), fmt.int(r.spreadPercent), fmt.ratio(r.ratio), fmt.ms(r.p50Ms), fmt.ms(r.p99Ms),
      fmt.us(r.cpuUsProcess), mainThreadCell(r.mainThread, r.cpuUsMainThread), fmt.mib(r.peakRssMiB),
      fmt.int(r.serverCpuPercent), fmt.int(r.loadCpuPercent), r.problems ? `**${r.problems}**` : "none",
    ]),
    align,
  );
}

/** Every measured run, in the order it ran, to show the spread behind the medians. */
export function runsTable(runs) {
  const header = [
    "round", "scenario", "mode", "server", "req/s", "requests", "p50 ms", "p99 ms", "CPU us/req process",
    "CPU us/req JS thread", "peak RSS MiB", "server CPU %", "load CPU %", "other CPU %", "steal %", "errors",
  ];
  return table(
    header,
    runs.map((r) => [
      r.round, r.scenario, r.mode, r.server, fmt.int(r.requestsPerSec), fmt.int(r.requests), fmt.ms(r.p50Ms), fmt.ms(r.p99Ms),
      fmt.us(r.cpuUsPerReqProcess), mainThreadCell(r.mainThread, r.cpuUsPerReqMainThread), fmt.mib(r.peakRssKiB / 1024),
      fmt.int(r.serverCpuPercent), fmt.int(r.loadCpuPercent), fmt.int(r.otherCpuPercent), fmt.int(r.stealCpuPercent),
      runProblems(r) || "none",
    ]),
  );
}

/** The header block: what ran, where and how. `info` is built by run.mjs. */
export function machineHeader(info) {
  return [
    `# fetch-rs benchmark`,
    "",
    `- date: ${info.date}`,
    `- machine: ${info.cpuModel}, ${info.cores} cores, ${info.os}, load average ${info.loadAverage} at start` +
      (info.loadAverageEnd ? `, ${info.loadAverageEnd} at end` : ""),
    `- versions: ${info.versions}`,
    `- fetch-rs commit: ${info.gitCommit ?? "unknown (not a git checkout)"}`,
    `- pinning: ${info.pinning}`,
    `- load: ${info.load}`,
    `- scenarios: ${info.scenarios}`,
    `- servers: ${info.servers}`,
    ...(info.skipped.length ? [`- not measured: ${info.skipped.join("; ")}`] : []),
    ...(info.incomplete ? [`- **incomplete: ${info.incomplete}**`] : []),
  ].join("\n");
}

/** What the columns mean, printed under the table. */
export function legend({ baselines, pipelined, depth }) {
  const lines = [
    "spread %: (fastest - slowest round) / median req/s, over the rounds (n/a with one round). " +
      `vs node: req/s divided by ${baselines}'s in the same scenario and mode. ` +
      "CPU us/req: the server's CPU time (user + system) during the measured run over the requests completed; " +
      "process = all threads, JS thread = the main thread: Node's JS thread for fetch-rs, node:http, fastify and hono; " +
      "* = Bun's and Deno's main thread, which runs their JavaScript and most of their HTTP work; - = none (hyper has no JavaScript). " +
      "peak RSS: the server process's largest resident set during the measured run. " +
      "server CPU %: the server's CPU time over the run's wall time (about 100% per server core = the server was the limit). " +
      "load CPU %: the load generator's (about 100% per load core = the load generator was the limit).",
  ];
  if (pipelined) {
    lines.push(
      `Pipelined latencies are per batch of ${depth} and skewed by wrk's coordinated-omission correction, ` +
        "which assumes one response per request (n/a: wrk printed 0); for that mode compare req/s and CPU/req.",
    );
  }
  return lines.join("\n\n");
}
