#!/usr/bin/env bash
# Installs whatever the build and tests need and is missing. Idempotent:
# each step is skipped when its tool is already there at the pinned version.
#   scripts/setup.sh          build tools (wasm target, clang, worker-build, wasm-bindgen, npm deps incl. wasm-opt)
#   scripts/setup.sh --test   also the test-only tools (LNbits, schemathesis, openapi-python-client and mypy in venvs, Chromium)
#   scripts/setup.sh --bench  also the load generator for `make bench` (wrk)
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
LNBITS_VERSION=1.6.2
SCHEMATHESIS_VERSION=4.32.5
OPENAPI_PYTHON_CLIENT_VERSION=0.29.1
MYPY_VERSION=1.19.1
want_test=0
want_bench=0
[ "${1:-}" = "--test" ] && want_test=1
[ "${1:-}" = "--bench" ] && want_bench=1

say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else echo "need root for: $*" >&2; exit 1; fi; }
apt_updated=0
apt_install() {
  if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

export PATH="$HOME/.cargo/bin:$PATH"
# The first x.y.z in a tool's --version ("0.8.7" or "wasm-bindgen 0.2.130"); empty if absent.
version_of() { "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n 1; }
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm not found: install Node.js 20 or newer" >&2; exit 1; }

# System packages come from apt (Debian, Ubuntu). Elsewhere, name them all in
# one line and stop here rather than fail halfway through.
system_missing=()
command -v clang >/dev/null || system_missing+=(clang)
if [ $want_test = 1 ]; then
  python3 -c 'import venv, ensurepip' 2>/dev/null || system_missing+=("python3 (with venv and pip)")
  command -v chromium >/dev/null || system_missing+=(chromium)
  command -v openssl >/dev/null || system_missing+=(openssl)
  command -v zbarimg >/dev/null || system_missing+=("zbarimg (zbar-tools)")
fi
[ $want_bench = 1 ] && { command -v wrk >/dev/null || system_missing+=(wrk); }
if [ ${#system_missing[@]} -gt 0 ] && ! command -v apt-get >/dev/null; then
  missing_list=$(IFS=,; echo "${system_missing[*]}" | sed 's/,/, /g')
  echo "[setup] no apt-get on this system: install ${missing_list} with its package manager, then run this again" >&2
  exit 1
fi

# 1. The wasm32 target.
if [ ! -d "$(rustc --print target-libdir --target wasm32-unknown-unknown 2>/dev/null || echo /nonexistent)" ]; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown || {
    echo "could not add the wasm32 target; run: rustup target add wasm32-unknown-unknown" >&2; exit 1; }
fi

# 2. clang: secp256k1-sys (under lightning-invoice) compiles C for wasm32.
if ! command -v clang >/dev/null; then
  say "installing clang"
  apt_install clang
fi
# Apple's clang has no wasm32 backend: say so here, not deep inside cargo.
if ! echo 'int x;' | clang --target=wasm32-unknown-unknown -c -x c - -o /dev/null 2>/dev/null; then
  echo "[setup] $(command -v clang) cannot compile for wasm32: install LLVM's clang (macOS: brew install llvm) and put its bin/ first in PATH" >&2
  exit 1
fi

# 3. worker-build, pinned.
if [ "$(version_of worker-build)" != "$WORKER_BUILD_VERSION" ]; then
  say "installing worker-build $WORKER_BUILD_VERSION (several minutes, once)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION"
fi

# 4. wasm-bindgen CLI, at exactly the library version in Cargo.lock.
wb_version=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)
if [ "$(version_of wasm-bindgen)" != "$wb_version" ]; then
  say "installing wasm-bindgen-cli $wb_version (several minutes, once)"
  # --locked fails here: the crates index lacks one of its pinned dependencies.
  cargo install wasm-bindgen-cli --version "$wb_version"
fi

# 5. wrangler + workerd, and binaryen's wasm-opt (runs under Node; scripts/build.sh uses
#    it), pinned by package-lock.json.
if [ ! -x node_modules/.bin/wrangler ] || [ ! -f node_modules/binaryen/bin/wasm-opt ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing wrangler and binaryen (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ $want_test = 1 ]; then
  # Debian's python3 needs python3-venv for `python3 -m venv`.
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
  # 6. A real LNbits (FakeWallet funding source) for end-to-end tests.
  # awk reads all of pip's output (grep -q would stop early and, under pipefail, fail by SIGPIPE).
  lnbits_installed=$(.venv-lnbits/bin/pip show lnbits 2>/dev/null | awk '/^Version:/ {print $2}' || true)
  if [ ! -x .venv-lnbits/bin/lnbits ] || [ "$lnbits_installed" != "$LNBITS_VERSION" ]; then
    say "installing LNbits $LNBITS_VERSION into .venv-lnbits"
    rm -rf .venv-lnbits
    python3 -m venv .venv-lnbits
    .venv-lnbits/bin/pip install -q --disable-pip-version-check "lnbits==$LNBITS_VERSION" "bitstring<4.3"
  fi
  # 7. schemathesis, for the contract run against /openapi.json (make contract).
  st_installed=$(.venv-schemathesis/bin/pip show schemathesis 2>/dev/null | awk '/^Version:/ {print $2}' || true)
  if [ ! -x .venv-schemathesis/bin/schemathesis ] || [ "$st_installed" != "$SCHEMATHESIS_VERSION" ]; then
    say "installing schemathesis $SCHEMATHESIS_VERSION into .venv-schemathesis"
    rm -rf .venv-schemathesis
    python3 -m venv .venv-schemathesis
    .venv-schemathesis/bin/pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  fi
  # 7b. openapi-python-client and mypy: the generated Python client, type-checked (tests/clients).
  opc_installed=$(.venv-clients/bin/pip show openapi-python-client 2>/dev/null | awk '/^Version:/ {print $2}' || true)
  mypy_installed=$(.venv-clients/bin/pip show mypy 2>/dev/null | awk '/^Version:/ {print $2}' || true)
  if [ "$opc_installed" != "$OPENAPI_PYTHON_CLIENT_VERSION" ] || [ "$mypy_installed" != "$MYPY_VERSION" ]; then
    say "installing openapi-python-client $OPENAPI_PYTHON_CLIENT_VERSION and mypy $MYPY_VERSION into .venv-clients"
    rm -rf .venv-clients
    python3 -m venv .venv-clients
    .venv-clients/bin/pip install -q --disable-pip-version-check "openapi-python-client==$OPENAPI_PYTHON_CLIENT_VERSION" "mypy==$MYPY_VERSION"
  fi
  # 8. Headless Chromium for the status page test.
  if ! command -v chromium >/dev/null; then
    say "installing chromium"
    apt_install chromium
  fi
  # 9. zbarimg reads the checkout page's QR code back from a screenshot.
  if ! command -v zbarimg >/dev/null; then
    say "installing zbar-tools"
    apt_install zbar-tools
  fi
  # 10. openssl: the Lightning Address test makes a throwaway TLS certificate.
  if ! command -v openssl >/dev/null; then
    say "installing openssl"
    apt_install openssl
  fi
fi
if [ $want_bench = 1 ] && ! command -v wrk >/dev/null; then
  # 11. The HTTP load generator for make bench.
  say "installing wrk"
  apt_install wrk
fi
say "ready"
