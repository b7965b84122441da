// End-to-end: the invoice watch and its events against a real LNbits (PyPI).
// Invoices are created through the gateway and paid from another LNbits
// wallet; nobody calls check-invoice, and the shop learns of the payment from
// a signed `invoice.paid` that the Standard Webhooks reference verifier (npm
// `standardwebhooks`) accepts. The issuing backend sits behind a switchable
// proxy, so it can be down when the invoice is paid; the receiver can fail;
// the Worker can crash mid-watch.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createHash } from "node:crypto";
import { startLnbits } from "./support/lnbits.mjs";
import { startWebhookReceiver } from "./support/webhook-receiver.mjs";
import { startWorker, providerVars } from "./support/worker.mjs";
import { startFakeProvider } from "./support/fake-provider.mjs";

const INVOICE_KEY = "invoice-key-e2e-0123456789";
const ADMIN = "admin-key-e2e-invoices-0123456789";
const SECRET = `whsec_${Buffer.alloc(32, 9).toString("base64")}`;

let lnbits, shop, customer, proxy, ops, shopHook, worker;
let fake, fakeWorker, ops2; // a second gateway over a fake LND that settles after expiry
let unpaid; // created at the start, left unpaid: exactly one invoice.expired
let lateOne; // short-lived, paid (or not) after it expired
let lateFake; // the same at the fake LND

/** An HTTP proxy to LNbits that answers 520 (as Cloudflare does for a dead origin) while `down`. */
async function startSwitchableProxy(target) {
  const p = { down: false };
  p.server = http.createServer(async (req, res) => {
    if (p.down) {
      res.writeHead(520, { "content-type": "text/html" });
      return res.end("<html><body>520: Web server is returning an unknown error</body></html>");
    }
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const headers = { ...req.headers };
    delete headers.host;
    try {
      const r = await fetch(target + req.url, { method: req.method, headers, body: chunks.length ? Buffer.concat(chunks) : undefined });
      res.writeHead(r.status, { "content-type": r.headers.get("content-type") ?? "application/json" });
      res.end(Buffer.from(await r.arrayBuffer()));
    } catch (e) {
      res.writeHead(502);
      res.end(String(e));
    }
  });
  await new Promise((r) => p.server.listen(0, "127.0.0.1", r));
  p.url = `http://127.0.0.1:${p.server.address().port}`;
  p.stop = () => new Promise((r) => p.server.close(r));
  return p;
}

const keyed = (extra = {}) => ({ authorization: `Bearer ${INVOICE_KEY}`, ...extra });
const create = (json, headers = {}) => worker.request("POST", "/api/create-invoice", { json, headers });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Deliveries to `rx` of events of `hash` (optionally of one type). */
function deliveries(rx, hash, type) {
  return rx.received
    .map((d) => ({ ...d, json: JSON.parse(d.body) }))
    .filter((d) => d.json?.data?.payment_hash === hash && (!type || d.json.type === type));
}

async function waitFor(what, fn, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${worker.log.slice(-3000)}`);
    await sleep(500);
  }
}

before(async () => {
  // LNbits posts its paid notices (the invoice's `webhook`) to the Worker on 127.0.0.1.
  lnbits = await startLnbits({
    funding: true,
    env: { LNBITS_CALLBACK_ALLOW_PRIVATE_IPS: "true", LNBITS_CALLBACK_URL_RULES: JSON.stringify(["http://127\\.0\\.0\\.1(:\\d+)?"]) },
  });
  shop = await lnbits.createWallet("shop");
  customer = await lnbits.createWallet("customer");
  await lnbits.fund(customer.id, 100_000);
  proxy = await startSwitchableProxy(lnbits.url);
  ops = await startWebhookReceiver({ secrets: { current: SECRET } });
  shopHook = await startWebhookReceiver({ secrets: { current: SECRET } });
  worker = await startWorker(
    {
      LIGHTNING_PROVIDERS: "lnbits",
      LNBITS_URL: proxy.url,
      LNBITS_INVOICE_KEY: shop.inkey,
      INVOICE_API_KEY: INVOICE_KEY,
      ADMIN_API_KEY: ADMIN,
      WEBHOOK_SECRET: SECRET,
      INVOICE_WEBHOOK_URL: ops.url,
      LNURL_ALLOW_HTTP_HOSTS: "127.0.0.1",
      // The Worker is on 127.0.0.1 here: tell LNbits where to push anyway.
      INVOICE_BACKEND_NOTICES: "on",
      INVOICE_WATCH_LOOKUPS_PER_MINUTE: "10000",
    },
    { name: "invoice-events" },
  );
  fake = await startFakeProvider("lnd");
  ops2 = await startWebhookReceiver({ secrets: { current: SECRET } });
  fakeWorker = await startWorker(
    { ...providerVars({ lnd: fake }), WEBHOOK_SECRET: SECRET, INVOICE_WEBHOOK_URL: ops2.url, LNURL_ALLOW_HTTP_HOSTS: "127.0.0.1" },
    { name: "invoice-events-fake" },
  );
  lateFake = (await fakeWorker.createInvoice({ amount: 23, expiry: 60 })).json;
  assert.ok(lateFake?.payment_hash);
  // Left unpaid from the start, so its expiry falls within this file's run.
  unpaid = (await create({ amount: 21, description: "never paid", expiry: 60, external_id: "unpaid-1" })).json;
  lateOne = (await create({ amount: 22, description: "paid late", expiry: 60 })).json;
  assert.ok(unpaid?.payment_hash && lateOne?.payment_hash, JSON.stringify(unpaid));
});

after(async () => {
  await worker?.stop();
  await fakeWorker?.stop();
  await fake?.stop();
  await ops2?.stop();
  await ops?.stop();
  await shopHook?.stop();
  await proxy?.stop();
  await lnbits?.stop();
});

test("an invoice paid from another wallet yields one verified invoice.paid, with no check-invoice", async () => {
  const res = await create(
    { amount: 1000, description: "order 1042", external_id: "order-1042", metadata: { customer: "c_77", items: [1, 2] }, webhook_url: shopHook.url },
    keyed(),
  );
  assert.equal(res.status, 201, res.text);
  assert.equal(res.json.external_id, "order-1042");
  assert.deepEqual(res.json.metadata, { customer: "c_77", items: [1, 2] });
  assert.equal(res.json.webhook_url, shopHook.url);
  const hash = res.json.payment_hash;
  const paid = await lnbits.pay(customer.adminkey, res.json.payment_request);
  assert.equal(paid.status, 201, JSON.stringify(paid.json));
  const [d] = await waitFor("invoice.paid at the operator", () => {
    const got = deliveries(ops, hash, "invoice.paid");
    return got.length ? got : null;
  });
  assert.equal(d.verified.current, true, "standardwebhooks verifies it");
  assert.equal(d.headers["webhook-id"], `evt_${hash}_paid`);
  assert.equal(d.json.id, d.headers["webhook-id"]);
  assert.equal(d.json.type, "invoice.paid");
  assert.equal(d.json.data.amount, 1000);
  assert.equal(d.json.data.provider, "lnbits");
  assert.equal(d.json.data.external_id, "order-1042");
  assert.deepEqual(d.json.data.metadata, { customer: "c_77", items: [1, 2] });
  assert.match(d.json.data.settled_at, /^\d{4}-\d\d-\d\dT/);
  // LNbits showed the preimage: it hashes to the payment hash.
  assert.equal(createHash("sha256").update(Buffer.from(d.json.data.preimage, "hex")).digest("hex"), hash);
  // The invoice's own webhook_url gets the same event, under the same id.
  const [own] = await waitFor("invoice.paid at the shop's URL", () => {
    const got = deliveries(shopHook, hash, "invoice.paid");
    return got.length ? got : null;
  });
  assert.equal(own.verified.current, true);
  assert.equal(own.headers["webhook-id"], d.headers["webhook-id"]);
  // check-invoice answers from the watch; the context only with the key.
  const pub = await worker.checkInvoice(hash);
  assert.equal(pub.json.status, "paid");
  assert.equal(pub.json.external_id, undefined, "the public answer has no context");
  const mine = await worker.request("GET", `/api/check-invoice?payment_hash=${hash}`, { headers: keyed() });
  assert.equal(mine.json.status, "paid");
  assert.equal(mine.json.external_id, "order-1042");
  assert.equal(mine.json.metadata.customer, "c_77");
  // LNbits pushed its paid notice (the `webhook` create-invoice set); the
  // watch took it as a hint and confirmed with a lookup.
  assert.match(worker.log, /POST \/api\/invoices\/notify 202/);
  const stranger = await worker.request("POST", "/api/invoices/notify", { json: { payment_hash: "cd".repeat(32) } });
  assert.equal(stranger.status, 202, "the same answer for a hash nobody watches");
  await sleep(8_000);
  assert.equal(deliveries(ops, hash).length, 1, "delivered once");
});

test("paid while its backend was down: the event arrives once the backend is back, once", async () => {
  const res = await create({ amount: 700, description: "during an outage" });
  assert.equal(res.status, 201, res.text);
  const hash = res.json.payment_hash;
  proxy.down = true;
  try {
    const paid = await lnbits.pay(customer.adminkey, res.json.payment_request);
    assert.equal(paid.status, 201, JSON.stringify(paid.json));
    await sleep(20_000);
    assert.equal(deliveries(ops, hash).length, 0, "nothing known while the backend is down");
    const check = await worker.checkInvoice(hash);
    assert.equal(check.status, 503, "check-invoice cannot tell either");
  } finally {
    proxy.down = false;
  }
  await waitFor("invoice.paid after the outage", () => deliveries(ops, hash, "invoice.paid").length > 0);
  await sleep(10_000);
  const all = deliveries(ops, hash);
  assert.equal(all.length, 1, `one delivery: ${all.map((d) => d.json.type)}`);
  assert.equal(all[0].verified.current, true);
});

test("a failing receiver gets the same webhook-id again; the history lists the event; an admin can redeliver", async () => {
  const flaky = await startWebhookReceiver({ secrets: { current: SECRET }, statuses: [500, 200] });
  try {
    const res = await create({ amount: 300, external_id: "flaky-1", webhook_url: flaky.url }, keyed());
    assert.equal(res.status, 201, res.text);
    const hash = res.json.payment_hash;
    await lnbits.pay(customer.adminkey, res.json.payment_request);
    const two = await waitFor("a redelivery after the 500", () => {
      const got = deliveries(flaky, hash);
      return got.length >= 2 ? got : null;
    });
    assert.equal(two[0].headers["webhook-id"], two[1].headers["webhook-id"]);
    assert.ok(two.every((d) => d.verified.current === true));
    // The history lists it, with the body the webhook carried.
    const all = [];
    let cursor = "";
    for (let i = 0; i < 50; i++) {
      const page = await worker.request("GET", `/api/invoices/events?limit=1&cursor=${cursor}`, { headers: keyed() });
      assert.equal(page.status, 200, page.text);
      all.push(...page.json.events);
      if (!page.json.events.length) break;
      cursor = encodeURIComponent(page.json.next_cursor);
    }
    const mine = all.filter((e) => e.data.payment_hash === hash);
    assert.equal(mine.length, 1);
    assert.equal(mine[0].id, two[0].headers["webhook-id"]);
    assert.equal(mine[0].data.external_id, "flaky-1");
    assert.equal(new Set(all.map((e) => e.id)).size, all.length, "no event twice across pages");
    // Admin redelivery: the same id once more, to every URL.
    const before = deliveries(flaky, hash).length;
    const r = await worker.request("POST", `/api/invoices/${hash}/redeliver-webhook`, { headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(r.status, 202, r.text);
    assert.equal(r.json.deliveries, 2, "its own URL and the operator's");
    await waitFor("the redelivery", () => deliveries(flaky, hash).length > before);
    assert.equal(deliveries(flaky, hash).at(-1).headers["webhook-id"], two[0].headers["webhook-id"]);
    const nokey = await worker.request("GET", "/api/invoices/events");
    assert.equal(nokey.status, 401);
  } finally {
    await flaky.stop();
  }
});

test("a retried create with the same Idempotency-Key returns the same invoice", async () => {
  const body = { amount: 1234, description: "order 77", external_id: "order-77" };
  const a = await create(body, keyed({ "idempotency-key": "order-77" }));
  assert.equal(a.status, 201, a.text);
  const b = await create({ external_id: "order-77", description: "order 77", amount: 1234 }, keyed({ "idempotency-key": "order-77" }));
  assert.equal(b.status, 201, b.text);
  assert.equal(b.headers.get("idempotent-replayed"), "true");
  assert.equal(b.json.payment_hash, a.json.payment_hash);
  assert.equal(b.json.payment_request, a.json.payment_request);
  const c = await create({ ...body, amount: 1235 }, keyed({ "idempotency-key": "order-77" }));
  assert.equal(c.status, 409, c.text);
  assert.equal(c.json.error.code, "idempotency_conflict");
  // Without the key: no webhook_url, no Idempotency-Key, nothing created.
  const d = await create({ amount: 5, webhook_url: shopHook.url });
  assert.equal(d.status, 401);
  assert.equal(d.json.error.code, "unauthorized");
  const e = await create({ amount: 5 }, { authorization: "Bearer wrong-key-0123456789" });
  assert.equal(e.status, 401);
  const f = await create({ amount: 5 }, { "idempotency-key": "order-78" });
  assert.equal(f.status, 401);
});

test("a crash in the middle of a watch loses no invoice", async () => {
  const res = await create({ amount: 400, description: "across a restart" });
  assert.equal(res.status, 201, res.text);
  const hash = res.json.payment_hash;
  await worker.restart();
  await lnbits.pay(customer.adminkey, res.json.payment_request);
  await waitFor("invoice.paid after the restart", () => deliveries(ops, hash, "invoice.paid").length > 0, 90_000);
  const asAdmin = { headers: { authorization: `Bearer ${ADMIN}` } };
  const h = await worker.request("GET", "/api/lightning/health", asAdmin);
  assert.ok(h.json.invoice_watch, h.text);
  assert.ok(h.json.invoice_watch.paid_last_hour >= 1, h.text);
  assert.equal(typeof h.json.invoice_watch.watched, "number");
  assert.equal(typeof h.json.invoice_watch.events_waiting, "number");
  const page = await worker.request("GET", "/status", asAdmin);
  assert.match(page.text, /Invoice watch/);
  const anonymous = await worker.request("GET", "/status");
  assert.doesNotMatch(anonymous.text, /Invoice watch/, "the figures need the admin key");
});

test("an unpaid invoice yields exactly one invoice.expired; one paid after expiry yields invoice.paid after it", async () => {
  const [exp] = await waitFor(
    "invoice.expired",
    () => {
      const got = deliveries(ops, unpaid.payment_hash, "invoice.expired");
      return got.length ? got : null;
    },
    240_000,
  );
  assert.equal(exp.verified.current, true);
  assert.equal(exp.headers["webhook-id"], `evt_${unpaid.payment_hash}_expired`);
  assert.equal(exp.json.data.status, "expired");
  assert.equal(exp.json.data.external_id, "unpaid-1");
  // LNbits marks an expired invoice failed when it is looked up after its
  // expiry (the watch's lookup did that), and then no longer settles it.
  await waitFor("invoice.expired of the late one", () => deliveries(ops, lateOne.payment_hash, "invoice.expired").length > 0, 240_000);
  await lnbits.pay(customer.adminkey, lateOne.payment_request);
  const atBackend = await lnbits.payment(shop.inkey, lateOne.payment_hash);
  assert.equal(atBackend.json.paid, false, JSON.stringify(atBackend.json));
  // A backend that settles after expiry (the fake LND): invoice.paid follows
  // invoice.expired, here seen by a check-invoice's lookup on demand (at
  // most one a minute after expiry).
  await waitFor("invoice.expired from the fake's gateway", () => deliveries(ops2, lateFake.payment_hash, "invoice.expired").length > 0, 240_000);
  fake.settle(lateFake.payment_hash);
  const check = await fakeWorker.waitForStatus(lateFake.payment_hash, "paid", 90_000);
  assert.equal(check.json.status, "paid", check.text);
  await waitFor("invoice.paid after invoice.expired", () => deliveries(ops2, lateFake.payment_hash, "invoice.paid").length > 0);
  const types = deliveries(ops2, lateFake.payment_hash).map((d) => d.json.type);
  assert.deepEqual(types, ["invoice.expired", "invoice.paid"]);
  assert.ok(deliveries(ops2, lateFake.payment_hash).every((d) => d.verified.current === true));
  await sleep(3_000);
  assert.equal(deliveries(ops, lateOne.payment_hash, "invoice.paid").length, 0);
  await sleep(5_000);
  assert.equal(deliveries(ops, unpaid.payment_hash).length, 1, "exactly one event for the unpaid invoice");
});
