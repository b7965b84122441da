// End-to-end: provider health in KV, refreshed by the cron trigger and by
// real requests; the health route, the admin deep check and the status page.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import fs from "node:fs";
import { startFakes, stopAll } from "./support/fake-provider.mjs";
import { startWorker, providerVars } from "./support/worker.mjs";
import { dumpDom, screenshot } from "./support/browser.mjs";
import { ROOT } from "./support/invoice.mjs";

const ADMIN = "admin-key-for-e2e-tests-0123456789";
let fakes, worker;

before(async () => {
  fakes = await startFakes();
  worker = await startWorker(
    {
      ...providerVars(fakes),
      ADMIN_API_KEY: ADMIN,
      LIGHTNING_FALLBACK_MAX_RETRIES: "0",
      LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS: "1000",
      BREAKER_FAILURE_THRESHOLD: "2",
      BREAKER_COOLDOWN_SECS: "1",
    },
    { name: "health" },
  );
});

after(() => stopAll(worker, fakes));

beforeEach(async () => {
  for (const f of Object.values(fakes)) await f.heal();
  fakes.lnd.synced = true;
  await worker.cron();
});

const health = (q = "", headers = {}) => worker.request("GET", `/api/lightning/health${q}`, { headers });
const byProvider = (res) => Object.fromEntries(res.json.services.map((s) => [s.provider, s]));

test("health has the monitored shape and is healthy when every provider answers", async () => {
  const res = await health();
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.status, "healthy");
  assert.ok(!Number.isNaN(Date.parse(res.json.timestamp)));
  assert.deepEqual(res.json.fallback, { isOnline: true, activeProvider: "phoenixd" });
  assert.deepEqual(res.json.services.map((s) => s.provider), ["phoenixd", "lnd", "lnbits"]);
  for (const s of res.json.services) {
    assert.equal(s.status, "online");
    assert.equal(typeof s.name, "string");
    assert.equal(typeof s.latency, "number");
    assert.ok(Date.parse(s.lastCheck) > 0);
    assert.equal(s.breaker, "closed");
    assert.equal(s.consecutiveFailures, 0);
    assert.equal(s.lastError, null);
    assert.ok(s.successRate > 0);
  }
  assert.ok(fakes.phoenixd.count("GET", /^\/getinfo$/) >= 1, "cron probes phoenixd with GET /getinfo");
  assert.ok(fakes.lnd.count("GET", /^\/v1\/getinfo$/) >= 1, "cron probes LND with GET /v1/getinfo");
  assert.ok(fakes.lnbits.count("GET", /^\/api\/v1\/wallet$/) >= 1, "cron probes LNbits with GET /api/v1/wallet");
});

test("cron ticks turn health degraded, then down (503), then healthy again", async () => {
  await fakes.phoenixd.fail("http500");
  await worker.cron();
  let res = await health();
  assert.equal(res.status, 200);
  assert.equal(res.json.status, "degraded");
  assert.equal(byProvider(res).phoenixd.status, "offline");
  assert.match(byProvider(res).phoenixd.lastError, /500/);
  assert.equal(res.json.fallback.activeProvider, "lnd");

  fakes.lnd.synced = false; // LND answers, but is not synced: offline
  await fakes.lnbits.fail("refuse");
  await worker.cron();
  res = await health();
  assert.equal(res.status, 503, res.text);
  assert.equal(res.json.status, "down");
  assert.deepEqual(res.json.fallback, { isOnline: false, activeProvider: null });
  assert.match(byProvider(res).lnd.lastError, /not synced/);

  for (const f of Object.values(fakes)) await f.heal();
  fakes.lnd.synced = true;
  await worker.cron();
  res = await health();
  assert.equal(res.status, 200);
  assert.equal(res.json.status, "healthy");
  assert.equal(byProvider(res).phoenixd.breaker, "closed");
});

test("real requests feed health without waiting for cron", async () => {
  await fakes.phoenixd.fail("html520", "POST");
  const created = await worker.createInvoice({ amount: 100 });
  assert.equal(created.json.provider, "lnd", created.text);
  // Server-Timing is off unless SERVER_TIMING says otherwise (invoices.test.mjs).
  assert.equal(created.headers.get("server-timing"), null);
  // The health write happens after the response: poll briefly.
  let phoenixd;
  for (let i = 0; i < 20; i++) {
    phoenixd = byProvider(await health()).phoenixd;
    if (phoenixd.status === "offline") break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(phoenixd.status, "offline");
  assert.match(phoenixd.lastError, /520/);
});

test("the deep check needs the admin key and finds reads working while writes fail", async () => {
  let res = await health("?deep=1");
  assert.equal(res.status, 401);
  assert.equal(res.json.error.code, "unauthorized");
  res = await health("?deep=1", { authorization: "Bearer wrong" });
  assert.equal(res.status, 401);
  res = await health("?deep=maybe");
  assert.equal(res.status, 400);
  assert.equal(res.json.error.code, "invalid_query");

  await fakes.phoenixd.fail("html520", "POST");
  res = await health("?deep=1", { authorization: `Bearer ${ADMIN}` });
  assert.equal(res.status, 200, res.text);
  const deep = Object.fromEntries(res.json.deep.map((d) => [d.provider, d]));
  assert.deepEqual(deep.phoenixd.steps.map((s) => [s.step, s.ok]), [["read", true], ["write", false]]);
  assert.equal(deep.phoenixd.steps[1].code, "upstream_520");
  assert.match(deep.phoenixd.diagnosis, /reads succeed but writes fail/);
  assert.equal(deep.lnd.ok, true);
  assert.deepEqual(deep.lnd.steps.map((s) => s.step), ["read", "write", "lookup"]);
  assert.equal(byProvider(res).phoenixd.status, "offline", "a failed deep check marks the provider offline");
});

test("the status page shows each provider's state in a real browser", async () => {
  await fakes.lnbits.fail("http500");
  await worker.cron();
  await worker.cron();
  const url = `${worker.base}/status`;
  const res = await worker.request("GET", "/status");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /text\/html/);
  const dom = await dumpDom(url);
  assert.match(dom, /id="overall"[^>]*data-status="degraded"/);
  assert.match(dom, /<tr data-provider="phoenixd" data-status="online">/);
  assert.match(dom, /<tr data-provider="lnbits" data-status="offline">/);
  assert.match(dom, /<strong>phoenixd<\/strong>/);
  assert.match(dom, /<span class="breaker open">open<\/span>/, "two failed probes open LNbits' breaker");
  assert.match(dom, /<rect class="fail"/, "the history chart shows the failed checks");
  assert.match(dom, /id="active">phoenixd</);
  const file = path.join(ROOT, "tests/e2e/artifacts/status.png");
  await screenshot(url, file);
  assert.ok(fs.statSync(file).size > 5000, "screenshot written");
});
