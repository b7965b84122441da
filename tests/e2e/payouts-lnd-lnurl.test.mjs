// End-to-end, through the Worker in workerd: LND payout lookups read only
// the first line of LND's track stream (the current state) and cancel the
// rest, and hostile LNURL servers are refused with a 4xx before anything is
// paid: a 10 MB chunked answer, an invoice that expires in 5 s, a callback
// URL carrying credentials on an allow-listed host.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { startFakeProvider } from "./support/fake-provider.mjs";
import { startLnurlServer } from "./support/lnurl-server.mjs";
import { startWorker } from "./support/worker.mjs";
import { signInvoice } from "./support/invoice.mjs";

const KEY = "payout-key-lnd-e2e-0123456789";
let lnd, lnurl, worker;
let seq = 0;

before(async () => {
  lnd = await startFakeProvider("lnd");
  lnurl = await startLnurlServer();
  worker = await startWorker(
    {
      LIGHTNING_PROVIDERS: "lnd",
      LND_REST_URL: lnd.url,
      LND_ADMIN_MACAROON: lnd.key,
      PAYOUT_PROVIDER: "lnd",
      PAYOUT_API_KEY: KEY,
      LNURL_ALLOW_HTTP_HOSTS: "127.0.0.1",
      PAYOUT_PAY_TIMEOUT_MS: "1500",
      PAYOUT_LOOKUP_BASE_MS: "200",
      PAYOUT_RETRY_BASE_MS: "200",
      PAYOUT_NOT_FOUND_GRACE_MS: "0",
      PAYOUT_MAX_SATS: "50000",
    },
    { name: "payouts-lnd" },
  );
});

after(async () => {
  await worker?.stop();
  await lnd?.stop();
  await lnurl?.stop();
});

beforeEach(() => {
  lnd.lndPayMode = "ok";
  lnurl.mode = "ok";
});

const auth = { authorization: `Bearer ${KEY}` };
const payout = (body) =>
  worker.request("POST", "/api/payouts", { json: body, headers: { ...auth, "idempotency-key": `lnd-${++seq}` } });
const getPayout = (id) => worker.request("GET", `/api/payouts/${id}`, { headers: auth });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("an in-flight LND payment is looked up as pending at once, then succeeds, paid once", async () => {
  lnd.lndPayMode = "in_flight";
  const inv = signInvoice({ amountMsat: 1_000_000 });
  const res = await payout({ destination: inv.payment_request });
  assert.equal(res.status, 202, res.text);
  assert.equal(res.json.status, "unknown", "a send still in flight at the pay timeout is unknown");

  // Each wake-up looks the payment up. LND keeps the track stream open while
  // the payment is in flight; the first line says IN_FLIGHT and the Worker
  // stops there instead of waiting out its 10 s lookup timeout.
  const tracksBefore = lnd.count("GET", /^\/v2\/router\/track\//);
  for (let i = 0; i < 3; i++) {
    await sleep(300);
    const t0 = Date.now();
    await worker.cron();
    assert.ok(Date.now() - t0 < 5_000, `a wake-up took ${Date.now() - t0} ms`);
  }
  const tracks = lnd.calls.filter((c) => c.method === "GET" && c.path.startsWith("/v2/router/track/"));
  assert.ok(tracks.length > tracksBefore, "the payment was looked up");
  assert.ok(tracks.every((c) => !c.path.includes("no_inflight_updates")), JSON.stringify(tracks));
  const p = (await getPayout(res.json.id)).json;
  assert.notEqual(p.status, "failed");
  assert.notEqual(p.status, "succeeded");
  // The Worker cancelled every stream it stopped reading (track and send).
  await sleep(500);
  assert.equal(lnd.hanging.size, 0, "open LND streams left behind by the Worker");

  lnd.lndFinish(inv.payment_hash, "SUCCEEDED");
  let done;
  for (let i = 0; i < 30; i++) {
    done = (await getPayout(res.json.id)).json;
    if (done.status === "succeeded") break;
    await sleep(250);
    await worker.cron();
  }
  assert.equal(done.status, "succeeded", JSON.stringify(done));
  assert.equal(lnd.lndPayments.get(inv.payment_hash).sends, 1, "sent exactly once");
});

test("an LNURL callback streaming 10 MB without a Content-Length is refused while streaming", async () => {
  lnurl.mode = "huge";
  const t0 = Date.now();
  const res = await payout({ destination: lnurl.address("bob"), amount_sat: 21 });
  assert.equal(res.status >= 400 && res.status < 500, true, res.text);
  assert.equal(res.json.error.code, "lnurl_error", res.text);
  assert.match(res.text, /too large/);
  // The Worker stopped reading and closed the connection before the end.
  await Promise.race([lnurl.hugeClosed, sleep(5_000)]);
  assert.ok(lnurl.hugeBytesSent < 10 * 1024 * 1024, `the server wrote ${lnurl.hugeBytesSent} bytes`);
  console.log(`# huge body: refused in ${Date.now() - t0} ms after ${lnurl.hugeBytesSent} bytes were written`);
});

test("an invoice that expires in 5 s is refused with lnurl_error", async () => {
  lnurl.mode = "short_expiry";
  const res = await payout({ destination: lnurl.address("carol"), amount_sat: 21 });
  assert.equal(res.status >= 400 && res.status < 500, true, res.text);
  assert.equal(res.json.error.code, "lnurl_error", res.text);
  assert.match(res.text, /expires in \d+ s, too soon to pay safely/);
});

test("a callback URL with credentials is refused even on an allow-listed host", async () => {
  lnurl.mode = "creds";
  const before = lnurl.resolutions.length;
  const res = await payout({ destination: lnurl.address("dave"), amount_sat: 21 });
  assert.equal(res.status, 400, res.text);
  assert.equal(res.json.error.code, "destination_not_allowed", res.text);
  assert.match(res.text, /credentials/);
  assert.equal(lnurl.resolutions.length, before, "the callback was never called");
});
