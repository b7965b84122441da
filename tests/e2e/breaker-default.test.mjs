// The circuit breaker with its default settings (threshold 3, cooldown 30 s)
// under back-to-back traffic: each request's failure counts, whatever the
// request rate, so the breaker opens on the third failure and the next
// request skips the primary without calling it (issue 15: before, each
// request started from the same stored count and the breaker stayed closed).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startFakes, stopAll } from "./support/fake-provider.mjs";
import { startWorker, providerVars } from "./support/worker.mjs";

let running = [];
after(() => stopAll(...running));

/** phoenixd first, lnd behind it; one try per provider and request. */
async function gateway(name) {
  const fakes = await startFakes();
  const worker = await startWorker(
    {
      ...providerVars(fakes, "phoenixd,lnd"),
      LIGHTNING_FALLBACK_MAX_RETRIES: "0",
      LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS: "1000",
    },
    { name },
  );
  running.push(worker, fakes);
  return { fakes, worker };
}

function logLines(worker) {
  return worker.log
    .replace(/\x1b\[[0-9;]*m/g, "")
    .split("\n")
    .map((l) => l.slice(l.indexOf("{"), l.lastIndexOf("}") + 1))
    .filter((l) => l.startsWith('{"'))
    .flatMap((l) => {
      try {
        return [JSON.parse(l)];
      } catch {
        return [];
      }
    });
}

const phoenixdAttempt = (res) => res.json.attempts.find((a) => a.provider === "phoenixd");

for (const fault of ["refuse", "html520"]) {
  test(`default threshold, ${fault}: the third failing request opens the breaker, the fourth skips phoenixd`, async () => {
    const { fakes, worker } = await gateway(`breaker-default-${fault}`);
    await fakes.phoenixd.fail(fault);
    const outcomes = [];
    for (let i = 0; i < 4; i++) {
      const res = await worker.createInvoice({ amount: 100 + i });
      assert.equal(res.status, 201, res.text);
      assert.equal(res.json.provider, "lnd");
      outcomes.push([phoenixdAttempt(res).outcome, phoenixdAttempt(res).code ?? null]);
    }
    assert.deepEqual(outcomes.slice(0, 3).map((o) => o[0]), ["error", "error", "error"], JSON.stringify(outcomes));
    assert.deepEqual(outcomes[3], ["skipped", "circuit_open"], JSON.stringify(outcomes));
    const opened = logLines(worker).filter((l) => l.event === "breaker" && l.provider === "phoenixd" && l.to === "open");
    assert.equal(opened.length, 1, JSON.stringify(opened));
    assert.equal(opened[0].consecutive_failures, 3);
    // Health shows it open, from KV as any other isolate would read it.
    const health = await worker.request("GET", "/api/lightning/health");
    const svc = health.json.services.find((s) => s.provider === "phoenixd");
    assert.equal(svc.breaker, "open", health.text);
  });
}

test("default threshold, hang: hedged-away timeouts count too; the breaker opens on the third and later requests skip phoenixd", async () => {
  const { fakes, worker } = await gateway("breaker-default-hang");
  // phoenixd answers fast at first: its hedge delay follows that latency.
  for (let i = 0; i < 5; i++) {
    const ok = await worker.createInvoice({ amount: 50 + i });
    assert.equal(ok.json.provider, "phoenixd", ok.text);
  }
  await fakes.phoenixd.fail("hang");
  let skipped = null;
  let tried = 0;
  const started = Date.now();
  for (let i = 0; i < 60 && !skipped; i++) {
    const res = await worker.createInvoice({ amount: 100 + i });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.json.provider, "lnd", "lnd answers while phoenixd hangs");
    const a = phoenixdAttempt(res);
    if (a.code === "circuit_open") skipped = res;
    else tried += 1;
  }
  assert.ok(skipped, "the breaker never opened");
  // Each hang times out 1 s after its request: requests sent within that
  // second still tried phoenixd; none after the third timeout was counted.
  const opened = logLines(worker).filter((l) => l.event === "breaker" && l.provider === "phoenixd" && l.to === "open");
  assert.equal(opened.length, 1, JSON.stringify(opened));
  assert.equal(opened[0].consecutive_failures, 3, JSON.stringify(opened));
  console.log(`# hang: ${tried} requests tried phoenixd before the breaker opened, ${Date.now() - started} ms`);
  const next = await worker.createInvoice({ amount: 999 });
  assert.equal(phoenixdAttempt(next).code, "circuit_open", next.text);
  assert.ok(next.json.attempts.length === 2 && next.json.attempts[1].provider === "lnd");
});
