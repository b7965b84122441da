// Signed BOLT11 invoices for the fake providers, from the Rust testkit
// (crates/testkit/src/bin/testkit.rs), so fakes hand out invoices the Worker can verify.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const TESTKIT = path.join(ROOT, "target/debug/testkit");

// Every invoice signed here: payment hash -> preimage, so fake backends
// answer a payment with its real preimage (the gateway accepts a success
// only with the preimage of the hash).
const PREIMAGES = new Map();

/** The preimage of an invoice `signInvoice` made in this process, if any. */
export function preimageOf(hash) {
  return PREIMAGES.get(hash);
}

/** `descriptionHash` (64 hex digits) makes the invoice commit to it instead of `description`. */
export function signInvoice({ network = "bitcoin", amountMsat, expiry = 3600, description = "e2e", descriptionHash = "" }) {
  const args = ["invoice", network, String(amountMsat), String(expiry), description];
  if (descriptionHash) args.push(descriptionHash);
  const out = execFileSync(TESTKIT, args, { encoding: "utf8" });
  const inv = JSON.parse(out);
  PREIMAGES.set(inv.payment_hash, inv.preimage);
  return inv;
}

export function decodeInvoice(bolt11) {
  return JSON.parse(execFileSync(TESTKIT, ["decode", bolt11], { encoding: "utf8" }));
}

const BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/**
 * `s` with the character at `pos` (negative counts from the end) replaced by
 * another one of the bech32 alphabet, so the result always differs from `s`
 * (a fixed replacement such as "q" is a no-op when the character already is "q").
 */
export function corruptAt(s, pos = -1) {
  const i = pos < 0 ? s.length + pos : pos;
  if (i < 0 || i >= s.length) throw new Error(`corruptAt: position ${pos} is outside a string of ${s.length}`);
  const c = s[i].toLowerCase();
  const k = BECH32.indexOf(c);
  const next = k < 0 ? "q" : BECH32[(k + 1) % BECH32.length];
  const out = s.slice(0, i) + next + s.slice(i + 1);
  if (out.toLowerCase() === s.toLowerCase()) throw new Error("corruptAt left the string unchanged");
  return out;
}
