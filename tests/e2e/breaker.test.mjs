// End-to-end: the circuit breaker, shared through KV. A provider that keeps
// failing is skipped without being called; after the cooldown one probe
// goes through and a success closes the breaker again.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startFakes, stopAll } from "./support/fake-provider.mjs";
import { startWorker, providerVars } from "./support/worker.mjs";

let fakes, worker;
const COOLDOWN_SECS = 3;

before(async () => {
  fakes = await startFakes();
  worker = await startWorker(
    {
      ...providerVars(fakes),
      LIGHTNING_FALLBACK_MAX_RETRIES: "1",
      LIGHTNING_FALLBACK_RETRY_DELAY: "10",
      LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS: "1000",
      BREAKER_FAILURE_THRESHOLD: "2",
      BREAKER_COOLDOWN_SECS: String(COOLDOWN_SECS),
    },
    { name: "breaker" },
  );
});

after(() => stopAll(worker, fakes));

test("an open breaker skips the provider at once, and a half-open probe closes it", async () => {
  await fakes.phoenixd.fail("hang");
  // Each request gives the hanging phoenixd one try (its budget is one 1 s
  // timeout, which also caps its hedge delay) before lnd answers.
  for (let i = 1; i <= 2; i++) {
    const res = await worker.createInvoice({ amount: 100 });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.json.provider, "lnd");
    assert.equal(fakes.phoenixd.count("POST"), i);
  }
  const hits = fakes.phoenixd.count("POST");
  assert.equal(hits, 2, "two timeouts open the breaker (threshold 2)");

  // Known down: skipped without a call, so no waiting for its timeout.
  const second = await worker.createInvoice({ amount: 100 });
  assert.equal(second.status, 201, second.text);
  assert.equal(second.json.provider, "lnd");
  assert.equal(fakes.phoenixd.count("POST"), hits, "the open breaker must not call phoenixd");
  assert.deepEqual(
    [second.json.attempts[0].provider, second.json.attempts[0].outcome, second.json.attempts[0].code],
    ["phoenixd", "skipped", "circuit_open"],
  );

  // The provider recovers; after the cooldown one probe is let through.
  await fakes.phoenixd.heal();
  await new Promise((r) => setTimeout(r, COOLDOWN_SECS * 1000 + 500));
  const third = await worker.createInvoice({ amount: 100 });
  assert.equal(third.json.provider, "phoenixd", third.text);
  const fourth = await worker.createInvoice({ amount: 100 });
  assert.equal(fourth.json.provider, "phoenixd", "closed again after the successful probe");
  assert.equal(fourth.json.attempts.length, 1);
});
