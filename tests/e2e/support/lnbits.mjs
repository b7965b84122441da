// A real LNbits server (PyPI `lnbits`, FakeWallet funding source) on
// 127.0.0.1, installed into .venv-lnbits by scripts/setup.sh --test.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT } from "./invoice.mjs";
import { freePort } from "./worker.mjs";

const VENV = path.join(ROOT, ".venv-lnbits");

/**
 * Starts LNbits. With `{ funding: true }` the admin UI is on, the first
 * install sets the super user, and `fund()` credits wallets (FakeWallet
 * pays only internal invoices, from a wallet's own balance).
 */
export async function startLnbits({ funding = false, env = {} } = {}) {
  const bin = path.join(VENV, "bin/lnbits");
  if (!fs.existsSync(bin)) throw new Error("LNbits is not installed: run `scripts/setup.sh --test` (make test does)");
  const lib = fs.readdirSync(path.join(VENV, "lib")).find((d) => d.startsWith("python3"));
  // LNbits serves lnbits/static by a relative path: run it from site-packages.
  const cwd = path.join(VENV, "lib", lib, "site-packages");
  const data = fs.mkdtempSync(path.join(os.tmpdir(), "lnbits-"));
  const port = await freePort();
  const child = spawn(bin, ["--host", "127.0.0.1", "--port", String(port)], {
    cwd,
    env: {
      ...process.env,
      LNBITS_DATA_FOLDER: data,
      LNBITS_BACKEND_WALLET_CLASS: "FakeWallet",
      LNBITS_ADMIN_UI: funding ? "true" : "false",
      LNBITS_SITE_TITLE: "e2e",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`lnbits exited:\n${log.slice(-3000)}`);
    try {
      const r = await fetch(`${url}/api/v1/health`);
      if (r.ok) break;
    } catch {}
    if (Date.now() > deadline) throw new Error(`lnbits did not start:\n${log.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
  let token = null;
  if (funding) {
    const r = await fetch(`${url}/api/v1/auth/first_install`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: "e2e-admin", password: "e2e-password-123", password_repeat: "e2e-password-123" }),
    });
    if (!r.ok) throw new Error(`first install: ${r.status} ${await r.text()}`);
    token = (await r.json()).access_token;
  }
  return {
    url,
    /** Credits `sats` to a wallet (super user only). */
    async fund(walletId, sats) {
      const r = await fetch(`${url}/users/api/v1/balance`, {
        method: "PUT",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({ id: walletId, amount: sats }),
      });
      if (!r.ok) throw new Error(`fund: ${r.status} ${await r.text()}`);
    },
    async balanceMsat(key) {
      const r = await fetch(`${url}/api/v1/wallet`, { headers: { "X-Api-Key": key } });
      return (await r.json()).balance;
    },
    async createInvoice(key, sats, memo = "e2e", expiry = undefined) {
      const r = await fetch(`${url}/api/v1/payments`, {
        method: "POST",
        headers: { "content-type": "application/json", "X-Api-Key": key },
        body: JSON.stringify({ out: false, amount: sats, memo, ...(expiry ? { expiry } : {}) }),
      });
      if (!r.ok) throw new Error(`invoice: ${r.status} ${await r.text()}`);
      return r.json();
    },
    get log() {
      return log;
    },
    /** Creates a wallet; returns {id, adminkey, inkey}. */
    async createWallet(name) {
      const r = await fetch(`${url}/api/v1/account`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name }),
      });
      if (!r.ok) throw new Error(`create wallet: ${r.status} ${await r.text()}`);
      return r.json();
    },
    /** Pays `bolt11` from the wallet of `adminkey` (LNbits settles internal invoices at once). */
    async pay(adminkey, bolt11) {
      const r = await fetch(`${url}/api/v1/payments`, {
        method: "POST",
        headers: { "content-type": "application/json", "X-Api-Key": adminkey },
        body: JSON.stringify({ out: true, bolt11 }),
      });
      return { status: r.status, json: await r.json().catch(() => null) };
    },
    async payment(key, hash) {
      const r = await fetch(`${url}/api/v1/payments/${hash}`, { headers: { "X-Api-Key": key } });
      return { status: r.status, json: await r.json().catch(() => null) };
    },
    async stop() {
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {}
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
      fs.rmSync(data, { recursive: true, force: true });
    },
  };
}
