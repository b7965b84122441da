// End-to-end: the public routes' rate limit and the throttling of wrong
// keys, through Cloudflare's rate-limiting bindings as wrangler dev runs them
// locally (miniflare counts in memory, in fixed windows of the configured
// period). wrangler.toml's invoice limit is replaced by a low one for this
// test; the failed-key limit is wrangler.toml's own.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startFakeProvider, stopAll } from "./support/fake-provider.mjs";
import { startWorker } from "./support/worker.mjs";
import { signInvoice } from "./support/invoice.mjs";

const LIMIT = 3;
const KEY = "payout-key-rate-limit-0123456789";
let lnbits, worker, unbound, missLimited;

const lowLimit = (toml) => {
  const out = toml.replace(/simple = \{ limit = \d+, period = \d+ \}/, `simple = { limit = ${LIMIT}, period = 60 }`);
  assert.notEqual(out, toml, "wrangler.toml declares the INVOICE_RATE_LIMITER binding");
  return out;
};
const lowMissLimit = (toml) => {
  const out = toml.replace(/(name = "INDEX_MISS_LIMITER"\nnamespace_id = "\d+"\n)simple = \{ limit = \d+, period = \d+ \}/, "$1simple = { limit = 2, period = 60 }");
  assert.notEqual(out, toml, "wrangler.toml declares the INDEX_MISS_LIMITER binding");
  return out;
};
const noBinding = (toml) => toml.replace(/\[\[ratelimits\]\]\n(?:(?!\[)[^\n]*\n?)*/m, "");

before(async () => {
  lnbits = await startFakeProvider("lnbits");
  const vars = {
    LIGHTNING_PROVIDERS: "lnbits",
    LNBITS_URL: lnbits.url,
    LNBITS_INVOICE_KEY: lnbits.key,
    LNBITS_ADMIN_KEY: lnbits.adminKey,
    PAYOUT_API_KEY: KEY,
    INVOICE_RATE_LIMIT_ENABLED: "true",
  };
  worker = await startWorker(vars, { name: "rate-limit", snapshot: true, editConfig: lowLimit });
  unbound = await startWorker(vars, { name: "rate-limit-unbound", snapshot: true, editConfig: noBinding });
  missLimited = await startWorker(vars, { name: "rate-limit-miss", snapshot: true, editConfig: lowMissLimit });
});

after(() => stopAll(worker, unbound, missLimited, lnbits));

/** The limiter counts in fixed windows: start well inside one. */
async function freshWindow() {
  const into = Date.now() % 60_000;
  if (into > 45_000) await new Promise((r) => setTimeout(r, 60_500 - into));
}

const from = (ip) => ({ headers: { "cf-connecting-ip": ip } });

test("over the limit, create-invoice answers 429 rate_limited with Retry-After; other clients are unaffected", async () => {
  await freshWindow();
  const ip = "203.0.113.10";
  for (let i = 0; i < LIMIT; i++) {
    const r = await worker.createInvoice({ amount: 100 + i }, from(ip));
    assert.equal(r.status, 201, r.text);
  }
  const r = await worker.createInvoice({ amount: 100 }, from(ip));
  assert.equal(r.status, 429, r.text);
  assert.equal(r.json.error.code, "rate_limited");
  assert.equal(r.json.error.retry_after, 60);
  assert.equal(r.headers.get("retry-after"), "60");
  // Bad input counts too, and is refused before it is read.
  const bad = await worker.createInvoice({ amount: -1 }, from(ip));
  assert.equal(bad.status, 429);

  // Another client, and the same client on the other route, have their own counts.
  assert.equal((await worker.createInvoice({ amount: 100 }, from("203.0.113.11"))).status, 201);
  const hash = "00".repeat(32);
  const check = await worker.request("GET", `/api/check-invoice?payment_hash=${hash}`, from(ip));
  assert.equal(check.status, 404, check.text);
  // An IPv6 client counts by its /56 (RATE_LIMIT_IPV6_PREFIX): other /64s of it are the same client.
  for (let i = 0; i < LIMIT; i++) {
    assert.equal((await worker.createInvoice({ amount: 100 }, from(`2001:db8:7:${i + 1}::1`))).status, 201);
  }
  assert.equal((await worker.createInvoice({ amount: 100 }, from("2001:db8:7:ff:ffff::9"))).status, 429);
  assert.equal((await worker.createInvoice({ amount: 100 }, from("2001:db8:7:100::1"))).status, 201);
});

test("callers from other zones' Workers share Cloudflare's IPs but each zone has its own count (CF-Worker)", async () => {
  await freshWindow();
  const ip = "2a06:98c0:3600::103";
  const zone = (w) => ({ headers: { "cf-connecting-ip": ip, "cf-worker": w } });
  for (let i = 0; i < LIMIT; i++) {
    assert.equal((await worker.createInvoice({ amount: 100 }, zone("shop-a.example"))).status, 201);
  }
  assert.equal((await worker.createInvoice({ amount: 100 }, zone("shop-a.example"))).status, 429);
  assert.equal((await worker.createInvoice({ amount: 100 }, zone("shop-b.example"))).status, 201);
  assert.equal((await worker.createInvoice({ amount: 100 }, from(ip))).status, 201, "the IP alone is a third client");
});

test("check-invoice is limited per client too", async () => {
  await freshWindow();
  const ip = "198.51.100.20";
  const hash = "ab".repeat(32);
  for (let i = 0; i < LIMIT; i++) {
    const r = await worker.request("GET", `/api/check-invoice?payment_hash=${hash}`, from(ip));
    assert.equal(r.status, 404, r.text);
  }
  const r = await worker.request("GET", `/api/check-invoice?payment_hash=${hash}`, from(ip));
  assert.equal(r.status, 429, r.text);
  assert.equal(r.json.error.code, "rate_limited");
  assert.equal(r.headers.get("retry-after"), "60");
});

test("payout routes and preflights are not rate limited; health and /status share their own count", async () => {
  await freshWindow();
  const ip = "192.0.2.30";
  const auth = { authorization: `Bearer ${KEY}`, "cf-connecting-ip": ip };
  for (let i = 0; i < LIMIT + 3; i++) {
    const inv = signInvoice({ amountMsat: 1_000_000 + i * 1000, expiry: 900 });
    const p = await worker.request("POST", "/api/payouts", {
      json: { destination: inv.payment_request },
      headers: { ...auth, "idempotency-key": `rl-${i}` },
    });
    assert.equal(p.status, 201, p.text);
    assert.equal((await worker.request("GET", `/api/payouts/${p.json.id}`, { headers: auth })).status, 200);
    assert.equal((await worker.request("OPTIONS", "/api/create-invoice", from(ip))).status, 204);
  }
  for (let i = 0; i < LIMIT; i++) {
    const path = i % 2 ? "/status" : "/api/lightning/health";
    assert.equal((await worker.request("GET", path, from(ip))).status, 200, path);
  }
  for (const path of ["/api/lightning/health", "/status"]) {
    const r = await worker.request("GET", path, from(ip));
    assert.equal(r.status, 429, `${path}: ${r.text}`);
    assert.equal(r.headers.get("retry-after"), "60");
  }
  assert.equal((await worker.createInvoice({ amount: 100 }, from(ip))).status, 201, "create-invoice has its own count");
});

test("wrong keys are throttled per client: past the limit even the right key waits", async () => {
  await freshWindow();
  const ip = "198.51.100.77";
  const list = (key, from = ip) =>
    worker.request("GET", "/api/payouts?limit=1", { headers: { authorization: `Bearer ${key}`, "cf-connecting-ip": from } });
  // wrangler.toml: AUTH_FAILURE_LIMITER allows 10 failures a minute.
  for (let i = 0; i < 10; i++) {
    const r = await list(`wrong-key-${i}-0123456789`);
    assert.equal(r.status, 401, r.text);
  }
  const over = await list("wrong-key-x-0123456789");
  assert.equal(over.status, 429, over.text);
  assert.equal(over.json.error.code, "rate_limited");
  assert.equal(over.headers.get("retry-after"), "60");
  const right = await list(KEY);
  assert.equal(right.status, 429, "the right key is not told apart while the client is throttled");
  assert.equal((await list(KEY, "198.51.100.78")).status, 200, "another client is unaffected");
  // A request without any key is not a failed guess.
  const anon = await worker.request("GET", "/api/payouts", from("198.51.100.79"));
  assert.equal(anon.status, 401);
});

test("payout and admin routes send no CORS headers; the invoice routes do", async () => {
  const origin = { origin: "https://shop.example", "cf-connecting-ip": "192.0.2.99" };
  for (const [method, path] of [["OPTIONS", "/api/payouts"], ["GET", "/api/payouts"], ["OPTIONS", "/api/payouts/po_1/retry"], ["GET", "/api/payouts/attention"], ["OPTIONS", "/api/invoices/events"]]) {
    const r = await worker.request(method, path, { headers: { ...origin, "access-control-request-method": "POST" } });
    assert.equal(r.headers.get("access-control-allow-origin"), null, `${method} ${path}`);
    assert.equal(r.headers.get("access-control-allow-methods"), null, `${method} ${path}`);
  }
  const pre = await worker.request("OPTIONS", "/api/create-invoice", { headers: origin });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), "*");
  const lnurl = await worker.request("OPTIONS", "/.well-known/lnurlp/alice", { headers: origin });
  assert.equal(lnurl.headers.get("access-control-allow-origin"), "*", "LUD-06 wallets in browsers read the LNURL routes");
});

test("check-invoice's search of every backend for an unknown hash has its own, lower limit; known invoices are unaffected", async () => {
  await freshWindow();
  const ip = "198.51.100.40";
  const known = await missLimited.createInvoice({ amount: 100 }, from(ip));
  assert.equal(known.status, 201, known.text);
  const random = () => [...crypto.getRandomValues(new Uint8Array(32))].map((b) => b.toString(16).padStart(2, "0")).join("");
  for (let i = 0; i < 2; i++) {
    const r = await missLimited.request("GET", `/api/check-invoice?payment_hash=${random()}`, from(ip));
    assert.equal(r.status, 404, r.text);
  }
  const over = await missLimited.request("GET", `/api/check-invoice?payment_hash=${random()}`, from(ip));
  assert.equal(over.status, 429, over.text);
  assert.equal(over.json.error.code, "rate_limited");
  const still = await missLimited.request("GET", `/api/check-invoice?payment_hash=${known.json.payment_hash}`, from(ip));
  assert.equal(still.status, 200, "an invoice the watch holds is answered without the search");
  const other = await missLimited.request("GET", `/api/check-invoice?payment_hash=${random()}`, from("198.51.100.41"));
  assert.equal(other.status, 404, "another client has its own count");
});

test("without the binding the routes are not limited", async () => {
  for (let i = 0; i < LIMIT + 3; i++) {
    const r = await unbound.createInvoice({ amount: 100 }, from("203.0.113.99"));
    assert.equal(r.status, 201, r.text);
  }
});
