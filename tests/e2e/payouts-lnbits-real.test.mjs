// End-to-end payouts against a real LNbits (PyPI, FakeWallet): the Worker
// pays from one LNbits wallet to another, by BOLT11 and by the second
// wallet's own Lightning Address, which LNbits itself serves.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startLnbits } from "./support/lnbits.mjs";
import { startWorker } from "./support/worker.mjs";

const KEY = "payout-key-current-0123456789";
let lnbits, payer, payee, worker;

before(async () => {
  lnbits = await startLnbits({ funding: true });
  payer = await lnbits.createWallet("shop");
  payee = await lnbits.createWallet("customer");
  await lnbits.fund(payer.id, 100_000);
  worker = await startWorker(
    {
      LIGHTNING_PROVIDERS: "lnbits",
      LNBITS_URL: lnbits.url,
      LNBITS_INVOICE_KEY: payer.inkey,
      LNBITS_ADMIN_KEY: payer.adminkey,
      PAYOUT_API_KEY: KEY,
      // LNbits names its callback host `localhost`.
      LNURL_ALLOW_HTTP_HOSTS: "127.0.0.1,localhost",
    },
    { name: "payouts-lnbits" },
  );
});

after(async () => {
  await worker?.stop();
  await lnbits?.stop();
});

const pay = (body, idem) =>
  worker.request("POST", "/api/payouts", { json: body, headers: { authorization: `Bearer ${KEY}`, "idempotency-key": idem } });

test("a BOLT11 of a second LNbits wallet is paid exactly once", async () => {
  const inv = await lnbits.createInvoice(payee.inkey, 1000, "payout e2e");
  const before = await lnbits.balanceMsat(payer.adminkey);
  const res = await pay({ destination: inv.bolt11 }, "real-bolt11-1");
  assert.equal(res.status, 201, res.text);
  assert.equal(res.json.status, "succeeded");
  assert.equal(res.json.payment_hash, inv.payment_hash);
  assert.match(res.json.preimage, /^[0-9a-f]{64}$/);
  const seen = await lnbits.payment(payee.inkey, inv.payment_hash);
  assert.equal(seen.json.paid, true, "the payee's LNbits wallet received it");
  assert.equal(before - (await lnbits.balanceMsat(payer.adminkey)), 1_000_000);
  // A replay answers from the queue and moves no money.
  const replay = await pay({ destination: inv.bolt11 }, "real-bolt11-1");
  assert.equal(replay.status, 200);
  assert.equal(before - (await lnbits.balanceMsat(payer.adminkey)), 1_000_000);
});

test("a Lightning Address served by LNbits is resolved once and paid", async () => {
  const address = `${payee.lightning_address}@${new URL(lnbits.url).host}`;
  const payeeBefore = await lnbits.balanceMsat(payee.inkey);
  const res = await pay({ destination: address, amount_sat: 2100, comment: "thanks from the e2e" }, "real-address-1");
  assert.equal(res.status, 201, res.text);
  assert.equal(res.json.status, "succeeded");
  assert.equal(res.json.destination_type, "lightning_address");
  assert.equal((await lnbits.balanceMsat(payee.inkey)) - payeeBefore, 2_100_000);
});

test("an insufficient balance is an explicit failure, confirmed with LNbits before the payout ends", async () => {
  const inv = await lnbits.createInvoice(payee.inkey, 500_000, "too much");
  const res = await pay({ destination: inv.bolt11 }, "real-too-much");
  // Above the default per-payout limit of 100,000 sats: refused before anything is sent.
  assert.equal(res.status, 422, res.text);
  assert.equal(res.json.error.code, "limit_exceeded");
  const inv2 = await lnbits.createInvoice(payee.inkey, 99_000, "more than the balance");
  const res2 = await pay({ destination: inv2.bolt11 }, "real-broke");
  assert.equal(res2.status, 202, res2.text);
  assert.equal(res2.json.status, "queued", "LNbits said failed: verify, then retry later");
  assert.match(res2.json.last_error, /Insufficient balance/);
  const seen = await lnbits.payment(payee.inkey, inv2.payment_hash);
  assert.equal(seen.json.paid, false);
});
