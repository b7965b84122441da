// Signed BOLT11 invoices for the fake providers, from the Rust testkit
// (examples/testkit.rs), so fakes hand out invoices the Worker can verify.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const TESTKIT = path.join(ROOT, "target/debug/examples/testkit");

export function signInvoice({ network = "bitcoin", amountMsat, expiry = 3600, description = "e2e" }) {
  const out = execFileSync(TESTKIT, ["invoice", network, String(amountMsat), String(expiry), description], {
    encoding: "utf8",
  });
  return JSON.parse(out);
}

export function decodeInvoice(bolt11) {
  return JSON.parse(execFileSync(TESTKIT, ["decode", bolt11], { encoding: "utf8" }));
}
