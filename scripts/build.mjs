// Builds the native addon (cargo, release) and the TypeScript layer.
// Run with: node scripts/build.mjs [--native | --ts]
//
// With FETCH_RS_PGO=1 the addon is built with profile-guided optimization (docs/pgo.md, off by
// default: it cut instructions 2-5% and its CPU-time gain was not measurable on a shared
// machine, for twice the build time) when an llvm-profdata of the LLVM major version rustc uses
// is found (FETCH_RS_LLVM_PROFDATA, else llvm-profdata-NN or llvm-profdata on PATH, else
// rustup's llvm-tools component): an instrumented build, a training run over real sockets
// (scripts/pgo-train.mjs), then the build that uses its profile. Without one it is the plain
// release build, with a one-line notice.
// The two profile builds have target dirs of their own (target/pgo/gen, target/pgo/use) and pass
// `--target` so that their flags reach neither build scripts nor proc macros nor the plain
// target/release that `cargo test --release` and clippy use.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { delimiter, dirname, isAbsolute, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const names = { linux: "libfetch_rs.so", darwin: "libfetch_rs.dylib", win32: "fetch_rs.dll" };
const libName = names[process.platform] ?? "libfetch_rs.so";

function run(cmd, args, env = process.env) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", env });
  if (r.error) throw r.error;
  if (r.status !== 0) process.exit(r.status ?? 1);
}

/** stdout of a command, or null if it cannot be run or fails. */
function output(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  return r.status === 0 ? r.stdout : null;
}

/** The LLVM major version in `rustc -vV` or `llvm-profdata --version` output, or null. */
export function llvmMajor(text) {
  const m = /LLVM version:?\s+(\d+)\./i.exec(text ?? "");
  return m ? Number(m[1]) : null;
}

/**
 * The llvm-profdata to merge rustc's profiles with: the first candidate whose LLVM major
 * version is `major` (an older one cannot read newer raw profiles). `env.FETCH_RS_LLVM_PROFDATA`
 * is the only candidate when set. `versionOf(path)` gives its version text (null if it cannot run).
 * Returns { path } or { missing: "why" }.
 */
export function findProfdata(major, { env = process.env, sysroot = null, host = null, versionOf } = {}) {
  if (major === null) return { missing: "rustc's LLVM version is unknown" };
  const onPath = (name) =>
    (env.PATH ?? "")
      .split(delimiter)
      .filter(Boolean)
      .map((dir) => join(dir, name))
      .filter((p) => existsSync(p));
  const candidates = env.FETCH_RS_LLVM_PROFDATA
    ? [env.FETCH_RS_LLVM_PROFDATA]
    : [
        ...onPath(`llvm-profdata-${major}`),
        ...onPath("llvm-profdata"),
        ...(sysroot && host ? [join(sysroot, "lib", "rustlib", host, "bin", "llvm-profdata")] : []),
      ];
  const seen = [];
  for (const path of candidates) {
    const found = llvmMajor(versionOf(path));
    if (found === major) return { path };
    seen.push(`${path} (${found === null ? "does not run" : `LLVM ${found}`})`);
  }
  const what = seen.length ? `; found ${seen.join(", ")}` : "";
  return { missing: `no llvm-profdata of LLVM ${major}, the version rustc uses${what}` };
}

/** RUSTFLAGS as cargo would take them from the environment, plus `extra`, encoded. */
function withRustflags(extra) {
  const env = { ...process.env };
  const base = env.CARGO_ENCODED_RUSTFLAGS
    ? env.CARGO_ENCODED_RUSTFLAGS.split("\x1f")
    : (env.RUSTFLAGS ?? "").split(/\s+/).filter(Boolean);
  delete env.RUSTFLAGS;
  env.CARGO_ENCODED_RUSTFLAGS = [...base, ...extra].join("\x1f");
  return env;
}

/** Copy then rename: a running process that has the old addon mapped keeps it intact. */
function install(lib) {
  if (!existsSync(lib)) throw new Error(`the build did not produce ${lib}`);
  const tmp = join(root, `fetch-rs.node.${process.pid}.tmp`);
  copyFileSync(lib, tmp);
  renameSync(tmp, join(root, "fetch-rs.node"));
}

const buildTs = () =>
  run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"]);

/** The profile-guided build; `profdata` is the llvm-profdata to use. */
function buildPgo(profdata, target, host) {
  const dir = join(target, "pgo");
  const raw = join(dir, "raw");
  const profile = join(dir, "fetch-rs.profdata");
  const stampFile = join(dir, "stamp.json");
  // The training loads the built TypeScript.
  buildTs();
  const cargo = (targetDir, flags) =>
    run("cargo", ["build", "--release", "--lib", "--target", host, "--target-dir", targetDir], withRustflags(flags));
  console.log("fetch-rs: profile-guided build (docs/pgo.md), 1/3: the instrumented addon");
  cargo(join(dir, "gen"), [`-Cprofile-generate=${raw}`]);
  const gen = join(dir, "gen", host, "release", libName);
  // Train again only when the instrumented addon or the training changed: an unchanged
  // profile leaves the last build fresh.
  const trainer = join(root, "scripts", "pgo-train.mjs");
  const st = statSync(gen);
  const stamp = JSON.stringify({
    lib: [st.size, st.mtimeMs],
    trainer: createHash("sha256").update(readFileSync(trainer)).digest("hex"),
  });
  if (existsSync(profile) && existsSync(stampFile) && readFileSync(stampFile, "utf8") === stamp) {
    console.log("fetch-rs: 2/3: the profile is up to date");
  } else {
    console.log("fetch-rs: 2/3: the training run (scripts/pgo-train.mjs)");
    rmSync(raw, { recursive: true, force: true });
    mkdirSync(raw, { recursive: true });
    // node loads addons by their extension.
    const instrumented = join(dir, "instrumented.node");
    copyFileSync(gen, instrumented);
    run(process.execPath, [trainer], {
      ...process.env,
      FETCH_RS_NATIVE_PATH: instrumented,
      LLVM_PROFILE_FILE: join(raw, "%p-%m.profraw"),
    });
    // Written anew (not over the old one in place), so its modification time says it changed.
    run(profdata, ["merge", "-o", `${profile}.tmp`, raw]);
    renameSync(`${profile}.tmp`, profile);
    writeFileSync(stampFile, stamp);
  }
  console.log("fetch-rs: 3/3: the addon built with the profile");
  cargo(join(dir, "use"), [`-Cprofile-use=${profile}`]);
  install(join(dir, "use", host, "release", libName));
}

async function main() {
  const only = process.argv[2];
  const target = process.env.CARGO_TARGET_DIR
    ? isAbsolute(process.env.CARGO_TARGET_DIR)
      ? process.env.CARGO_TARGET_DIR
      : join(root, process.env.CARGO_TARGET_DIR)
    : join(root, "target");
  let tsBuilt = false;
  if (only !== "--ts") {
    let pgo = null;
    let host = null;
    if (process.env.FETCH_RS_PGO === "1") {
      const rustc = output("rustc", ["-vV"]);
      host = /^host: (\S+)/m.exec(rustc ?? "")?.[1] ?? null;
      const sysroot = output("rustc", ["--print", "sysroot"])?.trim() ?? null;
      // LLVM 14's llvm-profdata answers --version only after a subcommand.
      const versionOf = (p) => output(p, ["merge", "--version"]) ?? output(p, ["--version"]);
      pgo = findProfdata(llvmMajor(rustc), { sysroot, host, versionOf });
    }
    if (pgo?.path && host) {
      buildPgo(pgo.path, target, host);
      tsBuilt = true;
    } else {
      if (pgo) console.log(`fetch-rs: FETCH_RS_PGO=1, but a plain release build: ${pgo.missing} (docs/pgo.md)`);
      run("cargo", ["build", "--release", "--lib"]);
      install(join(target, "release", libName));
    }
  }
  if (only !== "--native" && !tsBuilt) buildTs();
}

// Run as a script, not when imported (test/build-script.test.mjs imports the functions above).
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
