// End-to-end: the admin payout actions (cancel, webhook redelivery, the
// attention list) on a two-shard queue in workerd, against a fake LNbits
// whose faults put payouts into queued, sending and unknown states; and the
// security headers of the /status page.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { startFakeProvider } from "./support/fake-provider.mjs";
import { startWebhookReceiver } from "./support/webhook-receiver.mjs";
import { startWorker } from "./support/worker.mjs";
import { signInvoice } from "./support/invoice.mjs";

const KEY = "payout-key-admin-tests-0123456789";
const ADMIN = "admin-key-admin-tests-0123456789";
const SECRET = "whsec_" + crypto.randomBytes(32).toString("base64");
const SHARDS = 2;
let lnbits, hooks, worker;
let seq = 0;

const vars = () => ({
  LIGHTNING_PROVIDERS: "lnbits",
  LNBITS_URL: lnbits.url,
  LNBITS_INVOICE_KEY: lnbits.key,
  LNBITS_ADMIN_KEY: lnbits.adminKey,
  PAYOUT_API_KEY: KEY,
  ADMIN_API_KEY: ADMIN,
  WEBHOOK_SECRET: SECRET,
  LNURL_ALLOW_HTTP_HOSTS: "127.0.0.1", // the webhook receiver is on plain http
  PAYOUT_QUEUE_SHARDS: String(SHARDS),
  // Slow backoffs: a payout stays in the state a test put it in.
  PAYOUT_LOOKUP_BASE_MS: "600000",
  PAYOUT_RETRY_BASE_MS: "600000",
  PAYOUT_NOT_FOUND_GRACE_MS: "0",
  PAYOUT_PAY_TIMEOUT_MS: "3000",
  PAYOUT_MAX_ATTEMPTS: "5",
  PAYOUT_DAILY_LIMIT_SATS: "100000", // 50,000 per shard
});

before(async () => {
  lnbits = await startFakeProvider("lnbits");
  hooks = await startWebhookReceiver({ secrets: { current: SECRET } });
  worker = await startWorker(vars(), { name: "admin", snapshot: true });
});

after(async () => {
  await worker?.stop();
  await lnbits?.stop();
  await hooks?.stop();
});

beforeEach(() => {
  lnbits.payMode = "ok";
});

/** The payout id of an idempotency key (as the gateway derives it) and its shard. */
const idOf = (key) => "po_" + crypto.createHash("sha256").update(`payout:${key}`).digest("hex").slice(0, 24);
const shardOf = (id) => Number(BigInt("0x" + id.slice(3, 15)) % BigInt(SHARDS));
/** A fresh idempotency key whose payout lives on `shard`. */
function keyOn(shard) {
  for (;;) {
    const k = `admin-${++seq}`;
    if (shardOf(idOf(k)) === shard) return k;
  }
}
const admin = { authorization: `Bearer ${ADMIN}` };
const client = { authorization: `Bearer ${KEY}` };
function payout(body, idem = keyOn(seq % SHARDS)) {
  return worker.request("POST", "/api/payouts", { json: body, headers: { ...client, "idempotency-key": idem } });
}
const bolt11 = (sat) => signInvoice({ amountMsat: sat * 1000, expiry: 900 }).payment_request;
const getPayout = async (id) => (await worker.request("GET", `/api/payouts/${id}`, { headers: client })).json;
// The admin's view also shows the backend and the internal log.
const adminView = async (id) => (await worker.request("GET", `/api/payouts/${id}`, { headers: admin })).json;
const cancel = (id, headers = admin) => worker.request("POST", `/api/payouts/${id}/cancel`, { headers });
const redeliver = (id, headers = admin) => worker.request("POST", `/api/payouts/${id}/redeliver-webhook`, { headers });
const attention = (q = "", headers = admin) => worker.request("GET", `/api/payouts/attention${q}`, { headers });
const deliveriesOf = (id) => hooks.received.filter((r) => JSON.parse(r.body).data.id === id);

async function until(fn, what, tries = 60) {
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

// Shared between tests (they run in order).
let cancelled, unknownId, blockedId;

test("cancel: a queued payout that never reached the backend ends failed, its webhook is delivered, its share of the limit is freed", async () => {
  // The backend refuses the key: refused before acting, nothing was sent.
  const adminKey = lnbits.adminKey;
  lnbits.adminKey = "rotated-elsewhere";
  const res = await payout({ destination: bolt11(40_000), webhook_url: hooks.url, external_id: "order-cancel" }, keyOn(1));
  lnbits.adminKey = adminKey;
  assert.equal(res.status, 202, res.text);
  assert.equal(res.json.status, "queued");
  assert.equal(shardOf(res.json.id), 1, "on the second shard: the action is routed to it");
  // 40,000 of this shard's 50,000 are reserved.
  const over = await payout({ destination: bolt11(20_000) }, keyOn(1));
  assert.equal(over.status, 422, over.text);
  assert.equal(over.json.error.code, "limit_exceeded");

  const c = await cancel(res.json.id);
  assert.equal(c.status, 200, c.text);
  assert.equal(c.json.status, "failed");
  assert.equal(c.json.failure_reason, "cancelled by admin");
  assert.ok(c.json.log.some((l) => /failed: cancelled by admin/.test(l.event)), JSON.stringify(c.json.log));
  assert.equal(c.json.webhook.delivered, true, JSON.stringify(c.json.webhook));
  assert.equal(lnbits.sendsOf(res.json.payment_hash), 0, "nothing was ever paid");

  const [d] = deliveriesOf(res.json.id);
  assert.equal(d.verified.current, true, "signed (Standard Webhooks reference verifier)");
  const event = JSON.parse(d.body);
  assert.equal(event.type, "payout.failed");
  assert.equal(event.id, `evt_${res.json.id}_failed`);
  assert.equal(event.data.failure_reason, "cancelled by admin");
  assert.equal(event.data.external_id, "order-cancel");

  // The reservation is released, as for any failed payout.
  const fits = await payout({ destination: bolt11(20_000) }, keyOn(1));
  assert.equal(fits.status, 201, fits.text);

  const again = await cancel(res.json.id);
  assert.equal(again.status, 409, again.text);
  assert.equal(again.json.error.code, "cancel_not_allowed");
  assert.match(again.json.error.message, /already ended failed/);
  cancelled = res.json;
});

test("cancel is refused while sending, unknown, succeeded, or while a sent hash may still pay", async () => {
  // Sending: the backend holds the pay request (it pays, then never answers).
  lnbits.payMode = "timeout_after_pay";
  const key = keyOn(0);
  const id = idOf(key);
  const pending = payout({ destination: bolt11(1_000), webhook_url: hooks.url }, key);
  await until(async () => (await getPayout(id))?.status === "sending", "sending");
  const whileSending = await cancel(id);
  assert.equal(whileSending.status, 409, whileSending.text);
  assert.equal(whileSending.json.error.code, "cancel_not_allowed");
  assert.match(whileSending.json.error.message, /payout is sending: a pay request is in flight/);
  // Unknown: the request timed out after the backend paid.
  const created = await pending;
  assert.equal(created.json.status, "unknown", created.text);
  const whileUnknown = await cancel(id);
  assert.equal(whileUnknown.status, 409, whileUnknown.text);
  assert.match(whileUnknown.json.error.message, /payout is unknown: the backend may have paid it/);
  assert.equal((await getPayout(id)).status, "unknown", "a refusal changes nothing");
  unknownId = id;

  // Queued, but its hash was sent (the backend said "failed"; unconfirmed).
  lnbits.payMode = "json_failed";
  const failedOnce = await payout({ destination: bolt11(1_100) });
  assert.equal(failedOnce.json.status, "queued", failedOnce.text);
  assert.equal(lnbits.sendsOf(failedOnce.json.payment_hash), 1);
  const sentQueued = await cancel(failedOnce.json.id);
  assert.equal(sentQueued.status, 409, sentQueued.text);
  assert.match(sentQueued.json.error.message, /payout is queued: a sent invoice of this payout may still be paid/);

  lnbits.payMode = "ok";
  const paid = await payout({ destination: bolt11(1_200) });
  assert.equal(paid.status, 201, paid.text);
  const afterPaid = await cancel(paid.json.id);
  assert.equal(afterPaid.status, 409);
  assert.match(afterPaid.json.error.message, /already been paid/);

  const missing = await cancel("po_000000000000000000000000");
  assert.equal(missing.status, 404);
  assert.equal(missing.json.error.code, "payout_not_found");
});

test("redeliver-webhook sends the same signed event again now and notes it in the log", async () => {
  const earlier = deliveriesOf(cancelled.id).length;
  const r = await redeliver(cancelled.id);
  assert.equal(r.status, 200, r.text);
  const all = deliveriesOf(cancelled.id);
  assert.equal(all.length, earlier + 1, "delivered within the request");
  const last = all.at(-1);
  assert.equal(last.verified.current, true);
  assert.equal(last.headers["webhook-id"], all[0].headers["webhook-id"], "the same event id: receivers deduplicate");
  assert.equal(JSON.parse(last.body).type, "payout.failed");
  assert.equal(r.json.webhook.attempts.length, earlier + 1);
  assert.ok(r.json.log.some((l) => /webhook evt_\S+_failed redelivery requested by an admin/.test(l.event)), JSON.stringify(r.json.log));

  // No webhook_url: nothing to deliver.
  const plain = await payout({ destination: bolt11(1_300) });
  assert.equal(plain.status, 201, plain.text);
  const none = await redeliver(plain.json.id);
  assert.equal(none.status, 409, none.text);
  assert.equal(none.json.error.code, "no_webhook");
  // Not ended yet: no event.
  const early = await redeliver(unknownId);
  assert.equal(early.status, 409, early.text);
  assert.equal(early.json.error.code, "no_webhook_event");
  assert.match(early.json.error.message, /payout is unknown/);
});

test("attention lists failed and long-unknown payouts across shards, newest first, with a cursor", async () => {
  let r = await attention("?unknown_older_than_secs=0");
  assert.equal(r.status, 200, r.text);
  const byId = new Map(r.json.payouts.map((p) => [p.id, p.attention]));
  assert.deepEqual(byId.get(cancelled.id), ["failed"]);
  assert.deepEqual(byId.get(unknownId), ["unknown_too_long"]);
  assert.ok(new Set([...byId.keys()].map(shardOf)).size === 2, "both shards are listed");
  assert.ok(r.json.payouts.every((p) => p.attention.length > 0));
  assert.ok(!r.json.payouts.some((p) => p.status === "succeeded" || p.status === "queued"), r.text);
  assert.equal(r.json.unknown_older_than_secs, 0);
  const created = r.json.payouts.map((p) => Date.parse(p.created_at));
  assert.deepEqual(created, [...created].sort((a, b) => b - a), "newest first");

  // The default threshold is an hour: the fresh unknown payout is not listed.
  r = await attention();
  assert.equal(r.json.unknown_older_than_secs, 3600);
  assert.ok(!r.json.payouts.some((p) => p.id === unknownId), r.text);

  // One at a time, by cursor, gives the same set.
  const seen = [];
  let cursor = "";
  for (let i = 0; i < 10; i++) {
    const page = await attention(`?unknown_older_than_secs=0&limit=1${cursor}`);
    assert.equal(page.status, 200, page.text);
    seen.push(...page.json.payouts.map((p) => p.id));
    if (!page.json.next_cursor) break;
    cursor = `&cursor=${page.json.next_cursor}`;
  }
  assert.deepEqual(seen, [...byId.keys()]);

  for (const [q, code] of [
    ["?unknown_older_than_secs=-1", "invalid_query"],
    ["?unknown_older_than_secs=abc", "invalid_query"],
    ["?limit=0", "invalid_limit"],
    ["?cursor=!!", "invalid_cursor"],
  ]) {
    const bad = await attention(q);
    assert.equal(bad.status, 400, `${q}: ${bad.text}`);
    assert.equal(bad.json.error.code, code, q);
  }
});

test("every admin route wants the admin key: 401 without it or with another key, 403 where none is configured", async () => {
  const routes = [
    () => ["POST", `/api/payouts/${cancelled.id}/cancel`],
    () => ["POST", `/api/payouts/${cancelled.id}/redeliver-webhook`],
    () => ["GET", "/api/payouts/attention"],
  ];
  for (const r of routes) {
    const [method, path] = r();
    for (const headers of [{}, client, { authorization: "Bearer wrong-wrong-wrong-wrong" }, { authorization: ADMIN }]) {
      const res = await worker.request(method, path, { headers });
      assert.equal(res.status, 401, `${method} ${path} ${JSON.stringify(headers)}: ${res.text}`);
      assert.equal(res.json.error.code, "unauthorized");
      assert.equal(res.headers.get("www-authenticate"), "Bearer");
    }
  }
  const wrongMethod = await worker.request("GET", `/api/payouts/${cancelled.id}/cancel`, { headers: admin });
  assert.equal(wrongMethod.status, 405);
  assert.equal(wrongMethod.headers.get("allow"), "POST, OPTIONS");

  const noAdmin = await startWorker(
    { LIGHTNING_FALLBACK_ENABLE_MOCK: "true", PAYOUT_PROVIDER: "mock", PAYOUT_API_KEY: KEY },
    { name: "admin-disabled", snapshot: true },
  );
  try {
    for (const r of routes) {
      const [method, path] = r();
      const res = await noAdmin.request(method, path, { headers: admin });
      assert.equal(res.status, 403, `${method} ${path}: ${res.text}`);
      assert.equal(res.json.error.code, "admin_disabled");
    }
  } finally {
    await noAdmin.stop();
  }
});

test("/status shows the queue (to the admin) and is served with strict security headers", async () => {
  const anonymous = await worker.request("GET", "/status");
  assert.equal(anonymous.status, 200);
  assert.doesNotMatch(anonymous.text, /<table id="queue">/, "the queue's figures need the admin key");
  assert.match(anonymous.text, /data-code="payouts_failed_recently"/, "why it is degraded is public");
  const wrong = await worker.request("GET", "/status", { headers: { authorization: "Bearer not-the-admin-key-0123456789" } });
  assert.equal(wrong.status, 401, "a wrong key is refused, not served the public page");
  const res = await worker.request("GET", "/status", { headers: admin });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/html/);
  const csp = res.headers.get("content-security-policy");
  assert.match(csp, /^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]{43}='; /, csp);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.match(csp, /base-uri 'none'/);
  assert.doesNotMatch(csp, /unsafe|script-src/);
  // The hash allows exactly the page's one style element, as a browser computes it.
  const styles = [...res.text.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]);
  assert.equal(styles.length, 1);
  const hash = crypto.createHash("sha256").update(styles[0], "utf8").digest("base64");
  assert.ok(csp.includes(`'sha256-${hash}'`), `${csp} vs ${hash}`);
  assert.doesNotMatch(res.text, /<script|\sstyle="/);
  assert.equal(res.headers.get("x-frame-options"), "DENY");
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.equal(res.headers.get("referrer-policy"), "no-referrer");

  // The queue section: depth, unknown, oldest and dead letters.
  const row = /<table id="queue"><thead><tr>(.*?)<\/tr><\/thead>\s*<tbody><tr>(.*?)<\/tr>/s.exec(res.text);
  assert.ok(row, "the queue table is there");
  const heads = [...row[1].matchAll(/<th>(.*?)<\/th>/g)].map((m) => m[1]);
  const cells = [...row[2].matchAll(/<td>(.*?)<\/td>/g)].map((m) => m[1].replace(/<[^>]+>/g, ""));
  const q = Object.fromEntries(heads.map((h, i) => [h, cells[i]]));
  assert.ok(Number(q["Open"]) >= 2, JSON.stringify(q)); // the unknown one and the queued, sent one
  assert.ok(Number(q["Unknown"]) >= 1, JSON.stringify(q));
  assert.ok(Date.parse(q["Oldest open"]) > 0, JSON.stringify(q));
  assert.ok(Number(q["Dead letters"]) >= 1, JSON.stringify(q));

  const json = await worker.request("GET", "/api/lightning/health");
  assert.equal(json.headers.get("x-content-type-options"), "nosniff", "JSON answers are nosniff too");
});

test("a payout whose backend is no longer configured is listed as waiting for it", async () => {
  // A send in the air when the queue dies, then the operator replaces the
  // backend's key: the payout may have been paid there and must wait for it.
  lnbits.payMode = "timeout_after_pay";
  const key = keyOn(1);
  const id = idOf(key);
  const pending = payout({ destination: bolt11(1_400) }, key).catch(() => null);
  await until(async () => (await getPayout(id))?.status === "sending", "sending");
  await worker.crash();
  await pending;
  const dir = worker.dir;
  const oldAdminKey = lnbits.adminKey;
  lnbits.adminKey = "another-wallet-admin-key";
  worker = await startWorker(vars(), { name: "admin", dir, snapshot: true });
  lnbits.adminKey = oldAdminKey;
  const blocked = await until(async () => {
    await worker.cron();
    const p = await getPayout(id);
    return p?.blocked ? p : null;
  }, "blocked", 100);
  assert.equal(blocked.status, "unknown", "recovered from the dead send: unknown, never failed");
  assert.match(blocked.blocked.reason, /no longer configured/);
  const r = await attention();
  assert.equal(r.status, 200, r.text);
  const item = r.json.payouts.find((p) => p.id === id);
  assert.ok(item, r.text);
  assert.deepEqual(item.attention, ["waiting_for_backend"]);
  const refused = await cancel(id);
  assert.equal(refused.status, 409, "it may have been paid: never cancelled");
  blockedId = id;
});

test("a blocked payout resumes at the next cron run once its backend is configured again", async () => {
  // Continues the test above: its payout waits for the LNbits key that was replaced.
  const before = await getPayout(blockedId);
  assert.ok(before.blocked, JSON.stringify(before));
  assert.ok(Date.parse(before.next_status_check_at) > Date.now() + 60_000, `its next check is minutes away: ${before.next_status_check_at}`);
  const dir = worker.dir;
  await worker.crash(); // keeps its state folder
  worker = await startWorker(vars(), { name: "admin", dir, snapshot: true }); // the original key again
  assert.equal(await worker.cron(), 200);
  const p = await adminView(blockedId);
  assert.equal(p.status, "succeeded", JSON.stringify(p.log));
  assert.equal(p.blocked, undefined);
  assert.ok(p.log.some((l) => /configured again/.test(l.event)), JSON.stringify(p.log));
  assert.equal(lnbits.sendsOf(p.payment_hash), 1, "resolved by a lookup, never sent again");
});

test("after WEBHOOK_SECRET is removed, redelivery is 403 webhooks_disabled and records nothing", async () => {
  const before = await adminView(cancelled.id);
  assert.ok(before.webhook.attempts.length > 0, JSON.stringify(before.webhook));
  const received = deliveriesOf(cancelled.id).length;
  const dir = worker.dir;
  await worker.crash(); // keeps its state folder
  const { WEBHOOK_SECRET: _removed, ...withoutSecret } = vars();
  worker = await startWorker(withoutSecret, { name: "admin", dir, snapshot: true });

  const r = await redeliver(cancelled.id);
  assert.equal(r.status, 403, r.text);
  assert.equal(r.json.error.code, "webhooks_disabled");
  assert.equal(r.json.error.variable, "WEBHOOK_SECRET");
  const after = await adminView(cancelled.id);
  assert.deepEqual(after.webhook, before.webhook, "no attempt recorded, no schedule changed");
  assert.deepEqual(after.log, before.log);
  assert.equal(deliveriesOf(cancelled.id).length, received, "nothing sent");

  // An invoice's events likewise (a watched invoice, made on this deployment).
  const inv = await worker.request("POST", "/api/create-invoice", { json: { amount: 1000 } });
  assert.equal(inv.status, 201, inv.text);
  const hash = inv.json.payment_hash;
  const ri = await worker.request("POST", `/api/invoices/${hash}/redeliver-webhook`, { headers: admin });
  assert.equal(ri.status, 403, ri.text);
  assert.equal(ri.json.error.code, "webhooks_disabled");
  // The unknown payout and the unknown invoice are still 404 first.
  const gone = await redeliver("po_000000000000000000000000");
  assert.equal(gone.status, 404, gone.text);
  const unknownInvoice = await worker.request("POST", `/api/invoices/${"ab".repeat(32)}/redeliver-webhook`, { headers: admin });
  assert.equal(unknownInvoice.status, 404, unknownInvoice.text);
});
