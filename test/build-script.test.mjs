// The build's profile-guided step (scripts/build.mjs, docs/pgo.md): which llvm-profdata it
// takes (only one of rustc's LLVM major version can read rustc's raw profiles; none found means
// the plain build), and the training run (scripts/pgo-train.mjs), which must keep driving every
// path it names against the current server, over real sockets.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { findProfdata, llvmMajor } from "../scripts/build.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "fetch-rs-build-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** An executable `name` in `sub` that prints `version` for --version (exit 1 with null). */
function fake(sub, name, version) {
  mkdirSync(join(dir, sub), { recursive: true });
  const path = join(dir, sub, name);
  const body = version === null ? "exit 1" : `echo '${version}'`;
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

const versionOf = (path) => {
  const r = spawnSync(path, ["--version"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout : null;
};

describe("llvmMajor", () => {
  test("reads rustc -vV and llvm-profdata --version", () => {
    assert.equal(
      llvmMajor("rustc 1.95.0 (59807616e 2026-04-14)\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.2\n"),
      22,
    );
    assert.equal(llvmMajor("Debian LLVM version 22.1.8\n  Optimized build.\n"), 22);
    assert.equal(llvmMajor("LLVM (http://llvm.org/):\n  LLVM version 14.0.6\n"), 14);
    assert.equal(llvmMajor("Ubuntu LLVM version 9.0.1\n"), 9);
    assert.equal(llvmMajor("something else"), null);
    assert.equal(llvmMajor(null), null);
  });
});

describe("findProfdata", () => {
  const old = fake("old", "llvm-profdata", "Debian LLVM version 14.0.6");
  const versioned = fake("versioned", "llvm-profdata-22", "Debian LLVM version 22.1.8");
  const plain22 = fake("plain22", "llvm-profdata", "LLVM version 22.1.2");
  const broken = fake("broken", "llvm-profdata", null);
  const sysroot = join(dir, "sysroot");
  const tools = fake(
    join("sysroot", "lib", "rustlib", "x86_64-unknown-linux-gnu", "bin"),
    "llvm-profdata",
    "LLVM version 22.1.2",
  );
  const PATH = (...subs) => subs.map((s) => join(dir, s)).join(":");

  test("takes llvm-profdata-NN of rustc's major version before an unversioned one", () => {
    const env = { PATH: PATH("plain22", "versioned") };
    assert.deepEqual(findProfdata(22, { env, versionOf }), { path: versioned });
  });

  test("skips an llvm-profdata of another major version for one that matches", () => {
    const env = { PATH: PATH("old", "plain22") };
    assert.deepEqual(findProfdata(22, { env, versionOf }), { path: plain22 });
  });

  test("falls back to rustup's llvm-tools in the sysroot", () => {
    const env = { PATH: PATH("old") };
    const host = "x86_64-unknown-linux-gnu";
    assert.deepEqual(findProfdata(22, { env, versionOf, sysroot, host }), { path: tools });
  });

  test("none that matches: missing, naming what it found", () => {
    const found = findProfdata(22, { env: { PATH: PATH("old", "broken") }, versionOf });
    assert.equal(found.path, undefined);
    assert.match(found.missing, /LLVM 22/);
    assert.ok(found.missing.includes(`${old} (LLVM 14)`), found.missing);
    assert.ok(found.missing.includes(`${broken} (does not run)`), found.missing);
    assert.deepEqual(findProfdata(22, { env: { PATH: "" }, versionOf }).path, undefined);
    assert.deepEqual(findProfdata(null, { env: { PATH: PATH("versioned") }, versionOf }).path, undefined);
  });

  test("FETCH_RS_LLVM_PROFDATA is the only candidate when set", () => {
    const env = { PATH: PATH("versioned"), FETCH_RS_LLVM_PROFDATA: old };
    assert.equal(findProfdata(22, { env, versionOf }).path, undefined);
    assert.deepEqual(findProfdata(14, { env, versionOf }), { path: old });
  });
});

describe("pgo-train.mjs", () => {
  test("drives every scenario against the built addon and exits cleanly", () => {
    const r = spawnSync(process.execPath, [join(root, "scripts", "pgo-train.mjs"), "--seconds=3"], {
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    // 15 scenarios in each of the two modes, each with a count above zero.
    const lines = r.stdout.split("\n").filter((l) => l.startsWith("pgo-train: "));
    assert.equal(lines.length, 30, r.stdout);
    for (const line of lines) assert.match(line, /: [1-9]\d*$/);
  });
});
