// End-to-end: hedged invoice creation with the default timing (5 s attempts,
// a 15 s deadline, hedge delay 250 ms to 2 s). A primary that hangs costs the
// hedge delay, not the deadline: the next provider is started alongside it
// and its invoice wins. The hedged-away attempt runs on after the answer and
// its timeout still reaches health. The sequential baseline is selectable.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startFakes, stopAll } from "./support/fake-provider.mjs";
import { startWorker, providerVars } from "./support/worker.mjs";

let fakes, worker;

before(async () => {
  fakes = await startFakes();
  worker = await startWorker({ ...providerVars(fakes) }, { name: "hedging" });
  // One probe of each provider, so reading health later probes nothing.
  assert.equal(await worker.cron(), 200);
});

after(() => stopAll(worker, fakes));

const service = async (name) => {
  const res = await worker.request("GET", "/api/lightning/health");
  return res.json.services.find((s) => s.provider === name);
};

async function eventually(what, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${worker.log.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function timedCreate(w, label) {
  const t0 = performance.now();
  const res = await w.createInvoice({ amount: 1000, description: label });
  const ms = Math.round(performance.now() - t0);
  console.log(`# ${label}: HTTP ${res.status} from ${res.json?.provider ?? "-"} in ${ms} ms`);
  return { res, ms };
}

test("a hanging primary yields the second provider's invoice after the hedge delay, on the first request", async () => {
  await fakes.phoenixd.fail("hang");
  const { res, ms } = await timedCreate(worker, "hanging primary, no latency history");
  assert.equal(res.status, 201, res.text);
  assert.equal(res.json.provider, "lnd");
  assert.ok(ms < 5000, `took ${ms} ms; the deadline is 15 s`);
  const [phoenixd, lnd, ...rest] = res.json.attempts;
  assert.deepEqual(rest, []);
  assert.deepEqual([phoenixd.provider, phoenixd.attempt, phoenixd.outcome, phoenixd.code], ["phoenixd", 1, "superseded", "hedged"]);
  assert.deepEqual([lnd.provider, lnd.outcome, lnd.hedge], ["lnd", "ok", true]);
  // One probe sample is too few for a p95: the hedge delay follows that
  // sample (a few ms), raised to the floor (250 ms); no sample would mean the cap.
  assert.ok(lnd.started_ms >= 200 && lnd.started_ms < 1000, JSON.stringify(res.json.attempts));
  assert.equal(fakes.phoenixd.count("POST"), 1);
  assert.equal(fakes.lnbits.count("POST"), 0, "lnd answered: no further hedge");

  // The hedged-away attempt ran on to its 5 s timeout after the answer, and
  // that failure reached the shared health record.
  const phoenixdHealth = await eventually(
    "phoenixd's late timeout in health",
    async () => {
      const s = await service("phoenixd");
      return s.consecutiveFailures >= 1 ? s : null;
    },
    15_000,
  );
  assert.match(phoenixdHealth.lastError, /tim/i);
});

test("the hedge delay follows the provider's observed latency", async () => {
  await fakes.phoenixd.heal();
  // Three quick probe successes give phoenixd a latency history (p95 of a few
  // ms), so its hedge delay drops to the floor (250 ms).
  for (let i = 0; i < 3; i++) assert.equal(await worker.cron(), 200);
  assert.equal((await service("phoenixd")).status, "online");
  await fakes.phoenixd.fail("hang");
  const { res, ms } = await timedCreate(worker, "hanging primary, known latency");
  assert.equal(res.status, 201, res.text);
  assert.equal(res.json.provider, "lnd");
  const lnd = res.json.attempts.find((a) => a.provider === "lnd");
  assert.equal(lnd.hedge, true);
  assert.ok(lnd.started_ms >= 200 && lnd.started_ms < 1000, JSON.stringify(res.json.attempts));
  assert.ok(ms < 2000, `took ${ms} ms`);
});

test("LIGHTNING_FALLBACK_STRATEGY=sequential keeps the original engine as a baseline", async () => {
  const seq = await startWorker(
    {
      ...providerVars(fakes),
      LIGHTNING_FALLBACK_STRATEGY: "sequential",
      LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS: "1000",
      LIGHTNING_FALLBACK_RETRY_DELAY: "200",
    },
    { name: "sequential" },
  );
  try {
    await fakes.phoenixd.fail("hang");
    const { res, ms } = await timedCreate(seq, "hanging primary, sequential baseline");
    assert.equal(res.status, 201, res.text);
    assert.equal(res.json.provider, "lnd");
    // Three 1 s timeouts with 200 ms and 400 ms between them, then lnd; no hedge.
    assert.deepEqual(
      res.json.attempts.map((a) => `${a.provider}#${a.attempt}:${a.code ?? a.outcome}${a.hedge ? ":hedge" : ""}`),
      ["phoenixd#1:timeout", "phoenixd#2:timeout", "phoenixd#3:timeout", "lnd#1:ok"],
    );
    assert.ok(ms >= 3600, `took ${ms} ms`);
  } finally {
    await seq.stop();
  }
});
