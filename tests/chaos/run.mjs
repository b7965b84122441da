#!/usr/bin/env node
// Chaos run: many payouts through the gateway (the built Worker in workerd)
// to a real LNbits behind a fault-injecting proxy, with crashes of the
// gateway while its queue drains; then LNbits' own ledgers are compared with
// the gateway's records. Prints one line of figures and exits non-zero on
// any money or idempotency violation, or a payout left non-terminal.
//
//   make chaos                          full run: 500 payouts, 2 crash-restarts
//   node tests/chaos/run.mjs --short    ~60 payouts, 1 crash-restart (make chaos-short)
//
// Needs the Worker built (scripts/build.sh) and LNbits installed
// (scripts/setup.sh --test). Options (defaults for the full run; --short changes them):
//   --payouts N         payouts to create (500; short 60)
//   --payees N          payee wallets, each with its LNbits Lightning Address (20; short 6)
//   --burst N           concurrent creates per burst (50; short 30)
//   --restarts N        SIGKILL + restart of the gateway while draining (2; short 1)
//   --seed N            RNG seed for the workload and the proxy (random; printed)
//   --weights k=v,...   pay-request faults: pass,html520,forward520,forwardDrop,hang,late,delay
//   --pay-timeout-ms N  PAYOUT_PAY_TIMEOUT_MS given to the gateway (3000)
//   --grace-ms N        PAYOUT_NOT_FOUND_GRACE_MS (6000)
//   --late-ms A-B       how long a "late" pay request is held before LNbits gets it (grace+2000 .. grace+6000)
//   --wait-secs N       bound on waiting for every payout to end (600; short 150; two backends 900, short 480)
//   --invoice-expiry-secs N  expiry of the BOLT11 invoices created on payee wallets (3600; two backends 240)
//   --lnbits-invoice-expiry-secs N  LNbits' default invoice expiry, which its Lightning
//                       Address invoices get (LNbits' own default: 3600)
//   --backends N        1, or 2: a payout chain of two LNbits wallets, each behind
//                       its own fault proxy; A refuses every payment (a rejected key)
//                       and then answers 520 to every payment for part of the run
//   --var K=V           extra/overriding gateway variable (repeatable)
//   --out DIR           where logs and the report go (a new temp dir; printed)
//   --keep              keep the gateway's persistence folder
// Output folder: proxy.jsonl (every pay request's fault), client.jsonl (every
// create attempt and answer), worker.log (all gateway runs), lnbits.log, and
// report.json (settings, final payouts, violations). Exit 0 clean, 1 violations, 2 harness error.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startLnbits } from "../e2e/support/lnbits.mjs";
import { startWorker } from "../e2e/support/worker.mjs";
import { DECISIONS, rng, startFaultProxy } from "./proxy.mjs";

// ---------------------------------------------------------------- options
function parseArgs(argv) {
  const o = { vars: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case "--short": o.short = true; break;
      case "--keep": o.keep = true; break;
      case "--payouts": o.payouts = Number(next()); break;
      case "--payees": o.payees = Number(next()); break;
      case "--backends": o.backends = Number(next()); break;
      case "--burst": o.burst = Number(next()); break;
      case "--restarts": o.restarts = Number(next()); break;
      case "--seed": o.seed = Number(next()); break;
      case "--weights": o.weights = next(); break;
      case "--pay-timeout-ms": o.payTimeoutMs = Number(next()); break;
      case "--grace-ms": o.graceMs = Number(next()); break;
      case "--late-ms": o.lateMs = next(); break;
      case "--wait-secs": o.waitSecs = Number(next()); break;
      case "--invoice-expiry-secs": o.invoiceExpirySecs = Number(next()); break;
      case "--lnbits-invoice-expiry-secs": o.lnbitsInvoiceExpirySecs = Number(next()); break;
      case "--out": o.out = next(); break;
      case "--var": {
        const [k, ...v] = next().split("=");
        o.vars[k] = v.join("=");
        break;
      }
      case "-h":
      case "--help":
        console.log(fs.readFileSync(new URL(import.meta.url), "utf8").split("\nimport ")[0]);
        process.exit(0);
      // falls through
      default:
        throw new Error(`unknown option ${a} (see --help)`);
    }
  }
  const short = !!o.short;
  const cfg = {
    short,
    payouts: o.payouts ?? (short ? 60 : 500),
    payees: o.payees ?? (short ? 6 : 20),
    backends: o.backends ?? 1,
    burst: o.burst ?? (short ? (o.backends === 2 ? 10 : 30) : 50),
    restarts: o.restarts ?? (short ? 1 : 2),
    seed: o.seed ?? Math.floor(Math.random() * 2 ** 31),
    payTimeoutMs: o.payTimeoutMs ?? 3000,
    graceMs: o.graceMs ?? 6000,
    // Two backends: a payout whose hash may have reached A while A failed
    // waits there until that hash is proven dead (expiry, then the late-
    // execution bound); short-lived invoices let that happen within the run.
    waitSecs: o.waitSecs ?? (o.backends === 2 ? (short ? 480 : 900) : short ? 150 : 600),
    invoiceExpirySecs: o.invoiceExpirySecs ?? (o.backends === 2 ? 240 : 3600),
    lnbitsInvoiceExpirySecs: o.lnbitsInvoiceExpirySecs ?? (o.backends === 2 ? 240 : null),
    keep: !!o.keep,
    vars: o.vars,
    out: o.out,
  };
  cfg.weights = { pass: 40, html520: 10, forward520: 10, forwardDrop: 10, hang: 10, late: 10, delay: 10 };
  if (o.weights) {
    for (const kv of o.weights.split(",")) {
      const [k, v] = kv.split("=");
      if (!DECISIONS.includes(k) || !(Number(v) >= 0)) throw new Error(`bad weight ${kv}; decisions: ${DECISIONS.join(",")}`);
      cfg.weights[k] = Number(v);
    }
  }
  cfg.lateMs = o.lateMs ? o.lateMs.split("-").map(Number) : [cfg.graceMs + 2000, cfg.graceMs + 6000];
  for (const [k, v] of Object.entries(cfg)) {
    if (typeof v === "number" && !(Number.isFinite(v) && v >= 0)) throw new Error(`bad value for ${k}: ${v}`);
  }
  if (cfg.payouts < 1 || cfg.payees < 1 || cfg.burst < 1) throw new Error("payouts, payees and burst must be at least 1");
  if (![1, 2].includes(cfg.backends)) throw new Error("--backends is 1 or 2");
  return cfg;
}

let cfg;
try {
  cfg = parseArgs(process.argv.slice(2));
} catch (e) {
  console.error(`chaos: ${e.message}`);
  process.exit(2);
}
const KEY = "chaos-payout-key-0123456789abcdef";
// The listing that the verdict reads is the admin's view (with each payout's backends).
const ADMIN_KEY = "chaos-admin-key-0123456789abcdef";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
const say = (...a) => console.log(`[chaos ${elapsed()}]`, ...a);
const outDir = cfg.out ?? fs.mkdtempSync(path.join(os.tmpdir(), "lnfb-chaos-"));
fs.mkdirSync(outDir, { recursive: true });
const clientLog = fs.createWriteStream(path.join(outDir, "client.jsonl"));
const logClient = (o) => clientLog.write(JSON.stringify({ t: Date.now() - t0, ...o }) + "\n");
const rand = rng(cfg.seed ^ 0x5eed);
const randInt = (a, b) => a + Math.floor(rand() * (b - a + 1));

// Bound on the whole run, whatever happens.
const WATCHDOG_MS = (cfg.short ? 10 * 60 : 60 * 60) * 1000 + cfg.waitSecs * 1000;

let lnbits, proxy, proxyB, worker;
let cronTimer = null;
let cleaning = null;
async function cleanup() {
  const step = (name, f) => Promise.resolve().then(f).catch((e) => console.error(`chaos: cleanup (${name}): ${e.message ?? e}`));
  cleaning ??= (async () => {
    cronStop = true;
    if (cronTimer) await step("cron", () => cronTimer);
    if (worker) {
      await step("worker log", () => fs.writeFileSync(path.join(outDir, "worker.log"), worker.allLogs));
      await step("worker", () => (cfg.keep ? worker.crash() : worker.stop()));
      if (cfg.keep) console.log(`chaos: the gateway's persistence folder was kept: ${worker.dir}`);
    }
    if (proxy) await step("proxy", () => proxy.close());
    if (proxyB) await step("proxy b", () => proxyB.close());
    if (lnbits) {
      await step("lnbits log", () => fs.writeFileSync(path.join(outDir, "lnbits.log"), lnbits.log.slice(-2_000_000)));
      await step("lnbits", () => lnbits.stop());
    }
    await new Promise((r) => clientLog.end(r));
  })();
  return cleaning;
}
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, async () => {
    console.error(`chaos: ${sig}, cleaning up`);
    await cleanup().catch(() => {});
    process.exit(130);
  });
}
const watchdog = setTimeout(async () => {
  console.error(`chaos: the run exceeded its bound of ${WATCHDOG_MS / 1000}s; logs in ${outDir}`);
  await cleanup().catch(() => {});
  process.exit(3);
}, WATCHDOG_MS);

// ---------------------------------------------------------------- gateway client
async function api(method, route, { json, headers = {}, timeoutMs = 60_000 } = {}) {
  const init = { method, headers: { authorization: `Bearer ${KEY}`, ...headers }, signal: AbortSignal.timeout(timeoutMs) };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["content-type"] = "application/json";
  }
  const res = await fetch(worker.base + route, init);
  const text = await res.text();
  let data = null;
  try {
    data = JSON.parse(text);
  } catch {}
  return { status: res.status, replayed: res.headers.get("idempotent-replayed"), text, json: data };
}

// Per idempotency key: what we sent and every answer we got.
const keys = new Map(); // key -> {key, body, payee, kind, amount, answers: [], conflicts: []}
let createAttempts = 0;
let createNetworkErrors = 0;
let create5xx = 0;
// wrangler dev's own proxy answers 503 "Your worker restarted mid-request" when its
// fetch to the Worker fails (seen at the start of bursts, a stale pooled connection): not the gateway's answer.
let createDev503 = 0;

/**
 * A client's create: the same key and body until an answer comes (network
 * errors, timeouts and 5xx are retried, as real clients do), bounded.
 */
async function createUntilAnswered(k, body, tag) {
  const deadline = Date.now() + 180_000;
  for (let attempt = 1; attempt <= 60; attempt++) {
    createAttempts++;
    try {
      const r = await api("POST", "/api/payouts", { json: body, headers: { "idempotency-key": k.key } });
      logClient({
        key: k.key, tag, attempt, status: r.status, replayed: r.replayed, id: r.json?.id, payout_status: r.json?.status,
        error: r.json?.error ?? (r.status >= 300 ? r.text.slice(0, 300) : undefined),
      });
      if (r.status >= 500 || r.status === 429) {
        if (r.status === 503 && /restarted mid-request/.test(r.text)) createDev503++;
        else create5xx++;
        if (Date.now() > deadline) return r;
        await sleep(300 + rand() * 700);
        continue;
      }
      return r;
    } catch (e) {
      createNetworkErrors++;
      logClient({ key: k.key, tag, attempt, network_error: String(e.cause?.code ?? e.name ?? e) });
      if (Date.now() > deadline) return { status: 0, error: String(e) };
      await sleep(300 + rand() * 700);
    }
  }
  return { status: 0, error: "no answer after 60 attempts" };
}

async function createAndRecord(k, tag) {
  const r = await createUntilAnswered(k, k.body, tag);
  k.answers.push({ tag, status: r.status, id: r.json?.id ?? null, replayed: r.replayed, payout_status: r.json?.status, error: r.json?.error ?? r.error ?? null });
  return r;
}

/** Same key, different body: must be refused (4xx), never a 2xx. */
async function conflictAttempt(k) {
  // A different meaning under the same key: another amount, or a comment.
  const body = k.kind === "address" ? { ...k.body, amount_sat: k.body.amount_sat + 1 } : { ...k.body, comment: `different body ${randInt(1, 1e9)}` };
  const r = await createUntilAnswered(k, body, "conflict");
  k.conflicts.push({ status: r.status, id: r.json?.id ?? null, error: r.json?.error?.code ?? r.error ?? null });
}

/** Every payout the gateway holds (paginated listing). */
async function listAll() {
  const all = [];
  let cursor = null;
  for (let page = 0; page < 1000; page++) {
    const q = `/api/payouts?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const r = await api("GET", q, { timeoutMs: 30_000, headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    if (r.status !== 200 || !Array.isArray(r.json?.payouts)) throw new Error(`list payouts: ${r.status} ${r.text.slice(0, 300)}`);
    all.push(...r.json.payouts);
    cursor = r.json.next_cursor;
    if (!cursor) return all;
  }
  throw new Error("list payouts: more than 1000 pages");
}

const TERMINAL = new Set(["succeeded", "failed"]);

// Cron wakes the queue (crons do not fire by themselves under wrangler dev).
let cronStop = false;
let cronCalls = 0;
let cronErrors = 0;
function startCron(everyMs = 2000) {
  cronTimer = (async () => {
    const deadline = Date.now() + WATCHDOG_MS;
    while (!cronStop && Date.now() < deadline) {
      try {
        await Promise.race([worker.cron(), sleep(30_000)]);
        cronCalls++;
      } catch {
        cronErrors++;
      }
      await sleep(everyMs);
    }
  })();
}

// ---------------------------------------------------------------- LNbits ledgers
async function ledger(key) {
  const all = [];
  for (let offset = 0; offset < 100_000; offset += 1000) {
    const r = await fetch(`${lnbits.url}/api/v1/payments?limit=1000&offset=${offset}`, { headers: { "X-Api-Key": key } });
    if (!r.ok) throw new Error(`LNbits payments list: ${r.status} ${await r.text()}`);
    const page = await r.json();
    all.push(...page);
    if (page.length < 1000) return all;
  }
  throw new Error("LNbits payments list: too many pages");
}

async function createBolt11(payee, sats, memo) {
  const r = await fetch(`${lnbits.url}/api/v1/payments`, {
    method: "POST",
    headers: { "content-type": "application/json", "X-Api-Key": payee.inkey },
    body: JSON.stringify({ out: false, amount: sats, memo, expiry: cfg.invoiceExpirySecs }),
  });
  if (!r.ok) throw new Error(`LNbits invoice: ${r.status} ${await r.text()}`);
  return r.json();
}

async function inBatches(items, n, fn) {
  for (let i = 0; i < items.length; i += n) await Promise.all(items.slice(i, i + n).map(fn));
}

// ---------------------------------------------------------------- the run
function buildInfo() {
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
  const wasm = path.join(root, "build/index_bg.wasm");
  let info = "build/ missing";
  try {
    const st = fs.statSync(wasm);
    info = `index_bg.wasm ${st.size} bytes built ${st.mtime.toISOString()}`;
  } catch {}
  try {
    const git = (args) => execFileSync("git", ["-C", root, ...args], { encoding: "utf8" }).trim();
    const dirty = git(["status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"]) ? " + uncommitted changes in src/" : "";
    info += `, git ${git(["rev-parse", "--short", "HEAD"])}${dirty}`;
    const built = fs.statSync(wasm).mtimeMs;
    const newer = (dir) =>
      fs.readdirSync(dir, { withFileTypes: true }).some((e) =>
        e.isDirectory() ? newer(path.join(dir, e.name)) : fs.statSync(path.join(dir, e.name)).mtimeMs > built,
      );
    if (newer(path.join(root, "src"))) info += " (src/ has changed since this build)";
  } catch {}
  return info;
}

let restarts = 0;
async function restartGateway(why) {
  say(`SIGKILL gateway (${why})`);
  await worker.restart();
  restarts++;
  say(`gateway restarted (${restarts}) on the same persistence folder`);
}

/**
 * Backend A's outage in a two-backend run, by burst: from a third of the
 * run to a half, LNbits refuses every payment of A (a rejected key: refused
 * before acting); then, to two thirds, A's proxy answers 520 to every
 * payment without forwarding it; then A is back to the run's faults.
 */
let outagePhase = "none";
function outage(b, n) {
  const phase = b >= Math.floor(n / 3) && b < Math.floor(n / 2) ? "refusing" : b >= Math.floor(n / 2) && b < Math.floor((2 * n) / 3) ? "520" : "none";
  if (phase === outagePhase) return;
  outagePhase = phase;
  proxy.rewriteKey = phase === "refusing" ? "0".repeat(32) : null;
  proxy.setWeights(phase === "520" ? { html520: 1 } : cfg.weights);
  say(`backend A: ${phase === "none" ? "back to the run's faults" : phase === "refusing" ? "refuses every payment before acting (wrong key)" : "answers 520 to every payment"}`);
}

async function main() {
  say(`seed=${cfg.seed} payouts=${cfg.payouts} payees=${cfg.payees} burst=${cfg.burst} restarts=${cfg.restarts} out=${outDir}`);
  // LNbits limits requests per IP (200/minute by default): every request here comes from 127.0.0.1.
  process.env.LNBITS_RATE_LIMIT_NO = "10000000";
  if (cfg.lnbitsInvoiceExpirySecs) process.env.LIGHTNING_INVOICE_EXPIRY = String(cfg.lnbitsInvoiceExpirySecs);
  lnbits = await startLnbits({ funding: true });
  const payer = await lnbits.createWallet("chaos-shop");
  const payerB = cfg.backends === 2 ? await lnbits.createWallet("chaos-shop-b") : null;
  const payees = [];
  for (let i = 0; i < cfg.payees; i++) payees.push(await lnbits.createWallet(`chaos-customer-${i}`));
  // LNbits values every payment in the wallet's fiat currency (USD by default) and,
  // offline, each failed price fetch stalls payments and invoices for seconds. No currency, no lookup.
  for (const w of [payer, ...(payerB ? [payerB] : []), ...payees]) {
    const r = await fetch(`${lnbits.url}/api/v1/wallet`, {
      method: "PATCH",
      headers: { "content-type": "application/json", "X-Api-Key": w.adminkey },
      body: JSON.stringify({ currency: "" }),
    });
    if (!r.ok) throw new Error(`LNbits wallet update: ${r.status} ${await r.text()}`);
  }
  // Enough for every payout several times over, so a double pay shows as one, not as a failure.
  await lnbits.fund(payer.id, cfg.payouts * 2000 * 4 + 1_000_000);
  if (payerB) await lnbits.fund(payerB.id, cfg.payouts * 2000 * 4 + 1_000_000);

  proxy = await startFaultProxy({
    upstream: lnbits.url,
    seed: cfg.seed,
    weights: cfg.weights,
    payTimeoutMs: cfg.payTimeoutMs,
    lateMs: cfg.lateMs,
    delayMs: [100, Math.max(200, Math.floor(cfg.payTimeoutMs * 0.6))],
    logFile: path.join(outDir, "proxy.jsonl"),
    t0,
  });
  if (payerB) {
    proxyB = await startFaultProxy({
      upstream: lnbits.url,
      seed: cfg.seed + 1,
      weights: cfg.weights,
      payTimeoutMs: cfg.payTimeoutMs,
      lateMs: cfg.lateMs,
      delayMs: [100, Math.max(200, Math.floor(cfg.payTimeoutMs * 0.6))],
      logFile: path.join(outDir, "proxy-b.jsonl"),
      t0,
    });
  }
  const proxyHost = new URL(proxy.url).host;
  const vars = {
    LIGHTNING_PROVIDERS: "lnbits",
    PAYOUT_PROVIDER: "lnbits",
    LNBITS_URL: proxy.url,
    LNBITS_INVOICE_KEY: payer.inkey,
    LNBITS_ADMIN_KEY: payer.adminkey,
    PAYOUT_API_KEY: KEY,
    ADMIN_API_KEY: ADMIN_KEY,
    LNURL_ALLOW_HTTP_HOSTS: "127.0.0.1,localhost",
    PAYOUT_RETRY_BASE_MS: "500",
    PAYOUT_LOOKUP_BASE_MS: "500",
    PAYOUT_NOT_FOUND_GRACE_MS: String(cfg.graceMs),
    PAYOUT_PAY_TIMEOUT_MS: String(cfg.payTimeoutMs),
    // The run compresses the gateway's clocks (retries, lookups, grace, pay
    // timeout), so the payout breaker's cooldown too: at its default of 60 s
    // a seed whose faults keep reopening the breaker leaves payouts waiting
    // past the short run's bound with nothing wrong (seed 1177447201).
    PAYOUT_BREAKER_COOLDOWN_SECS: "15",
    PAYOUT_MAX_SATS: "1000000",
    PAYOUT_DAILY_LIMIT_SATS: "100000000000",
    ...(payerB
      ? {
          PAYOUT_PROVIDER: undefined,
          PAYOUT_PROVIDERS: "lnbits,lnbits:b",
          LNBITS_B_URL: proxyB.url,
          LNBITS_B_ADMIN_KEY: payerB.adminkey,
          // Above the proxy's longest hold of a "late" request (--late-ms) plus the pay timeout.
          PAYOUT_LATE_EXECUTION_BOUND_SECS: String(Math.ceil((cfg.lateMs[1] + cfg.payTimeoutMs) / 1000) + 45),
          PAYOUT_EXPIRY_LOOKUP_MARGIN_SECS: "10",
        }
      : {}),
    ...cfg.vars,
  };
  for (const k of Object.keys(vars)) if (vars[k] === undefined) delete vars[k];
  fs.writeFileSync(
    path.join(outDir, "gateway-vars.json"),
    JSON.stringify({ ...vars, LNBITS_ADMIN_KEY: "(payer admin key)", ...(payerB ? { LNBITS_B_ADMIN_KEY: "(payer b admin key)" } : {}) }, null, 2),
  );
  // A private copy of build/: edits under src/ during the run neither rebuild nor reload the gateway.
  worker = await startWorker(vars, { name: "chaos", snapshot: true, logLevel: process.env.CHAOS_WRANGLER_LOG_LEVEL ?? "info" });
  say(`gateway build under test: ${buildInfo()}`);
  say(`LNbits ${lnbits.url}, proxy ${proxy.url}${proxyB ? `, proxy B ${proxyB.url}` : ""}, gateway ${worker.base} (state ${worker.dir})`);
  startCron();

  // The workload: payee, kind, amount per payout, drawn from the seed.
  const plan = [];
  for (let i = 0; i < cfg.payouts; i++) {
    const payeeIx = randInt(0, cfg.payees - 1);
    plan.push({
      key: `chaos-${cfg.seed}-${i}`,
      payeeIx,
      kind: rand() < 0.5 ? "bolt11" : "address",
      amount: randInt(1, 2000),
    });
  }
  const bursts = [];
  for (let i = 0; i < plan.length; i += cfg.burst) bursts.push(plan.slice(i, i + cfg.burst));
  // Crash points: spread over the run; odd ones hit in the middle of a burst of
  // creates, even ones between bursts, while only the queue is draining.
  const crashAt = new Map(); // burst index -> "mid" | "after"
  for (let r = 0; r < cfg.restarts; r++) {
    let b = Math.min(bursts.length - 1, Math.floor(((r + 1) * bursts.length) / (cfg.restarts + 1)));
    while (crashAt.has(b) && b < bursts.length - 1) b++;
    crashAt.set(b, r % 2 === 0 ? "mid" : "after");
  }
  // More crashes than bursts can hold: the rest happen during the final wait.
  let extraCrashes = cfg.restarts - crashAt.size;

  const answered = []; // keys with an answer, for replays after restarts
  for (let b = 0; b < bursts.length; b++) {
    const items = bursts[b];
    // Invoices and bodies (BOLT11 made on the payee's wallet, straight at LNbits).
    await inBatches(items, 10, async (it) => {
      const payee = payees[it.payeeIx];
      let body;
      if (it.kind === "bolt11") {
        const inv = await createBolt11(payee, it.amount, `chaos ${it.key}`);
        body = { destination: inv.bolt11, external_id: it.key };
        it.invoiceHash = inv.payment_hash;
      } else {
        body = { destination: `${payee.lightning_address}@${proxyHost}`, amount_sat: it.amount, external_id: it.key };
      }
      keys.set(it.key, { ...it, body, answers: [], conflicts: [] });
    });
    if (proxyB) outage(b, bursts.length);
    const when = crashAt.get(b);
    say(`burst ${b + 1}/${bursts.length}: ${items.length} creates${when ? ` (crash ${when === "mid" ? "during" : "after"} it)` : ""}`);
    const jobs = [];
    for (const it of items) {
      const k = keys.get(it.key);
      const x = rand();
      jobs.push(
        (async () => {
          if (x < 0.1) {
            // The same request twice at once (a client retrying too eagerly).
            await Promise.all([createAndRecord(k, "first"), createAndRecord(k, "concurrent-dup")]);
          } else {
            await createAndRecord(k, "first");
          }
          answered.push(k);
          if (x >= 0.1 && x < 0.2) await createAndRecord(k, "replay");
          if (x >= 0.2 && x < 0.23) await conflictAttempt(k);
        })(),
      );
    }
    let crash = null;
    if (when === "mid") crash = sleep(randInt(500, 2500)).then(() => restartGateway(`mid-burst ${b + 1}`));
    await Promise.all(jobs);
    if (crash) await crash;
    if (when) {
      if (when === "after") {
        await sleep(randInt(500, 2000));
        await restartGateway(`after burst ${b + 1}, queue draining`);
      }
      // Clients retrying earlier requests after the restart: same key, same body.
      const sample = answered.filter(() => rand() < 0.1).slice(0, 15);
      await Promise.all(sample.map((k) => createAndRecord(k, "after-restart")));
      say(`replayed ${sample.length} earlier creates after the restart`);
    }
    await sleep(randInt(200, 1000));
  }

  if (proxyB) outage(bursts.length, bursts.length);
  // Wait until every payout has ended (bounded), waking the queue with cron meanwhile.
  const waitDeadline = Date.now() + cfg.waitSecs * 1000;
  let payouts = [];
  let lastReport = 0;
  for (;;) {
    try {
      payouts = await listAll();
    } catch (e) {
      say(`listing failed: ${e.message}`);
    }
    const open = payouts.filter((p) => !TERMINAL.has(p.status));
    if (extraCrashes > 0 && open.length > 0) {
      extraCrashes--;
      await restartGateway("while draining");
      continue;
    }
    if (open.length === 0 && proxy.pending === 0 && payouts.length > 0) break;
    if (Date.now() > waitDeadline) {
      say(`wait bound reached with ${open.length} payouts not ended, ${proxy.pending} pay requests held by the proxy`);
      break;
    }
    if (Date.now() - lastReport > 15_000) {
      lastReport = Date.now();
      const by = {};
      for (const p of payouts) by[p.status] = (by[p.status] ?? 0) + 1;
      say(`waiting: ${JSON.stringify(by)}, proxy holds ${proxy.pending}`);
    }
    await sleep(2000);
  }
  // Anything the proxy still holds is forwarded (or given up) before the ledgers are read.
  await proxy.idle(Math.max(30_000, cfg.lateMs[1] + 10_000));
  if (proxyB) await proxyB.idle(Math.max(30_000, cfg.lateMs[1] + 10_000));
  await sleep(1500);
  payouts = await listAll();
  cronStop = true;
  return { payouts, payer, payerB, payees };
}

// ---------------------------------------------------------------- checks
async function verify({ payouts, payer, payerB, payees }) {
  const v = {
    paid_twice: [],
    failed_but_paid: [],
    succeeded_but_unpaid: [],
    idempotency_broken: [],
    nonterminal: [],
    lost: [], // a 2xx answer whose payout is not listed
    orphan_paid: [], // a paid payee invoice that no payout knows
    wrong_amount: [],
    payee_overpaid: [],
    rejected: [], // a valid request answered 4xx and not stored
    unanswered: [], // a key that never got an answer (network errors / 5xx until the bound)
  };
  const ledgers = await Promise.all(payees.map((p) => ledger(p.inkey)));
  const payerLedger = [...(await ledger(payer.inkey)), ...(payerB ? await ledger(payerB.inkey) : [])];
  const paidOut = new Map(); // hash -> a payer's outgoing payment that succeeded
  for (const p of payerLedger) if (p.amount < 0 && p.status === "success") paidOut.set(p.payment_hash, p);
  // A hash sent through both backends, unless every request of it to A was
  // refused by LNbits before acting (the proxies see every pay request, even
  // one LNbits refuses).
  v.sent_through_two_backends = [];
  if (proxyB) {
    const atB = new Set(proxyB.hashes.map((h) => h.hash));
    const reachedA = new Map();
    for (const h of proxy.hashes) {
      const refused = h.wrong_key && [401, 403, 404].includes(h.up_status) && ["pass", "delay"].includes(h.decision);
      if (!refused) reachedA.set(h.hash, h);
    }
    for (const h of atB) if (reachedA.has(h)) v.sent_through_two_backends.push({ hash: h, at_a: reachedA.get(h) });
  }
  const incoming = payees.map((_, i) => new Map(ledgers[i].filter((p) => p.amount > 0).map((p) => [p.payment_hash, p])));

  // What the proxy did to each hash's pay requests, to explain a violation.
  const faults = new Map();
  try {
    for (const line of fs.readFileSync(path.join(outDir, "proxy.jsonl"), "utf8").split("\n")) {
      if (!line) continue;
      const e = JSON.parse(line);
      if (!e.hash || e.phase === "held") continue;
      const list = faults.get(e.hash) ?? [];
      list.push(`${e.decision}@${(e.t / 1000).toFixed(1)}s${e.up_body_status ? `:${e.up_body_status}` : ""}`);
      faults.set(e.hash, list);
    }
  } catch {}
  // The key of a payout: its external_id (we send the key there), else the id a 2xx answer gave.
  const idToKey = new Map();
  for (const k of keys.values()) for (const a of k.answers) if (a.id) idToKey.set(a.id, k.key);
  const keyOf = (p) => p.external_id ?? idToKey.get(p.id);
  const byExt = new Map();
  const byId = new Map();
  for (const p of payouts) {
    byId.set(p.id, p);
    const list = byExt.get(keyOf(p)) ?? [];
    list.push(p);
    byExt.set(keyOf(p), list);
  }
  for (const [ext, list] of byExt) {
    if (!keys.has(ext)) v.idempotency_broken.push({ why: "a payout no request of ours asked for", external_id: ext, ids: list.map((p) => p.id) });
    else if (list.length > 1) v.idempotency_broken.push({ why: "more than one payout for one key", key: ext, ids: list.map((p) => p.id) });
  }
  let accepted = 0;
  for (const k of keys.values()) {
    const ok = k.answers.filter((a) => a.status >= 200 && a.status < 300);
    const ids = new Set(ok.map((a) => a.id));
    if (ids.size > 1) v.idempotency_broken.push({ why: "one key, several payout ids", key: k.key, ids: [...ids] });
    for (const c of k.conflicts) {
      if (c.status >= 200 && c.status < 300) v.idempotency_broken.push({ why: "a different body got a 2xx", key: k.key, answer: c });
    }
    if (ok.length > 0) accepted++;
    else if (byExt.has(k.key)) accepted++; // stored although the client never heard so
    else if (k.answers.some((a) => a.status >= 400 && a.status < 500)) v.rejected.push({ key: k.key, kind: k.kind, answers: k.answers });
    else v.unanswered.push({ key: k.key, answers: k.answers });
    for (const id of ids) if (!byId.has(id)) v.lost.push({ key: k.key, id });
  }

  const counts = { succeeded: 0, failed: 0, unknown: 0, queued: 0, sending: 0 };
  const expectedByPayee = payees.map(() => 0);
  const knownHashes = payees.map(() => new Set());
  let overpaidFlagged = 0;
  for (const p of payouts) {
    counts[p.status] = (counts[p.status] ?? 0) + 1;
    if (p.overpaid) overpaidFlagged++;
    const k = keys.get(keyOf(p));
    if (!k) continue;
    const ix = k.payeeIx;
    const hashes = [...new Set([p.payment_hash, ...(p.previous_payment_hashes ?? []), ...(p.paid_payment_hashes ?? [])].filter(Boolean))];
    for (const h of hashes) knownHashes[ix].add(h);
    const paid = hashes.filter((h) => incoming[ix].get(h)?.status === "success");
    const brief = {
      id: p.id,
      key: k.key,
      kind: k.kind,
      status: p.status,
      amount_sat: p.amount_sat,
      payment_hash: p.payment_hash,
      previous_payment_hashes: p.previous_payment_hashes,
      paid_hashes_in_lnbits: paid,
      proxy: Object.fromEntries(hashes.map((h) => [h.slice(0, 12), faults.get(h) ?? []])),
      overpaid_flag: p.overpaid,
      attempts: p.attempts,
      last_error: p.last_error,
      failure_reason: p.failure_reason,
    };
    if (paid.length > 0) expectedByPayee[ix] += p.amount_sat * 1000;
    if (paid.length > 1) v.paid_twice.push(brief);
    if (p.status === "failed" && paid.length > 0) v.failed_but_paid.push(brief);
    if (p.status === "succeeded" && incoming[ix].get(p.payment_hash)?.status !== "success") v.succeeded_but_unpaid.push(brief);
    if (!TERMINAL.has(p.status)) v.nonterminal.push(brief);
    for (const h of paid) {
      const got = incoming[ix].get(h).amount;
      if (got !== p.amount_sat * 1000) v.wrong_amount.push({ ...brief, hash: h, received_msat: got });
      if (!paidOut.has(h)) v.wrong_amount.push({ ...brief, hash: h, why: "paid on the payee's side, not on the payer's" });
    }
  }
  for (let i = 0; i < payees.length; i++) {
    let received = 0;
    for (const [h, p] of incoming[i]) {
      if (p.status !== "success") continue;
      received += p.amount;
      if (!knownHashes[i].has(h)) v.orphan_paid.push({ payee: i, hash: h, amount_msat: p.amount, memo: p.memo });
    }
    if (received > expectedByPayee[i]) {
      v.payee_overpaid.push({ payee: i, address: payees[i].lightning_address, received_msat: received, expected_msat: expectedByPayee[i] });
    }
  }
  const bKind = (p) => (p.backends_used ?? []).map((u) => (u.url.includes(new URL(proxyB?.url ?? "http://x").host) ? "B" : "A"));
  const moved = proxyB ? payouts.filter((p) => new Set(bKind(p)).size > 1).length : 0;
  const straightToB = proxyB ? payouts.filter((p) => bKind(p).join() === "B").length : 0;
  return { v, counts, accepted, overpaidFlagged, payerOutgoing: paidOut.size, moved, straightToB };
}

// ---------------------------------------------------------------- report
let exitCode = 1;
try {
  const state = await main();
  const { v, counts, accepted, overpaidFlagged, payerOutgoing, moved, straightToB } = await verify(state);
  const duration = Math.round((Date.now() - t0) / 1000);
  const paidTwice = v.paid_twice.length + v.orphan_paid.length;
  const idemBroken = v.idempotency_broken.length;
  const nonterminal = v.nonterminal.length;
  fs.writeFileSync(path.join(outDir, "report.json"), JSON.stringify({ cfg, counts, violations: v, payouts: state.payouts, keys: [...keys.values()] }, null, 1));
  const show = (name, list) => {
    if (list.length === 0) return;
    console.log(`chaos: ${name}: ${list.length}`);
    for (const x of list.slice(0, 8)) console.log(`  ${JSON.stringify(x)}`);
    if (list.length > 8) console.log(`  ... ${list.length - 8} more in ${path.join(outDir, "report.json")}`);
  };
  for (const [name, list] of Object.entries(v)) show(name, list);
  const pc = proxy.counts;
  const workerLog = fs.existsSync(path.join(outDir, "worker.log")) ? fs.readFileSync(path.join(outDir, "worker.log"), "utf8") : worker.allLogs;
  const panics = (workerLog.match(/panicked at|RuntimeError: unreachable/g) ?? []).length;
  const http5xx = (workerLog.match(/ 5\d\d [A-Za-z ]+\(\d+ms\)/g) ?? []).length - createDev503;
  console.log(
    `chaos proxy: pay_requests=${proxy.payRequests} ${DECISIONS.map((d) => `${d}=${pc[d]}`).join(" ")} other_requests=${proxy.otherRequests}; ` +
      `client: create_attempts=${createAttempts} network_errors=${createNetworkErrors} 5xx=${create5xx} wrangler_dev_503=${createDev503}; cron=${cronCalls} cron_errors=${cronErrors}; ` +
      `lnbits payer outgoing paid=${payerOutgoing}; gateway panics=${panics} 5xx_answers=${http5xx}; seed=${cfg.seed}; logs ${outDir}`,
  );
  console.log(
    `chaos: accepted=${accepted} succeeded=${counts.succeeded} failed=${counts.failed} unknown=${counts.unknown} ` +
      `paid_twice=${paidTwice} failed_but_paid=${v.failed_but_paid.length} succeeded_but_unpaid=${v.succeeded_but_unpaid.length} ` +
      `idempotency_broken=${idemBroken} nonterminal=${nonterminal} lost=${v.lost.length} rejected=${v.rejected.length} unanswered=${v.unanswered.length} ` +
      `overpaid_flagged=${overpaidFlagged} restarts=${restarts}` +
      (proxyB ? ` backends=2 sent_through_two_backends=${v.sent_through_two_backends.length} moved=${moved} straight_to_b=${straightToB} pay_requests_b=${proxyB.payRequests}` : "") +
      ` duration=${duration}s`,
  );
  const bad =
    paidTwice + v.failed_but_paid.length + v.succeeded_but_unpaid.length + idemBroken + nonterminal + v.lost.length +
    v.rejected.length + v.unanswered.length + v.wrong_amount.length + v.payee_overpaid.length +
    v.sent_through_two_backends.length;
  exitCode = bad > 0 || restarts < cfg.restarts ? 1 : 0;
  if (restarts < cfg.restarts) console.log(`chaos: only ${restarts} of ${cfg.restarts} restarts happened`);
} catch (e) {
  console.error(`chaos: the run itself failed: ${e.stack ?? e}`);
  console.error(`chaos: logs in ${outDir}`);
  exitCode = 2;
} finally {
  await cleanup().catch((e) => console.error(`chaos: cleanup: ${e}`));
  clearTimeout(watchdog);
}
process.exit(exitCode);
