// Turns the measured runs into medians per server and mode, and renders them as Markdown.
// Used by bench/run.mjs. Run with: node bench/run.mjs (not run on its own)

/** The median of a list of numbers (NaN entries ignored). */
export function median(values) {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** A run's problems as text ("12 non-2xx/3xx, 3 socket errors"), or "" when clean. */
export function runProblems(run) {
  const socket = Object.values(run.socketErrors).reduce((a, b) => a + b, 0);
  const problems = [];
  if (run.non2xx > 0) problems.push(`${run.non2xx} NON-2XX/3XX`);
  if (socket > 0) {
    const kinds = Object.entries(run.socketErrors).filter(([, n]) => n > 0);
    problems.push(`${socket} socket errors (${kinds.map(([k, n]) => `${k} ${n}`).join(", ")})`);
  }
  return problems.join(", ");
}

/** One summary row per (server, mode), in the order first measured, with medians over rounds. */
export function summarize(runs, baseline) {
  const groups = new Map();
  for (const run of runs) {
    const key = `${run.server}\0${run.mode}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(run);
  }
  const rows = [...groups.values()].map((group) => ({
    server: group[0].server,
    mode: group[0].mode,
    rounds: group.length,
    requestsPerSec: median(group.map((r) => r.requestsPerSec)),
    p50Ms: median(group.map((r) => r.p50Ms)),
    p99Ms: median(group.map((r) => r.p99Ms)),
    cpuUsProcess: median(group.map((r) => r.cpuUsPerReqProcess)),
    cpuUsJsThread: median(group.map((r) => r.cpuUsPerReqJsThread)),
    serverCpuPercent: median(group.map((r) => r.serverCpuPercent)),
    problems: group.map(runProblems).filter(Boolean).join("; "),
  }));
  for (const row of rows) {
    const base = rows.find((r) => r.server === baseline && r.mode === row.mode);
    row.ratio = base ? row.requestsPerSec / base.requestsPerSec : NaN;
  }
  return rows;
}

/** Number formats shared by the tables and the progress lines; NaN (not measured) shows as n/a. */
export const fmt = {
  int: (n) => (Number.isNaN(n) ? "n/a" : Math.round(n).toLocaleString("en-US")),
  ratio: (n) => (Number.isNaN(n) ? "n/a" : `${n.toFixed(2)}x`),
  ms: (n) => (Number.isNaN(n) ? "n/a" : n.toFixed(3)),
  us: (n) => (Number.isNaN(n) ? "n/a" : n.toFixed(1)),
};

function table(header, rows) {
  const line = (cells) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

/** The summary table: medians per server and mode. */
export function summaryTable(rows, baseline) {
  const header = [
    "server", "mode", "req/s", `vs ${baseline}`, "p50 ms", "p99 ms",
    "CPU us/req (process)", "CPU us/req (JS thread)", "server CPU %", "errors",
  ];
  return table(
    header,
    rows.map((r) => [
      r.server, r.mode, fmt.int(r.requestsPerSec), fmt.ratio(r.ratio), fmt.ms(r.p50Ms), fmt.ms(r.p99Ms),
      fmt.us(r.cpuUsProcess), fmt.us(r.cpuUsJsThread), fmt.int(r.serverCpuPercent), r.problems ? `**${r.problems}**` : "none",
    ]),
  );
}

/** Every measured run, in the order it ran, to show the spread behind the medians. */
export function runsTable(runs) {
  const header = ["round", "server", "mode", "req/s", "requests", "p50 ms", "p99 ms", "CPU us/req (process)", "CPU us/req (JS thread)", "server CPU %", "errors"];
  return table(
    header,
    runs.map((r) => [
      r.round, r.server, r.mode, fmt.int(r.requestsPerSec), fmt.int(r.requests), fmt.ms(r.p50Ms), fmt.ms(r.p99Ms),
      fmt.us(r.cpuUsPerReqProcess), fmt.us(r.cpuUsPerReqJsThread), fmt.int(r.serverCpuPercent), runProblems(r) || "none",
    ]),
  );
}

/** The header block: what ran, where and how. `info` is built by run.mjs. */
export function machineHeader(info) {
  return [
    `# fetch-rs benchmark: S1, every request answered with JSON {"ok":true}`,
    "",
    `- date: ${info.date}`,
    `- machine: ${info.cpuModel}, ${info.cores} cores, ${info.os}, load average ${info.loadAverage} at start`,
    `- node ${info.nodeVersion}, wrk ${info.wrkVersion}${info.gitCommit ? `, fetch-rs commit ${info.gitCommit}` : ""}`,
    `- pinning: ${info.pinning}`,
    `- load: ${info.load}`,
  ].join("\n");
}
