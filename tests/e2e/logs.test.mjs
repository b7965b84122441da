// End-to-end: the Worker's structured logs, read from what `wrangler dev`
// prints. Every request gets exactly one JSON line with its route, status and
// duration (and provider and attempts, or payout id and state change); cron
// runs, queue wake-ups, breaker and payout state changes get theirs; and no
// configured secret, and no preimage, appears anywhere in the output.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { startFakeProvider, stopAll } from "./support/fake-provider.mjs";
import { startWorker } from "./support/worker.mjs";
import { signInvoice } from "./support/invoice.mjs";

const rand = (prefix) => `${prefix}-${crypto.randomBytes(12).toString("hex")}`;
const SECRETS = {
  PHOENIXD_PASSWORD: rand("phoenixd-password"),
  CLN_RUNE: rand("cln-rune"),
  LND_ADMIN_MACAROON: crypto.randomBytes(40).toString("hex"),
  LNBITS_INVOICE_KEY: rand("lnbits-inkey"),
  PAYOUT_API_KEY: rand("payout-key"),
  ADMIN_API_KEY: rand("admin-key"),
  WEBHOOK_SECRET: "whsec_" + crypto.randomBytes(32).toString("base64"),
};
let fakes, worker;
const preimages = [];

before(async () => {
  fakes = {
    phoenixd: await startFakeProvider("phoenixd", { key: SECRETS.PHOENIXD_PASSWORD }),
    cln: await startFakeProvider("cln", { key: SECRETS.CLN_RUNE }),
    lnd: await startFakeProvider("lnd", { key: SECRETS.LND_ADMIN_MACAROON }),
    lnbits: await startFakeProvider("lnbits", { key: SECRETS.LNBITS_INVOICE_KEY }),
  };
  worker = await startWorker(
    {
      ...SECRETS,
      LIGHTNING_PROVIDERS: "phoenixd,lnd,cln,lnbits",
      PHOENIXD_URL: fakes.phoenixd.url,
      CLN_REST_URL: fakes.cln.url,
      LND_REST_URL: fakes.lnd.url,
      LNBITS_URL: fakes.lnbits.url,
      LNBITS_ADMIN_KEY: fakes.lnbits.adminKey,
      PAYOUT_PROVIDER: "lnbits",
      LIGHTNING_FALLBACK_MAX_RETRIES: "0",
      // One failure opens a breaker: the transition is logged.
      BREAKER_FAILURE_THRESHOLD: "1",
      // A send's recovery alarm is 3 s away (pay timeout + 2 s): the idle
      // queue test below sees within seconds whether it re-arms itself.
      PAYOUT_PAY_TIMEOUT_MS: "1000",
    },
    // `log` shows the Worker's console.log lines (wrangler hides them at `info`).
    { name: "logs", logLevel: "log", snapshot: true },
  );
  // startWorker's readiness probe (GET /) logs a line too: let it arrive first.
  for (let i = 0; i < 100 && requestLines().length === 0; i++) await new Promise((r) => setTimeout(r, 50));
});

after(async () => {
  if (process.env.LOGS_DUMP) (await import("node:fs")).writeFileSync(process.env.LOGS_DUMP, worker?.log ?? "");
  await stopAll(worker, fakes);
});

/**
 * Every JSON line the Worker printed so far. wrangler dev decorates
 * console.warn/error lines (a colored "▲ [WARNING]" prefix); `wrangler tail`
 * and Workers Logs get the bare JSON.
 */
function lines() {
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
const requestLines = () => lines().filter((l) => l.event === "request");

/** Makes one request and returns it with the one request line it produced. */
async function logged(method, route, opts) {
  const before = requestLines().length;
  const res = await worker.request(method, route, opts);
  let now = [];
  for (let i = 0; i < 50; i++) {
    now = requestLines();
    if (now.length > before) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  // Give a stray second line a moment to show up before counting.
  await new Promise((r) => setTimeout(r, 100));
  now = requestLines();
  assert.equal(now.length, before + 1, `one request line for ${method} ${route}:\n${worker.log.slice(-3000)}`);
  const line = now[now.length - 1];
  assert.equal(line.method, method);
  assert.equal(line.status, res.status, JSON.stringify(line));
  assert.equal(typeof line.duration_ms, "number");
  assert.ok(line.duration_ms >= 0);
  assert.match(line.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  return { res, line };
}

const payoutAuth = { authorization: `Bearer ${SECRETS.PAYOUT_API_KEY}` };

test("one JSON line per request, with the fields that matter for its route", async () => {
  let r = await logged("GET", "/");
  assert.deepEqual([r.line.route, r.line.level], ["/", "info"]);

  // phoenixd fails: its breaker opens, lnd serves the invoice.
  await fakes.phoenixd.fail("http500");
  r = await logged("POST", "/api/create-invoice", { json: { amount: 1000, description: "logs" } });
  assert.equal(r.res.status, 201, r.res.text);
  assert.equal(r.line.route, "/api/create-invoice");
  assert.equal(r.line.provider, "lnd");
  assert.equal(r.line.payment_hash, r.res.json.payment_hash);
  assert.deepEqual(
    r.line.attempts.map((a) => [a.provider, a.outcome, a.code ?? null]),
    r.res.json.attempts.map((a) => [a.provider, a.outcome, a.code ?? null]),
  );
  assert.equal(r.line.attempts[0].code, "upstream_error");
  assert.ok(!JSON.stringify(r.line).includes(r.res.json.payment_request), "the invoice itself is not logged");
  const breaker = lines().filter((l) => l.event === "breaker" && l.provider === "phoenixd");
  assert.equal(breaker.length, 1, JSON.stringify(breaker));
  assert.deepEqual([breaker[0].from, breaker[0].to, breaker[0].level], ["closed", "open", "warn"]);
  const hash = r.res.json.payment_hash;

  r = await logged("GET", `/api/check-invoice?payment_hash=${hash}`);
  assert.equal(r.res.status, 200, r.res.text);
  assert.deepEqual([r.line.route, r.line.provider, r.line.invoice_status, r.line.payment_hash], ["/api/check-invoice", "lnd", "pending", hash]);

  r = await logged("GET", "/api/lightning/health");
  assert.equal(r.line.route, "/api/lightning/health");

  // Bad requests: the stable error code, no message for a 4xx.
  r = await logged("POST", "/api/create-invoice", { json: { amount: -5 } });
  assert.deepEqual([r.line.status, r.line.error, r.line.message], [400, "invalid_amount", undefined]);
  r = await logged("GET", "/api/check-invoice?payment_hash=zz");
  assert.equal(r.line.error, "invalid_payment_hash");
  r = await logged("GET", "/no/such/route");
  assert.deepEqual([r.line.route, r.line.path, r.line.error], ["unmatched", "/no/such/route", "not_found"]);
  r = await logged("POST", "/api/payouts", { json: {}, headers: { authorization: "Bearer wrong-key-0123456789" } });
  assert.deepEqual([r.line.status, r.line.error], [401, "unauthorized"]);
  await fakes.phoenixd.heal();
});

test("payout lines carry the id and state change, never the preimage", async () => {
  const inv = signInvoice({ amountMsat: 2_000_000, expiry: 900 });
  const preimage = inv.preimage;
  preimages.push(preimage);
  fakes.lnbits.knownInvoices.set(inv.payment_request, inv.payment_hash);
  fakes.lnbits.payments.set(inv.payment_hash, { status: "lost", sends: 0, preimage });

  let r = await logged("POST", "/api/payouts", {
    json: { destination: inv.payment_request },
    headers: { ...payoutAuth, "idempotency-key": "logs-1" },
  });
  assert.equal(r.res.status, 201, r.res.text);
  assert.equal(r.res.json.preimage, preimage, "the backend's preimage reached the gateway");
  const id = r.res.json.id;
  assert.deepEqual(
    [r.line.route, r.line.payout_id, r.line.payout_from, r.line.payout_status, r.line.payment_hash],
    ["/api/payouts", id, "new", "succeeded", inv.payment_hash],
  );
  // The queue logged each stored status change of this payout.
  const changes = lines().filter((l) => l.event === "payout" && l.payout_id === id).map((l) => `${l.from}->${l.to}`);
  assert.equal(changes[0], "new->queued", changes.join(" "));
  assert.equal(changes.at(-1).split("->")[1], "succeeded", changes.join(" "));

  r = await logged("POST", "/api/payouts", {
    json: { destination: inv.payment_request },
    headers: { ...payoutAuth, "idempotency-key": "logs-1" },
  });
  assert.deepEqual([r.res.status, r.line.replayed, r.line.payout_from], [200, true, undefined]);

  r = await logged("GET", `/api/payouts/${id}`, { headers: payoutAuth });
  assert.deepEqual([r.line.route, r.line.payout_id, r.line.payout_status], ["/api/payouts/{id}", id, "succeeded"]);

  r = await logged("POST", "/api/payouts", {
    json: { destination: "not a destination" },
    headers: { ...payoutAuth, "idempotency-key": "logs-2" },
  });
  assert.deepEqual([r.line.status, r.line.error], [400, "invalid_destination"]);
});

test("an idle payout queue stops waking up: no alarm is left once nothing is due", async () => {
  // The payouts above are final. Before issue 21, each wake-up set a new
  // recovery alarm (getAlarm() reads null inside an alarm), so an idle
  // queue woke every pay timeout + 2 s forever.
  const alarms = () => lines().filter((l) => l.event === "queue_wake" && l.trigger === "alarm").length;
  await new Promise((r) => setTimeout(r, 4_000));
  const before = alarms();
  await new Promise((r) => setTimeout(r, 8_000));
  assert.equal(alarms(), before, "no wake-up in 8 s, over twice the 3 s recovery alarm");
});

test("cron runs and queue wake-ups get one line each", async () => {
  const cronBefore = lines().filter((l) => l.event === "cron").length;
  assert.equal(await worker.cron(), 200);
  let cron = [];
  for (let i = 0; i < 40 && cron.length <= cronBefore; i++) {
    await new Promise((r) => setTimeout(r, 50));
    cron = lines().filter((l) => l.event === "cron");
  }
  assert.equal(cron.length, cronBefore + 1);
  const line = cron.at(-1);
  assert.equal(line.cron, "*/5 * * * *");
  assert.equal(line.queue_shards, 1);
  assert.equal(line.queue_errors, 0);
  assert.ok(["healthy", "degraded", "down"].includes(line.health), JSON.stringify(line));
  assert.equal(typeof line.duration_ms, "number");
  const wake = lines().filter((l) => l.event === "queue_wake" && l.trigger === "cron");
  assert.ok(wake.length >= 1, worker.log.slice(-2000));
  const w = wake.at(-1);
  assert.equal(typeof w.processed, "number");
  assert.equal(typeof w.errors, "number");
  assert.ok("drained" in w);
});

test("no secret, key, macaroon or preimage appears anywhere in the output", () => {
  const out = worker.log;
  assert.ok(requestLines().length >= 10, "the log was captured");
  const needles = {
    ...SECRETS,
    WEBHOOK_SECRET_RAW: SECRETS.WEBHOOK_SECRET.slice("whsec_".length),
    LNBITS_ADMIN_KEY: fakes.lnbits.adminKey,
  };
  for (const [name, value] of Object.entries(needles)) {
    assert.ok(!out.includes(value), `${name} appears in the output`);
  }
  for (const p of preimages) assert.ok(!out.includes(p), "a preimage appears in the output");
  // Each JSON line is one whole object; nothing else in it looks like a key.
  for (const l of lines()) {
    for (const k of Object.keys(l)) assert.ok(!/key|secret|macaroon|preimage|authorization/i.test(k), k);
  }
});
