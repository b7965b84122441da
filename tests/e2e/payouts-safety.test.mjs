// Payout safety at the edge, in workerd: a payout stays on the backend it
// was sent through when the configuration changes underneath it, and a
// runtime killed in the middle of a send costs seconds, not minutes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { startFakeProvider } from "./support/fake-provider.mjs";
import { signInvoice } from "./support/invoice.mjs";
import { startWorker } from "./support/worker.mjs";

const KEY = "payout-key-safety-0123456789";
const ADMIN = "admin-key-safety-0123456789";
let a, b, worker;

const vars = (lnbits) => ({
  LIGHTNING_PROVIDERS: "lnbits",
  LNBITS_URL: lnbits.url,
  LNBITS_INVOICE_KEY: lnbits.key,
  LNBITS_ADMIN_KEY: lnbits.adminKey,
  PAYOUT_API_KEY: KEY,
  PAYOUT_LOOKUP_BASE_MS: "200",
  PAYOUT_RETRY_BASE_MS: "200",
  PAYOUT_NOT_FOUND_GRACE_MS: "0",
  PAYOUT_PAY_TIMEOUT_MS: "3000",
  STATUS_DETAILS_PUBLIC: "true",
  ADMIN_API_KEY: ADMIN,
});

/** Rewrites the Worker's variables and restarts it on the same storage. */
async function reconfigure(v) {
  const all = { ENVIRONMENT: "development", ...v };
  fs.writeFileSync(path.join(worker.dir, "test.env"), Object.entries(all).map(([k, x]) => `${k}=${x}`).join("\n") + "\n");
  await worker.restart();
}

before(async () => {
  a = await startFakeProvider("lnbits");
  b = await startFakeProvider("lnbits");
  worker = await startWorker(vars(a), { name: "payouts-safety" });
});

after(async () => {
  await worker?.stop();
  await a?.stop();
  await b?.stop();
});

const auth = { authorization: `Bearer ${KEY}` };
const admin = { authorization: `Bearer ${ADMIN}` };
// The admin's view, with the internal log (a client's has none).
const getPayout = async (id) => (await worker.request("GET", `/api/payouts/${id}`, { headers: admin })).json;
const lookupsOf = (fake, hash) => fake.calls.filter((c) => c.method === "GET" && c.path.includes(hash)).length;

test("a payout whose backend is no longer configured waits, visibly, and is never looked up elsewhere", async () => {
  a.payMode = "timeout_after_pay"; // paid, but the gateway only knows "unknown"
  const inv = signInvoice({ amountMsat: 2_000_000, expiry: 900 });
  const res = await worker.request("POST", "/api/payouts", {
    json: { destination: inv.payment_request },
    headers: { ...auth, "idempotency-key": "pinned-1" },
  });
  assert.equal(res.status, 202, res.text);
  assert.equal(res.json.status, "unknown");
  assert.equal(res.json.backend, undefined, "a client is not shown the backend's URL or key fingerprint");
  assert.equal(res.json.log, undefined, "nor the internal log");
  const listed = await worker.request("GET", "/api/payouts?limit=5", { headers: auth });
  assert.ok(listed.json.payouts.every((x) => x.backend === undefined && x.log === undefined), listed.text);
  const full = await worker.request("GET", `/api/payouts/${res.json.id}`, { headers: admin });
  assert.equal(full.status, 200, full.text);
  assert.equal(full.json.backend.url, a.url.toLowerCase().replace(/\/$/, ""));
  assert.match(full.json.backend.key_fingerprint, /^[0-9a-f]{16}$/);
  assert.ok(full.json.log.length > 0);
  assert.ok(!full.text.includes(a.adminKey), "the key itself is never shown");
  a.hanging.forEach((r) => r.destroy());

  // The operator points LNBITS_URL at another LNbits during an outage.
  await reconfigure(vars(b));
  let p;
  for (let i = 0; i < 10; i++) {
    await worker.cron();
    p = await getPayout(res.json.id);
    if (p.blocked) break;
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.equal(p.status, "unknown", JSON.stringify(p.log));
  assert.match(p.blocked?.reason ?? "", /no longer configured/);
  assert.equal(lookupsOf(b, inv.payment_hash), 0, "never looked up on another backend");
  assert.equal(b.sendsOf(inv.payment_hash), 0, "never sent through another backend");
  const health = await worker.request("GET", "/api/lightning/health");
  assert.equal(health.json.queue.waiting_for_backend, 1, health.text);
  assert.equal(health.json.status, "degraded", "money waiting for a backend is not healthy");
  assert.ok(health.json.attention.includes("payouts_waiting_for_backend"), health.text);
  const status = await worker.request("GET", "/status");
  assert.match(status.text, /id="queue-waiting_for_backend"/);
  assert.match(status.text, /data-code="payouts_waiting_for_backend"/);
  const unknown = await worker.request("GET", "/api/payouts?status=unknown", { headers: auth });
  assert.ok(unknown.json.payouts.some((x) => x.id === p.id && x.blocked));

  // Configured again: it finishes through its own backend, paid once.
  await reconfigure(vars(a));
  for (let i = 0; i < 20 && p.status !== "succeeded"; i++) {
    await new Promise((r) => setTimeout(r, 300));
    await worker.cron();
    p = await getPayout(res.json.id);
  }
  assert.equal(p.status, "succeeded", JSON.stringify(p.log));
  assert.equal(p.blocked, undefined);
  assert.equal(a.sendsOf(inv.payment_hash), 1);
});

test("the runtime killed in the middle of a send: the next one looks the hash up within seconds, by itself", async () => {
  a.payMode = "timeout_after_pay";
  const inv = signInvoice({ amountMsat: 3_000_000, expiry: 900 });
  const create = worker
    .request("POST", "/api/payouts", {
      json: { destination: inv.payment_request },
      headers: { ...auth, "idempotency-key": "crash-1" },
    })
    .catch((e) => ({ error: e }));
  // Wait until the pay request reached the backend, then kill everything.
  for (let i = 0; i < 50 && a.sendsOf(inv.payment_hash) === 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(a.sendsOf(inv.payment_hash), 1);
  await worker.crash();
  await create;
  a.hanging.forEach((r) => r.destroy());
  const restartedAt = Date.now();
  await worker.restart();
  // The client retries with the same key: the payout was stored before the send.
  const replay = await worker.request("POST", "/api/payouts", {
    json: { destination: inv.payment_request },
    headers: { ...auth, "idempotency-key": "crash-1" },
  });
  assert.equal(replay.status, 200, replay.text);
  // No cron from here on: only the queue's own alarm may wake it.
  let p = replay.json;
  while (p.status !== "succeeded" && Date.now() - restartedAt < 30_000) {
    await new Promise((r) => setTimeout(r, 500));
    p = await getPayout(replay.json.id);
  }
  const seconds = (Date.now() - restartedAt) / 1000;
  assert.equal(p.status, "succeeded", JSON.stringify(p.log));
  assert.ok(p.log.some((l) => /never reported back/.test(l.event)), JSON.stringify(p.log));
  assert.equal(a.sendsOf(inv.payment_hash), 1, "looked up, never sent again");
  console.log(`# recovered ${seconds.toFixed(1)} s after the restart (pay timeout 3 s)`);
});
