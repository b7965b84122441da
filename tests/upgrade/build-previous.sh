#!/usr/bin/env bash
# Builds the Worker as it was at commit $1 (default: the last commit before
# the workspace restructure) and stores its bundle in tests/upgrade/previous/,
# which the upgrade test runs to write state the current build must read.
#   tests/upgrade/build-previous.sh [commit]
# Needs the full git history and a machine set up with scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
commit=${1:-235b009}
root=$PWD
tree=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT
git worktree add --detach "$tree" "$commit" >/dev/null
ln -s "$root/node_modules" "$tree/node_modules"
(cd "$tree" && CARGO_TARGET_DIR="$root/target/previous" scripts/build.sh)
out=tests/upgrade/previous
rm -rf "$out" && mkdir -p "$out/worker"
cp "$tree/build/index.js" "$tree/build/package.json" "$out/"
cp "$tree/build/worker/shim.mjs" "$out/worker/"
gzip -9 -n -c "$tree/build/index_bg.wasm" >"$out/index_bg.wasm.gz"
git -C "$tree" log -1 --format='%H %s' >"$out/COMMIT"
echo "[upgrade] $out: the Worker at $(cut -c1-12 "$out/COMMIT")"
