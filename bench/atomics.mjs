// Atomic read-modify-writes per request: instructions with a `lock` prefix (and `xchg` with a
// memory operand, locked without one) as executed under callgrind. Each is a full barrier of
// some 20 cycles on x86 that an instruction count does not show apart from a plain add.
// Takes a dump kept by `bench/instructions.mjs --instr --keep=DIR` and the binary it ran
// (objdump disassembles it; addresses in the dump are the binary's own for the addon and for
// non-PIE executables, which is checked against its symbols).
// Needs objdump and nm (binutils).
// Run with: node bench/atomics.mjs DIR/fetch-rs-inthread.callgrind fetch-rs.node [--requests=20000] [--top=30]
//           node bench/atomics.mjs DIR/hyper.callgrind target/release/examples/hyper-baseline
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { basename } from "node:path";

const [dump, binary, ...rest] = process.argv.slice(2);
if (!dump || !binary) {
  console.error("usage: node bench/atomics.mjs DUMP BINARY [--requests=N] [--top=N]");
  process.exit(2);
}
const opt = Object.fromEntries(rest.map((a) => a.replace(/^--/, "").split("=")));
const requests = Number(opt.requests ?? 20000);
const top = Number(opt.top ?? 30);
const object = basename(binary);

// Ir by instruction address, for the functions of `object` (the dump's "ob=" names its file).
const names = new Map();
const named = (kind, value) => {
  const m = /^\((\d+)\)(?: (.*))?$/.exec(value);
  if (!m) return value;
  if (m[2] !== undefined) names.set(`${kind}${m[1]}`, m[2]);
  return names.get(`${kind}${m[1]}`) ?? "?";
};
const ir = new Map();
const fnAt = new Map();
const firstOf = new Map();
let ob = "";
let fn = "";
let addr = 0;
let afterCall = false;
for (const line of readFileSync(dump, "utf8").split("\n")) {
  if (line.startsWith("positions:") && !line.includes("instr")) {
    throw new Error("the dump has no instruction addresses: keep it with bench/instructions.mjs --instr");
  }
  const c = line[0];
  if (c === "0" || c === "+" || c === "-" || c === "*" || (c >= "1" && c <= "9")) {
    const [pos, , cost] = line.split(" ");
    if (pos.startsWith("0x")) addr = Number.parseInt(pos, 16);
    else if (pos[0] === "+") addr += Number(pos.slice(1));
    else if (pos[0] === "-") addr -= Number(pos.slice(1));
    if (afterCall) {
      afterCall = false;
      continue;
    }
    if (ob.endsWith(object) && cost !== undefined) {
      ir.set(addr, (ir.get(addr) ?? 0) + Number(cost));
      fnAt.set(addr, fn);
      if (!(firstOf.get(fn) <= addr)) firstOf.set(fn, addr);
    }
  } else if (line.startsWith("calls=")) afterCall = true;
  else if (line.startsWith("ob=")) ob = named("ob", line.slice(3));
  else if (line.startsWith("fn=")) fn = named("fn", line.slice(3));
  else if (line.startsWith("cob=")) named("ob", line.slice(4));
  else if (line.startsWith("cfn=")) named("fn", line.slice(4));
}

// Where the binary's functions lie in the dump: the offset most functions agree on.
const symbols = new Map();
const nm = execFileSync("nm", ["-C", "--defined-only", binary], { encoding: "utf8", maxBuffer: 1 << 30 });
for (const line of nm.split("\n")) {
  const m = /^([0-9a-f]+) \S (.*)$/.exec(line);
  if (m && !symbols.has(m[2])) symbols.set(m[2], Number.parseInt(m[1], 16));
}
const votes = new Map();
for (const [name, at] of firstOf) {
  const s = symbols.get(name);
  if (s !== undefined) votes.set(at - s, (votes.get(at - s) ?? 0) + 1);
}
const [base = 0] = [...votes].sort((a, b) => b[1] - a[1])[0] ?? [];

let total = 0;
const byFunction = new Map();
const asm = execFileSync("objdump", ["-d", "--no-show-raw-insn", binary], { encoding: "utf8", maxBuffer: 1 << 30 });
for (const line of asm.split("\n")) {
  const m = /^\s*([0-9a-f]+):\s+(.*)$/.exec(line);
  if (!m || !(m[2].startsWith("lock ") || (m[2].startsWith("xchg") && m[2].includes("(")))) continue;
  const at = Number.parseInt(m[1], 16) + base;
  const n = ir.get(at);
  if (!n) continue;
  total += n;
  byFunction.set(fnAt.get(at), (byFunction.get(fnAt.get(at)) ?? 0) + n);
}
console.log(`${object}: ${(total / requests).toFixed(1)} locked instructions per request (${requests} requests)\n`);
for (const [name, n] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`${(n / requests).toFixed(2).padStart(7)}  ${name}`);
}
