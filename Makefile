# The two commands a newcomer needs:
#   make dev    run the gateway locally in workerd on http://localhost:8787 (mock provider, no keys)
#   make test   run every check and test (installs what is missing first)
#   make chaos  the full chaos run (500 payouts against a real LNbits behind a fault proxy; CHAOS_ARGS="--seed N ..." or "--backends 2")
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
PORT ?= 8787

CHAOS_ARGS ?=

.PHONY: dev test setup setup-test setup-bench build size lint unit e2e testkit bench chaos chaos-short contract clients deploy-check deploy

dev: setup build
	@[ -f .dev.vars ] || { cp .dev.vars.example .dev.vars; echo "[dev] created .dev.vars from .dev.vars.example (mock provider enabled)"; }
	npx wrangler dev --port $(PORT) --persist-to .wrangler/state --test-scheduled

test: setup-test lint unit build size testkit e2e contract clients deploy-check chaos-short

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh --test

build:
	@scripts/build.sh

# The wasm held to its size budget (bench/SIZE.md): deterministic, so a check.
size: build
	@scripts/check-size.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --lib --target wasm32-unknown-unknown -- -D warnings

unit:
	cargo test --workspace

testkit:
	cargo build -p lightning-fallback-testkit --bin testkit

e2e:
	node --test --test-concurrency=1 tests/e2e/

# The API contract: schemathesis against the Worker's GET /openapi.json, a bounded
# number of examples per operation (CONTRACT_ARGS="--examples 200 --seed 7").
CONTRACT_ARGS ?=
contract: setup-test build testkit
	node tests/contract/run.mjs $(CONTRACT_ARGS)

# The generated TypeScript and Python clients, type-checked and run (tests/clients/run.mjs).
clients: setup-test build
	node tests/clients/run.mjs

# What a deploy would refuse, without an account: `wrangler deploy --dry-run` and the size limit.
deploy-check: setup build
	scripts/deploy-check.sh

# Deploy to Cloudflare (docs/deploying.md): setup, build and the deploy check
# first; ENV=staging deploys [env.staging]. Needs `npx wrangler login` (or
# CLOUDFLARE_API_TOKEN) and the secrets (`npx wrangler secret bulk`).
ENV ?=
deploy: setup build deploy-check
	npx wrangler deploy $(if $(ENV),--env $(ENV),)

# Chaos: payouts through a fault-injecting proxy to a real LNbits, the gateway
# SIGKILLed and restarted while draining; LNbits' ledgers checked against the
# gateway's records. Fails on any double pay, false failure or broken idempotency.
chaos: setup-test build
	node tests/chaos/run.mjs $(CHAOS_ARGS)

# The short versions that `make test` runs (about 60 payouts, one restart, a
# few minutes each): one backend, then a payout chain of two LNbits wallets
# on four queue shards, with backend A refusing and then failing every payment.
chaos-short: setup-test build
	node tests/chaos/run.mjs --short $(CHAOS_ARGS)
	node tests/chaos/run.mjs --short --backends 2 --var PAYOUT_QUEUE_SHARDS=4 $(CHAOS_ARGS)

# Figures, not pass/fail: core micro-benchmarks, then the built Worker in
# workerd under wrk against fake providers and a trivial Worker (bench/run.mjs;
# BENCH_ARGS="--quick", "--payouts 1000", "--only drain", ...). See bench/RESULTS.md.
BENCH_ARGS ?=
bench: setup-bench build testkit
	cargo bench -p lightning-fallback-gateway --bench core
	node bench/run.mjs $(BENCH_ARGS)

setup-bench:
	@scripts/setup.sh --bench
