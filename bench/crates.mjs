// Instructions by crate from dumps kept by `bench/instructions.mjs --keep=DIR`: each function's
// self cost, grouped by the crate its name starts with (`<hyper::proto::h1::conn::Conn<..> as
// ..>::poll_read` is hyper's), where a generic of std or core (`core::ptr::drop_in_place<T>`,
// `<alloc::boxed::Box<T> as Future>::poll`, `Vec<T>::reserve`) is charged to the crate of its
// first type argument; objects other than the server's own (libc, node, ld.so, JIT code) are
// rows of their own. With fat LTO much is inlined: a row is the code whose *symbol* is that
// crate's, and inlined callees count with their caller.
// With --lines, for a build that carries line tables (CARGO_PROFILE_RELEASE_DEBUG=
// line-tables-only), each cost line is charged to its source file instead, inlined code
// included: a crate's row is then the code written in that crate, wherever it was inlined
// (the project's own files are listed one by one).
// Run with: node bench/crates.mjs DIR/fetch-rs-inthread.callgrind [REQUESTS] [--top=N] [--lines]
//           (REQUESTS: divides the counts, the --requests of the run; --top lists the largest
//           functions, or files, of each crate row)
import { readFileSync } from "node:fs";
import { summarize } from "./lib/callgrind.mjs";

const files = process.argv.slice(2).filter((a) => !a.startsWith("--") && !/^\d+$/.test(a));
const requests = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 1);
const top = Number(process.argv.find((a) => a.startsWith("--top="))?.slice(6) ?? 0);

// std's crates, whose generics are charged to their type argument.
const STD = new Set(["core", "alloc", "std"]);

/** The crate a demangled Rust name belongs to, by the rules above; null for a non-Rust name. */
function crateOf(name) {
  // A path's first segment: at the start or after `<`, `[`, `(`, `&`, `,`, `*` or a space.
  const paths = [...name.matchAll(/(?:^|[<[(&,* ])([A-Za-z_][A-Za-z0-9_]*)::/g)].map((m) => m[1]);
  if (paths.length === 0) return null;
  const first = paths[0];
  if (!STD.has(first)) return first;
  return paths.find((c) => !STD.has(c) && c !== "T") ?? first;
}

/** The row of a function: its object's for other objects, its crate's for the server's own. */
function rowOf(object, fn) {
  if (/^libc[.-]/.test(object)) return `libc (${fn.startsWith("__memcpy") || fn.startsWith("__memmove") ? "memcpy/memmove" : "other"})`;
  if (object === "???") return "JIT code (???)";
  if (/^ld-linux|^ld\.so/.test(object)) return "ld.so";
  if (object === "node" || object.startsWith("libnode")) return "node";
  if (/^vdso|linux-vdso/.test(object)) return "vDSO";
  if (/^_?mi_|^mi_/.test(fn)) return "mimalloc";
  const crate = crateOf(fn);
  if (crate === null) return `${object}: other`;
  return crate.startsWith("napi") ? "napi" : crate;
}

/** The crate of a source path: a registry crate's name without its version, `std` for the
 * standard library, `fetch_rs` for this repository's src/ (and the example's own file). */
function crateOfPath(path) {
  const registry = /\/registry\/src\/[^/]+\/([^/]+?)-\d+\.\d+\.\d+[^/]*\//.exec(path);
  if (registry) return registry[1].replace(/-/g, "_");
  if (/\/rustlib\/src\/|\/rustc\/[0-9a-f]+\/library\//.test(path)) return "std";
  if (/\/src\/[^/]+\.rs$/.test(path) || /\/examples\/[^/]+\.rs$/.test(path)) return "fetch_rs";
  return null;
}

/** Self cost by (object, source file) of a dump with line tables: cost lines are charged to
 * the file that `fl=`, `fi=` or `fe=` last named (`fn=` goes back to the function's `fl=`).
 * The standard library's code inlined elsewhere (moves, `Vec`, `Option`) is charged to the
 * function it was inlined into: its file, or where that is std's too (`drop_in_place<T>`,
 * `Box<F>::poll`), the crate its name gives (`crateOf`), as "CRATE (std inlined)". */
function byFile(file) {
  const fnNames = new Map();
  let fnName = "?";
  const names = new Map();
  const named = (value) => {
    const m = /^\((\d+)\)(?: (.*))?$/.exec(value);
    if (!m) return value;
    if (m[2] !== undefined) names.set(m[1], m[2]);
    return names.get(m[1]) ?? "?";
  };
  const obNames = new Map();
  let ob = "?";
  let fl = "?";
  let current = "?";
  let afterCall = false;
  let col = 1;
  let total = 0;
  const files = new Map();
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const c = line.charCodeAt(0);
    if ((c >= 48 && c <= 57) || c === 43 || c === 45 || c === 42) {
      if (afterCall) {
        afterCall = false;
        continue;
      }
      const n = Number(line.split(" ")[col] ?? 0);
      total += n;
      let where = current;
      if (crateOfPath(current) === "std") {
        where = crateOfPath(fl) !== "std" ? fl : `crate:${crateOf(fnName) ?? "std"}`;
      }
      const key = `${ob}\t${where}`;
      files.set(key, (files.get(key) ?? 0) + n);
    } else if (line.startsWith("calls=")) afterCall = true;
    else if (line.startsWith("positions:")) col = line.split(" ").length - 1;
    else if (line.startsWith("ob=")) {
      const m = /^\((\d+)\)(?: (.*))?$/.exec(line.slice(3));
      if (m && m[2] !== undefined) obNames.set(m[1], m[2]);
      ob = ((m ? obNames.get(m[1]) : line.slice(3)) ?? "?").split("/").pop();
    } else if (line.startsWith("cob=")) {
      const m = /^\((\d+)\)(?: (.*))?$/.exec(line.slice(4));
      if (m && m[2] !== undefined) obNames.set(m[1], m[2]);
    } else if (line.startsWith("fl=")) current = fl = named(line.slice(3));
    else if (line.startsWith("fi=") || line.startsWith("fe=")) current = named(line.slice(3));
    else if (line.startsWith("fn=")) {
      current = fl;
      const m = /^\((\d+)\)(?: (.*))?$/.exec(line.slice(3));
      if (m && m[2] !== undefined) fnNames.set(m[1], m[2]);
      fnName = (m ? fnNames.get(m[1]) : line.slice(3)) ?? "?";
    } else if (line.startsWith("cfn=")) {
      const m = /^\((\d+)\)(?: (.*))?$/.exec(line.slice(4));
      if (m && m[2] !== undefined) fnNames.set(m[1], m[2]);
    }
    else if (line.startsWith("cfi=") || line.startsWith("cfl=")) named(line.slice(4));
  }
  return { total, files };
}

if (process.argv.includes("--lines")) {
  for (const file of files) {
    const { total, files: costs } = byFile(file);
    const rows = new Map();
    const members = new Map();
    for (const [key, n] of costs) {
      const [object, path] = key.split("\t");
      const named = path.startsWith("crate:") ? path.slice(6) : null;
      const crate = named ? (named === "std" ? "std" : `${named} (std inlined)`) : crateOfPath(path);
      const addon = object.endsWith(".node") || /^(lean-h1|hyper-baseline)$/.test(object);
      let row;
      if (!addon) row = rowOf(object, "");
      else if (crate === "fetch_rs") row = `fetch_rs ${path.split("/").slice(-2).join("/")}`;
      else row = crate ?? `${object}: no line table`;
      rows.set(row, (rows.get(row) ?? 0) + n);
      if (top > 0) (members.get(row) ?? members.set(row, []).get(row)).push([path, n]);
    }
    console.log(`${file}: ${(total / requests).toFixed(0)} instructions a request, by source file`);
    console.log("| row | a request | share |\n|---|---:|---:|");
    for (const [row, n] of [...rows].sort((a, b) => b[1] - a[1])) {
      if (n / requests < 1) continue;
      console.log(`| ${row} | ${(n / requests).toFixed(0)} | ${((n / total) * 100).toFixed(1)}% |`);
      if (top > 0 && !row.startsWith("fetch_rs ")) {
        for (const [p, m] of members.get(row).sort((a, b) => b[1] - a[1]).slice(0, top)) {
          console.log(`|   ${p.split("/").slice(-3).join("/")} | ${(m / requests).toFixed(0)} | |`);
        }
      }
    }
  }
  process.exit(0);
}

for (const file of files) {
  const { total, functions } = summarize(file);
  const rows = new Map();
  const members = new Map();
  for (const [key, n] of functions) {
    // Keys are "OBJECT FUNCTION", the addon's object named "addon (.node)".
    const split = key.startsWith("addon (.node) ") ? 13 : key.indexOf(" ");
    const [object, fn] = [key.slice(0, split), key.slice(split + 1)];
    const row = rowOf(object, fn);
    rows.set(row, (rows.get(row) ?? 0) + n);
    if (top > 0) (members.get(row) ?? members.set(row, []).get(row)).push([fn, n]);
  }
  console.log(`${file}: ${(total / requests).toFixed(0)} instructions a request`);
  console.log("| row | a request | share |\n|---|---:|---:|");
  for (const [row, n] of [...rows].sort((a, b) => b[1] - a[1])) {
    if (n / requests < 1) continue;
    console.log(`| ${row} | ${(n / requests).toFixed(0)} | ${((n / total) * 100).toFixed(1)}% |`);
    if (top > 0) {
      for (const [fn, m] of members.get(row).sort((a, b) => b[1] - a[1]).slice(0, top)) {
        console.log(`|   ${fn.slice(0, 150).replace(/\|/g, "\\|")} | ${(m / requests).toFixed(0)} | |`);
      }
    }
  }
}
