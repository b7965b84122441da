// Payouts through an NWC wallet that answers as Alby Hub does (see
// support/nwc-wallet.mjs `hub`, read from Alby Hub's source): a stuck
// payment reported `expired`, the oldest attempt answered first, lookups
// blind to outgoing payments. The wallet's funds are a real LNbits wallet,
// the relay is real; the recipient is another LNbits wallet. Whatever the
// wallet says, each payout is paid at most once and never ends failed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startLnbits } from "./support/lnbits.mjs";
import { startRelay, startRelayProxy } from "./support/nostr-relay.mjs";
import { startNwcWallet } from "./support/nwc-wallet.mjs";
import { startLnurlServer } from "./support/lnurl-server.mjs";
import { startWorker } from "./support/worker.mjs";
import { until } from "./support/wait.mjs";

const KEY = "payout-key-nwc-hub-0123456789";
const ADMIN = "admin-key-nwc-hub-0123456789";
let lnbits, shop, customer, relay, proxy, lnurl;

before(async () => {
  lnbits = await startLnbits({ funding: true });
  shop = await lnbits.createWallet("shop-behind-hub");
  customer = await lnbits.createWallet("customer-of-hub");
  await lnbits.fund(shop.id, 200_000);
  relay = await startRelay();
  proxy = await startRelayProxy(relay.url);
  lnurl = await startLnurlServer();
  // The customer's Lightning Address hands out real LNbits invoices of 130 s.
  lnurl.makeInvoice = async (msat) => (await lnbits.createInvoice(customer.inkey, Math.floor(msat / 1000), "hub e2e", 130)).bolt11;
});

after(async () => {
  await lnurl?.stop();
  await proxy?.stop();
  await relay?.stop();
  await lnbits?.stop();
});

/** A Worker paying through a fresh Hub-like wallet service. */
async function hubGateway(name, hub, extra = {}) {
  const wallet = await startNwcWallet({ relayUrl: relay.url, connectUrl: proxy.url, lnbits, wallet: shop, hub });
  const worker = await startWorker(
    {
      LIGHTNING_PROVIDERS: "nwc",
      NWC_URL: wallet.uri,
      ADMIN_API_KEY: ADMIN,
      PAYOUT_API_KEY: KEY,
      PAYOUT_PROVIDER: "nwc",
      PAYOUT_LOOKUP_BASE_MS: "500",
      PAYOUT_LOOKUP_MAX_MS: "4000",
      PAYOUT_RETRY_BASE_MS: "500",
      PAYOUT_PAY_TIMEOUT_MS: "5000",
      PAYOUT_NOT_FOUND_GRACE_MS: "2000",
      // The proof time is the invoice's expiry itself (shortened waits, as a
      // new user would try it): whatever the wallet says after it must not
      // lead to a second payment.
      PAYOUT_LATE_EXECUTION_BOUND_SECS: "0",
      PAYOUT_EXPIRY_LOOKUP_MARGIN_SECS: "0",
      LNURL_ALLOW_HTTP_HOSTS: "127.0.0.1",
      LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS: "8000",
      ...extra,
    },
    { name },
  );
  const auth = { authorization: `Bearer ${KEY}` };
  return {
    wallet,
    worker,
    pay: (body, idem) => worker.request("POST", "/api/payouts", { json: body, headers: { ...auth, "idempotency-key": idem } }),
    // The admin's view, with the internal log.
    get: async (id) => (await worker.request("GET", `/api/payouts/${id}`, { headers: { authorization: `Bearer ${ADMIN}` } })).json,
    async stop() {
      await worker.stop();
      await wallet.stop();
    },
  };
}

/** How many times the customer's wallet was paid for `hash` (an LNbits invoice pays once). */
async function receivedTimes(hash) {
  const r = await lnbits.payment(customer.inkey, hash);
  return r.json?.paid ? 1 : 0;
}

/** The shop's successful outgoing payments, over every hash. */
async function shopPaidCount() {
  const r = await fetch(`${lnbits.url}/api/v1/payments?limit=500`, { headers: { "X-Api-Key": shop.adminkey } });
  const list = await r.json();
  const rows = Array.isArray(list) ? list : list.data;
  return rows.filter((p) => p.amount < 0 && p.status === "success").length;
}


const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("a stuck payment the wallet reports `expired` gets no second invoice, and ends paid once when it settles", async () => {
  const g = await hubGateway("nwc-hub-stuck", { stuck: true });
  try {
    const shopPaidBefore = await shopPaidCount();
    const resolutionsBefore = lnurl.resolutions.length;
    const res = await g.pay({ destination: lnurl.address("stuck"), amount_sat: 1200 }, "hub-stuck-1");
    assert.equal(res.status, 202, res.text);
    assert.equal(res.json.status, "unknown", res.text);
    const hash = res.json.payment_hash;
    await until("the recipient to be paid", async () => (await receivedTimes(hash)) === 1);
    const [rec] = g.wallet.recordsOf(hash);
    // Past the invoice's expiry (the proof time here) the wallet says `expired`.
    await until("the wallet to report the payment expired", async () => Date.now() / 1000 > rec.expiresAt + 2, 200_000);
    const lookupsAtExpiry = g.wallet.count("lookup_invoice", (p) => p.payment_hash === hash);
    await until("lookups after expiry", async () => g.wallet.count("lookup_invoice", (p) => p.payment_hash === hash) >= lookupsAtExpiry + 3, 60_000);
    const p = await g.get(res.json.id);
    assert.equal(p.status, "unknown", JSON.stringify(p.log));
    assert.deepEqual(p.previous_payment_hashes, [], "no second invoice");
    assert.equal(lnurl.resolutions.length, resolutionsBefore + 1, "the address was resolved once");
    // Lookups after the expiry (the wallet said `expired`) read as in flight.
    const afterExpiry = p.log.filter((l) => Date.parse(l.at) / 1000 > rec.expiresAt && /still in flight/.test(l.event));
    assert.ok(afterExpiry.length >= 1, JSON.stringify(p.log));
    assert.equal(g.wallet.count("pay_invoice"), 1, "never a second pay_invoice");
    // The hop lets go: the wallet's record settles.
    g.wallet.release();
    const done = await until("the payout to succeed", async () => {
      const q = await g.get(res.json.id);
      return q.status === "succeeded" ? q : null;
    });
    assert.match(done.preimage, /^[0-9a-f]{64}$/);
    assert.equal(await receivedTimes(hash), 1, "paid once");
    assert.equal((await shopPaidCount()) - shopPaidBefore, 1, "one payment left the shop's wallet");
    assert.equal(g.wallet.count("pay_invoice"), 1);
  } finally {
    await g.stop();
  }
});

test("a wallet answering the oldest attempt of a hash never makes a paid payout look failed", async () => {
  const g = await hubGateway("nwc-hub-oldest", { oldestFirst: true });
  try {
    const inv = await lnbits.createInvoice(customer.inkey, 900, "hub oldest", 45);
    // Someone tried this invoice through the same wallet an hour ago, and failed.
    g.wallet.seedFailedAttempt(inv.payment_hash);
    proxy.dropAfterNext(23194);
    const res = await g.pay({ destination: inv.bolt11 }, "hub-oldest-1");
    assert.equal(res.status, 202, res.text);
    assert.equal(res.json.status, "unknown", res.text);
    await until("our attempt to pay", async () => (await receivedTimes(inv.payment_hash)) === 1);
    // Lookups answer the old failed attempt, through expiry and the proof time.
    await sleep(55_000);
    const p = await g.get(res.json.id);
    assert.notEqual(p.status, "failed", JSON.stringify(p.log));
    assert.notEqual(p.status, "succeeded");
    assert.equal(p.status, "unknown", JSON.stringify(p.log));
    assert.ok(p.log.some((l) => /still in flight|which this backend also says of payments still in flight|made before the last send/.test(l.event)), JSON.stringify(p.log));
    assert.equal(g.wallet.count("pay_invoice"), 1, "never sent again");
    // It waits where a person sees it.
    const att = await g.worker.request("GET", "/api/payouts/attention?unknown_older_than_secs=0", { headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(att.status, 200, att.text);
    assert.ok(att.json.payouts.some((x) => x.id === res.json.id), att.text);
    // The wallet answers its settled record again (Alby Hub on SQLite): paid.
    g.wallet.hub.oldestFirst = false;
    const done = await until("the payout to succeed", async () => {
      const q = await g.get(res.json.id);
      return q.status === "succeeded" ? q : null;
    });
    assert.ok(done.log.some((l) => /succeeded \(status lookup\)/.test(l.event)), JSON.stringify(done.log));
    assert.equal(await receivedTimes(inv.payment_hash), 1, "paid once");
  } finally {
    await g.stop();
  }
});

test("lookups blind to outgoing payments never prove a payment absent: the payout waits, naming the backend", async () => {
  const g = await hubGateway("nwc-hub-blind", { blind: true });
  try {
    // A payout answered at once: its hash is the one the blind check asks about.
    const first = await lnbits.createInvoice(customer.inkey, 700, "hub blind 1");
    const ok = await g.pay({ destination: first.bolt11 }, "hub-blind-0");
    assert.equal(ok.status, 201, ok.text);
    assert.equal(ok.json.status, "succeeded");

    const inv = await lnbits.createInvoice(customer.inkey, 800, "hub blind 2", 45);
    proxy.dropAfterNext(23194);
    const res = await g.pay({ destination: inv.bolt11 }, "hub-blind-1");
    assert.equal(res.status, 202, res.text);
    await until("our attempt to pay", async () => (await receivedTimes(inv.payment_hash)) === 1);
    await sleep(55_000); // past expiry, the proof time here
    const p = await g.get(res.json.id);
    assert.notEqual(p.status, "failed", JSON.stringify(p.log));
    assert.notEqual(p.status, "succeeded");
    assert.match(p.last_error, /nwc .*may not see outgoing payments/, p.last_error);
    assert.ok(g.wallet.count("lookup_invoice", (x) => x.payment_hash === first.payment_hash) >= 1, "the known-paid hash was asked about");
    assert.equal(g.wallet.count("pay_invoice", (x) => x.invoice === inv.bolt11), 1, "never sent again");
    const att = await g.worker.request("GET", "/api/payouts/attention?unknown_older_than_secs=0", { headers: { authorization: `Bearer ${ADMIN}` } });
    const listed = att.json.payouts.find((x) => x.id === res.json.id);
    assert.ok(listed, att.text);
    assert.match(listed.last_error, /may not see outgoing payments/);
    assert.equal(await receivedTimes(inv.payment_hash), 1, "paid once");
  } finally {
    await g.stop();
  }
});
