// The contract run: schemathesis (PyPI, pinned in scripts/setup.sh) against
// the built Worker in workerd, started the way the e2e suite starts it, with
// the mock provider, payouts through the mock backend, a fake LNURL server
// and a webhook receiver, all on 127.0.0.1. It loads the schema from the
// running gateway's GET /openapi.json, so it tests what is served.
//
//   node tests/contract/run.mjs [--examples N] [--seed S] [-- extra schemathesis args]
//
// Runs every check schemathesis has (`--checks`/CONTRACT_CHECKS to narrow):
// fails (exit 1) on a 5xx, a response that does not match its schema, an
// undocumented status code, a wrong content type, a documented response
// header that is missing or malformed, schema-violating input accepted,
// schema-valid input refused (see schemathesis.toml for the operations whose
// rules JSON Schema cannot say), a wrong answer to a missing or bad key, an
// undocumented method served, or a missing Allow header.
import { spawn, execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { ROOT } from "../e2e/support/invoice.mjs";
import { startLnurlServer } from "../e2e/support/lnurl-server.mjs";
import { startWebhookReceiver } from "../e2e/support/webhook-receiver.mjs";
import { startWorker } from "../e2e/support/worker.mjs";

const args = process.argv.slice(2);
const dashdash = args.indexOf("--");
const extra = dashdash >= 0 ? args.slice(dashdash + 1) : [];
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && (dashdash < 0 || i < dashdash) ? args[i + 1] : dflt;
};
const EXAMPLES = opt("--examples", process.env.CONTRACT_EXAMPLES ?? "100");
const SEED = opt("--seed", process.env.CONTRACT_SEED ?? "1042");
const VENV = path.join(ROOT, ".venv-schemathesis");
const BIN = path.join(VENV, "bin/schemathesis");
const PYTHON = path.join(VENV, "bin/python");
// Every check schemathesis has, positive and negative data acceptance included.
const CHECKS = (opt("--checks", process.env.CONTRACT_CHECKS ?? "all")).split(",");

if (!fs.existsSync(BIN)) {
  console.error(`contract: ${BIN} missing: run scripts/setup.sh --test`);
  process.exit(1);
}
// The hook that keeps generated destinations on loopback must itself be right.
execFileSync(PYTHON, [path.join(ROOT, "tests/contract/hooks.py")], { stdio: "inherit" });

const PAYOUT_KEY = "contract-payout-key-0123456789";
const ADMIN_KEY = "contract-admin-key-0123456789";
const INVOICE_KEY = "contract-invoice-key-0123456789";
const SECRET = "whsec_" + crypto.randomBytes(32).toString("base64");

const lnurl = await startLnurlServer();
const hooks = await startWebhookReceiver({ secrets: { current: SECRET } });
let worker;
let code = 1;
try {
  worker = await startWorker(
    {
      LIGHTNING_FALLBACK_ENABLE_MOCK: "true",
      LIGHTNING_PROVIDERS: "mock",
      ADMIN_API_KEY: ADMIN_KEY,
      PAYOUT_API_KEY: PAYOUT_KEY,
      INVOICE_API_KEY: INVOICE_KEY,
      PAYOUT_PROVIDER: "mock",
      WEBHOOK_SECRET: SECRET,
      LNURL_ALLOW_HTTP_HOSTS: "127.0.0.1",
    },
    { name: "contract", snapshot: true },
  );
  const started = Date.now();
  const st = [
    "--config-file", path.join(ROOT, "tests/contract/schemathesis.toml"),
    "run", `${worker.base}/openapi.json`,
    "--checks", CHECKS.join(","),
    "--max-examples", EXAMPLES,
    "--seed", SEED,
    // One worker: with two, hypothesis parses lambda sources in two threads at once,
    // which CPython 3.11 can fail ("AST constructor recursion depth mismatch").
    "--workers", "1",
    "--request-timeout", "30",
    "--no-color",
    ...extra,
  ];
  console.log(`contract: schemathesis ${st.join(" ")}`);
  code = await new Promise((resolve) => {
    const child = spawn(BIN, st, {
      cwd: ROOT,
      stdio: "inherit",
      env: {
        ...process.env,
        CONTRACT_PAYOUT_KEY: PAYOUT_KEY,
        CONTRACT_ADMIN_KEY: ADMIN_KEY,
        CONTRACT_INVOICE_KEY: INVOICE_KEY,
        CONTRACT_LNURL_HOST: lnurl.host,
        CONTRACT_WEBHOOK_URL: hooks.url,
        SCHEMATHESIS_TELEMETRY: "false",
      },
    });
    child.on("exit", (c, sig) => resolve(c ?? (sig ? 1 : 1)));
  });
  const secs = Math.round((Date.now() - started) / 1000);
  console.log(
    `contract: schemathesis exit ${code} in ${secs}s; the gateway resolved ${lnurl.resolutions.length} addresses and sent ${hooks.received.length} webhooks, all on 127.0.0.1`,
  );
  if (code !== 0) {
    const tail = worker.log.split("\n").slice(-40).join("\n");
    console.error(`contract: the Worker's last log lines:\n${tail}`);
  }
} finally {
  await worker?.stop();
  await lnurl.stop();
  await hooks.stop();
}
process.exit(code);
