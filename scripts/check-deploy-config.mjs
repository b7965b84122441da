// What every deployed environment of wrangler.toml must hold, read the way
// wrangler itself reads it (its own config reader, environments resolved):
// strictly public outbound fetches, every binding the Worker uses, the cron
// trigger and production settings. Run by scripts/deploy-check.sh.
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { unstable_readConfig } = require("wrangler");

for (const env of [undefined, "staging"]) {
  const c = unstable_readConfig({ config: "wrangler.toml", env }, {});
  const where = env ? `[env.${env}]` : "the top level";
  assert.ok(
    c.compatibility_flags.includes("global_fetch_strictly_public"),
    `${where}: global_fetch_strictly_public keeps fetches to LNURL, webhook and relay URLs off your own zone's origins`,
  );
  assert.deepEqual(c.kv_namespaces.map((k) => k.binding), ["LIGHTNING_KV"], `${where}: the KV binding`);
  assert.deepEqual(
    c.durable_objects.bindings.map((b) => `${b.name}=${b.class_name}`).sort(),
    ["INVOICE_WATCH=InvoiceWatch", "PAYOUT_QUEUE=PayoutQueue"],
    `${where}: the Durable Object bindings`,
  );
  assert.deepEqual(c.ratelimits.map((r) => r.name).sort(), ["AUTH_FAILURE_LIMITER", "INDEX_MISS_LIMITER", "INVOICE_RATE_LIMITER"], `${where}: the rate limits`);
  assert.deepEqual(c.triggers.crons, ["*/5 * * * *"], `${where}: the cron trigger drains the payout queue`);
  assert.equal(c.vars.ENVIRONMENT, "production", `${where}: production checks (no http backends, no example keys)`);
  for (const name of Object.keys(c.vars)) {
    assert.ok(!/KEY|SECRET|MACAROON|RUNE|PASSWORD|NWC_URL/i.test(name), `${where}: ${name} is a secret; use wrangler secret, not [vars]`);
  }
  console.log(`[deploy-check] ${env ?? "production"}: ${c.name}, ${c.compatibility_date}, flags ${c.compatibility_flags.join(",")}`);
}
