// End-to-end: the example shop (examples/shop/shop.mjs) against the gateway
// and a real LNbits (PyPI). The shop uses the generated TypeScript client
// and verifies every webhook with the `standardwebhooks` reference library:
// an order is created, paid from a customer's wallet and marked paid by the
// signed invoice.paid alone; a refund over the payout limit is refused with a
// 422 the shop passes on; a refund within it is paid and marked by the signed
// payout.succeeded.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createShop } from "../../examples/shop/shop.mjs";
import { startLnbits } from "./support/lnbits.mjs";
import { startWorker } from "./support/worker.mjs";
import { until } from "./support/wait.mjs";

const INVOICE_KEY = "invoice-key-shop-0123456789";
const PAYOUT_KEY = "payout-key-shop-0123456789";
const SECRET = `whsec_${Buffer.alloc(32, 5).toString("base64")}`;

let lnbits, wallet, customer, worker, shop, shopUrl;

before(async () => {
  lnbits = await startLnbits({
    funding: true,
    env: { LNBITS_CALLBACK_ALLOW_PRIVATE_IPS: "true", LNBITS_CALLBACK_URL_RULES: JSON.stringify(["http://127\\.0\\.0\\.1(:\\d+)?"]) },
  });
  wallet = await lnbits.createWallet("shop");
  customer = await lnbits.createWallet("customer");
  await lnbits.fund(customer.id, 100_000);
  worker = await startWorker(
    {
      LIGHTNING_PROVIDERS: "lnbits",
      LNBITS_URL: lnbits.url,
      LNBITS_INVOICE_KEY: wallet.inkey,
      LNBITS_ADMIN_KEY: wallet.adminkey,
      PAYOUT_PROVIDER: "lnbits",
      PAYOUT_API_KEY: PAYOUT_KEY,
      PAYOUT_MAX_SATS: "5000",
      INVOICE_API_KEY: INVOICE_KEY,
      WEBHOOK_SECRET: SECRET,
      LNURL_ALLOW_HTTP_HOSTS: "127.0.0.1",
      INVOICE_BACKEND_NOTICES: "on",
      INVOICE_WATCH_LOOKUPS_PER_MINUTE: "10000",
    },
    { name: "example-shop", snapshot: true },
  );
  shop = createShop({ gatewayUrl: worker.base, invoiceKey: INVOICE_KEY, payoutKey: PAYOUT_KEY, webhookSecret: SECRET, shopUrl: "" });
  await new Promise((r) => shop.server.listen(0, "127.0.0.1", r));
  // The shop hands the gateway its own address for webhooks.
  shopUrl = shop.config.shopUrl = `http://127.0.0.1:${shop.server.address().port}`;
});

after(async () => {
  shop?.server.close();
  await worker?.stop();
  await lnbits?.stop();
});

const call = async (method, path, body) => {
  const r = await fetch(shopUrl + path, { method, headers: { "content-type": "application/json" }, body: body && JSON.stringify(body) });
  return { status: r.status, json: await r.json() };
};

test("an order is paid, known paid from the signed invoice.paid alone, then refunded through a payout", { timeout: 180_000 }, async () => {
  const order = await call("POST", "/orders", { amount_sat: 1500 });
  assert.equal(order.status, 201, JSON.stringify(order.json));
  assert.match(order.json.payment_request, /^lnbcrt|^lnbc|^lntb/);
  const id = order.json.id;

  // A forged event is refused by the shop's verifier and changes nothing.
  const forged = await fetch(`${shopUrl}/webhooks/lightning`, {
    method: "POST",
    headers: { "content-type": "application/json", "webhook-id": "evt_x", "webhook-timestamp": String(Math.floor(Date.now() / 1000)), "webhook-signature": "v1,AAAA" },
    body: JSON.stringify({ type: "invoice.paid", data: { external_id: id, payment_hash: order.json.payment_hash } }),
  });
  assert.equal(forged.status, 400);
  assert.equal(shop.orders.get(id).status, "awaiting_payment");

  const paid = await lnbits.pay(customer.adminkey, order.json.payment_request);
  assert.ok(paid.status < 300, JSON.stringify(paid.json));
  // Nobody asks the shop (which would ask check-invoice): the webhook alone marks it.
  await until("the order marked paid by invoice.paid", () => shop.orders.get(id).status === "paid", 90_000);

  // A refund over the gateway's payout limit: the gateway's 422, passed on.
  const big = await lnbits.createInvoice(customer.inkey, 6000, "refund too large");
  const refused = await call("POST", `/orders/${id}/refund`, { invoice: big.bolt11 });
  assert.equal(refused.status, 422, JSON.stringify(refused.json));
  assert.equal(refused.json.code, "limit_exceeded");

  // The refund itself: paid, and marked by the signed payout.succeeded.
  const before = await lnbits.balanceMsat(customer.inkey);
  const inv = await lnbits.createInvoice(customer.inkey, 1500, "refund");
  const refund = await call("POST", `/orders/${id}/refund`, { invoice: inv.bolt11 });
  assert.equal(refund.status, 202, JSON.stringify(refund.json));
  await until("the refund marked succeeded by payout.succeeded", () => shop.orders.get(id).refund?.status === "succeeded", 90_000);
  assert.equal((await lnbits.balanceMsat(customer.inkey)) - before, 1_500_000, "the customer got the refund once");
  const shown = await call("GET", `/orders/${id}`);
  assert.equal(shown.json.status, "paid");
  assert.equal(shown.json.refund.status, "succeeded");
});
