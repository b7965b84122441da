#!/usr/bin/env bash
# Holds the built wasm to its size budget (bench/SIZE.md): `gzip -9 -n` of
# build/index_bg.wasm, which is deterministic for a given toolchain (rustc,
# wasm-bindgen, binaryen are pinned), so this is a check, not a timing.
# Fails when the Worker grew past the budget; the budget is only ever lowered.
#   SIZE_BUDGET=400000 scripts/check-size.sh   check against another figure
set -euo pipefail
cd "$(dirname "$0")/.."
wasm=build/index_bg.wasm
[ -f "$wasm" ] || { echo "[size] $wasm missing: run make build" >&2; exit 1; }
budget=${SIZE_BUDGET:-$(sed -n 's/^size-budget: \([0-9]*\) bytes.*/\1/p' bench/SIZE.md | head -1)}
target=$(sed -n 's/^size-target: \([0-9]*\) bytes.*/\1/p' bench/SIZE.md | head -1)
[ -n "$budget" ] || { echo "[size] no 'size-budget: N bytes' line in bench/SIZE.md" >&2; exit 1; }
size=$(gzip -9 -n -c "$wasm" | wc -c | tr -d ' ')
if [ "$size" -gt "$budget" ]; then
  echo "[size] the wasm is $size bytes gzip -9, over its budget of $budget bytes (bench/SIZE.md):" >&2
  echo "[size] find what grew (bench/SIZE.md, 'Where the bytes are') before raising the budget" >&2
  exit 1
fi
echo "[size] ok: wasm $size bytes gzip -9, budget $budget${target:+, target $target}"
