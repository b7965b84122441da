#!/usr/bin/env bash
# Builds the Worker (build/) with worker-build, pointing it at local helpers
# because its own downloads fail offline. Skips the build when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
out=build/index_bg.wasm
if [ -f "$out" ] && [ -f build/worker/shim.mjs ] && [ -z "$(find src Cargo.toml Cargo.lock -newer "$out" -print -quit)" ]; then
  echo "[build] up to date"
  exit 0
fi
WASM_BINDGEN_BIN="$(command -v wasm-bindgen)" \
ESBUILD_BIN="$PWD/node_modules/@esbuild/linux-x64/bin/esbuild" \
  worker-build --release
touch "$out"
ls -l build/index_bg.wasm | awk '{print "[build] wasm size: " $5 " bytes"}'
