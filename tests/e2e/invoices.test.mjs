// End-to-end: the built Worker in workerd, creating and checking invoices
// through three fake providers that fail in the ways real ones do.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { startFakes, stopAll } from "./support/fake-provider.mjs";
import { startWorker, providerVars } from "./support/worker.mjs";
import { decodeInvoice } from "./support/invoice.mjs";

let fakes, worker;

before(async () => {
  fakes = await startFakes();
  worker = await startWorker(
    {
      ...providerVars(fakes),
      LIGHTNING_FALLBACK_MAX_RETRIES: "1",
      LIGHTNING_FALLBACK_RETRY_DELAY: "50",
      LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS: "1500",
      LIGHTNING_FALLBACK_TOTAL_TIMEOUT_MS: "20000",
      // Failover is under test here, not the breaker (see breaker.test.mjs).
      BREAKER_FAILURE_THRESHOLD: "100",
      // Many invoices are watched at once here: a budget that never defers a
      // check's lookup, so each check sees the fault injected just before it.
      INVOICE_WATCH_LOOKUPS_PER_MINUTE: "10000",
      INVOICE_MAX_SATS: "500000",
      CORS_ALLOWED_ORIGINS: "https://shop.example",
      SERVER_TIMING: "true",
    },
    { name: "invoices" },
  );
});

after(() => stopAll(worker, fakes));

beforeEach(async () => {
  for (const f of Object.values(fakes)) {
    await f.heal();
    f.calls.length = 0;
  }
});

test("the first provider serves a verified invoice, and check-invoice follows it to paid", async () => {
  const res = await worker.createInvoice({ amount: 1000, description: "test" });
  assert.equal(res.status, 201, res.text);
  const inv = res.json;
  assert.equal(inv.provider, "phoenixd");
  assert.equal(inv.amount, 1000);
  assert.match(inv.payment_hash, /^[0-9a-f]{64}$/);
  assert.ok(Date.parse(inv.expires_at) > Date.now());
  assert.deepEqual(inv.attempts.map((a) => [a.provider, a.outcome]), [["phoenixd", "ok"]]);
  const decoded = decodeInvoice(inv.payment_request);
  assert.equal(decoded.amount_msat, 1_000_000);
  assert.equal(decoded.payment_hash, inv.payment_hash);
  assert.equal(decoded.network, "bitcoin");

  let check = await worker.checkInvoice(inv.payment_hash);
  assert.equal(check.status, 200, check.text);
  assert.equal(check.json.status, "pending");
  assert.equal(check.json.provider, "phoenixd");
  // Answered from the invoice watch, which asked the issuer for this check.
  assert.ok(Math.abs(Date.parse(check.json.checked_at) - Date.now()) < 10_000, check.text);

  fakes.phoenixd.settle(inv.payment_hash);
  check = await worker.waitForStatus(inv.payment_hash, "paid");
  assert.equal(check.json.status, "paid");
  assert.ok(Date.parse(check.json.settled_at) > 0, check.text);
  // Once seen paid, the answer comes from the index, even if the provider is down.
  await fakes.phoenixd.fail("http500");
  check = await worker.checkInvoice(inv.payment_hash);
  assert.equal(check.status, 200);
  assert.equal(check.json.status, "paid");
});

test("SERVER_TIMING=true: create-invoice says how long each step waited", async () => {
  fakes.phoenixd.latencyMs = 150;
  try {
    const res = await worker.createInvoice({ amount: 1000 });
    assert.equal(res.status, 201, res.text);
    const header = res.headers.get("server-timing");
    assert.ok(header, "no Server-Timing header");
    const steps = Object.fromEntries(
      header.split(",").map((part) => {
        const [name, dur] = part.trim().split(";");
        assert.match(dur, /^dur=\d+$/, header);
        return [name, Number(dur.slice(4))];
      }),
    );
    assert.deepEqual(Object.keys(steps), ["health", "provider", "health-write", "kv", "watch", "total"], header);
    // The provider's own delay is inside its step, and every step inside the total.
    assert.ok(steps.provider >= 150, header);
    assert.ok(steps.total >= steps.provider + Math.max(steps.kv, steps.watch), header);
  } finally {
    fakes.phoenixd.latencyMs = 0;
  }
});

test("failover follows the configured order: HTML 520, refused connection, then LNbits", async () => {
  await fakes.phoenixd.fail("html520");
  await fakes.lnd.fail("refuse");
  const res = await worker.createInvoice({ amount: 2100, description: "failover" });
  assert.equal(res.status, 201, res.text);
  assert.equal(res.json.provider, "lnbits");
  const steps = res.json.attempts.map((a) => `${a.provider}#${a.attempt}:${a.outcome}:${a.code ?? ""}`);
  // A failed attempt starts the next provider at once; the failed one's
  // retries (one each, after a backoff) run alongside and may show up too.
  assert.equal(steps[0], "phoenixd#1:error:upstream_520", res.text);
  assert.ok(steps.includes("lnd#1:error:network_error"), res.text);
  assert.deepEqual(steps.filter((s) => s.includes(":ok:")), ["lnbits#1:ok:"], res.text);
  assert.ok(steps.every((s) => /#[12]:/.test(s)), `at most one retry each: ${res.text}`);
  const lnbits = res.json.attempts.find((a) => a.provider === "lnbits");
  assert.ok(lnbits.started_ms < 1500, `lnbits started after ${lnbits.started_ms} ms: ${res.text}`);
  assert.match(res.json.attempts[0].message, /HTML error page/);
  assert.ok(fakes.phoenixd.count("POST") <= 2, "at most one retry on a transient error");
  // The invoice is checked with the provider that issued it, and only there.
  const check = await worker.checkInvoice(res.json.payment_hash);
  assert.equal(check.json.provider, "lnbits");
  assert.equal(fakes.phoenixd.count("GET"), 0);
});

test("a hanging provider is cut off by the attempt timeout", async () => {
  await fakes.phoenixd.fail("hang");
  const t0 = Date.now();
  const res = await worker.createInvoice({ amount: 300 });
  assert.equal(res.status, 201, res.text);
  assert.equal(res.json.provider, "lnd");
  // phoenixd's budget and hedge delay are both capped by the 1.5 s attempt
  // timeout: lnd starts then, not after a second timed-out try on phoenixd
  // (hedging itself is covered in hedging.test.mjs).
  const phoenixd = res.json.attempts.filter((a) => a.provider === "phoenixd").map((a) => a.code);
  assert.equal(phoenixd.length, 1, res.text);
  assert.ok(["timeout", "hedged"].includes(phoenixd[0]), res.text);
  assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
});

test("garbage and 4xx answers fail over without retrying the same provider wrongly", async () => {
  await fakes.phoenixd.fail("garbage");
  fakes.lnd.key = "00"; // the Worker's macaroon is now refused: 401
  try {
    const res = await worker.createInvoice({ amount: 300 });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.json.provider, "lnbits");
    const codes = res.json.attempts.map((a) => `${a.provider}:${a.code ?? "ok"}`);
    assert.deepEqual(codes, ["phoenixd:invalid_response", "lnd:unauthorized", "lnbits:ok"]);
  } finally {
    fakes.lnd.key = "0201036c6e6402f801";
  }
});

test("a provider returning an invoice for another network is not trusted", async () => {
  fakes.phoenixd.network = "testnet";
  try {
    const res = await worker.createInvoice({ amount: 300 });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.json.provider, "lnd");
    assert.match(res.json.attempts[0].message, /testnet/);
  } finally {
    fakes.phoenixd.network = "bitcoin";
  }
});

test("when every provider fails the answer is 503 with each provider's error", async () => {
  await fakes.phoenixd.fail("json520");
  await fakes.lnd.fail("http503");
  await fakes.lnbits.fail("refuse");
  const res = await worker.createInvoice({ amount: 1000, description: "doomed" });
  assert.equal(res.status, 503, res.text);
  assert.equal(res.json.error.code, "all_providers_failed");
  assert.deepEqual(res.json.error.providers.map((p) => [p.provider, p.code]), [
    ["phoenixd", "upstream_520"],
    ["lnd", "upstream_error"],
    ["lnbits", "network_error"],
  ]);
  assert.match(res.json.error.providers[0].message, /funding source error/);
  assert.ok(Number(res.headers.get("retry-after")) > 0);
});

test("check-invoice never asks another provider when the issuer is down", async () => {
  await fakes.phoenixd.fail("refuse");
  const created = await worker.createInvoice({ amount: 777 });
  assert.equal(created.json.provider, "lnd", created.text);
  await fakes.phoenixd.heal();
  await fakes.lnd.fail("http500");
  const res = await worker.checkInvoice(created.json.payment_hash);
  assert.equal(res.status, 503, res.text);
  assert.equal(res.json.error.code, "provider_unavailable");
  assert.equal(res.json.error.provider, "lnd");
  assert.ok(res.json.error.retry_after >= 1);
  assert.ok(Number(res.headers.get("retry-after")) >= 1);
  // (The invoice watch keeps looking up earlier tests' invoices at their own issuers.)
  const hash = new RegExp(created.json.payment_hash);
  assert.equal(fakes.phoenixd.count("GET", hash) + fakes.lnbits.count("GET", hash), 0);
});

test("an unknown payment hash is 404", async () => {
  const res = await worker.checkInvoice("ab".repeat(32));
  assert.equal(res.status, 404);
  assert.equal(res.json.error.code, "invoice_not_found");
});

test("malformed input gets a 4xx JSON error with a stable code, never a 5xx", async () => {
  const cases = [
    [{ body: "not json", headers: { "content-type": "application/json" } }, 400, "invalid_json"],
    [{ body: "[]", headers: { "content-type": "application/json" } }, 400, "invalid_json"],
    [{ json: {} }, 400, "invalid_amount"],
    [{ json: { amount: "1000" } }, 400, "invalid_amount"],
    [{ json: { amount: -1 } }, 400, "invalid_amount"],
    [{ json: { amount: 0 } }, 400, "invalid_amount"],
    [{ json: { amount: 1.5 } }, 400, "invalid_amount"],
    [{ json: { amount: 500001 } }, 400, "amount_too_large"],
    [{ json: { amount: 10, description: { x: 1 } } }, 400, "invalid_description"],
    [{ json: { amount: 10, description: "é".repeat(400) } }, 400, "invalid_description"],
    [{ json: { amount: 10, description_hash: "xyz" } }, 400, "invalid_description_hash"],
    [{ json: { amount: 10, expiry: 1 } }, 400, "invalid_expiry"],
    [{ body: "{}", headers: { "content-type": "application/x-www-form-urlencoded" } }, 415, "unsupported_media_type"],
    [{ body: JSON.stringify({ amount: 1, description: "x".repeat(20000) }), headers: { "content-type": "application/json" } }, 413, "payload_too_large"],
  ];
  for (const [opts, status, code] of cases) {
    const res = await worker.request("POST", "/api/create-invoice", opts);
    assert.equal(res.status, status, `${JSON.stringify(opts).slice(0, 80)} -> ${res.text}`);
    assert.equal(res.json?.error?.code, code, res.text);
    assert.ok(res.json.error.message.length > 0);
  }
  for (const q of ["", "?payment_hash=", "?payment_hash=xyz", `?payment_hash=${"g".repeat(64)}`, "?payment_hash=%00"]) {
    const res = await worker.request("GET", `/api/check-invoice${q}`);
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.error.code, "invalid_payment_hash");
  }
  const notFound = await worker.request("GET", "/api/nope");
  assert.equal(notFound.status, 404);
  assert.equal(notFound.json.error.code, "not_found");
  const wrong = await worker.request("GET", "/api/create-invoice");
  assert.equal(wrong.status, 405);
  assert.equal(wrong.json.error.code, "method_not_allowed");
  assert.equal(wrong.headers.get("allow"), "POST, OPTIONS");
  assert.equal(fakes.phoenixd.count("POST"), 0, "no bad request reached a provider");
});

test("CORS: listed origins get headers and a preflight, others do not", async () => {
  const pre = await worker.request("OPTIONS", "/api/create-invoice", {
    headers: { origin: "https://shop.example", "access-control-request-method": "POST" },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), "https://shop.example");
  assert.match(pre.headers.get("access-control-allow-methods"), /POST/);
  assert.match(pre.headers.get("access-control-allow-headers"), /content-type/);
  const ok = await worker.createInvoice({ amount: 5 }, { headers: { origin: "https://shop.example" } });
  assert.equal(ok.headers.get("access-control-allow-origin"), "https://shop.example");
  const other = await worker.createInvoice({ amount: 5 }, { headers: { origin: "https://evil.example" } });
  assert.equal(other.headers.get("access-control-allow-origin"), null);
});

test("an invalid configuration answers with a JSON error naming the variable", async () => {
  const bad = await startWorker({ LIGHTNING_PROVIDERS: "phoenixd,lnd", PHOENIXD_URL: "http://127.0.0.1:9", PHOENIXD_PASSWORD: "k" }, { name: "bad-config" });
  try {
    const res = await bad.createInvoice({ amount: 10 });
    assert.equal(res.status, 500, res.text);
    assert.equal(res.json.error.code, "configuration_error");
    assert.equal(res.json.error.variable, "LND_REST_URL");
    assert.match(res.json.error.message, /LND_REST_URL/);
    assert.equal((await bad.request("GET", "/nope")).status, 404, "unknown routes are still 404");
  } finally {
    await bad.stop();
  }
});
