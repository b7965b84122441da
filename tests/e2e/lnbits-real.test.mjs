// End-to-end against a real LNbits server configured as the `lnbits`
// provider, behind a first provider that is down.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startLnbits } from "./support/lnbits.mjs";
import { startFakeProvider } from "./support/fake-provider.mjs";
import { startWorker, localKv } from "./support/worker.mjs";
import { decodeInvoice } from "./support/invoice.mjs";

let lnbits, phoenixd, worker, wallet;

before(async () => {
  lnbits = await startLnbits();
  wallet = await lnbits.createWallet("shop");
  phoenixd = await startFakeProvider("phoenixd");
  await phoenixd.fail("refuse");
  worker = await startWorker(
    {
      LIGHTNING_PROVIDERS: "phoenixd,lnbits",
      PHOENIXD_URL: phoenixd.url,
      PHOENIXD_PASSWORD: phoenixd.key,
      LNBITS_URL: lnbits.url,
      LNBITS_INVOICE_KEY: wallet.inkey,
      LIGHTNING_FALLBACK_MAX_RETRIES: "0",
    },
    { name: "lnbits-real" },
  );
});

after(async () => {
  await worker?.stop();
  await phoenixd?.stop();
  await lnbits?.stop();
});

test("a real LNbits serves the invoice when the first provider is down, and check-invoice reads it back", async () => {
  const res = await worker.createInvoice({ amount: 1234, description: "real lnbits", expiry: 900 });
  assert.equal(res.status, 201, res.text);
  assert.equal(res.json.provider, "lnbits");
  assert.deepEqual(res.json.attempts.map((a) => [a.provider, a.outcome]), [["phoenixd", "error"], ["lnbits", "ok"]]);
  const decoded = decodeInvoice(res.json.payment_request);
  assert.equal(decoded.amount_msat, 1_234_000);
  assert.equal(decoded.description, "real lnbits");
  assert.equal(decoded.expires_at - decoded.timestamp, 900);

  // LNbits itself knows the invoice under the same hash.
  const own = await lnbits.payment(wallet.inkey, res.json.payment_hash);
  assert.equal(own.status, 200, JSON.stringify(own.json));
  assert.equal(own.json.paid, false);

  const check = await worker.checkInvoice(res.json.payment_hash);
  assert.equal(check.status, 200, check.text);
  assert.deepEqual([check.json.status, check.json.provider], ["pending", "lnbits"]);

  // The KV index entry lost (another location has not seen it yet): the
  // invoice watch holds the invoice and answers, although the first
  // provider is down. (An invoice the watch does not hold is found by
  // asking every provider: invoices-kv-miss.test.mjs.)
  await localKv(worker, "delete", `inv:${res.json.payment_hash}`);
  const again = await worker.checkInvoice(res.json.payment_hash);
  assert.equal(again.status, 200, again.text);
  assert.deepEqual([again.json.status, again.json.provider, again.json.amount, again.json.expires_at], ["pending", "lnbits", 1234, res.json.expires_at]);
});

test("a wrong LNbits key is reported with LNbits' own words, and not retried", async () => {
  const bad = await startWorker(
    { LIGHTNING_PROVIDERS: "lnbits", LNBITS_URL: lnbits.url, LNBITS_INVOICE_KEY: "0".repeat(32) },
    { name: "lnbits-badkey" },
  );
  try {
    const res = await bad.createInvoice({ amount: 10 });
    assert.equal(res.status, 503, res.text);
    // LNbits 1.6 answers an unknown key with 404 "Wallet not found."
    assert.equal(res.json.error.providers[0].code, "not_found");
    assert.match(res.json.error.providers[0].message, /wallet/i);
    assert.equal(res.json.error.attempts.length, 1);
  } finally {
    await bad.stop();
  }
});
