// Payout failover along a chain of two real backends: an LNbits wallet (A,
// reached through a fault proxy that can answer 520 to every payment or
// swap the wallet key for a wrong one, so LNbits itself refuses) and a
// Nostr Wallet Connect wallet service funded by another wallet of the same
// LNbits (B). A payout moves from A to B only when nothing it sent can
// still be paid through A: refused before acting, or proven dead there.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startLnbits } from "./support/lnbits.mjs";
import { startRelay } from "./support/nostr-relay.mjs";
import { startNwcWallet } from "./support/nwc-wallet.mjs";
import { startLnurlServer } from "./support/lnurl-server.mjs";
import { startWorker } from "./support/worker.mjs";
import { startFaultProxy } from "../chaos/proxy.mjs";
import { until } from "./support/wait.mjs";

const KEY = "payout-key-failover-0123456789";
const ADMIN = "admin-key-failover-0123456789";
let lnbits, shopA, shopB, customer, relay, nwc, proxy, lnurl, worker;

before(async () => {
  lnbits = await startLnbits({ funding: true });
  shopA = await lnbits.createWallet("shop-a-lnbits");
  shopB = await lnbits.createWallet("shop-b-behind-nwc");
  customer = await lnbits.createWallet("customer");
  await lnbits.fund(shopA.id, 100_000);
  await lnbits.fund(shopB.id, 100_000);
  relay = await startRelay();
  nwc = await startNwcWallet({ relayUrl: relay.url, lnbits, wallet: shopB });
  proxy = await startFaultProxy({ upstream: lnbits.url, seed: 19, weights: { pass: 1 }, payTimeoutMs: 8000 });
  lnurl = await startLnurlServer();
  worker = await startWorker(
    {
      LIGHTNING_PROVIDERS: "lnbits,nwc",
      LNBITS_URL: lnbits.url,
      LNBITS_INVOICE_KEY: customer.inkey,
      NWC_URL: nwc.uri,
      PAYOUT_PROVIDERS: "lnbits:a,nwc",
      LNBITS_A_URL: proxy.url,
      LNBITS_A_ADMIN_KEY: shopA.adminkey,
      PAYOUT_API_KEY: KEY,
      ADMIN_API_KEY: ADMIN,
      PAYOUT_BREAKER_FAILURES: "2",
      PAYOUT_BREAKER_COOLDOWN_SECS: "3600",
      PAYOUT_LOOKUP_BASE_MS: "300",
      PAYOUT_LOOKUP_MAX_MS: "2000",
      PAYOUT_RETRY_BASE_MS: "300",
      PAYOUT_NOT_FOUND_GRACE_MS: "0",
      PAYOUT_PAY_TIMEOUT_MS: "8000",
      PAYOUT_LATE_EXECUTION_BOUND_SECS: "1",
      PAYOUT_EXPIRY_LOOKUP_MARGIN_SECS: "1",
      PAYOUT_CLOCK_SKEW_SECS: "0",
      LNURL_ALLOW_HTTP_HOSTS: "127.0.0.1",
      LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS: "8000",
    },
    { name: "payouts-failover", snapshot: true },
  );
});

after(async () => {
  await worker?.stop();
  await lnurl?.stop();
  await proxy?.close();
  await nwc?.stop();
  await relay?.stop();
  await lnbits?.stop();
});

const auth = { authorization: `Bearer ${KEY}` };
const pay = (body, idem) => worker.request("POST", "/api/payouts", { json: body, headers: { ...auth, "idempotency-key": idem } });
// The admin's view: a client's has no backend, backends_used or log.
const getPayout = async (id) => (await worker.request("GET", `/api/payouts/${id}`, { headers: { authorization: `Bearer ${ADMIN}` } })).json;

/** The LNbits ledger of `wallet`: its outgoing payments of `hash`. */
async function outgoing(wallet, hash) {
  const r = await fetch(`${lnbits.url}/api/v1/payments?limit=500`, { headers: { "X-Api-Key": wallet.adminkey } });
  const list = await r.json();
  const rows = Array.isArray(list) ? list : list.data;
  return rows.filter((p) => p.payment_hash === hash && p.amount < 0 && p.status !== "failed");
}


const sentToA = (hash) => proxy.hashes.filter((h) => h.hash === hash);
const sentToB = (bolt11) => nwc.count("pay_invoice", (p) => p.invoice === bolt11);

test("a payment refused before acting (LNbits rejects the key) is paid through the next backend within the create request", async () => {
  proxy.rewriteKey = "0".repeat(32);
  const inv = await lnbits.createInvoice(customer.inkey, 1000, "refused at A");
  const res = await pay({ destination: inv.bolt11 }, "failover-refused");
  proxy.rewriteKey = null;
  assert.equal(res.status, 201, res.text);
  assert.equal(res.json.status, "succeeded");
  assert.equal(res.json.backend, undefined, "a client is not shown the backend");
  assert.equal(res.json.backends_used, undefined);
  assert.equal(res.json.log, undefined);
  assert.equal((await getPayout(res.json.id)).backend.kind, "nwc");
  const used = (await getPayout(res.json.id)).backends_used;
  assert.deepEqual(used.map((b) => b.kind), ["lnbits", "nwc"], JSON.stringify(used));
  assert.match(used[1].why, /refused it before acting/);
  assert.equal(sentToA(inv.payment_hash).length, 1, "A was asked once, and refused");
  assert.equal((await outgoing(shopA, inv.payment_hash)).length, 0, "nothing left A's wallet");
  assert.equal((await outgoing(shopB, inv.payment_hash)).length, 1, "paid once, from B's wallet");
  assert.equal(sentToB(inv.bolt11), 1);
  // The move is on the attention list.
  const att = await worker.request("GET", "/api/payouts/attention", { headers: { authorization: `Bearer ${ADMIN}` } });
  const item = att.json.payouts.find((p) => p.id === res.json.id);
  assert.ok(item, JSON.stringify(att.json));
  assert.deepEqual(item.attention, ["changed_backend"]);
  // A works again: the next payout goes to A, and its success resets A's breaker count.
  const inv2 = await lnbits.createInvoice(customer.inkey, 1000, "A again");
  const ok = await pay({ destination: inv2.bolt11 }, "failover-a-ok");
  assert.equal(ok.status, 201, ok.text);
  assert.equal((await getPayout(ok.json.id)).backend.kind, "lnbits");
});

test("A answering 520 to every payment: the first payouts wait on A and never go to B; once A's breaker opens, new payouts go straight to B", async () => {
  proxy.setWeights({ html520: 1 });
  const first = [];
  for (const i of [1, 2]) {
    const inv = await lnbits.createInvoice(customer.inkey, 1100 + i, `520 ${i}`);
    const res = await pay({ destination: inv.bolt11 }, `failover-520-${i}`);
    assert.equal(res.status, 202, res.text);
    assert.equal(res.json.status, "unknown", res.text);
    assert.equal((await getPayout(res.json.id)).backend.url, proxy.url.toLowerCase());
    first.push({ inv, id: res.json.id });
  }
  const inv3 = await lnbits.createInvoice(customer.inkey, 1200, "straight to B");
  const t0 = Date.now();
  const res3 = await pay({ destination: inv3.bolt11 }, "failover-520-3");
  console.log(`# a new payout with A's breaker open, paid through B in ${Date.now() - t0} ms`);
  assert.equal(res3.status, 201, res3.text);
  assert.equal((await getPayout(res3.json.id)).backend.kind, "nwc");
  assert.equal((await getPayout(res3.json.id)).backends_used.length, 1, "went straight to B: not a move");
  assert.equal(sentToA(inv3.payment_hash).length, 0, "A was never asked");

  const asAdmin = { headers: { authorization: `Bearer ${ADMIN}` } };
  const health = await worker.request("GET", "/api/lightning/health", asAdmin);
  const chain = health.json.queue.payout_backends;
  assert.equal(chain.length, 2, JSON.stringify(health.json.queue));
  assert.equal(chain[0].breaker, "open");
  assert.ok(chain[0].went_past_last_hour >= 1);
  assert.equal(chain[1].breaker, "closed");
  assert.ok(chain[1].paid_last_hour >= 2);
  const status = await worker.request("GET", "/status", asAdmin);
  assert.match(status.text, /Payout chain/);

  // The waiting ones keep being re-sent to A only (each lookup there finds nothing).
  await until("more sends to A", () => first.every(({ inv }) => sentToA(inv.payment_hash).length >= 2));
  for (const { inv } of first) assert.equal(sentToB(inv.bolt11), 0, "never sent through B");
  // A recovers: they finish on A, once each.
  proxy.setWeights({ pass: 1 });
  for (const { inv, id } of first) {
    const done = await until("the payout to succeed on A", async () => {
      const p = await getPayout(id);
      return p.status === "succeeded" ? p : null;
    });
    assert.equal(done.backend.kind, "lnbits");
    assert.equal(done.backends_used.length, 1);
    assert.equal((await outgoing(shopA, inv.payment_hash)).length, 1);
    assert.equal((await outgoing(shopB, inv.payment_hash)).length, 0);
    assert.equal(sentToB(inv.bolt11), 0);
  }
});

test("A's payments fail ambiguously but its lookups answer: an address payout whose invoice is proven dead at A moves to B with a new invoice", { timeout: 300_000 }, async () => {
  // A payment A made is known, so its "not found" can be trusted (LNbits
  // lookups may not see a wallet's payments); it also closes A's breaker.
  proxy.setWeights({ pass: 1 });
  const known = await lnbits.createInvoice(customer.inkey, 500, "known at A");
  const ok = await pay({ destination: known.bolt11 }, "failover-known");
  assert.equal(ok.status, 201, ok.text);
  assert.equal((await getPayout(ok.json.id)).backend.kind, "lnbits");
  // This payout goes to A, whose payments now all answer 520.
  lnurl.makeInvoice = async (amountMsat) => (await lnbits.createInvoice(customer.inkey, amountMsat / 1000, "address payout", 125)).bolt11;
  proxy.setWeights({ html520: 1 });
  const res = await pay({ destination: lnurl.address("carol"), amount_sat: 1300 }, "failover-dead");
  assert.equal(res.status, 202, res.text);
  assert.equal((await getPayout(res.json.id)).backend.url, proxy.url.toLowerCase(), JSON.stringify(res.json.log));
  const firstHash = res.json.payment_hash;
  const done = await until(
    "the address payout to move to B and succeed",
    async () => {
      const p = await getPayout(res.json.id);
      return p.status === "succeeded" ? p : null;
    },
    240_000,
  ).catch(async (e) => {
    console.log(JSON.stringify(await getPayout(res.json.id), null, 1));
    throw e;
  });
  assert.equal(done.backend.kind, "nwc");
  assert.notEqual(done.payment_hash, firstHash, "a new invoice");
  assert.deepEqual(done.previous_payment_hashes, [firstHash]);
  assert.deepEqual(done.backends_used.map((b) => b.kind), ["lnbits", "nwc"]);
  assert.match(done.backends_used[1].why, /died unpaid/);
  assert.ok(done.log.some((l) => /it can no longer be paid/.test(l.event)), JSON.stringify(done.log));
  assert.equal((await outgoing(shopA, firstHash)).length, 0);
  assert.equal((await outgoing(shopB, firstHash)).length, 0, "the dead hash never went to B");
  assert.equal((await outgoing(shopB, done.payment_hash)).length, 1);
  proxy.setWeights({ pass: 1 });
});
