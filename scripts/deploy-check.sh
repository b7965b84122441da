#!/usr/bin/env bash
# The deploy as far as it goes without an account: `wrangler deploy --dry-run`
# reads and validates wrangler.toml and bundles the built Worker exactly as a
# deploy would (no network), then the bundle is held to Cloudflare's Worker size
# limit, which otherwise only the upload checks. Fails on anything a deploy would refuse
# that can be seen from here.
#   DEPLOY_SIZE_LIMIT=10485760 scripts/deploy-check.sh   the paid plans' 10 MiB instead of 3 MiB
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
node scripts/check-deploy-config.mjs
WRANGLER_SEND_METRICS=false npx wrangler deploy --dry-run --env staging --outdir "$out/staging" > /dev/null
rm -rf "$out/staging"
WRANGLER_SEND_METRICS=false npx wrangler deploy --dry-run --outdir "$out"
# What is uploaded: every module but source maps, gzipped together as Cloudflare counts it.
size=$(find "$out" -type f ! -name '*.map' ! -name 'README.md' -exec cat {} + | gzip -9 | wc -c | tr -d ' ')
limit=${DEPLOY_SIZE_LIMIT:-3145728}
if [ "$size" -gt "$limit" ]; then
  echo "[deploy-check] the Worker is $size bytes gzipped, over the $limit-byte limit Cloudflare enforces on upload" >&2
  exit 1
fi
echo "[deploy-check] ok: wrangler.toml valid, bundle $size bytes gzipped (limit $limit)"
