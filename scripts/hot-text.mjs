// Writes scripts/hot-text.ld, the linker script that build.rs gives the addon's link on Linux:
// the functions a plain HTTP server runs (load, listen, GET /json, POST /echo of 100 KiB and
// 1 MiB, close), with the default options and in both modes, placed together ahead of the
// rest of the code. The page cache holds the addon in large folios and a fault maps the whole
// folio, so a function touched at load keeps the 64-512 KiB around it resident: spread over
// the addon's 3.3 MiB of code, the few hundred functions a server runs kept 1.8 MiB of it
// resident at rest, together 0.9 MiB (docs/network-thread.md, "Memory at rest, round
// twenty-three").
//
// The functions are those callgrind sees run in the addon, named without what changes from
// build to build: legacy symbols without their hash (`17h<hash>E`), v0 symbols without their
// crates' disambiguators (`Cs<hash>_`), LTO's numeric suffixes dropped; each becomes a pattern
// for its section (`.text.NAME*`, and `.text.unlikely.NAME*` for the cold ones). A function that
// is renamed or new since the last run stays where the linker puts it, so a stale list costs
// memory, never correctness. Run again after large changes to the Rust code or its dependencies
// (usage at the end of this comment).
//
// The script names lld's `.text` output section: the functions it lists come first and lld
// adds every other `.text.*` section after them, so the code stays one `.text` (which valgrind
// needs to name the addon's functions). lld only: GNU ld would make a second `.text` after
// `.eh_frame` (build.rs gives the script to rustc's own lld only).
//
//   node scripts/hot-text.mjs        (needs valgrind and the built dist/ and fetch-rs.node;
//                                     the addon's own order does not change what it finds)
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "scripts", "hot-text.ld");
const dir = mkdtempSync(join(tmpdir(), "fetch-rs-hot-"));

function post(port, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method: body ? "POST" : "GET" }, (res) => {
      res.resume();
      res.on("end", resolve);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** One server's life under callgrind, with the given Server options. */
async function life(options) {
  const child = spawn(
    "valgrind",
    [
      "--tool=callgrind",
      "--demangle=no",
      `--callgrind-out-file=${join(dir, "cg.%p")}`,
      process.execPath,
      join(root, "bench", "servers", "fetch-rs.mjs"),
    ],
    {
      env: { ...process.env, PORT: "0", FETCH_RS_OPTIONS: JSON.stringify(options) },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const port = await new Promise((resolve, reject) => {
    let text = "";
    child.stdout.on("data", (d) => {
      text += d;
      const m = /READY (\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    child.on("exit", () => reject(new Error("the server exited before READY")));
  });
  const kib100 = Buffer.alloc(100 * 1024, 0x61);
  const mib1 = Buffer.alloc(1024 * 1024, 0x62);
  // 20 clients at once, as a server under load sees them (its allocator's pages fill up).
  const client = async () => {
    for (let i = 0; i < 20; i++) await post(port, "/json");
    for (let i = 0; i < 10; i++) await post(port, "/echo", kib100);
    await post(port, "/echo", mib1);
  };
  await Promise.all(Array.from({ length: 20 }, client));
  const exited = new Promise((resolve) => child.on("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/** The addon's functions in a callgrind file (names are compressed: `fn=(id) name` once). */
function functions(file) {
  const objects = new Map();
  const names = new Map();
  const found = new Set();
  let object = null;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const o = /^(c?ob)=\((\d+)\)(?: (.*))?$/.exec(line);
    if (o) {
      if (o[3]) objects.set(o[2], o[3]);
      if (o[1] === "ob") object = objects.get(o[2]) ?? null;
      continue;
    }
    const f = /^(c?fn)=\((\d+)\)(?: (.*))?$/.exec(line);
    if (!f) continue;
    if (f[3]) names.set(f[2], f[3]);
    if (f[1] === "fn" && object?.endsWith(".node")) found.add(names.get(f[2]));
  }
  return found;
}

/** A section-name pattern for a symbol that holds across builds. */
function pattern(symbol) {
  let p = symbol
    .replace(/'\d+$/, "")
    .replace(/\.llvm\.\d+$/, "")
    .replace(/\.\d+$/, "");
  p = p.replace(/17h[0-9a-f]{16}E$/, "17h");
  if (p.startsWith("_R")) p = p.replace(/Cs[0-9A-Za-z]+_/g, "Cs*_");
  return `${p}*`;
}

/**
 * Every name of each function in `symbols` in the addon's symbol table (`nm`): LLVM merges
 * identical functions into one body under several names, callgrind shows one of them, and the
 * section is named after another.
 */
function withAliases(symbols, addon) {
  const r = spawnSync("nm", ["--defined-only", addon], { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) return symbols;
  const byAddress = new Map();
  const addressOf = new Map();
  for (const line of r.stdout.split("\n")) {
    const [address, type, name] = line.split(" ");
    if (!name || !/^[tT]$/.test(type)) continue;
    if (!byAddress.has(address)) byAddress.set(address, []);
    byAddress.get(address).push(name);
    addressOf.set(name, address);
  }
  const all = new Set(symbols);
  for (const s of symbols) for (const alias of byAddress.get(addressOf.get(s)) ?? []) all.add(alias);
  return all;
}

try {
  // The default (the machine's cores decide, which reads the cgroup's quota), then each mode.
  await life({});
  await life({ workerThreads: 0 });
  await life({ workerThreads: 1 });
  const symbols = new Set();
  for (const f of readdirSync(dir)) for (const s of functions(join(dir, f))) symbols.add(s.replace(/'\d+$/, ""));
  const named = withAliases(symbols, join(root, "fetch-rs.node"));
  const patterns = [...new Set([...named].filter((s) => s && !s.startsWith("0x")).map(pattern))].sort();
  if (patterns.length < 200)
    throw new Error(`only ${patterns.length} functions seen: is fetch-rs.node built without the script?`);
  const lines = [
    "/* Generated by scripts/hot-text.mjs: the functions a plain HTTP server runs, ahead of the rest",
    '   of the addon\'s code (build.rs; docs/network-thread.md, "Memory at rest, round twenty-three"). */',
    "SECTIONS",
    "{",
    "  .text : {",
    "    *(.text.startup .text.startup.*)",
    ...patterns.map((p) => `    *(.text.${p} .text.unlikely.${p})`),
    "  }",
    "}",
    "INSERT AFTER .eh_frame;",
    "",
  ];
  writeFileSync(out, lines.join("\n"));
  console.log(`${out}: ${patterns.length} patterns from ${symbols.size} functions (${named.size} names)`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
