// End-to-end: check-invoice when the KV index has no entry for a hash, as
// happens in another Cloudflare location for up to a minute after the
// invoice was created. The entry is deleted from the Worker's local KV
// behind its back (with wrangler's own `kv key delete --local`). An invoice
// the gateway issued is in its invoice watch, which is consistent and
// answers check-invoice without the index: only the issuer is asked. An
// invoice the watch does not hold (issued before it existed) is searched for
// at every provider that can look it up, and its entry repaired.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { startFakes, stopAll } from "./support/fake-provider.mjs";
import { startWorker, providerVars, localKv } from "./support/worker.mjs";

let fakes, worker;

before(async () => {
  fakes = await startFakes();
  worker = await startWorker(
    {
      ...providerVars(fakes),
      LIGHTNING_FALLBACK_MAX_RETRIES: "1",
      LIGHTNING_FALLBACK_RETRY_DELAY: "50",
      LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS: "1500",
      LIGHTNING_FALLBACK_TOTAL_TIMEOUT_MS: "4000",
      BREAKER_FAILURE_THRESHOLD: "100",
      // Many invoices are watched at once here: a budget that never defers a
      // check's lookup, so each check sees the fault injected just before it.
      INVOICE_WATCH_LOOKUPS_PER_MINUTE: "10000",
    },
    { name: "kv-miss", snapshot: true },
  );
});

after(() => stopAll(worker, fakes));

beforeEach(async () => {
  for (const f of Object.values(fakes)) {
    await f.heal();
    f.calls.length = 0;
  }
});

const kv = (...args) => localKv(worker, ...args);
const indexEntry = async (hash) => {
  try {
    return JSON.parse(await kv("get", `inv:${hash}`));
  } catch {
    return null;
  }
};
const lookups = (f, hash) => f.count("GET", new RegExp(hash));

test("an index entry missing behind the gateway's back does not matter: the watch answers, asking only the issuer", async () => {
  await fakes.phoenixd.fail("refuse"); // the invoice comes from lnd, the second provider
  const created = await worker.createInvoice({ amount: 1234, description: "kv miss" });
  assert.equal(created.status, 201, created.text);
  assert.equal(created.json.provider, "lnd");
  await fakes.phoenixd.heal();
  const hash = created.json.payment_hash;
  const entry = await indexEntry(hash);
  assert.equal(entry?.provider, "lnd", "the entry is in local KV");

  await kv("delete", `inv:${hash}`);
  assert.equal(await indexEntry(hash), null, "deleted behind the gateway's back");

  fakes.lnd.settle(hash);
  const check = await worker.waitForStatus(hash, "paid");
  assert.equal(check.status, 200, check.text);
  assert.equal(check.json.status, "paid");
  assert.equal(check.json.provider, "lnd");
  assert.equal(check.json.amount, 1234);
  assert.equal(check.json.expires_at, created.json.expires_at);
  assert.ok(Date.parse(check.json.settled_at) > 0, check.text);
  // The watch named the issuer: nobody else was asked.
  assert.ok(lookups(fakes.lnd, hash) >= 1);
  assert.equal(lookups(fakes.phoenixd, hash) + lookups(fakes.lnbits, hash), 0, "only the issuer");

  // Later checks answer from the watch (paid: no provider call at all).
  const asked = lookups(fakes.lnd, hash);
  await worker.checkInvoice(hash);
  assert.equal(lookups(fakes.lnd, hash), asked, "not asked again");
});

test("an invoice the watch does not hold is found at its provider and its entry repaired", async () => {
  // Issued at lnd directly, as by a release before the watch: no index entry, not watched.
  const r = await fetch(`${fakes.lnd.url}/v1/invoices`, {
    method: "POST",
    headers: { "content-type": "application/json", "grpc-metadata-macaroon": fakes.lnd.key },
    body: JSON.stringify({ value: "1234", memo: "before the watch", expiry: "3600" }),
  });
  const made = await r.json();
  const hash = Buffer.from(made.r_hash, "base64").toString("hex");
  assert.equal(await indexEntry(hash), null);
  fakes.lnd.settle(hash);
  const check = await worker.checkInvoice(hash);
  assert.equal(check.status, 200, check.text);
  assert.equal(check.json.status, "paid");
  assert.equal(check.json.provider, "lnd");
  assert.equal(check.json.amount, 1234);
  // Every provider that can look it up was asked once.
  for (const f of Object.values(fakes)) assert.equal(lookups(f, hash), 1, `${f.kind} asked once`);
  const repaired = await indexEntry(hash);
  assert.equal(repaired?.provider, "lnd", "the entry is back");
  assert.equal(repaired.paid, true);
  await worker.checkInvoice(hash);
  for (const f of Object.values(fakes)) assert.equal(lookups(f, hash), 1, `${f.kind} not asked again`);
});

test("a watched invoice without its index entry is checked at its issuer only", async () => {
  const created = await worker.createInvoice({ amount: 99 });
  assert.equal(created.json.provider, "phoenixd", created.text);
  const hash = created.json.payment_hash;
  await kv("delete", `inv:${hash}`);
  const first = await worker.checkInvoice(hash);
  assert.equal(first.status, 200, first.text);
  assert.equal(first.json.status, "pending");
  assert.equal(first.json.provider, "phoenixd");
  await new Promise((r) => setTimeout(r, 3_500)); // past the demand gap
  const second = await worker.checkInvoice(hash);
  assert.equal(second.status, 200);
  assert.ok(lookups(fakes.phoenixd, hash) >= 2, "a check past the demand gap asks the issuer again");
  assert.equal(lookups(fakes.lnd, hash) + lookups(fakes.lnbits, hash), 0, "never the others");
});

test("a provider that errors is not a 'not found': a miss it could have answered is 503, never a false 404", async () => {
  const created = await worker.createInvoice({ amount: 500 });
  const hash = created.json.payment_hash;
  await kv("delete", `inv:${hash}`);
  await fakes.phoenixd.fail("html520"); // the issuer is down; the watch still names it
  const res = await worker.checkInvoice(hash);
  assert.equal(res.status, 503, res.text);
  assert.equal(res.json.error.code, "provider_unavailable");
  assert.equal(res.json.error.provider, "phoenixd");
  assert.ok(Number(res.headers.get("retry-after")) >= 1);
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");

  await fakes.phoenixd.heal();
  const ok = await worker.waitForStatus(hash, "pending");
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.json.provider, "phoenixd");
});

test("a hash no provider knows is 404 after asking each once, in parallel within the deadline", async () => {
  await fakes.lnbits.fail("hang"); // answers nothing: the deadline bounds the wait
  const hash = "cd".repeat(32);
  const t0 = Date.now();
  const res = await worker.checkInvoice(hash);
  const took = Date.now() - t0;
  assert.equal(res.status, 503, res.text);
  assert.equal(res.json.error.providers[0].code, "timeout");
  assert.ok(took < 6000, `bounded by the 4 s deadline (${took} ms)`);
  await fakes.lnbits.heal();
  const missing = await worker.checkInvoice(hash);
  assert.equal(missing.status, 404, missing.text);
  assert.equal(missing.json.error.code, "invoice_not_found");
  assert.equal(lookups(fakes.phoenixd, hash) + lookups(fakes.lnd, hash), 2 * 2, "asked once per check");
});
