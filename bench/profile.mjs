// Where a route's CPU goes inside the Worker: a V8 CPU profile taken through
// wrangler dev's DevTools inspector while the route is called N times, summed
// by function (self time) and by our own top-level functions (inclusive).
// Function names need a build that kept them:
//
//   touch Cargo.toml && WASM_OPT_NAMES=1 scripts/build.sh && cp -r build /tmp/named-build
//   touch Cargo.toml && scripts/build.sh            # the normal build back
//   node bench/profile.mjs --build /tmp/named-build [--route create|create-phoenixd|check|index|health|payout] [--n 300]
//
// Loopback only; the Worker runs the mock backend (no provider latency);
// `create-phoenixd` creates through a fake phoenixd instead (no latency,
// one reused signed invoice), so the profile has the BOLT11 verification of
// a real backend's answer and not the mock's signing.
import path from "node:path";
import WebSocket from "ws";
import { startWorker } from "../tests/e2e/support/worker.mjs";
import { startFakeProvider } from "../tests/e2e/support/fake-provider.mjs";
import { signInvoice, ROOT } from "../tests/e2e/support/invoice.mjs";

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
};
const N = Number(opt("n", 300));
const ROUTE = opt("route", "create");
const BUILD = path.resolve(opt("build", path.join(ROOT, "build")));
const TOP = Number(opt("top", 40));
const PAY_KEY = "profile-payout-key-0123456789";

const phoenixd = ROUTE === "create-phoenixd" ? await startFakeProvider("phoenixd", { reuseInvoices: true }) : null;
const w = await startWorker(
  {
    LIGHTNING_FALLBACK_ENABLE_MOCK: "true",
    ...(phoenixd
      ? { LIGHTNING_PROVIDERS: "phoenixd", PHOENIXD_URL: phoenixd.url, PHOENIXD_PASSWORD: phoenixd.key }
      : { LIGHTNING_PROVIDERS: "mock" }),
    PAYOUT_PROVIDER: "mock",
    PAYOUT_API_KEY: PAY_KEY,
    PAYOUT_DAILY_LIMIT_SATS: "100000000",
    ...(opt("log-level", null) ? { LOG_LEVEL: opt("log-level") } : {}),
  },
  { name: "profile", snapshot: true, build: BUILD },
);
const json = { "content-type": "application/json" };
let hash = null;
const calls = {
  index: () => w.request("GET", "/"),
  health: () => w.request("GET", "/api/lightning/health"),
  create: () => w.request("POST", "/api/create-invoice", { json: { amount: 1000 }, headers: json }),
  "create-phoenixd": () => w.request("POST", "/api/create-invoice", { json: { amount: 1000 }, headers: json }),
  check: () => w.request("GET", `/api/check-invoice?payment_hash=${hash}`),
  payout: (i) =>
    w.request("POST", "/api/payouts", {
      json: { destination: signInvoice({ amountMsat: 1_000_000 + i * 1000, expiry: 900 }).payment_request },
      headers: { ...json, authorization: `Bearer ${PAY_KEY}`, "idempotency-key": `profile-${Date.now()}-${i}` },
    }),
};
const call = calls[ROUTE];
if (!call) throw new Error(`--route must be one of ${Object.keys(calls).join(", ")}`);

let ws;
try {
  hash = (await calls.create()).json.payment_hash;
  for (let i = 0; i < 30; i++) await call(i); // warm-up: compiled and tiered up
  const targets = await (await fetch(`http://127.0.0.1:${w.inspectorPort}/json`)).json();
  ws = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise((r, j) => (ws.once("open", r), ws.once("error", j)));
  let next = 1;
  const pending = new Map();
  ws.on("message", (m) => {
    const msg = JSON.parse(m.toString());
    if (msg.id && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    }
  });
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      const id = next++;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: 50 });
  await send("Profiler.start");
  for (let i = 0; i < N; i++) await call(30 + i);
  const stopped = await send("Profiler.stop");
  const profile = stopped.result?.profile;
  if (!profile) throw new Error(`no profile: ${JSON.stringify(stopped).slice(0, 300)}`);
  report(profile);
} finally {
  ws?.close();
  await w.stop();
  await phoenixd?.stop();
}

function report(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const dt = profile.timeDeltas ?? [];
  const selfUs = new Map();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (dt[i] ?? 0)));
  const name = (n) => n.callFrame.functionName || `(${n.callFrame.url ? path.basename(n.callFrame.url) : "anonymous"})`;
  const clean = (s) => s.replace(/::h[0-9a-f]{16}$/, "").replace(/\[[0-9a-f]{16}\]/g, "");
  const self = new Map();
  const incl = new Map();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    const nm = clean(name(n));
    if (nm === "(idle)" || nm === "(program)") {
      idle += us;
      continue;
    }
    total += us;
    self.set(nm, (self.get(nm) ?? 0) + us);
    // Inclusive time for every distinct function on the stack.
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const f = clean(name(byId.get(cur)));
      if (seen.has(f)) continue;
      seen.add(f);
      incl.set(f, (incl.get(f) ?? 0) + us);
    }
  }
  const ms = (us) => (us / 1000 / N).toFixed(3);
  console.log(`\nV8 CPU profile of ${N} × ${ROUTE} (ms per request; busy ${ms(total)}, idle/program ${ms(idle)}; sampling every 50 µs)`);
  console.log(`\nself time, top ${TOP}:`);
  for (const [f, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`${ms(us).padStart(8)}  ${f.slice(0, 150)}`);
  console.log(`\ninclusive time, top ${TOP}:`);
  for (const [f, us] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`${ms(us).padStart(8)}  ${f.slice(0, 150)}`);
}
