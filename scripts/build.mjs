// Builds the native addon (cargo, release) and the TypeScript layer.
// Run with: node scripts/build.mjs [--native | --ts]
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const only = process.argv[2];

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
  if (r.error) throw r.error;
  if (r.status !== 0) process.exit(r.status ?? 1);
}

if (only !== "--ts") {
  run("cargo", ["build", "--release", "--lib"]);
  const names = { linux: "libfetch_rs.so", darwin: "libfetch_rs.dylib", win32: "fetch_rs.dll" };
  const target = process.env.CARGO_TARGET_DIR ?? join(root, "target");
  const lib = join(target, "release", names[process.platform] ?? "libfetch_rs.so");
  if (!existsSync(lib)) throw new Error(`the build did not produce ${lib}`);
  // Copy then rename: a running process that has the old addon mapped keeps it intact.
  const tmp = join(root, `fetch-rs.node.${process.pid}.tmp`);
  copyFileSync(lib, tmp);
  renameSync(tmp, join(root, "fetch-rs.node"));
}
if (only !== "--native") {
  run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"]);
}
