// Upgrade: the state the previous release wrote (its KV entries and its
// Durable Objects' SQLite) is served and drained by this build. The previous
// release is kept built in tests/upgrade/previous/ (made from its commit by
// tests/upgrade/build-previous.sh; the commit is in COMMIT there). Both run in
// workerd, one after the other, on one local state folder, against one fake
// Core Lightning (CLNRest shapes, see support/fake-provider.mjs), with two
// queue shards so that the invoice claims object and the calls between
// objects are carried across too.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startFakeProvider } from "./support/fake-provider.mjs";
import { startWebhookReceiver } from "./support/webhook-receiver.mjs";
import { startWorker, backendVars } from "./support/worker.mjs";
import { signInvoice, ROOT } from "./support/invoice.mjs";

const PREVIOUS = path.join(ROOT, "tests/upgrade/previous");
const KEY = "payout-key-upgrade-0123456789";
const ADMIN = "admin-key-upgrade-0123456789";
const SECRET = "whsec_" + crypto.randomBytes(32).toString("base64");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let fake, hooks, state, vars;

before(async () => {
  fake = await startFakeProvider("cln");
  hooks = await startWebhookReceiver({ secrets: { current: SECRET } });
  state = fs.mkdtempSync(path.join(os.tmpdir(), "lnfb-upgrade-state-"));
  vars = {
    LIGHTNING_PROVIDERS: "cln",
    ...backendVars(fake),
    PAYOUT_PROVIDER: "cln",
    PAYOUT_API_KEY: KEY,
    ADMIN_API_KEY: ADMIN,
    WEBHOOK_SECRET: SECRET,
    PAYOUT_QUEUE_SHARDS: "2",
    PAYOUT_PAY_TIMEOUT_MS: "1500",
    PAYOUT_LOOKUP_BASE_MS: "200",
    PAYOUT_RETRY_BASE_MS: "200",
    PAYOUT_NOT_FOUND_GRACE_MS: "0",
    PAYOUT_MAX_SATS: "50000",
    LNURL_ALLOW_HTTP_HOSTS: "127.0.0.1",
  };
});

after(async () => {
  await fake?.stop();
  await hooks?.stop();
  if (state) fs.rmSync(state, { recursive: true, force: true });
});

const auth = { authorization: `Bearer ${KEY}` };
const payout = (w, key, body) => w.request("POST", "/api/payouts", { json: body, headers: { ...auth, "idempotency-key": key } });
const getPayout = async (w, id, headers = auth) => (await w.request("GET", `/api/payouts/${id}`, { headers })).json;
/** A payout's id, from its idempotency key (`request::payout_id`). */
const payoutId = (key) => "po_" + crypto.createHash("sha256").update(`payout:${key}`).digest("hex").slice(0, 24);
const listIds = async (w) => (await w.request("GET", "/api/payouts?limit=100", { headers: auth })).json.payouts.map((p) => p.id).sort();

/** What the previous release leaves behind. */
async function writeWithPrevious() {
  // The previous release has no invoice watch: its configuration had neither the binding nor the migration.
  const withoutWatch = (toml) => toml.replace(/\n# The invoice watch[\s\S]*?new_sqlite_classes = \["InvoiceWatch"\]\n/, "\n");
  const old = await startWorker(vars, { name: "upgrade-previous", snapshot: true, build: PREVIOUS, state, editConfig: withoutWatch });
  try {
    const paid = (await old.createInvoice({ amount: 500, description: "upgrade" })).json;
    const open = (await old.createInvoice({ amount: 700 })).json;
    fake.settle(paid.payment_hash);
    assert.equal((await old.checkInvoice(paid.payment_hash)).json.status, "paid");
    const done = [];
    for (let i = 0; i < 4; i++) {
      const inv = signInvoice({ amountMsat: (1000 + i) * 1000, expiry: 900 });
      const body = { destination: inv.payment_request, webhook_url: hooks.url };
      const res = await payout(old, `upgrade-done-${i}`, body);
      assert.equal(res.status, 201, res.text);
      done.push({ key: `upgrade-done-${i}`, body, inv, view: res.json });
    }
    // Sent, then no answer within the pay timeout: unknown, left to the queue.
    fake.payMode = "in_flight";
    const stuckInv = signInvoice({ amountMsat: 1_234_000, expiry: 900 });
    const stuck = await payout(old, "upgrade-stuck", { destination: stuckInv.payment_request, webhook_url: hooks.url });
    assert.equal(stuck.status, 202, stuck.text);
    assert.equal(stuck.json.status, "unknown");
    fake.payMode = "ok";
    assert.equal(await old.cron(), 200);
    // The views as they stand once their webhooks are delivered.
    for (let i = 0; i < 20 && done.some((d) => !hooks.received.some((r) => r.body.includes(d.view.id))); i++) {
      await sleep(250);
      await old.cron();
    }
    for (const d of done) d.view = await getPayout(old, d.view.id);
    const health = await old.request("GET", "/api/lightning/health");
    assert.equal(health.status, 200, health.text);
    return { paid, open, done, stuck: stuck.json, stuckInv, ids: await listIds(old) };
  } finally {
    await old.stop(); // its own folder goes; the state folder stays
  }
}

test("the previous release's invoices, payouts, claims and queue are served and drained by this build", async () => {
  assert.ok(fs.existsSync(path.join(PREVIOUS, "index_bg.wasm.gz")), "run tests/upgrade/build-previous.sh");
  const before = await writeWithPrevious();
  assert.equal(fake.sendsOf(before.stuckInv.payment_hash), 1);
  const now = await startWorker(vars, { name: "upgrade-current", snapshot: true, state });
  try {
    // Invoices: the index the previous release wrote answers, even with the backend's lookups down.
    await fake.fail("http500", "check");
    const paid = await now.checkInvoice(before.paid.payment_hash);
    assert.equal(paid.status, 200, paid.text);
    assert.equal(paid.json.status, "paid");
    await fake.fail("ok", "check");
    const open = await now.checkInvoice(before.open.payment_hash);
    assert.equal(open.status, 200, open.text);
    assert.equal(open.json.status, "pending");
    assert.equal(open.json.provider, "cln");

    // Payouts read back exactly as they were written (the admin's view: a
    // client's no longer shows the backend and the log), and the list holds them all.
    const admin = { authorization: `Bearer ${ADMIN}` };
    for (const d of before.done) assert.deepEqual(await getPayout(now, d.view.id, admin), d.view);
    assert.deepEqual(await listIds(now), before.ids);

    // Idempotency: the same key and body replay the stored payout, nothing is sent.
    for (const d of before.done) {
      const again = await payout(now, d.key, d.body);
      assert.equal(again.status, 200, again.text);
      assert.equal(again.headers.get("idempotent-replayed"), "true");
      assert.equal(again.json.id, d.view.id);
      assert.equal(fake.sendsOf(d.inv.payment_hash), 1);
    }

    // Claims: the invoice the stuck payout holds cannot be paid by another payout.
    const other = await payout(now, "upgrade-other", { destination: before.stuckInv.payment_request });
    assert.equal(other.status, 409, other.text);
    assert.equal(other.json.error.code, "invoice_already_used");

    // The queue: the unknown payout is looked up where it was sent, never sent again,
    // and ends when the backend says so.
    for (let i = 0; i < 3; i++) {
      await now.cron();
      await sleep(300);
    }
    assert.equal((await getPayout(now, before.stuck.id)).status, "unknown");
    assert.ok(fake.calls.some((c) => c.op === "lookup"), "looked up at the backend it was sent through");
    fake.finish(before.stuckInv.payment_hash, true);
    let p;
    for (let i = 0; i < 40 && p?.status !== "succeeded"; i++) {
      await now.cron();
      await sleep(250);
      p = await getPayout(now, before.stuck.id);
    }
    assert.equal(p.status, "succeeded", JSON.stringify(p.log));
    assert.equal(fake.sendsOf(before.stuckInv.payment_hash), 1, "sent once across both versions");
    for (let i = 0; i < 20 && !hooks.received.some((r) => r.body.includes(before.stuck.id)); i++) {
      await now.cron();
      await sleep(250);
    }
    const hook = hooks.received.find((r) => r.body.includes(before.stuck.id) && r.body.includes("succeeded"));
    assert.ok(hook, "the stuck payout's webhook was delivered");
    assert.equal(hook.verified.current, true);

    // And this build takes new work on the same state.
    const inv = signInvoice({ amountMsat: 2_000_000, expiry: 900 });
    const fresh = await payout(now, "upgrade-new", { destination: inv.payment_request });
    assert.equal(fresh.status, 201, fresh.text);
    assert.equal(fresh.json.id, payoutId("upgrade-new"), "the id follows from the key, as the test below relies on");
    const stats = await now.request("GET", "/api/lightning/health");
    assert.equal(stats.status, 200, stats.text);
  } finally {
    await now.stop();
  }
});

test("a changed PAYOUT_QUEUE_SHARDS is refused on the same state, and nothing is stored", async () => {
  // (Runs on the state the test above leaves: payouts placed with 2 shards.)
  const changed = await startWorker({ ...vars, PAYOUT_QUEUE_SHARDS: "4" }, { name: "upgrade-reshard", snapshot: true, state });
  try {
    // Under 4 shards these keys fall on shards 2, 3 and 0: the Worker's check and shard 0's own.
    const refused = [];
    for (const key of ["reshard-a", "reshard-b", "reshard-c"]) {
      const inv = signInvoice({ amountMsat: 3_000_000, expiry: 900 });
      const res = await payout(changed, key, { destination: inv.payment_request });
      assert.ok(res.status >= 400, res.text);
      assert.equal(res.json.error.code, "configuration_error", res.text);
      assert.match(res.json.error.message, /PAYOUT_QUEUE_SHARDS/, res.text);
      assert.match(res.json.error.message, /placed with 2/, res.text);
      refused.push({ key, inv });
    }
    // Nothing stored on the shard each key falls on under 4 (GET asks it directly) ...
    for (const { key } of refused) {
      const res = await changed.request("GET", `/api/payouts/${payoutId(key)}`, { headers: auth });
      assert.equal(res.status, 404, `${key}: ${res.text}`);
    }
    // ... and nothing sent, after the queue's drains had their chance.
    for (let i = 0; i < 3; i++) {
      await changed.cron();
      await sleep(300);
    }
    for (const { key, inv } of refused) assert.equal(fake.sendsOf(inv.payment_hash), 0, `${key}: nothing sent`);
  } finally {
    await changed.stop();
  }
});
