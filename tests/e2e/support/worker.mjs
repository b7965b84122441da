// Runs the built Worker in workerd through the pinned wrangler (`wrangler
// dev`), with local KV and a private persistence folder, configured only by
// the variables a test passes (through an env file, so a developer's own
// .dev.vars never leaks into a test).
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { ROOT } from "./invoice.mjs";

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Options: `dir` reuses a persistence folder (its state survives), `port` a
 * fixed port, and `snapshot` runs a private copy of build/ with wrangler.toml's
 * [build] section left out. Without it, `wrangler dev` watches src/ and, on
 * any edit there, runs scripts/build.sh and reloads the Worker mid-test.
 * `editConfig` (snapshot only) rewrites that copy of wrangler.toml.
 * `build` (snapshot only) runs another build folder than build/ (a gzipped
 * `.wasm.gz` in it is unpacked), and `state` keeps the Worker's local KV and
 * Durable Objects in a folder of its own that outlives `stop()`: two builds
 * run one after the other on one `state` see the same data (the upgrade test).
 *
 * The invoice rate limit is off unless a test turns it on
 * (INVOICE_RATE_LIMIT_ENABLED: "true"): tests send everything from one IP.
 */
export async function startWorker(vars, { name = "worker", dir: reuseDir = null, port: fixedPort = null, snapshot = false, logLevel = "info", editConfig = (t) => t, build = path.join(ROOT, "build"), state = null } = {}) {
  const dir = reuseDir ?? fs.mkdtempSync(path.join(os.tmpdir(), `lnfb-${name}-`));
  fs.mkdirSync(dir, { recursive: true });
  const configArgs = [];
  if (snapshot) {
    const config = path.join(dir, "wrangler.toml");
    if (!fs.existsSync(config)) {
      fs.cpSync(build, path.join(dir, "build"), { recursive: true });
      for (const f of fs.readdirSync(path.join(dir, "build"))) {
        if (!f.endsWith(".wasm.gz")) continue;
        const gz = path.join(dir, "build", f);
        fs.writeFileSync(gz.slice(0, -3), zlib.gunzipSync(fs.readFileSync(gz)));
        fs.rmSync(gz);
      }
      const toml = fs.readFileSync(path.join(ROOT, "wrangler.toml"), "utf8");
      // Drop the [build] table (up to the next table header): no build command, no watcher.
      fs.writeFileSync(config, editConfig(toml.replace(/^\[build\]\n(?:(?!\[)[^\n]*\n)*/m, "")));
    }
    configArgs.push("--config", config);
  }
  const envFile = path.join(dir, "test.env");
  // A 1 s clock skew between the fakes and the Worker (they share a clock):
  // the same invoice is sent again 2 s after its previous send, not 2 min.
  const all = { ENVIRONMENT: "development", INVOICE_RATE_LIMIT_ENABLED: "false", PAYOUT_CLOCK_SKEW_SECS: "1", ...vars };
  fs.writeFileSync(envFile, Object.entries(all).map(([k, v]) => `${k}=${v}`).join("\n") + "\n");
  let port = fixedPort ?? (await freePort());
  let base = `http://127.0.0.1:${port}`;
  let child;
  let inspectorPort = 0;
  let log = "";
  const previousLogs = [];
  async function launch() {
    inspectorPort = await freePort();
    const args = [
      "dev", "--ip", "127.0.0.1", "--port", String(port), "--persist-to", state ?? path.join(dir, "state"),
      "--env-file", envFile, "--test-scheduled", "--show-interactive-dev-session=false",
      "--inspector-port", String(inspectorPort), "--log-level", logLevel, ...configArgs,
    ];
    child = spawn(path.join(ROOT, "node_modules/.bin/wrangler"), args, {
      cwd: ROOT,
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true", NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    log = "";
    child.stdout.on("data", (d) => (log += d));
    child.stderr.on("data", (d) => (log += d));
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`wrangler exited early:\n${log}`);
      if (/Ready on/.test(log)) {
        try {
          await fetch(`${base}/`);
          break;
        } catch {}
      }
      if (Date.now() > deadline) {
        kill(child);
        throw new Error(`wrangler did not start in time:\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  // A port found free can be taken before wrangler binds it (an outbound
  // connection's ephemeral port, another server starting): pick new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      await launch();
      break;
    } catch (e) {
      if (fixedPort !== null || attempt >= 3 || !/Address already in use/.test(String(e.message))) throw e;
      port = await freePort();
      base = `http://127.0.0.1:${port}`;
    }
  }
  const worker = {
    base,
    dir,
    /** wrangler's DevTools inspector (bench/profile.mjs takes CPU profiles through it). */
    get inspectorPort() {
      return inspectorPort;
    },
    get log() {
      return log;
    },
    async request(method, route, { json, headers = {}, body } = {}) {
      const init = { method, headers: { ...headers } };
      if (json !== undefined) {
        init.body = JSON.stringify(json);
        init.headers["content-type"] ??= "application/json";
      } else if (body !== undefined) init.body = body;
      // A request that hangs fails in 60 s with the Worker's log, not
      // after undici's 300 s with "fetch failed" alone.
      init.signal = AbortSignal.timeout(60_000);
      let res, text;
      try {
        res = await fetch(base + route, init);
        text = await res.text();
      } catch (e) {
        throw new Error(`${method} ${route}: ${e.message} (${e.cause?.message ?? "no cause"}); Worker log tail:\n${log.slice(-4000)}`);
      }
      let data = null;
      try {
        data = JSON.parse(text);
      } catch {}
      return { status: res.status, headers: res.headers, text, json: data };
    },
    createInvoice(json, opts = {}) {
      return this.request("POST", "/api/create-invoice", { json, ...opts });
    },
    checkInvoice(hash) {
      return this.request("GET", `/api/check-invoice?payment_hash=${hash}`);
    },
    /**
     * Polls check-invoice until it says `status` (it answers from the invoice
     * watch, which looks the invoice up at most every few seconds however
     * often it is asked); the last answer, whatever it says.
     */
    async waitForStatus(hash, status, timeoutMs = 15_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const res = await this.checkInvoice(hash);
        if (res.json?.status === status || Date.now() > end) return res;
        await new Promise((r) => setTimeout(r, 500));
      }
    },
    /** Runs the cron trigger once, as the platform would. */
    async cron(expr = "*/5 * * * *") {
      const res = await fetch(`${base}/__scheduled?cron=${encodeURIComponent(expr)}`);
      await res.text();
      return res.status;
    },
    async stop() {
      kill(child);
      await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once("exit", r)));
      fs.rmSync(dir, { recursive: true, force: true });
    },
    /** The logs of earlier runs (before each restart) and of the current one. */
    get allLogs() {
      return [...previousLogs, log].join("\n----- restart -----\n");
    },
    /** The wrangler process id (its process group holds workerd too). */
    get pid() {
      return child.pid;
    },
    /**
     * Kills the runtime like a crash: SIGKILL to wrangler's whole process
     * group (workerd included), no graceful shutdown. The persistence folder stays.
     */
    async crash() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {}
        await exited;
      }
      previousLogs.push(log);
    },
    /** Crashes (SIGKILL) unless already stopped, then starts again on the same folder and port. */
    async restart() {
      await this.crash();
      // The port can stay busy for a moment after the kill: retry a bounded number of times.
      for (let i = 0; ; i++) {
        try {
          await launch();
          return;
        } catch (e) {
          if (i >= 4 || !/EADDRINUSE|address already in use/i.test(String(e.message))) throw e;
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    },
  };
  return worker;
}

function kill(child) {
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {}
}

/** The variables that point the Worker at one fake of `kind`. */
export function backendVars(fake) {
  switch (fake.kind) {
    case "lnd":
      return { LND_REST_URL: fake.url, LND_ADMIN_MACAROON: fake.key };
    case "lnbits":
      return { LNBITS_URL: fake.url, LNBITS_INVOICE_KEY: fake.key };
    case "cln":
      return { CLN_REST_URL: fake.url, CLN_RUNE: fake.key };
    case "phoenixd":
      return { PHOENIXD_URL: fake.url, PHOENIXD_PASSWORD: fake.key };
    default:
      throw new Error(`no variables for a ${fake.kind} fake`);
  }
}

/** Worker variables that wire every given fake, in `order` (default: the fakes' order). */
export function providerVars(fakes, order = Object.keys(fakes).join(",")) {
  const vars = { LIGHTNING_PROVIDERS: order };
  for (const f of Object.values(fakes)) Object.assign(vars, backendVars(f));
  return vars;
}

/**
 * Runs `wrangler kv key <args>` on the Worker's local KV (its persistence
 * folder), behind the Worker's back: `localKv(worker, "delete", "inv:<hash>")`.
 */
export async function localKv(worker, ...args) {
  const { execFile } = await import("node:child_process");
  const { promisify } = await import("node:util");
  const { stdout } = await promisify(execFile)(
    path.join(ROOT, "node_modules/.bin/wrangler"),
    ["kv", "key", ...args, "--binding", "LIGHTNING_KV", "--local", "--persist-to", path.join(worker.dir, "state")],
    { cwd: ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true", NO_COLOR: "1" } },
  );
  return stdout;
}
