// End-to-end: payouts through the Worker and its Durable Object queue in
// workerd, against a fake LNbits backend that fails in the ambiguous ways
// real ones do, a fake Lightning Address server, and a webhook receiver.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { startFakeProvider } from "./support/fake-provider.mjs";
import { startLnurlServer } from "./support/lnurl-server.mjs";
import { startWebhookReceiver } from "./support/webhook-receiver.mjs";
import { startWorker } from "./support/worker.mjs";
import { signInvoice, corruptAt } from "./support/invoice.mjs";

const KEY = "payout-key-current-0123456789";
const OLD_KEY = "payout-key-previous-0123456789";
const ADMIN = "admin-key-for-e2e-tests-0123456789";
// Standard Webhooks secrets, made the way docs/payouts.md says. The Worker is in
// the middle of a rotation: it signs with both, so a receiver still holding
// only the previous secret keeps verifying.
const whsec = () => "whsec_" + crypto.randomBytes(32).toString("base64");
const SECRET = whsec();
const PREVIOUS_SECRET = whsec();
let lnbits, lnurl, hooks, worker;
let seq = 0;

before(async () => {
  lnbits = await startFakeProvider("lnbits");
  lnurl = await startLnurlServer();
  hooks = await startWebhookReceiver({
    secrets: { current: SECRET, previous: PREVIOUS_SECRET, stranger: whsec() },
    statuses: [500, 200],
  });
  worker = await startWorker(
    {
      LIGHTNING_PROVIDERS: "lnbits",
      LNBITS_URL: lnbits.url,
      LNBITS_INVOICE_KEY: lnbits.key,
      LNBITS_ADMIN_KEY: lnbits.adminKey,
      PAYOUT_API_KEY: KEY,
      PAYOUT_API_KEY_PREVIOUS: OLD_KEY,
      ADMIN_API_KEY: ADMIN,
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_SECRET_PREVIOUS: PREVIOUS_SECRET,
      LNURL_ALLOW_HTTP_HOSTS: "127.0.0.1",
      PAYOUT_LOOKUP_BASE_MS: "200",
      PAYOUT_RETRY_BASE_MS: "200",
      PAYOUT_NOT_FOUND_GRACE_MS: "0",
      PAYOUT_MAX_ATTEMPTS: "2",
      PAYOUT_MAX_SATS: "50000",
      PAYOUT_DAILY_LIMIT_SATS: "300000",
    },
    { name: "payouts" },
  );
});

after(async () => {
  await worker?.stop();
  await lnbits?.stop();
  await lnurl?.stop();
  await hooks?.stop();
});

beforeEach(() => {
  lnbits.payMode = "ok";
  lnurl.mode = "ok";
});

const auth = (key = KEY) => ({ authorization: `Bearer ${key}` });
function payout(body, { key = KEY, idem = `order-${++seq}`, headers = {} } = {}) {
  const h = { ...headers };
  if (key) h.authorization = `Bearer ${key}`;
  if (idem) h["idempotency-key"] = idem;
  return worker.request("POST", "/api/payouts", { json: body, headers: h });
}
// The admin's view, with the backend and the internal log (a client's has neither).
const getPayout = (id) => worker.request("GET", `/api/payouts/${id}`, { headers: auth(ADMIN) });

/** Ticks cron until the payout reaches `status` (bounded). */
async function tickUntil(id, status, ticks = 30) {
  let p;
  for (let i = 0; i < ticks; i++) {
    p = (await getPayout(id)).json;
    if (p.status === status) return p;
    await new Promise((r) => setTimeout(r, 250));
    await worker.cron();
  }
  return p;
}

test("Lightning Address: resolve, pay, 520 after paying, queued, cron, lookup, succeeded, signed webhook", async () => {
  lnbits.payMode = "pay_then_520";
  const res = await payout({ destination: lnurl.address("alice"), amount_sat: 2100, comment: "thanks!", webhook_url: hooks.url, external_id: "order-77" });
  assert.equal(res.status, 202, res.text);
  const p = res.json;
  assert.equal(p.status, "unknown", "a 520 after sending is neither success nor failure");
  assert.match(p.id, /^po_[0-9a-f]{24}$/);
  assert.match(p.payment_hash, /^[0-9a-f]{64}$/);
  assert.equal(p.amount_sat, 2100);
  assert.equal(p.destination, lnurl.address("alice"));
  assert.ok(Date.parse(p.created_at) > 0);
  assert.deepEqual(lnurl.resolutions.at(-1), { name: "alice", amount: 2_100_000, comment: "thanks!" });
  const resolutionsBefore = lnurl.resolutions.length;

  const done = await tickUntil(p.id, "succeeded");
  assert.equal(done.status, "succeeded", JSON.stringify(done));
  assert.equal(done.payment_hash, p.payment_hash, "same invoice, resolved once");
  assert.equal(lnurl.resolutions.length, resolutionsBefore, "the address is not resolved again");
  assert.equal(lnbits.sendsOf(p.payment_hash), 1, "paid once, never re-sent");
  assert.ok(done.preimage);

  // The webhook: first delivery gets a 500, the redelivery a 200.
  let delivered;
  for (let i = 0; i < 40 && !(delivered = (await getPayout(p.id)).json.webhook?.delivered); i++) {
    await new Promise((r) => setTimeout(r, 500));
    await worker.cron();
  }
  const view = (await getPayout(p.id)).json;
  assert.equal(view.webhook.delivered, true, JSON.stringify(view.webhook));
  assert.deepEqual(view.webhook.attempts.map((a) => a.status), [500, 200]);
  const calls = hooks.received;
  assert.equal(calls.length, 2);
  // Every delivery is checked by the `standardwebhooks` reference verifier:
  // a receiver holding either secret of the rotation accepts it, a stranger's does not.
  for (const c of calls) {
    assert.equal(c.verified.current, true, `current secret: ${c.verified.current}`);
    assert.equal(c.verified.previous, true, `previous secret only: ${c.verified.previous}`);
    assert.notEqual(c.verified.stranger, true, "an unrelated secret does not verify");
    const sigs = c.headers["webhook-signature"].split(" ");
    assert.equal(sigs.length, 2, "one signature per secret during a rotation");
    assert.ok(sigs.every((s) => /^v1,[A-Za-z0-9+/]{43}=$/.test(s)), c.headers["webhook-signature"]);
  }
  const event = JSON.parse(calls[1].body);
  assert.equal(event.type, "payout.succeeded");
  assert.equal(event.id, calls[0].headers["webhook-id"], "the same event id on redelivery");
  assert.equal(calls[1].headers["webhook-id"], calls[0].headers["webhook-id"]);
  assert.equal(event.id, `evt_${p.id}_succeeded`);
  assert.equal(event.timestamp, done.completed_at, "when it succeeded, not when it was sent");
  assert.equal(event.data.id, p.id);
  assert.equal(event.data.external_id, "order-77");
  for (const internal of ["backend", "backends_used", "log"]) assert.equal(event.data[internal], undefined, `no ${internal} in a webhook`);
  assert.ok(Math.abs(Number(calls[1].headers["webhook-timestamp"]) - Date.now() / 1000) < 300);
  // Body, id and timestamp are all signed: changing any one fails verification.
  const tampered = [
    { headers: calls[1].headers, body: calls[1].body.replace("succeeded", "failed") },
    { headers: { ...calls[1].headers, "webhook-id": `evt_${p.id}_failed` }, body: calls[1].body },
    { headers: { ...calls[1].headers, "webhook-timestamp": String(Number(calls[1].headers["webhook-timestamp"]) - 1) }, body: calls[1].body },
  ];
  for (const t of tampered) {
    assert.match(String(hooks.verify("current", t)), /No matching signature/);
    assert.match(String(hooks.verify("previous", t)), /No matching signature/);
  }
});

/** A second Worker on the same fake LNbits with payouts on, and `extra` settings. */
const lnbitsWorker = (extra, name) =>
  startWorker(
    {
      LIGHTNING_PROVIDERS: "lnbits",
      LNBITS_URL: lnbits.url,
      LNBITS_INVOICE_KEY: lnbits.key,
      LNBITS_ADMIN_KEY: lnbits.adminKey,
      PAYOUT_API_KEY: KEY,
      ...extra,
    },
    { name },
  );

test("a WEBHOOK_SECRET not written whsec_<base64> is refused, naming the variable and how to make one", async () => {
  const legacy = "legacy-webhook-secret-0123456789";
  const bad = await lnbitsWorker({ WEBHOOK_SECRET: legacy }, "bad-webhook-secret");
  try {
    const inv = signInvoice({ amountMsat: 1_000_000 });
    const res = await bad.request("POST", "/api/payouts", {
      json: { destination: inv.payment_request },
      headers: { ...auth(), "idempotency-key": "bad-secret-1" },
    });
    assert.equal(res.status, 500, res.text);
    assert.equal(res.json.error.code, "configuration_error");
    assert.equal(res.json.error.variable, "WEBHOOK_SECRET");
    assert.match(res.json.error.message, /whsec_\$\(openssl rand -base64 32\)/);
    assert.ok(!res.text.includes(legacy), "the value is never echoed");
  } finally {
    await bad.stop();
  }
});

test("a webhook_url on a deployment without WEBHOOK_SECRET is 403 webhooks_disabled, and nothing is created", async () => {
  const INVOICE_KEY = "invoice-key-for-e2e-0123456789";
  const plain = await lnbitsWorker({ INVOICE_API_KEY: INVOICE_KEY }, "no-webhook-secret");
  try {
    const inv = signInvoice({ amountMsat: 1_000_000 });
    const body = { destination: inv.payment_request, webhook_url: "https://shop.example.com/hooks/payouts" };
    const headers = { ...auth(), "idempotency-key": "no-secret-1" };
    const res = await plain.request("POST", "/api/payouts", { json: body, headers });
    assert.equal(res.status, 403, res.text);
    assert.equal(res.json.error.code, "webhooks_disabled");
    assert.equal(res.json.error.variable, "WEBHOOK_SECRET");
    assert.match(res.json.error.message, /WEBHOOK_SECRET/);
    const list = await plain.request("GET", "/api/payouts", { headers: auth() });
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.json.payouts, [], "nothing was stored");
    // The same request without webhook_url goes through with the same key:
    // the refusal did not take it.
    const ok = await plain.request("POST", "/api/payouts", { json: { destination: inv.payment_request }, headers });
    assert.ok([201, 202].includes(ok.status), ok.text);
    const invoiceHeaders = { authorization: `Bearer ${INVOICE_KEY}`, "idempotency-key": "inv-no-secret-1" };
    const invoice = await plain.createInvoice(
      { amount: 1000, webhook_url: "https://shop.example.com/hooks/invoices" },
      { headers: invoiceHeaders },
    );
    assert.equal(invoice.status, 403, invoice.text);
    assert.equal(invoice.json.error.code, "webhooks_disabled");
    assert.equal(invoice.json.error.variable, "WEBHOOK_SECRET");
    // The key was not taken: another body under it is a new invoice, not 409.
    const fresh = await plain.createInvoice({ amount: 1000 }, { headers: invoiceHeaders });
    assert.equal(fresh.status, 201, fresh.text);
    assert.equal(fresh.headers.get("idempotent-replayed"), null);
  } finally {
    await plain.stop();
  }
});

test("a backend that pays and then answers 520 is never paid twice (BOLT11, many wake-ups)", async () => {
  lnbits.payMode = "pay_then_520";
  const inv = signInvoice({ amountMsat: 5_000_000, expiry: 900 });
  const res = await payout({ destination: inv.payment_request });
  assert.equal(res.status, 202, res.text);
  assert.equal(res.json.amount_sat, 5000);
  for (let i = 0; i < 6; i++) {
    await worker.cron();
    await new Promise((r) => setTimeout(r, 100));
  }
  const done = await tickUntil(res.json.id, "succeeded");
  assert.equal(done.status, "succeeded");
  assert.equal(lnbits.sendsOf(inv.payment_hash), 1);
});

test("a backend that answers 520 without paying is paid exactly once after the retry", async () => {
  lnbits.payMode = "520_no_pay_once";
  const inv = signInvoice({ amountMsat: 3_000_000, expiry: 900 });
  const res = await payout({ destination: inv.payment_request, amount_sat: 3000 });
  assert.equal(res.status, 202, res.text);
  assert.equal(res.json.status, "unknown");
  const done = await tickUntil(res.json.id, "succeeded");
  assert.equal(done.status, "succeeded", JSON.stringify(done.log));
  assert.equal(lnbits.sendsOf(inv.payment_hash), 2, "re-sent only after the lookup found nothing");
  assert.equal(lnbits.payments.get(inv.payment_hash).status, "success");
  assert.ok(done.log.some((l) => /unpaid for now/.test(l.event)), JSON.stringify(done.log));
});

test("an address payout whose invoice failed keeps its invoice until it expired: never a second invoice while the first can pay", async () => {
  lnbits.payMode = "json_failed";
  const resolutionsBefore = lnurl.resolutions.length;
  const res = await payout({ destination: lnurl.address("bob"), amount_sat: 1000 });
  assert.equal(res.status, 202, res.text);
  assert.equal(res.json.status, "queued");
  const first = res.json.payment_hash;
  let p;
  for (let i = 0; i < 12; i++) {
    await new Promise((r) => setTimeout(r, 250));
    await worker.cron();
    p = (await getPayout(res.json.id)).json;
  }
  // The "failed" was checked with a lookup. LNbits never pays a hash that
  // failed (it refuses it for good), so it is not sent again; no new
  // invoice while the first has not expired: it is looked up until then.
  assert.equal(p.status, "queued", JSON.stringify(p.log));
  assert.equal(p.payment_hash, first);
  assert.deepEqual(p.previous_payment_hashes, []);
  assert.equal(lnurl.resolutions.length, resolutionsBefore + 1, "resolved once");
  assert.equal(lnbits.sendsOf(first), 1, "a failed LNbits hash is not sent again");
  assert.ok(p.log.some((l) => /this invoice is not sent again: waiting for the invoice to expire/.test(l.event)), JSON.stringify(p.log));
  const invoiceExpiry = Date.parse(p.created_at) + 600_000;
  assert.ok(Date.parse(p.next_attempt_at) <= invoiceExpiry + 300_000, `${p.next_attempt_at}: looked up again before the proof time`);
});

test("an immediate success answers 201; the same Idempotency-Key replays, another body conflicts", async () => {
  const inv = signInvoice({ amountMsat: 1_000_000, expiry: 900 });
  const body = { destination: inv.payment_request, external_id: "x-1" };
  const first = await payout(body, { idem: "replay-1" });
  assert.equal(first.status, 201, first.text);
  assert.equal(first.json.status, "succeeded");
  const again = await payout(body, { idem: "replay-1", key: OLD_KEY });
  assert.equal(again.status, 200, again.text);
  assert.equal(again.headers.get("idempotent-replayed"), "true");
  assert.equal(again.json.id, first.json.id);
  assert.equal(lnbits.sendsOf(inv.payment_hash), 1);
  const conflict = await payout({ ...body, external_id: "x-2" }, { idem: "replay-1" });
  assert.equal(conflict.status, 409, conflict.text);
  assert.equal(conflict.json.error.code, "idempotency_conflict");
  // The same invoice under a new key is refused: one invoice, one payout.
  const reuse = await payout(body, { idem: "replay-2" });
  assert.equal(reuse.status, 409, reuse.text);
  assert.equal(reuse.json.error.code, "invoice_already_used");
  assert.equal(reuse.json.error.payout_id, first.json.id);
  // Concurrent duplicates become one payout.
  const inv2 = signInvoice({ amountMsat: 1_000_000, expiry: 900 });
  const both = await Promise.all([0, 1, 2].map(() => payout({ destination: inv2.payment_request }, { idem: "race-1" })));
  assert.equal(new Set(both.map((r) => r.json.id)).size, 1, both.map((r) => r.text).join("\n"));
  assert.equal(lnbits.sendsOf(inv2.payment_hash), 1);
});

test("keys, validation, limits and SSRF guards answer 4xx JSON and store nothing", async () => {
  const inv = signInvoice({ amountMsat: 1_000_000, expiry: 900 });
  const cases = [
    [payout({ destination: inv.payment_request }, { key: null }), 401, "unauthorized"],
    [payout({ destination: inv.payment_request }, { key: "wrong-key-wrong-key" }), 401, "unauthorized"],
    [payout({ destination: inv.payment_request }, { idem: null }), 400, "missing_idempotency_key"],
    [payout({ destination: "not a destination" }), 400, "invalid_destination"],
    [payout({ destination: lnurl.address("carol") }), 400, "invalid_destination"],
    [payout({ destination: inv.payment_request, amount_sat: 999 }), 422, "invalid_invoice"],
    [payout({ destination: corruptAt(signInvoice({ amountMsat: 1000, expiry: 900 }).payment_request, -1) }), 422, "invalid_invoice"],
    [payout({ destination: lnurl.address("dave"), amount_sat: 60000 }), 422, "limit_exceeded"],
    [payout({ destination: "eve@10.0.0.1", amount_sat: 10 }), 400, "destination_not_allowed"],
    [payout({ destination: "eve@localhost", amount_sat: 10 }), 400, "destination_not_allowed"],
    [payout({ destination: inv.payment_request, webhook_url: "http://example.com/hook" }), 400, "invalid_webhook_url"],
    [payout({ destination: inv.payment_request, amount_sat: "1000" }), 400, "invalid_amount"],
    [worker.request("POST", "/api/payouts", { body: "{", headers: { ...auth(), "idempotency-key": "j", "content-type": "application/json" } }), 400, "invalid_json"],
  ];
  for (const [p, status, code] of cases) {
    const res = await p;
    assert.equal(res.status, status, res.text);
    assert.equal(res.json?.error?.code, code, res.text);
  }
  lnurl.mode = "inflate";
  let res = await payout({ destination: lnurl.address("mallory"), amount_sat: 100 });
  assert.equal(res.status, 422, res.text);
  assert.equal(res.json.error.code, "lnurl_error");
  assert.match(res.json.error.message, /amount/);
  lnurl.mode = "redirect";
  res = await payout({ destination: lnurl.address("mallory"), amount_sat: 100 });
  assert.equal(res.status, 422, res.text);
  assert.match(res.json.error.message, /redirect/);
  lnurl.mode = "error";
  res = await payout({ destination: lnurl.address("nobody"), amount_sat: 100 });
  assert.equal(res.json.error.code, "lnurl_error");
  assert.match(res.json.error.message, /no such user/);
  assert.equal(lnbits.sendsOf(inv.payment_hash), 0, "nothing was paid");
  const missing = await getPayout("po_000000000000000000000000");
  assert.equal(missing.status, 404);
  assert.equal(missing.json.error.code, "payout_not_found");
});

test("listing with status filter and cursor; retry of a dead letter needs the admin key", async () => {
  // The backend refuses the key: nothing is ever sent, so the payout may end failed.
  const adminKey = lnbits.adminKey;
  lnbits.adminKey = "rotated-elsewhere";
  const res = await payout({ destination: lnurl.address("frank"), amount_sat: 1500 });
  const failed = await tickUntil(res.json.id, "failed");
  lnbits.adminKey = adminKey;
  assert.equal(failed.status, "failed", JSON.stringify(failed.log));
  assert.match(failed.failure_reason, /not sent after 2 attempts: credentials refused/);

  const list = await worker.request("GET", "/api/payouts?status=failed&limit=1", { headers: auth() });
  assert.equal(list.status, 200, list.text);
  assert.equal(list.json.payouts.length, 1);
  assert.ok(list.json.payouts.every((p) => p.status === "failed"));
  const all = await worker.request("GET", "/api/payouts?limit=2", { headers: auth() });
  assert.ok(all.json.next_cursor);
  const next = await worker.request("GET", `/api/payouts?limit=2&cursor=${all.json.next_cursor}`, { headers: auth() });
  assert.equal(next.status, 200);
  const ids = new Set([...all.json.payouts, ...next.json.payouts].map((p) => p.id));
  assert.equal(ids.size, all.json.payouts.length + next.json.payouts.length, "pages do not overlap");
  for (const q of ["?status=paid", "?limit=0", "?limit=101", "?cursor=!!"]) {
    const bad = await worker.request("GET", `/api/payouts${q}`, { headers: auth() });
    assert.equal(bad.status, 400, `${q}: ${bad.text}`);
  }
  assert.equal((await worker.request("GET", "/api/payouts")).status, 401);

  let retry = await worker.request("POST", `/api/payouts/${failed.id}/retry`, { headers: auth() });
  assert.equal(retry.status, 401, "the client key is not the admin key");
  lnbits.payMode = "ok";
  retry = await worker.request("POST", `/api/payouts/${failed.id}/retry`, { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.ok([201, 202].includes(retry.status), retry.text);
  const done = await tickUntil(failed.id, "succeeded");
  assert.equal(done.status, "succeeded", JSON.stringify(done.log));
  // Its hash never reached the backend, so it is sent again at once.
  const client = (await worker.request("GET", `/api/payouts/${failed.id}`, { headers: auth() })).json;
  assert.equal(client.log, undefined, "the client's view has no internal log");
  const events = done.log.map((l) => l.event);
  const reopened = events.findIndex((e) => /re-opened/.test(e));
  const resent = events.findIndex((e, i) => i > reopened && /sending attempt/.test(e));
  assert.ok(reopened >= 0 && resent > reopened, JSON.stringify(events));
  assert.equal(lnbits.sendsOf(done.payment_hash), 1, "paid once");
  const again = await worker.request("POST", `/api/payouts/${failed.id}/retry`, { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(again.status, 409, "only a failed payout can be retried");
  assert.equal(again.json.error.code, "retry_not_allowed");
});

test("health reports queue depth and the oldest open payout", async () => {
  lnbits.payMode = "timeout_after_pay";
  const inv = signInvoice({ amountMsat: 1_000_000, expiry: 900 });
  const res = await payout({ destination: inv.payment_request });
  assert.equal(res.json.status, "unknown", res.text);
  const h = await worker.request("GET", "/api/lightning/health", { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.ok(h.json.queue.depth >= 1, h.text);
  assert.ok(Date.parse(h.json.queue.oldest_created_at) > 0);
  lnbits.payMode = "ok";
  const done = await tickUntil(res.json.id, "succeeded");
  assert.equal(done.status, "succeeded");
  assert.equal(lnbits.sendsOf(inv.payment_hash), 1);
});
