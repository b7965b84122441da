// Generated clients: the TypeScript client (openapi-typescript's types,
// committed as examples/shop/gateway-api.d.ts, with openapi-fetch) and the
// Python client (openapi-python-client) are generated from the gateway's
// openapi.json; a small program against each (create, check, pay, a 422) is
// type-checked (tsc --strict, mypy --strict) and then run against the built
// Worker in workerd (mock provider, payouts through the mock backend, all on
// 127.0.0.1). The example shop is type-checked against the same types.
// Fails when the committed types are stale: regenerate them with
//   npx openapi-typescript crates/gateway/src/api/openapi.json -o examples/shop/gateway-api.d.ts
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT } from "../e2e/support/invoice.mjs";
import { startWorker } from "../e2e/support/worker.mjs";

const DOC = path.join(ROOT, "crates/gateway/src/api/openapi.json");
const TYPES = path.join(ROOT, "examples/shop/gateway-api.d.ts");
const VENV = path.join(ROOT, ".venv-clients");
const bin = (name) => path.join(ROOT, "node_modules/.bin", name);
const say = (m) => console.log(`clients: ${m}`);
const run = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: "inherit", ...opts });
  if (r.status !== 0) throw new Error(`${path.basename(cmd)} ${args.join(" ")} failed (exit ${r.status})`);
};

if (!fs.existsSync(path.join(VENV, "bin/openapi-python-client"))) {
  console.error(`clients: ${VENV} missing: run scripts/setup.sh --test`);
  process.exit(1);
}
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "lnfb-clients-"));
let worker;
let code = 1;
try {
  // 1. TypeScript: the committed types are what openapi-typescript makes of the document now.
  const fresh = path.join(tmp, "gateway-api.d.ts");
  execFileSync(bin("openapi-typescript"), [DOC, "-o", fresh], { stdio: "ignore" });
  if (fs.readFileSync(fresh, "utf8") !== fs.readFileSync(TYPES, "utf8")) {
    throw new Error("examples/shop/gateway-api.d.ts is stale: regenerate it (see tests/clients/run.mjs)");
  }
  run(bin("tsc"), ["-p", "examples/shop/tsconfig.json"]);
  // Inside the repository, so the compiled program finds openapi-fetch in node_modules.
  const out = path.join(ROOT, "target/clients-ts");
  fs.rmSync(out, { recursive: true, force: true });
  run(bin("tsc"), ["-p", "tests/clients/tsconfig.json", "--outDir", out]);
  say("TypeScript client: types current, shop and program type-checked");

  // 2. Python: generate, then mypy --strict on the program (the generated package is read, not judged).
  const pyOut = path.join(tmp, "py");
  fs.mkdirSync(pyOut);
  run(path.join(VENV, "bin/openapi-python-client"), [
    "generate", "--path", DOC, "--meta", "none", "--config", "tests/clients/python-client.yaml",
    "--output-path", path.join(pyOut, "lightning_fallback_client"),
  ], { stdio: ["ignore", "ignore", "inherit"] });
  run(path.join(VENV, "bin/mypy"), ["--strict", "--follow-imports=silent", "--cache-dir", path.join(tmp, "mypy"), "tests/clients/python_client_check.py"], {
    env: { ...process.env, MYPYPATH: pyOut },
  });
  say("Python client: generated, program type-checked");

  // 3. Both programs against the Worker.
  const keys = { PAYOUT_KEY: "clients-payout-key-0123456789", INVOICE_KEY: "clients-invoice-key-0123456789" };
  worker = await startWorker(
    {
      LIGHTNING_FALLBACK_ENABLE_MOCK: "true",
      LIGHTNING_PROVIDERS: "mock",
      PAYOUT_PROVIDER: "mock",
      PAYOUT_API_KEY: keys.PAYOUT_KEY,
      INVOICE_API_KEY: keys.INVOICE_KEY,
    },
    { name: "clients", snapshot: true },
  );
  const env = { ...process.env, ...keys, GATEWAY_URL: worker.base, RUN_ID: String(Date.now()) };
  run(process.execPath, [path.join(out, "ts_client_check.js")], { env });
  run(path.join(VENV, "bin/python"), ["tests/clients/python_client_check.py"], { env: { ...env, PYTHONPATH: pyOut } });
  say("both programs created, checked and paid an invoice and handled a 422");
  code = 0;
} catch (e) {
  console.error(`clients: ${e.message}`);
  if (worker) console.error(worker.log.split("\n").slice(-30).join("\n"));
} finally {
  await worker?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.exit(code);
