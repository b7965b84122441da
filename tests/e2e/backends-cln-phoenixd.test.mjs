// End-to-end: Core Lightning (CLNRest) and phoenixd through the built Worker
// in workerd, against fakes that follow their documented shapes
// (support/fake-provider.mjs cites the references). The same contract as
// the other backends: invoices created, checked to paid and failed over;
// probes, the deep check and /status; payouts that succeed, that fail
// explicitly (confirmed by a lookup before anything else happens), and
// whose outcome is unknown (a 520 after paying, a 520 without paying, a
// timeout, a payment in flight for a long time) resolved by lookups only,
// each paid exactly once. Also: the retired Alby settings' configuration error.
import { test, before, after, beforeEach, describe } from "node:test";
import assert from "node:assert/strict";
import { startFakeProvider, stopAll } from "./support/fake-provider.mjs";
import { startWorker, providerVars, backendVars } from "./support/worker.mjs";
import { signInvoice } from "./support/invoice.mjs";

const ADMIN = "admin-key-for-e2e-tests-0123456789";
const KEY = "payout-key-cln-phoenixd-0123456789";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe("receiving through cln and phoenixd", () => {
  let fakes, worker;

  before(async () => {
    fakes = { cln: await startFakeProvider("cln"), phoenixd: await startFakeProvider("phoenixd") };
    worker = await startWorker(
      {
        ...providerVars(fakes, "cln,phoenixd"),
        ADMIN_API_KEY: ADMIN,
        LIGHTNING_FALLBACK_MAX_RETRIES: "1",
        LIGHTNING_FALLBACK_RETRY_DELAY: "50",
        LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS: "1500",
        BREAKER_FAILURE_THRESHOLD: "100",
        // Many invoices are watched at once here: a budget that never defers a
        // check's lookup, so each check sees the fault injected just before it.
        INVOICE_WATCH_LOOKUPS_PER_MINUTE: "10000",
      },
      { name: "cln-phoenixd" },
    );
  });

  after(() => stopAll(worker, fakes));

  beforeEach(async () => {
    for (const f of Object.values(fakes)) {
      await f.heal();
      f.synced = true;
      f.calls.length = 0;
    }
  });

  test("cln creates the invoice (amount_msat, a unique label, the rune), check-invoice follows it to paid", async () => {
    const a = await worker.createInvoice({ amount: 1000, description: "cln coffee", expiry: 900 });
    const b = await worker.createInvoice({ amount: 1000, description: "cln coffee", expiry: 900 });
    assert.equal(a.status, 201, a.text);
    assert.equal(b.status, 201, b.text);
    assert.equal(a.json.provider, "cln");
    const creates = fakes.cln.calls.filter((c) => c.op === "create");
    assert.equal(creates.length, 2);
    const bodies = creates.map((c) => JSON.parse(c.body));
    assert.deepEqual(
      { ...bodies[0], label: "-" },
      { amount_msat: 1_000_000, label: "-", description: "cln coffee", expiry: 900 },
    );
    assert.notEqual(bodies[0].label, bodies[1].label, "CLN labels must be unique");
    assert.match(bodies[0].label, /^lightning-fallback-[0-9a-f]{16}$/);
    assert.ok(creates.every((c) => c.method === "POST" && c.headers.rune === fakes.cln.key));

    let check = await worker.checkInvoice(a.json.payment_hash);
    assert.equal(check.status, 200, check.text);
    assert.deepEqual([check.json.status, check.json.provider], ["pending", "cln"]);
    const listed = fakes.cln.calls.filter((c) => c.op === "check").map((c) => JSON.parse(c.body));
    assert.deepEqual(listed, [{ payment_hash: a.json.payment_hash }]);

    fakes.cln.settle(a.json.payment_hash);
    check = await worker.waitForStatus(a.json.payment_hash, "paid");
    assert.equal(check.json.status, "paid", check.text);
    assert.ok(Date.parse(check.json.settled_at) > 0, check.text);
    assert.equal(fakes.phoenixd.calls.length, 0, "phoenixd was never needed");
  });

  test("a cln answering an HTML 520 fails over to phoenixd, which is checked alone", async () => {
    await fakes.cln.fail("html520");
    const res = await worker.createInvoice({ amount: 2100, description: "failover" });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.json.provider, "phoenixd");
    assert.equal(res.json.attempts[0].provider, "cln");
    assert.equal(res.json.attempts[0].code, "upstream_520");
    const create = fakes.phoenixd.calls.find((c) => c.op === "create");
    assert.equal(create.headers["content-type"], "application/x-www-form-urlencoded");
    assert.equal(create.headers.authorization, `Basic ${Buffer.from(`:${fakes.phoenixd.key}`).toString("base64")}`);
    const form = Object.fromEntries(new URLSearchParams(create.body));
    assert.deepEqual(
      { ...form, externalId: "-" },
      { amountSat: "2100", description: "failover", expirySeconds: "3600", externalId: "-" },
    );
    assert.match(new URLSearchParams(create.body).get("externalId"), /^lightning-fallback-[0-9a-f]{16}$/);

    await fakes.cln.heal();
    fakes.cln.calls.length = 0;
    let check = await worker.checkInvoice(res.json.payment_hash);
    assert.deepEqual([check.json.status, check.json.provider], ["pending", "phoenixd"]);
    fakes.phoenixd.settle(res.json.payment_hash);
    check = await worker.waitForStatus(res.json.payment_hash, "paid");
    assert.equal(check.json.status, "paid", check.text);
    // (The watch goes on looking up the earlier test's cln invoices.)
    const aboutThis = fakes.cln.calls.filter((c) => c.path.includes(res.json.payment_hash) || c.body.includes(res.json.payment_hash));
    assert.equal(aboutThis.length, 0, "only the issuer is asked");
  });

  test("refused connections, garbage and a refused rune fail over; every provider failing is 503", async () => {
    await fakes.cln.fail("refuse");
    let res = await worker.createInvoice({ amount: 300 });
    assert.equal(res.json.provider, "phoenixd", res.text);
    assert.equal(res.json.attempts[0].code, "network_error");
    await fakes.cln.heal();

    const rune = fakes.cln.key;
    fakes.cln.key = "another-rune";
    try {
      res = await worker.createInvoice({ amount: 300 });
      assert.equal(res.json.provider, "phoenixd", res.text);
      assert.deepEqual(res.json.attempts.map((a) => `${a.provider}:${a.code ?? "ok"}`), ["cln:unauthorized", "phoenixd:ok"]);
    } finally {
      fakes.cln.key = rune;
    }

    await fakes.cln.fail("garbage");
    await fakes.phoenixd.fail("http503");
    res = await worker.createInvoice({ amount: 300 });
    assert.equal(res.status, 503, res.text);
    assert.deepEqual(res.json.error.providers.map((p) => [p.provider, p.code]), [
      ["cln", "invalid_response"],
      ["phoenixd", "upstream_error"],
    ]);
  });

  test("a description_hash is not sent to cln (it cannot commit to one); phoenixd takes it", async () => {
    const hash = "ab".repeat(32);
    const res = await worker.createInvoice({ amount: 500, description_hash: hash });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.json.provider, "phoenixd");
    assert.equal(fakes.cln.calls.filter((c) => c.op === "create").length, 0, "cln was not called");
    assert.equal(res.json.attempts[0].provider, "cln", res.text);
    assert.equal(res.json.attempts[0].code, "unsupported", res.text);
    const create = fakes.phoenixd.calls.find((c) => c.op === "create");
    assert.equal(new URLSearchParams(create.body).get("descriptionHash"), hash);
    assert.equal(new URLSearchParams(create.body).get("description"), null);
    // A description longer than phoenixd's 128 characters is not sent to it.
    await fakes.cln.fail("http500");
    const long = await worker.createInvoice({ amount: 500, description: "x".repeat(129) });
    assert.equal(long.status, 503, long.text);
    assert.equal(long.json.error.providers.find((p) => p.provider === "phoenixd").code, "unsupported");
    assert.equal(fakes.phoenixd.calls.filter((c) => c.op === "create").length, 1, "phoenixd got only the first");
  });

  test("cron probes cln (POST /v1/getinfo) and phoenixd (GET /getinfo); an unsynced cln is offline", async () => {
    fakes.cln.synced = false;
    assert.equal(await worker.cron(), 200);
    const res = await worker.request("GET", "/api/lightning/health");
    const by = Object.fromEntries(res.json.services.map((s) => [s.provider, s]));
    assert.deepEqual(res.json.services.map((s) => [s.provider, s.name]), [
      ["cln", "Core Lightning (CLNRest)"],
      ["phoenixd", "phoenixd"],
    ]);
    assert.equal(by.cln.status, "offline");
    assert.match(by.cln.lastError, /Still loading latest blocks/);
    assert.equal(by.phoenixd.status, "online");
    assert.equal(res.json.fallback.activeProvider, "phoenixd");
    assert.deepEqual(fakes.cln.calls.filter((c) => c.op === "probe").map((c) => c.method), ["POST"]);
    assert.deepEqual(fakes.phoenixd.calls.filter((c) => c.op === "probe").map((c) => c.method), ["GET"]);
    fakes.cln.synced = true;
    await worker.cron();
    const page = await worker.request("GET", "/status");
    assert.equal(page.status, 200);
    assert.match(page.text, /<tr data-provider="cln" data-status="online">/);
    assert.match(page.text, /<strong>Core Lightning \(CLNRest\)<\/strong>/);
    assert.match(page.text, /<tr data-provider="phoenixd" data-status="online">/);
  });

  test("the deep check reads, writes and looks up on both; cln's failing writes are seen though all its calls are POSTs", async () => {
    let res = await worker.request("GET", "/api/lightning/health?deep=1", { headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(res.status, 200, res.text);
    let deep = Object.fromEntries(res.json.deep.map((d) => [d.provider, d]));
    for (const k of ["cln", "phoenixd"]) {
      assert.deepEqual(deep[k].steps.map((s) => [s.step, s.ok]), [["read", true], ["write", true], ["lookup", true]], JSON.stringify(deep[k]));
    }
    await fakes.cln.fail("html520", "create");
    res = await worker.request("GET", "/api/lightning/health?deep=1", { headers: { authorization: `Bearer ${ADMIN}` } });
    deep = Object.fromEntries(res.json.deep.map((d) => [d.provider, d]));
    assert.deepEqual(deep.cln.steps.map((s) => [s.step, s.ok]), [["read", true], ["write", false]]);
    assert.match(deep.cln.diagnosis, /reads succeed but writes fail/);
    assert.equal(deep.phoenixd.ok, true);
  });
});

/**
 * The payout contract, run against each backend: a payout pinned to it,
 * every send and lookup through its own API.
 */
for (const kind of ["cln", "phoenixd"]) {
  describe(`payouts through ${kind}`, () => {
    let fake, worker;
    let seq = 0;
    const lookups = () => fake.calls.filter((c) => c.op === "lookup").length;

    before(async () => {
      fake = await startFakeProvider(kind);
      worker = await startWorker(
        {
          LIGHTNING_PROVIDERS: kind,
          ...backendVars(fake),
          PAYOUT_PROVIDER: kind,
          PAYOUT_API_KEY: KEY,
          // The admin's view of a payout has its internal log.
          ADMIN_API_KEY: ADMIN,
          PAYOUT_PAY_TIMEOUT_MS: "1500",
          PAYOUT_LOOKUP_BASE_MS: "200",
          PAYOUT_RETRY_BASE_MS: "200",
          PAYOUT_NOT_FOUND_GRACE_MS: "0",
          PAYOUT_MAX_SATS: "50000",
        },
        { name: `payouts-${kind}` },
      );
    });

    after(() => stopAll(worker, fake));

    beforeEach(() => {
      fake.payMode = "ok";
      fake.calls.length = 0;
    });

    const auth = { authorization: `Bearer ${KEY}` };
    const payout = (body) =>
      worker.request("POST", "/api/payouts", { json: body, headers: { ...auth, "idempotency-key": `${kind}-${++seq}` } });
    const getPayout = async (id) => (await worker.request("GET", `/api/payouts/${id}`, { headers: { authorization: `Bearer ${ADMIN}` } })).json;
    async function tickUntil(id, status, ticks = 40) {
      let p;
      for (let i = 0; i < ticks; i++) {
        p = await getPayout(id);
        if (p.status === status) return p;
        await sleep(250);
        await worker.cron();
      }
      return p;
    }

    test(`${kind}: an immediate success answers 201 with the preimage and fee, sent once`, async () => {
      const inv = signInvoice({ amountMsat: 2_000_000, expiry: 900 });
      const res = await payout({ destination: inv.payment_request });
      assert.equal(res.status, 201, res.text);
      assert.equal(res.json.status, "succeeded");
      assert.equal(res.json.provider, kind);
      assert.equal(res.json.preimage, fake.payments.get(inv.payment_hash).preimage);
      assert.equal(res.json.fee_msat, 1000);
      assert.equal(fake.sendsOf(inv.payment_hash), 1);
      const pay = fake.calls.find((c) => c.op === "pay");
      if (kind === "cln") {
        // maxfee: 1 % of 2,000 sat, at least 10 sat, in msat.
        assert.deepEqual(JSON.parse(pay.body), { invstring: inv.payment_request, maxfee: 20_000, retry_for: 60 });
      } else {
        assert.deepEqual(Object.fromEntries(new URLSearchParams(pay.body)), { invoice: inv.payment_request });
      }
    });

    test(`${kind}: paid, then a 520: unknown, resolved by a lookup, never sent again`, async () => {
      fake.payMode = "pay_then_520";
      const inv = signInvoice({ amountMsat: 3_000_000, expiry: 900 });
      const res = await payout({ destination: inv.payment_request });
      assert.equal(res.status, 202, res.text);
      assert.equal(res.json.status, "unknown");
      const done = await tickUntil(res.json.id, "succeeded");
      assert.equal(done.status, "succeeded", JSON.stringify(done.log));
      assert.equal(fake.sendsOf(inv.payment_hash), 1, "paid once, never re-sent");
      assert.ok(lookups() >= 1);
    });

    test(`${kind}: a 520 without paying: the lookup finds nothing, the same invoice is sent again, paid once`, async () => {
      fake.payMode = "520_no_pay_once";
      const inv = signInvoice({ amountMsat: 1_000_000, expiry: 900 });
      const res = await payout({ destination: inv.payment_request });
      assert.equal(res.json.status, "unknown", res.text);
      const done = await tickUntil(res.json.id, "succeeded");
      assert.equal(done.status, "succeeded", JSON.stringify(done.log));
      assert.equal(fake.sendsOf(inv.payment_hash), 2, "re-sent only after the lookup found nothing");
      const ops = fake.calls.map((c) => c.op).filter((o) => o === "pay" || o === "lookup");
      assert.deepEqual(ops.slice(0, 2), ["pay", "lookup"], ops.join(","));
      assert.equal(fake.paidCount() >= 1, true);
    });

    test(`${kind}: an explicit failure is confirmed by a lookup before the payout moves on`, async () => {
      fake.payMode = "json_failed";
      const inv = signInvoice({ amountMsat: 1_500_000, expiry: 900 });
      const res = await payout({ destination: inv.payment_request });
      assert.notEqual(res.json.status, "failed", "not failed on the pay answer alone: " + res.text);
      assert.notEqual(res.json.status, "succeeded", res.text);
      fake.payMode = "ok";
      const done = await tickUntil(res.json.id, "succeeded");
      assert.equal(done.status, "succeeded", JSON.stringify(done.log));
      const ops = fake.calls.map((c) => c.op).filter((o) => o === "pay" || o === "lookup");
      const firstPay = ops.indexOf("pay");
      const secondPay = ops.indexOf("pay", firstPay + 1);
      assert.ok(secondPay > 0 && ops.slice(firstPay + 1, secondPay).includes("lookup"), `a lookup between the sends: ${ops.join(",")}`);
      assert.equal(fake.sendsOf(inv.payment_hash), 2);
      assert.equal(fake.payments.get(inv.payment_hash).status, "success");
    });

    test(`${kind}: a payment in flight stays unknown through many lookups, then succeeds, sent once`, async () => {
      fake.payMode = "in_flight";
      const inv = signInvoice({ amountMsat: 1_200_000, expiry: 900 });
      const res = await payout({ destination: inv.payment_request });
      assert.equal(res.status, 202, res.text);
      assert.equal(res.json.status, "unknown", "no answer within the pay timeout");
      for (let i = 0; i < 4; i++) {
        await sleep(300);
        await worker.cron();
      }
      const mid = await getPayout(res.json.id);
      assert.equal(mid.status, "unknown", JSON.stringify(mid.log));
      assert.ok(lookups() >= 2, `looked up ${lookups()} times`);
      assert.equal(fake.sendsOf(inv.payment_hash), 1, "pending is never a reason to send again");
      fake.finish(inv.payment_hash, true);
      const done = await tickUntil(res.json.id, "succeeded");
      assert.equal(done.status, "succeeded", JSON.stringify(done.log));
      assert.equal(fake.sendsOf(inv.payment_hash), 1);
    });

    test(`${kind}: a timeout after paying is resolved by a lookup`, async () => {
      fake.payMode = "timeout_after_pay";
      const inv = signInvoice({ amountMsat: 1_100_000, expiry: 900 });
      const res = await payout({ destination: inv.payment_request });
      assert.equal(res.json.status, "unknown", res.text);
      const done = await tickUntil(res.json.id, "succeeded");
      assert.equal(done.status, "succeeded", JSON.stringify(done.log));
      assert.equal(fake.sendsOf(inv.payment_hash), 1);
    });
  });
}

test("an old Alby configuration answers configuration_error saying to move to NWC_URL", async () => {
  const w = await startWorker(
    { ALBY_API_KEY: "old-token", LIGHTNING_PROVIDERS: "phoenixd", PHOENIXD_URL: "http://127.0.0.1:9", PHOENIXD_PASSWORD: "k" },
    { name: "alby-config" },
  );
  try {
    const res = await w.createInvoice({ amount: 10 });
    assert.equal(res.status, 500, res.text);
    assert.equal(res.json.error.code, "configuration_error");
    assert.equal(res.json.error.variable, "ALBY_API_KEY");
    assert.match(res.json.error.message, /Nostr Wallet Connect/);
    assert.match(res.json.error.message, /NWC_URL/);
    assert.ok(!res.text.includes("old-token"), "the key is never echoed");
  } finally {
    await w.stop();
  }
});
