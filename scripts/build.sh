#!/usr/bin/env bash
# Builds the Worker (build/) with worker-build, pointing it at local helpers
# because its own downloads fail offline, then shrinks the wasm with wasm-opt.
# Skips the build when nothing changed.
#   WASM_OPT=0 scripts/build.sh       skip wasm-opt (~15 s faster, ~30% larger gzip)
#   WASM_OPT_NAMES=1 scripts/build.sh keep the function names section (named wasm
#                                     frames in stack traces; ~60 KB more gzip)
# Neither variable is part of the up-to-date check: `touch Cargo.toml` to rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
out=build/index_bg.wasm
if [ -f "$out" ] && [ -f build/worker/shim.mjs ] &&
  [ -z "$(find src crates Cargo.toml Cargo.lock scripts/build.sh package-lock.json -newer "$out" -print -quit)" ]; then
  echo "[build] up to date"
  exit 0
fi
wasm_opt=node_modules/binaryen/bin/wasm-opt
if [ "${WASM_OPT:-1}" != 0 ] && [ ! -f "$wasm_opt" ]; then
  echo "[build] $wasm_opt missing: run scripts/setup.sh (npm ci)" >&2
  exit 1
fi
# esbuild's native binary for the machine running the build: npm installs only the
# @esbuild/<platform>-<arch> package that matches it (an optional dependency of esbuild).
esbuild_bin=$(node -e '
  const { platform, arch } = process;
  const pkg = `@esbuild/${platform}-${arch}`;
  const file = `${pkg}/${platform === "win32" ? "esbuild.exe" : "bin/esbuild"}`;
  const from = [process.cwd()];
  try { from.push(require("path").dirname(require.resolve("esbuild/package.json", { paths: [require.resolve("wrangler/package.json")] }))); } catch {}
  try { console.log(require.resolve(file, { paths: from })); }
  catch { console.error(`[build] ${pkg} is not in node_modules: run npm ci on this machine (it installs the esbuild binary for ${platform}-${arch})`); process.exit(1); }
') || exit 1
WASM_BINDGEN_BIN="$(command -v wasm-bindgen)" ESBUILD_BIN="$esbuild_bin" worker-build --release
ls -l "$out" | awk '{print "[build] wasm size before wasm-opt: " $5 " bytes"}'

# wasm-opt from npm `binaryen` (pinned in package.json, runs under Node). worker-build's
# own wasm-opt step stays off (Cargo.toml metadata): it downloads binaryen from GitHub,
# which fails offline, and it always keeps the names section. The --enable-* list is the
# one worker-build 0.8.7 passes for workerd: rustc's wasm32 defaults plus the exception
# handling that wasm-bindgen's catch wrappers use. Validation fails loudly if the input
# uses anything else. See bench/SIZE.md for what each step saves.
if [ "${WASM_OPT:-1}" != 0 ]; then
  names=()
  [ "${WASM_OPT_NAMES:-0}" = 1 ] && names=(--debuginfo)
  node "$wasm_opt" "$out" -o "$out.opt" -Oz ${names[@]+"${names[@]}"} \
    --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling ||
    { rm -f "$out" "$out.opt"; echo "[build] wasm-opt failed" >&2; exit 1; } # never leave an unoptimised build "up to date"
  mv "$out.opt" "$out"
fi
touch "$out"
ls -l "$out" | awk '{print "[build] wasm size: " $5 " bytes"}'
gzip -9 -n -c "$out" | wc -c | awk '{print "[build] wasm gzip -9: " $1 " bytes"}'
