// Startup cost of the Worker's wasm, measured in the same run against a trivial Worker.
//
//   node bench/startup.mjs [--runs N] [other-build-dir ...]
//
// Runs each Worker in workerd through Miniflare (which comes with wrangler) and times
// `new Miniflare` to ready, and to the answer of the first `GET /`, for build/ and for a
// trivial JS Worker served the same way. Loading build/index.js compiles the wasm and
// instantiates it at the top level, so "ready" minus the trivial Worker's "ready" is the
// module's startup cost (process spawn and runtime boot are the same for both). It also
// times warm `GET /` and warm `POST /api/create-invoice` with the mock provider (which
// signs a BOLT11 invoice that the gateway then verifies: mostly secp256k1 work in wasm).
//
// Other build directories (copies of build/ from other builds: index.js + index_bg.wasm;
// the wasm-bindgen glue must come from the same build as the wasm) are measured alongside.
// Figures are medians over --runs runs (default 5), interleaved in a random order. It prints figures; it
// never fails on them. (Timing inside the Worker is not possible: workerd's clocks do not
// advance while code runs. Node 20's V8 cannot compile this wasm: it uses the new
// exception-handling opcodes.)
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
let runs = 5;
const extra = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--runs") runs = Number(args[++i]);
  else extra.push(path.resolve(args[i]));
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ms = (x) => (x == null ? "n/a" : x.toFixed(1));
// `gzip -9 -n`, as the Makefile and bench/SIZE.md count it (node's zlib at level 9 gives
// about 1.4% more).
const gzipSize = (buf) => spawnSync("gzip", ["-9", "-n", "-c"], { input: buf, maxBuffer: 1 << 30 }).stdout.length;

// The Durable Object bindings wrangler.toml declares (name + class_name pairs).
function durableObjects() {
  const toml = fs.readFileSync(path.join(ROOT, "wrangler.toml"), "utf8");
  const out = {};
  for (const block of toml.split("[[durable_objects.bindings]]").slice(1)) {
    const name = /^\s*name\s*=\s*"([^"]+)"/m.exec(block)?.[1];
    const cls = /^\s*class_name\s*=\s*"([^"]+)"/m.exec(block)?.[1];
    if (name && cls) out[name] = { className: cls, useSQLite: true };
  }
  return out;
}

// Each variant is a directory holding index.js + index_bg.wasm.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "lnfb-startup-"));
const variants = [];
for (const [i, src] of [path.join(ROOT, "build"), ...extra].entries()) {
  // A private copy, so a concurrent rebuild of build/ cannot change it mid-run.
  const dir = path.join(tmp, `v${i}`);
  fs.mkdirSync(dir);
  for (const f of ["index.js", "index_bg.wasm"]) fs.copyFileSync(path.join(src, f), path.join(dir, f));
  variants.push({ label: path.relative(ROOT, src) || src, dir, wasm: path.join(dir, "index_bg.wasm") });
}

const TRIVIAL = 'export default { fetch() { return new Response("ok"); } };';
function options(v) {
  if (!v) return { modules: true, script: TRIVIAL, compatibilityDate: "2025-09-01" };
  return {
    scriptPath: path.join(v.dir, "index.js"),
    modulesRoot: v.dir,
    modules: true,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    compatibilityDate: "2025-09-01",
    kvNamespaces: ["LIGHTNING_KV"],
    durableObjects: durableObjects(),
    // The mock provider signs a real BOLT11 invoice that the gateway then verifies:
    // the warm create-invoice figure is mostly secp256k1 work inside the wasm.
    bindings: { ENVIRONMENT: "development", LIGHTNING_NETWORK: "bitcoin", LIGHTNING_FALLBACK_ENABLE_MOCK: "true" },
  };
}

async function workerdRun(v) {
  const t0 = performance.now();
  const mf = new Miniflare(options(v));
  await mf.ready;
  const t1 = performance.now();
  const res = await mf.dispatchFetch("http://localhost/");
  await res.arrayBuffer();
  const t2 = performance.now();
  const warm = [];
  for (let i = 0; i < 20; i++) {
    const s = performance.now();
    await (await mf.dispatchFetch("http://localhost/")).arrayBuffer();
    warm.push(performance.now() - s);
  }
  const create = [];
  let createStatus = null;
  if (v) {
    for (let i = 0; i < 35; i++) {
      const s = performance.now();
      const r = await mf.dispatchFetch("http://localhost/api/create-invoice", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ amount: 1000 + i, description: "startup bench" }),
      });
      await r.arrayBuffer();
      createStatus = r.status;
      if (i >= 5) create.push(performance.now() - s);
    }
  }
  await mf.dispose();
  return { ready: t1 - t0, first: t2 - t0, warm: median(warm), status: res.status, create: v ? median(create) : null, createStatus };
}

const results = new Map();
const add = (key, r) => {
  if (!results.has(key)) results.set(key, []);
  results.get(key).push(r);
};
for (let run = 0; run < runs; run++) {
  // A fresh random order every run, so no Worker always goes first (or right after another).
  const order = [null, ...variants].sort(() => Math.random() - 0.5);
  for (const v of order) add(v ? v.label : "trivial", await workerdRun(v));
}
const sizes = new Map(variants.map((v) => [v.label, fs.readFileSync(v.wasm)]));
fs.rmSync(tmp, { recursive: true, force: true });

const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, "node_modules/miniflare/package.json"), "utf8"));
console.log(`startup, ${runs} runs, medians in ms (${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} cores, node ${process.version}, miniflare ${version})`);
console.log("\nworkerd (Miniflare): new Miniflare -> ready, -> first GET / answered; warm GET /; warm POST /api/create-invoice (mock: sign + verify)");
const floor = results.get("trivial");
const rows = ["trivial", ...variants.map((v) => v.label)];
const fReady = median(floor.map((r) => r.ready));
const fFirst = median(floor.map((r) => r.first));
console.log(["worker", "wasm", "gzip -9", "ready", "first", "warm", "create-invoice", "ready - trivial", "first - trivial", "status"].join(" | "));
for (const label of rows) {
  const rs = results.get(label);
  const bytes = sizes.get(label) ?? null;
  const ready = median(rs.map((r) => r.ready));
  const first = median(rs.map((r) => r.first));
  console.log(
    [
      label === "trivial" ? "trivial JS Worker" : label,
      bytes ? String(bytes.length) : "-",
      bytes ? String(gzipSize(bytes)) : "-",
      ms(ready),
      ms(first),
      ms(median(rs.map((r) => r.warm))),
      label === "trivial" ? "-" : `${ms(median(rs.map((r) => r.create)))} (${rs[0].createStatus})`,
      label === "trivial" ? "-" : ms(ready - fReady),
      label === "trivial" ? "-" : ms(first - fFirst),
      rs[0].status,
    ].join(" | "),
  );
}
