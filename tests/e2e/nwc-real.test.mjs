// Nostr Wallet Connect end to end, for real: the built Worker in workerd
// speaks NIP-47 over a real relay (npm @nostr-relay/core) to a wallet
// service built on @getalby/sdk's NWCWalletService, whose funds are a wallet
// of the real LNbits. A WebSocket proxy between the Worker and the relay
// can cut the Worker's connection right after forwarding its request.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startLnbits } from "./support/lnbits.mjs";
import { startRelay, startRelayProxy } from "./support/nostr-relay.mjs";
import { startNwcWallet } from "./support/nwc-wallet.mjs";
import { startWorker } from "./support/worker.mjs";
import { decodeInvoice } from "./support/invoice.mjs";
import { until } from "./support/wait.mjs";

const KEY = "payout-key-nwc-0123456789";
const ADMIN = "admin-key-nwc-0123456789";
let lnbits, shop, customer, relay, proxy, nwc, worker;

before(async () => {
  lnbits = await startLnbits({ funding: true });
  shop = await lnbits.createWallet("shop-behind-nwc");
  customer = await lnbits.createWallet("customer");
  await lnbits.fund(shop.id, 100_000);
  await lnbits.fund(customer.id, 100_000);
  relay = await startRelay();
  proxy = await startRelayProxy(relay.url);
  // The wallet service listens on the relay itself; the Worker goes through the proxy.
  nwc = await startNwcWallet({ relayUrl: relay.url, connectUrl: proxy.url, lnbits, wallet: shop });
  worker = await startWorker(
    {
      LIGHTNING_PROVIDERS: "nwc",
      NWC_URL: nwc.uri,
      ADMIN_API_KEY: ADMIN,
      PAYOUT_API_KEY: KEY,
      PAYOUT_PROVIDER: "nwc",
      PAYOUT_LOOKUP_BASE_MS: "300",
      PAYOUT_RETRY_BASE_MS: "300",
      PAYOUT_PAY_TIMEOUT_MS: "8000",
      LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS: "8000",
    },
    { name: "nwc-real" },
  );
});

after(async () => {
  await worker?.stop();
  await nwc?.stop();
  await proxy?.stop();
  await relay?.stop();
  await lnbits?.stop();
});

const auth = { authorization: `Bearer ${KEY}` };
const pay = (body, idem) => worker.request("POST", "/api/payouts", { json: body, headers: { ...auth, "idempotency-key": idem } });
// The admin's view: a client's has no backend or log.
const getPayout = async (id) => (await worker.request("GET", `/api/payouts/${id}`, { headers: { authorization: `Bearer ${ADMIN}` } })).json;

/** LNbits' own ledger of the shop's wallet: its outgoing payments of `hash`. */
async function outgoing(hash) {
  const r = await fetch(`${lnbits.url}/api/v1/payments?limit=200`, { headers: { "X-Api-Key": shop.adminkey } });
  const list = await r.json();
  const rows = Array.isArray(list) ? list : list.data;
  return rows.filter((p) => p.payment_hash === hash && p.amount < 0);
}


test("an invoice made through NWC, paid from another LNbits wallet, is seen paid through check-invoice", async () => {
  const t0 = Date.now();
  const res = await worker.createInvoice({ amount: 2100, description: "nwc e2e", expiry: 900 });
  console.log(`# create-invoice through NWC: ${Date.now() - t0} ms`);
  assert.equal(res.status, 201, res.text);
  assert.equal(res.json.provider, "nwc");
  const decoded = decodeInvoice(res.json.payment_request);
  assert.equal(decoded.amount_msat, 2_100_000);
  assert.equal(decoded.description, "nwc e2e");
  assert.equal(nwc.count("make_invoice", (p) => p.amount === 2_100_000), 1);
  // The request reached the relay signed and NIP-44 encrypted (the relay checked id and signature).
  const requests = relay.published(23194);
  assert.ok(requests.length >= 1);
  assert.ok(requests.every((e) => e.tags.some((t) => t[0] === "encryption" && t[1] === "nip44_v2")));
  assert.ok(requests.every((e) => !e.content.includes("make_invoice")));

  const pending = await worker.checkInvoice(res.json.payment_hash);
  assert.equal(pending.status, 200, pending.text);
  assert.deepEqual([pending.json.status, pending.json.provider], ["pending", "nwc"]);

  const paid = await fetch(`${lnbits.url}/api/v1/payments`, {
    method: "POST",
    headers: { "content-type": "application/json", "X-Api-Key": customer.adminkey },
    body: JSON.stringify({ out: true, bolt11: res.json.payment_request }),
  });
  assert.equal(paid.status, 201, await paid.text());

  const check = await worker.waitForStatus(res.json.payment_hash, "paid");
  assert.equal(check.status, 200, check.text);
  assert.equal(check.json.status, "paid", check.text);
  assert.ok(nwc.count("lookup_invoice", (p) => p.payment_hash === res.json.payment_hash) >= 2);
});

test("a payout through NWC lands exactly once on the LNbits ledger", async () => {
  const inv = await lnbits.createInvoice(customer.inkey, 1000, "nwc payout");
  const before = await lnbits.balanceMsat(shop.adminkey);
  const res = await pay({ destination: inv.bolt11 }, "nwc-payout-1");
  assert.equal(res.status, 201, res.text);
  assert.equal(res.json.status, "succeeded");
  assert.equal((await getPayout(res.json.id)).backend.kind, "nwc");
  assert.match(res.json.preimage, /^[0-9a-f]{64}$/);
  assert.equal((await lnbits.payment(customer.inkey, inv.payment_hash)).json.paid, true);
  assert.equal((await outgoing(inv.payment_hash)).length, 1, "one payment on LNbits' ledger");
  assert.equal(before - (await lnbits.balanceMsat(shop.adminkey)), 1_000_000);
  assert.equal(nwc.count("pay_invoice", (p) => p.invoice === inv.bolt11), 1);
  // A replay answers from the queue and sends nothing.
  const replay = await pay({ destination: inv.bolt11 }, "nwc-payout-1");
  assert.equal(replay.status, 200);
  assert.equal(nwc.count("pay_invoice", (p) => p.invoice === inv.bolt11), 1);
});

test("a relay connection dropped right after the request was forwarded: paid once, resolved by lookup_invoice", async () => {
  const inv = await lnbits.createInvoice(customer.inkey, 1500, "nwc dropped");
  const before = await lnbits.balanceMsat(shop.adminkey);
  proxy.dropAfterNext(23194);
  const res = await pay({ destination: inv.bolt11 }, "nwc-payout-dropped");
  assert.equal(res.status, 202, res.text);
  assert.equal(res.json.status, "unknown", res.text);
  assert.match(res.json.last_error, /relay|connection/i);
  assert.equal(proxy.drops.length, 1, "the proxy cut the connection after forwarding the request");

  const done = await until("the payout to succeed", async () => {
    const p = await getPayout(res.json.id);
    return p.status === "succeeded" ? p : null;
  });
  assert.ok(done.log.some((l) => /succeeded \(status lookup\)/.test(l.event)), JSON.stringify(done.log));
  assert.equal(nwc.count("pay_invoice", (p) => p.invoice === inv.bolt11), 1, "never a second pay_invoice");
  assert.ok(nwc.count("lookup_invoice", (p) => p.payment_hash === inv.payment_hash) >= 1);
  assert.equal((await outgoing(inv.payment_hash)).length, 1, "one payment on LNbits' ledger");
  assert.equal(before - (await lnbits.balanceMsat(shop.adminkey)), 1_500_000);
  assert.equal((await lnbits.payment(customer.inkey, inv.payment_hash)).json.paid, true);
});

test("health, the deep check and /status cover nwc, and the connection secret appears nowhere", async () => {
  assert.equal(await worker.cron(), 200);
  const health = await worker.request("GET", "/api/lightning/health");
  assert.equal(health.status, 200, health.text);
  const svc = health.json.services.find((s) => s.provider === "nwc");
  assert.equal(svc.name, "Nostr Wallet Connect");
  assert.equal(svc.status, "online", health.text);
  assert.ok(nwc.count("get_balance") >= 1, "the probe is get_balance");

  const deep = await worker.request("GET", "/api/lightning/health?deep=1", { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(deep.status, 200, deep.text);
  const nwcDeep = deep.json.deep.find((d) => d.provider === "nwc");
  assert.deepEqual(nwcDeep.steps.map((s) => [s.step, s.ok]), [["read", true], ["write", true], ["lookup", true]], deep.text);

  const status = await worker.request("GET", "/status");
  assert.equal(status.status, 200);
  assert.match(status.text, /Nostr Wallet Connect/);

  const payouts = await worker.request("GET", "/api/payouts?limit=100", { headers: auth });
  for (const [what, text] of [
    ["health", health.text],
    ["deep health", deep.text],
    ["/status", status.text],
    ["payouts", payouts.text],
    ["the Worker's logs", worker.allLogs],
  ]) {
    assert.ok(!text.includes(nwc.clientSecret), `the secret appears in ${what}`);
  }
});

test("a wallet that advertises only NIP-04 is spoken to in NIP-04", async () => {
  const legacy = await startNwcWallet({ relayUrl: relay.url, lnbits, wallet: shop, nip04Only: true });
  const w = await startWorker({ LIGHTNING_PROVIDERS: "nwc", NWC_URL: legacy.uri }, { name: "nwc-nip04" });
  try {
    const seen = relay.published(23194).length;
    const res = await w.createInvoice({ amount: 21, description: "nip04" });
    assert.equal(res.status, 201, res.text);
    const sent = relay.published(23194).slice(seen).filter((e) => e.tags.some((t) => t[0] === "p" && t[1] === legacy.walletPubkey));
    assert.ok(sent.length >= 1);
    assert.ok(sent.every((e) => e.content.includes("?iv=") && !e.tags.some((t) => t[0] === "encryption")));
    assert.equal(legacy.count("make_invoice"), 1);
  } finally {
    await w.stop();
    await legacy.stop();
  }
});
