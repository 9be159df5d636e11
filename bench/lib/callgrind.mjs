// Reading callgrind dumps: instructions by object and by function (bench/instructions.mjs,
// bench/ws-instructions.mjs). Run with: (a module; not run on its own)
import { readFileSync } from "node:fs";

/**
 * Instructions by object and by function from a dump: the self cost of each function (a cost
 * line right after `calls=` is the inclusive cost of that call, and is skipped).
 * Format: https://valgrind.org/docs/manual/cl-format.html (names compressed as "(id) name").
 */
export function summarize(file) {
  const names = { ob: new Map(), fn: new Map() };
  const named = (kind, value) => {
    const m = /^\((\d+)\)(?: (.*))?$/.exec(value);
    if (!m) return value;
    if (m[2] !== undefined) names[kind].set(m[1], m[2]);
    return names[kind].get(m[1]) ?? "?";
  };
  let ob = "?";
  let fn = "?";
  let cfn = "?";
  let afterCall = false;
  // The column of Ir in a cost line: after the positions ("line", or "instr line" in dumps
  // made with --dump-instr=yes).
  let col = 1;
  let total = 0;
  // V8's garbage collections, inclusive: how often they run depends on the heap's sizing as
  // much as on what a request allocates, so their share is shown apart.
  let gc = 0;
  let gcCalls = 0;
  const objects = new Map();
  const functions = new Map();
  // Every event of the dump (with --cache-sim/--branch-sim: I1mr, D1mr, Bcm, Bim, ...), summed
  // over all objects and over the addon alone.
  let events = [];
  let eventTotals = [];
  let addonTotals = [];
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const c = line.charCodeAt(0);
    if ((c >= 48 && c <= 57) || c === 43 || c === 45 || c === 42) {
      // A cost line: position, then Ir.
      if (afterCall) {
        afterCall = false;
        if (cfn.startsWith("v8::internal::Heap::CollectGarbage(") && fn !== cfn) {
          gc += Number(line.split(" ")[col] ?? 0);
        }
        continue;
      }
      const cost = line.split(" ");
      const n = Number(cost[col] ?? 0);
      total += n;
      for (let i = 1; i < events.length; i++) {
        const v = Number(cost[col + i] ?? 0);
        eventTotals[i] += v;
        if (ob.endsWith(".node")) addonTotals[i] += v;
      }
      objects.set(ob, (objects.get(ob) ?? 0) + n);
      const key = `${ob} ${fn}`;
      functions.set(key, (functions.get(key) ?? 0) + n);
    } else if (line.startsWith("calls=")) {
      afterCall = true;
      if (cfn.startsWith("v8::internal::Heap::CollectGarbage(") && fn !== cfn)
        gcCalls += Number(line.slice(6).split(" ")[0]);
    } else if (line.startsWith("positions:")) col = line.split(" ").length - 1;
    else if (line.startsWith("events:")) {
      events = line.slice(7).trim().split(/\s+/);
      eventTotals = events.map(() => 0);
      addonTotals = events.map(() => 0);
    }
    else if (line.startsWith("ob=")) ob = named("ob", line.slice(3)).split("/").pop();
    else if (line.startsWith("fn=")) fn = named("fn", line.slice(3));
    else if (line.startsWith("cob=")) named("ob", line.slice(4));
    else if (line.startsWith("cfn=")) cfn = named("fn", line.slice(4));
  }
  const rename = (m) => new Map([...m].map(([k, v]) => [k.replace(/^\S*\.node\b/, "addon (.node)"), v]));
  // Ir is `total` (and the addon's in `objects`); the other events by name.
  const simulated = (totals) => new Map(events.slice(1).map((e, i) => [e, totals[i + 1]]));
  return {
    total,
    gc,
    gcCalls,
    objects: rename(objects),
    functions: rename(functions),
    events: simulated(eventTotals),
    addonEvents: simulated(addonTotals),
  };
}

/**
 * Markdown rows of the simulated events (--sim) per unit: the whole process's and the addon's,
 * for each of `results` (summaries above, with `name`); none when the dumps have no such events.
 */
export function eventRows(results, units) {
  const names = [...new Set(results.flatMap((r) => [...(r.events?.keys() ?? [])]))];
  const per = (n) => (n / units).toFixed(2);
  const rows = [];
  for (const e of names) rows.push(`| ${e} | ${results.map((r) => per(r.events.get(e) ?? 0)).join(" | ")} |`);
  for (const e of names) rows.push(`| ${e}, addon | ${results.map((r) => per(r.addonEvents.get(e) ?? 0)).join(" | ")} |`);
  return rows;
}
