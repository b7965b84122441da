// Fake Lightning providers on 127.0.0.1 that speak the Alby, LND REST and
// LNbits shapes and can be told to fail: refuse connections, answer 5xx, an
// HTML or JSON 520, hang, or send garbage. Faults can target one method, so
// "reads work but writes fail" can be staged.
import http from "node:http";
import crypto from "node:crypto";
import { signInvoice, decodeInvoice } from "./invoice.mjs";

const SHAPES = {
  alby: {
    auth: (req, key) => req.headers["authorization"] === `Bearer ${key}`,
    create: { method: "POST", path: /^\/invoices$/ },
    check: { method: "GET", path: /^\/invoices\/([0-9a-f]{64})$/ },
    probe: { method: "GET", path: /^\/balance$/ },
    amountSat: (b) => b.amount,
    created: (inv) => [201, { payment_hash: inv.payment_hash, payment_request: inv.payment_request, expires_at: "2099-01-01T00:00:00Z" }],
    status: (st) => [200, { type: "incoming", payment_request: st.pr, state: st.paid ? "SETTLED" : "CREATED", settled: st.paid, settled_at: st.paid ? new Date(st.paidAt).toISOString() : null }],
    probeBody: () => [200, { balance: 21000, currency: "BTC", unit: "sat" }],
  },
  lnd: {
    auth: (req, key) => req.headers["grpc-metadata-macaroon"] === key,
    create: { method: "POST", path: /^\/v1\/invoices$/ },
    check: { method: "GET", path: /^\/v1\/invoice\/([0-9a-f]{64})$/ },
    probe: { method: "GET", path: /^\/v1\/getinfo$/ },
    amountSat: (b) => Number(b.value),
    created: (inv) => [200, { r_hash: Buffer.from(inv.payment_hash, "hex").toString("base64"), payment_request: inv.payment_request, add_index: "1" }],
    status: (st) => [200, { payment_request: st.pr, state: st.paid ? "SETTLED" : "OPEN", settled: st.paid, settle_date: st.paid ? String(Math.floor(st.paidAt / 1000)) : "0" }],
    probeBody: (fake) => [200, { synced_to_chain: fake.synced, num_active_channels: 3, block_height: 900000 }],
  },
  lnbits: {
    // The admin key can do everything the invoice key can.
    auth: (req, key, fake) => req.headers["x-api-key"] === key || req.headers["x-api-key"] === fake.adminKey,
    create: { method: "POST", path: /^\/api\/v1\/payments$/ },
    check: { method: "GET", path: /^\/api\/v1\/payments\/([0-9a-f]{64})$/ },
    probe: { method: "GET", path: /^\/api\/v1\/wallet$/ },
    amountSat: (b) => b.amount,
    created: (inv) => [201, { payment_hash: inv.payment_hash, bolt11: inv.payment_request, checking_id: inv.payment_hash, amount: 0, status: "pending" }],
    status: (st) => [200, { paid: st.paid, status: st.paid ? "success" : "pending", details: { bolt11: st.pr, amount: st.msat, status: st.paid ? "success" : "pending" } }],
    probeBody: () => [200, { name: "fake", balance: 21000000 }],
  },
};

const HTML_520 = `<!DOCTYPE html><html><head><title>fake.example | 520: Web server is returning an unknown error</title></head><body><h1>Error 520</h1>Cloudflare</body></html>`;

/**
 * Options for benchmarks (both off by default): `latencyMs` delays every
 * answer by that many milliseconds (also settable later as `fake.latencyMs`);
 * `reuseInvoices` signs one invoice per amount and expiry and hands it out
 * again, so signing (a subprocess) does not limit the fake's throughput.
 * `fake.knownInvoices` (bolt11 -> payment hash) spares decoding known invoices.
 */
export async function startFakeProvider(kind, { key, network = "bitcoin", latencyMs = 0, reuseInvoices = false } = {}) {
  const shape = SHAPES[kind];
  // LND macaroons are hex.
  key ??= kind === "lnd" ? "0201036c6e6402f801" : `${kind}-test-key`;
  if (!shape) throw new Error(`unknown fake kind ${kind}`);
  const fake = {
    kind,
    key,
    network,
    synced: true,
    faults: { GET: "ok", POST: "ok" },
    calls: [], // {method, path}
    invoices: new Map(), // hash -> {paid, paidAt}
    // Outgoing payments (LNbits payouts): hash -> {status, sends, preimage}.
    adminKey: `${kind}-admin-key`,
    payMode: "ok",
    payments: new Map(),
    // LND outgoing payments: hash -> {status: IN_FLIGHT|SUCCEEDED|FAILED, sends, preimage}.
    // `lndPayMode`: "ok" settles at once; "in_flight" keeps the payment (and the
    // send stream) open until `lndFinish(hash, status)`.
    lndPayMode: "ok",
    lndPayments: new Map(),
    lndWaiters: new Map(), // hash -> Set of callbacks run when the payment ends
    /** Ends an LND payment: "SUCCEEDED" or "FAILED"; open streams get the final line. */
    lndFinish(hash, status = "SUCCEEDED") {
      const p = this.lndPayments.get(hash);
      if (!p) throw new Error(`fake lnd never sent ${hash}`);
      p.status = status;
      for (const cb of this.lndWaiters.get(hash) ?? []) cb();
      this.lndWaiters.delete(hash);
    },
    paidCount() {
      return [...this.payments.values()].filter((p) => p.status === "success").length;
    },
    sendsOf(hash) {
      return this.payments.get(hash)?.sends ?? 0;
    },
    hanging: new Set(),
    latencyMs,
    reuseInvoices,
    signedCache: new Map(), // "sat:expiry" -> invoice, when reuseInvoices
    knownInvoices: new Map(), // bolt11 -> payment hash
    server: null,
    port: 0,
    get url() {
      return `http://127.0.0.1:${this.port}`;
    },
    /** Sets the fault for every method, or only `method` ("GET"/"POST"). */
    async fail(mode, method) {
      if (method) this.faults[method] = mode;
      else this.faults = { GET: mode, POST: mode };
      const refuse = Object.values(this.faults).includes("refuse");
      if (refuse && this.server.listening) await closeServer(this);
      if (!refuse && !this.server.listening) await listen(this, this.port);
    },
    async heal() {
      await this.fail("ok");
    },
    count(method, re) {
      return this.calls.filter((c) => c.method === method && (!re || re.test(c.path))).length;
    },
    settle(hash) {
      const st = this.invoices.get(hash);
      if (!st) throw new Error(`fake ${kind} never issued ${hash}`);
      st.paid = true;
      st.paidAt = Date.now();
    },
    async stop() {
      for (const res of this.hanging) res.destroy();
      if (this.server.listening) await closeServer(this);
    },
  };

  const handler = async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks).toString("utf8");
    fake.calls.push({ method: req.method, path: req.url });
    if (fake.latencyMs > 0) await new Promise((r) => setTimeout(r, fake.latencyMs));
    const send = (status, obj, type = "application/json") => {
      res.writeHead(status, { "content-type": type });
      res.end(typeof obj === "string" ? obj : JSON.stringify(obj));
    };
    switch (fake.faults[req.method] ?? "ok") {
      case "http500":
        return send(500, { detail: "internal server error" });
      case "http503":
        return send(503, "Service Unavailable", "text/plain");
      case "html520":
        return send(520, HTML_520, "text/html; charset=UTF-8");
      case "json520":
        return send(520, { detail: "Payment failed: funding source error", status: "failed" });
      case "garbage":
        return send(200, "\u0000}{not json at all", "application/json");
      case "hang":
        fake.hanging.add(res);
        res.on("close", () => fake.hanging.delete(res));
        return; // never answer
      default:
        break;
    }
    if (!shape.auth(req, fake.key, fake)) return send(401, { detail: "Invalid key", message: "invalid credentials" });
    const path = req.url.split("?")[0];
    if (kind === "lnd" && req.method === "POST" && path === "/v2/router/send") return lndSend(body, res);
    const track = /^\/v2\/router\/track\/([A-Za-z0-9_-]+={0,2})$/.exec(path);
    if (kind === "lnd" && req.method === "GET" && track) {
      const q = new URL(req.url, "http://fake").searchParams;
      return lndTrack(track[1], q.get("no_inflight_updates") === "true", res);
    }
    if (req.method === shape.create.method && shape.create.path.test(path)) {
      let parsed;
      try {
        parsed = JSON.parse(body);
      } catch {
        return send(400, { detail: "bad json" });
      }
      if (kind === "lnbits" && parsed.out === true) return pay(parsed.bolt11, req, send, res);
      if (kind === "lnbits" && parsed.out !== false) return send(400, { detail: "send out: false to create an invoice" });
      const sat = shape.amountSat(parsed);
      const expiry = Number(parsed.expiry ?? 3600);
      const cacheKey = `${sat}:${expiry}`;
      const inv = (fake.reuseInvoices && fake.signedCache.get(cacheKey)) || signInvoice({ network: fake.network, amountMsat: sat * 1000, expiry });
      if (fake.reuseInvoices) fake.signedCache.set(cacheKey, inv);
      fake.invoices.set(inv.payment_hash, { paid: false, paidAt: 0, pr: inv.payment_request, msat: sat * 1000 });
      return send(...shape.created(inv));
    }
    const m = shape.check.path.exec(path);
    if (kind === "lnbits" && req.method === "GET" && m && fake.payments.has(m[1])) {
      const p = fake.payments.get(m[1]);
      if (p.status === "lost") return send(404, { detail: "Payment does not exist." });
      return send(200, { paid: p.status === "success", status: null, preimage: p.preimage, details: { status: p.status, fee: 0, amount: -1000 } });
    }
    if (req.method === shape.check.method && m) {
      const st = fake.invoices.get(m[1]);
      if (!st) return send(404, { detail: "Payment does not exist.", message: "unable to locate invoice" });
      return send(...shape.status(st));
    }
    if (req.method === shape.probe.method && shape.probe.path.test(path)) return send(...shape.probeBody(fake));
    return send(404, { detail: "Not Found" });
  };

  // Pays like LNbits, then answers as `payMode` says: ok, pay_then_520,
  // 520_no_pay_once, json_failed, timeout_after_pay.
  function pay(bolt11, req, send, res) {
    if (req.headers["x-api-key"] !== fake.adminKey) return send(401, { detail: "Invalid admin key" });
    let hash;
    try {
      hash = fake.knownInvoices.get(bolt11) ?? decodeInvoice(bolt11).payment_hash;
    } catch {
      return send(400, { detail: "Invalid bolt11 invoice." });
    }
    const p = fake.payments.get(hash) ?? { status: "lost", sends: 0, preimage: "00".repeat(32) };
    p.sends += 1;
    fake.payments.set(hash, p);
    // The real LNbits answer to a second send of a paid invoice.
    if (p.status === "success") return send(520, { detail: "Internal invoice already paid.", status: "failed" });
    // LNbits cannot retry an invoice whose payment failed: a new invoice is needed.
    if (p.status === "failed") return send(520, { detail: "Payment failed before; this invoice cannot be retried.", status: "failed" });
    const mode = fake.payMode;
    switch (mode) {
      case "520_no_pay_once":
        fake.payMode = "ok";
        return send(520, HTML_520, "text/html; charset=UTF-8");
      case "json_failed":
        p.status = "failed";
        return send(520, { detail: "Payment failed: no route", status: "failed" });
      case "pay_then_520":
        p.status = "success";
        return send(520, HTML_520, "text/html; charset=UTF-8");
      case "timeout_after_pay":
        p.status = "success";
        fake.hanging.add(res);
        res.on("close", () => fake.hanging.delete(res));
        return;
      default:
        p.status = "success";
        return send(201, { payment_hash: hash, status: "success", preimage: p.preimage, fee: 0 });
    }
  }

  // LND REST streams newline-delimited JSON: {"result": <lnrpc.Payment>} per
  // state change, or {"error": {...}}. Errors before the first message come as
  // the gRPC code's HTTP status (NotFound -> 404), like grpc-gateway does.
  const lndLine = (hash, p) =>
    JSON.stringify({
      result: {
        payment_hash: hash,
        status: p.status,
        payment_preimage: p.status === "SUCCEEDED" ? p.preimage : "",
        fee_msat: "0",
        fee_sat: "0",
        failure_reason: p.status === "FAILED" ? "FAILURE_REASON_NO_ROUTE" : "FAILURE_REASON_NONE",
        htlcs: [],
      },
    }) + "\n";
  const lndError = (res, status, code, message) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code, message, details: [] } }) + "\n");
  };

  /** Streams the payment's state: the current line at once (unless
   * `noInflight` and still in flight), then the final line when it ends. */
  function lndStream(hash, noInflight, res) {
    const p = fake.lndPayments.get(hash);
    const final = () => p.status !== "IN_FLIGHT";
    if (final()) {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(lndLine(hash, p));
    }
    // Still in flight: like LND, keep the stream open until the payment ends.
    fake.hanging.add(res);
    let headersSent = false;
    if (!noInflight) {
      res.writeHead(200, { "content-type": "application/json" });
      res.write(lndLine(hash, p));
      headersSent = true;
    }
    const done = () => {
      if (res.destroyed) return;
      if (!headersSent) res.writeHead(200, { "content-type": "application/json" });
      res.end(lndLine(hash, p));
    };
    if (!fake.lndWaiters.has(hash)) fake.lndWaiters.set(hash, new Set());
    fake.lndWaiters.get(hash).add(done);
    res.on("close", () => {
      fake.hanging.delete(res);
      fake.lndWaiters.get(hash)?.delete(done);
    });
  }

  function lndSend(body, res) {
    let parsed, hash;
    try {
      parsed = JSON.parse(body);
      hash = decodeInvoice(parsed.payment_request).payment_hash;
    } catch {
      return lndError(res, 500, 2, "unable to decode payment request");
    }
    const prev = fake.lndPayments.get(hash);
    if (prev) {
      prev.sends += 1;
      if (prev.status === "SUCCEEDED") return lndError(res, 500, 6, "invoice is already paid");
      if (prev.status === "IN_FLIGHT") return lndError(res, 500, 6, "payment is in transition");
    }
    const p = prev ?? { status: "IN_FLIGHT", sends: 1, preimage: crypto.randomBytes(32).toString("hex") };
    p.status = "IN_FLIGHT";
    fake.lndPayments.set(hash, p);
    if (fake.lndPayMode === "ok") p.status = "SUCCEEDED";
    return lndStream(hash, parsed.no_inflight_updates === true, res);
  }

  function lndTrack(b64, noInflight, res) {
    const hash = Buffer.from(b64, "base64url").toString("hex");
    if (!fake.lndPayments.has(hash)) return lndError(res, 404, 5, "payment isn't initiated");
    return lndStream(hash, noInflight, res);
  }

  fake.server = http.createServer((req, res) => {
    handler(req, res).catch((e) => {
      res.writeHead(500);
      res.end(String(e));
    });
  });
  await listen(fake, 0);
  return fake;
}

function listen(fake, port) {
  return new Promise((resolve, reject) => {
    fake.server.once("error", reject);
    fake.server.listen(port, "127.0.0.1", () => {
      fake.server.off("error", reject);
      fake.port = fake.server.address().port;
      resolve();
    });
  });
}

function closeServer(fake) {
  for (const res of fake.hanging) res.destroy();
  fake.server.closeAllConnections?.();
  return new Promise((resolve) => fake.server.close(() => resolve()));
}

/** One fake of each kind, in the default chain order. */
export async function startFakes() {
  return {
    alby: await startFakeProvider("alby"),
    lnd: await startFakeProvider("lnd"),
    lnbits: await startFakeProvider("lnbits"),
  };
}

/** Stops a worker and any fakes or servers (each has `stop()`); tolerates missing ones. */
export async function stopAll(...things) {
  for (const t of things.flatMap((x) => (x && !x.stop ? Object.values(x) : [x]))) await t?.stop();
}
