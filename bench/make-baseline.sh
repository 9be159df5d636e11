#!/usr/bin/env bash
# Builds fetch-rs at a git revision into bench/baseline/ (dist/ and fetch-rs.node), for the
# `fetch-rs-base` server: a change and the code before it measured side by side in one run.
# Run with: bench/make-baseline.sh REV     (e.g. main, HEAD~3, a commit hash)
set -euo pipefail
rev="${1:?usage: bench/make-baseline.sh REV}"
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$(mktemp -d)"
trap 'git -C "$root" worktree remove --force "$src" >/dev/null 2>&1 || rm -rf "$src"' EXIT
git -C "$root" worktree add --detach "$src" "$rev" >/dev/null
# The baseline reuses this checkout's dependencies and cargo cache (its own target dir).
ln -s "$root/node_modules" "$src/node_modules"
# Built here rather than with the revision's own build script, which may predate this one.
(cd "$src" && cargo build --release --lib --target-dir "$root/target/baseline" \
  && node "$root/node_modules/typescript/bin/tsc" -p tsconfig.json)
rm -rf "$root/bench/baseline"
mkdir -p "$root/bench/baseline"
cp -r "$src/dist" "$root/bench/baseline/dist"
cp "$root/target/baseline/release/libfetch_rs.so" "$root/bench/baseline/fetch-rs.node"
echo '{ "type": "module" }' >"$root/bench/baseline/package.json"
echo "bench/baseline: fetch-rs at $(git -C "$root" rev-parse --short "$rev")"
