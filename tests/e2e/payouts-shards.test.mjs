// A sharded payout queue in workerd: payouts spread over four Durable
// Objects by id; idempotency, one-invoice-one-payout and listing stay exact
// across shards, and the cron drain clears every shard.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startFakeProvider } from "./support/fake-provider.mjs";
import { signInvoice } from "./support/invoice.mjs";
import { startWorker } from "./support/worker.mjs";
import { startLnurlServer } from "./support/lnurl-server.mjs";
import { createHash } from "node:crypto";

const KEY = "payout-key-shards-0123456789";
const ADMIN = "admin-key-shards-0123456789";
// The queue's figures on health need the admin key (STATUS_DETAILS_PUBLIC is off), and are then fresh.
const asAdmin = { headers: { authorization: `Bearer ${ADMIN}` } };
let lnbits, lnurl, worker;

before(async () => {
  lnbits = await startFakeProvider("lnbits");
  lnurl = await startLnurlServer();
  worker = await startWorker(
    {
      LIGHTNING_PROVIDERS: "lnbits",
      LNBITS_URL: lnbits.url,
      LNBITS_INVOICE_KEY: lnbits.key,
      LNBITS_ADMIN_KEY: lnbits.adminKey,
      PAYOUT_API_KEY: KEY,
      PAYOUT_QUEUE_SHARDS: "4",
      ADMIN_API_KEY: ADMIN,
      PAYOUT_LOOKUP_BASE_MS: "200",
      PAYOUT_RETRY_BASE_MS: "200",
      PAYOUT_NOT_FOUND_GRACE_MS: "0",
      PAYOUT_DAILY_LIMIT_SATS: "400000",
      LNURL_ALLOW_HTTP_HOSTS: "127.0.0.1",
    },
    { name: "payouts-shards" },
  );
});

after(async () => {
  await worker?.stop();
  await lnbits?.stop();
  await lnurl?.stop();
});

// The shard of a key, as crates/gateway/src/payout/{request,shard}.rs place it.
const shardOf = (key, shards = 4) => {
  const id = createHash("sha256").update(`payout:${key}`).digest("hex").slice(0, 24);
  return Number(BigInt(`0x${id.slice(0, 12)}`) % BigInt(shards));
};

const auth = { authorization: `Bearer ${KEY}` };
const pay = (body, idem) => worker.request("POST", "/api/payouts", { json: body, headers: { ...auth, "idempotency-key": idem } });

test("payouts spread over shards, drain on every shard, list and count as one queue", async () => {
  lnbits.payMode = "pay_then_520"; // every payout ends unknown until a lookup
  const invoices = Array.from({ length: 16 }, (_, i) => signInvoice({ amountMsat: (1000 + i) * 1000, expiry: 900 }));
  const created = await Promise.all(invoices.map((inv, i) => pay({ destination: inv.payment_request }, `shard-${i}`)));
  for (const r of created) assert.equal(r.status, 202, r.text);
  const ids = new Set(created.map((r) => r.json.id));
  assert.equal(ids.size, 16);

  // A replay lands on the same shard; the same invoice under another key is refused on any shard.
  const replay = await pay({ destination: invoices[3].payment_request }, "shard-3");
  assert.equal(replay.status, 200);
  assert.equal(replay.json.id, created[3].json.id);
  const again = await pay({ destination: invoices[3].payment_request }, "shard-other-key");
  assert.equal(again.status, 409, again.text);
  assert.equal(again.json.error.code, "invoice_already_used");
  assert.equal(again.json.error.payout_id, created[3].json.id);

  const anonymous = await worker.request("GET", "/api/lightning/health");
  assert.equal(anonymous.json.queue, undefined, "no queue figures without the admin key");
  const health = await worker.request("GET", "/api/lightning/health", asAdmin);
  assert.equal(health.json.queue.shards, 4, health.text);
  const total = Object.values(health.json.queue.by_status).reduce((a, b) => a + b, 0);
  assert.equal(total, 16, "every shard's payouts are counted");

  // One cron wakes every shard; alarms do the rest.
  let open = 16;
  for (let i = 0; i < 30 && open > 0; i++) {
    await worker.cron();
    await new Promise((r) => setTimeout(r, 300));
    open = (await worker.request("GET", "/api/lightning/health", asAdmin)).json.queue.depth;
  }
  assert.equal(open, 0, "every shard drained");
  for (const inv of invoices) assert.equal(lnbits.sendsOf(inv.payment_hash), 1, "paid once each");

  // The listing merges shards newest first, page by page, without overlap.
  const seen = [];
  let cursor = "";
  for (let i = 0; i < 10; i++) {
    const page = await worker.request("GET", `/api/payouts?status=succeeded&limit=5${cursor}`, { headers: auth });
    assert.equal(page.status, 200, page.text);
    seen.push(...page.json.payouts);
    if (!page.json.next_cursor) break;
    cursor = `&cursor=${page.json.next_cursor}`;
  }
  assert.equal(seen.length, 16, JSON.stringify(seen.map((p) => [p.id, p.created_at])));
  assert.equal(new Set(seen.map((p) => p.id)).size, 16);
  const times = seen.map((p) => p.created_at);
  assert.deepEqual(times, [...times].sort().reverse(), "newest first across shards");
  for (const p of created) {
    const one = await worker.request("GET", `/api/payouts/${p.json.id}`, { headers: auth });
    assert.equal(one.json.status, "succeeded");
  }
});

test("an address invoice handed to two payouts on two shards is paid by one", async () => {
  lnbits.payMode = "pay_then_520";
  lnurl.mode = "repeat";
  const keys = [];
  for (let i = 0; keys.length < 2; i++) {
    const k = `addr-${i}`;
    if (!keys.some((o) => shardOf(o) === shardOf(k))) keys.push(k);
  }
  const dest = { destination: lnurl.address("gus"), amount_sat: 777 };
  const first = await pay(dest, keys[0]);
  assert.equal(first.status, 202, first.text);
  const second = await pay(dest, keys[1]);
  assert.equal(second.status, 409, second.text);
  assert.equal(second.json.error.code, "invoice_already_used");
  assert.equal(second.json.error.payout_id, first.json.id);
  for (let i = 0; i < 20; i++) {
    await worker.cron();
    const p = await worker.request("GET", `/api/payouts/${first.json.id}`, { headers: auth });
    if (p.json.status === "succeeded") break;
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.equal(lnbits.sendsOf(first.json.payment_hash), 1, "paid once");
  const refusedId = `po_${createHash("sha256").update(`payout:${keys[1]}`).digest("hex").slice(0, 24)}`;
  const gone = await worker.request("GET", `/api/payouts/${refusedId}`, { headers: auth });
  assert.equal(gone.status, 404, "nothing was stored for the refused payout");
});

test("a shard that has paid nothing through LNbits checks its \"not found\" against another shard's payment", async () => {
  // LNbits' lookups are not trusted to see outgoing payments until they
  // show one the gateway knows was paid (crates/gateway/src/payout/engine/advance.rs,
  // confirm_not_found). A fresh gateway on two shards: nothing is known yet.
  const fresh = await startWorker(
    {
      LIGHTNING_PROVIDERS: "lnbits",
      LNBITS_URL: lnbits.url,
      LNBITS_INVOICE_KEY: lnbits.key,
      LNBITS_ADMIN_KEY: lnbits.adminKey,
      PAYOUT_API_KEY: KEY,
      PAYOUT_QUEUE_SHARDS: "2",
      PAYOUT_LOOKUP_BASE_MS: "200",
      PAYOUT_RETRY_BASE_MS: "200",
      PAYOUT_NOT_FOUND_GRACE_MS: "0",
    },
    { name: "payouts-shards-known-paid" },
  );
  try {
    const keyOn = (shard) => {
      for (let i = 0; ; i++) if (shardOf(`known-${i}`, 2) === shard) return `known-${i}`;
    };
    const payHere = (inv, key) =>
      fresh.request("POST", "/api/payouts", { json: { destination: inv.payment_request }, headers: { ...auth, "idempotency-key": key } });
    const statusOf = async (id) => (await fresh.request("GET", `/api/payouts/${id}`, { headers: auth })).json;
    const drainUntil = async (id, done) => {
      let p;
      for (let i = 0; i < 30; i++) {
        await fresh.cron();
        p = await statusOf(id);
        if (done(p)) break;
        await new Promise((r) => setTimeout(r, 300));
      }
      return p;
    };

    // Shard 1's send never reaches the wallet (an HTML 520); LNbits says "not found".
    lnbits.payMode = "520_no_pay_once";
    const lost = signInvoice({ amountMsat: 4_000_000, expiry: 900 });
    const first = await payHere(lost, keyOn(1));
    assert.equal(first.status, 202, first.text);
    const waiting = await drainUntil(first.json.id, (p) => /may not see outgoing payments/.test(p.last_error ?? ""));
    assert.equal(waiting.status, "unknown", JSON.stringify(waiting));
    assert.match(waiting.last_error, /no payment it made is known yet to check that they do; the other queue shards were asked, 1 of 1 answered/);
    assert.equal(lnbits.sendsOf(lost.payment_hash), 1, "not sent again on an unproven \"not found\"");

    // Shard 0 pays through the same wallet; shard 1 can now check its lookups.
    lnbits.payMode = "ok";
    const paid = signInvoice({ amountMsat: 5_000_000, expiry: 900 });
    const second = await payHere(paid, keyOn(0));
    assert.equal(second.status, 201, second.text); // paid at once
    assert.equal((await drainUntil(second.json.id, (p) => p.status === "succeeded")).status, "succeeded");

    const done = await drainUntil(first.json.id, (p) => p.status === "succeeded");
    assert.equal(done.status, "succeeded", JSON.stringify(done));
    assert.equal(lnbits.sendsOf(lost.payment_hash), 2, "sent again once, after the \"not found\" was proven");
    assert.equal(lnbits.sendsOf(paid.payment_hash), 1);
  } finally {
    await fresh.stop();
  }
});
