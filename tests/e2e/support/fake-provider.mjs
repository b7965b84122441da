// Fake Lightning providers on 127.0.0.1 that speak the LND REST, LNbits,
// Core Lightning (CLNRest) and phoenixd shapes and can be told to fail:
// refuse connections, answer 5xx, an HTML or JSON 520, hang, or send
// garbage. Faults can target one HTTP method or one operation (create,
// check, probe, pay, lookup), so "reads work but writes fail" can be staged
// on CLNRest too, where every call is a POST.
//
// CLN and phoenixd cannot run here, so their fakes follow the published
// request and answer shapes exactly:
// - CLNRest: https://docs.corelightning.org/docs/rest (every method is
//   `POST /v1/<method>`, JSON body, `Rune` header; results answer 201,
//   JSON-RPC errors 500 `{"code","message","data"}`, an unknown method 404
//   with code -32601, a missing rune 403 (code 1501), a refused one 401), and
//   the method pages lightning-invoice(7), lightning-listinvoices(7),
//   lightning-xpay(7), lightning-listpays(7), lightning-getinfo(7)
//   (schemas: ElementsProject/lightning doc/schemas/*.json; the server:
//   plugins/rest-plugin/src/handlers.rs).
// - phoenixd: https://phoenix.acinq.co/server/api (HTTP Basic auth with an
//   empty user, form-encoded POSTs, JSON answers; an unknown payment is 404
//   `Not found`, an unknown route 404 `Unknown endpoint (check api doc)`, a
//   bad parameter 400 with a text message), checked against ACINQ/phoenixd
//   src/commonMain/kotlin/fr/acinq/phoenixd/Api.kt and json/JsonSerializers.kt;
//   payment failure reasons are lightning-kmp's FinalFailure texts.
import http from "node:http";
import crypto from "node:crypto";
import { signInvoice, decodeInvoice, preimageOf } from "./invoice.mjs";

const SHAPES = {
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
  // The CLN and phoenixd routes are served by `cln()` and `phoenixd()`
  // below; these entries give their auth and how to tell the operations.
  cln: {
    ops: { "/v1/invoice": "create", "/v1/listinvoices": "check", "/v1/getinfo": "probe", "/v1/xpay": "pay", "/v1/listpays": "lookup" },
    op: (method, path) => (method === "POST" ? SHAPES.cln.ops[path] : undefined),
  },
  phoenixd: {
    op: (method, path) =>
      method === "POST" && path === "/createinvoice" ? "create"
      : method === "GET" && path.startsWith("/payments/incoming/") ? "check"
      : method === "GET" && path === "/getinfo" ? "probe"
      : method === "POST" && path === "/payinvoice" ? "pay"
      : method === "GET" && path.startsWith("/payments/outgoingbyhash/") ? "lookup"
      : undefined,
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
  // LND macaroons are hex; CLN runes are base64url.
  key ??= kind === "lnd" ? "0201036c6e6402f801" : kind === "cln" ? "cln-rune_T3sTr7n3-0" : `${kind}-test-key`;
  if (!shape) throw new Error(`unknown fake kind ${kind}`);
  const fake = {
    kind,
    key,
    network,
    synced: true,
    // By HTTP method (GET/POST) or by operation (create, check, probe, pay,
    // lookup); an operation's own fault wins.
    faults: { GET: "ok", POST: "ok" },
    calls: [], // {method, path}
    invoices: new Map(), // hash -> {paid, paidAt}
    // Outgoing payments (LNbits, CLN and phoenixd payouts): hash ->
    // {status: success|failed|pending|lost, sends, preimage}.
    // `payMode`: ok, pay_then_520, 520_no_pay_once, json_failed (the
    // backend's own explicit failure), timeout_after_pay, and for CLN and
    // phoenixd in_flight (the pay request stays open and lookups say
    // pending until `finish(hash)`).
    adminKey: `${kind}-admin-key`,
    payMode: "ok",
    payments: new Map(),
    payWaiters: new Map(), // hash -> Set of callbacks run when `finish` ends the payment
    /** Ends an in-flight CLN/phoenixd payment: paid (default) or failed. */
    finish(hash, paid = true) {
      const p = this.payments.get(hash);
      if (!p) throw new Error(`fake ${kind} never sent ${hash}`);
      p.status = paid ? "success" : "failed";
      p.completedAt = Date.now();
      for (const cb of this.payWaiters.get(hash) ?? []) cb();
      this.payWaiters.delete(hash);
    },
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
    /** Sets the fault for every call, or only for `target`: "GET"/"POST" or an operation. */
    async fail(mode, target) {
      if (target) this.faults[target] = mode;
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
    const path = req.url.split("?")[0];
    const op = shape.op?.(req.method, path);
    fake.calls.push({ method: req.method, path: req.url, op, body, headers: req.headers });
    if (fake.latencyMs > 0) await new Promise((r) => setTimeout(r, fake.latencyMs));
    const send = (status, obj, type = "application/json") => {
      res.writeHead(status, { "content-type": type });
      res.end(typeof obj === "string" ? obj : JSON.stringify(obj));
    };
    switch ((op && fake.faults[op]) ?? fake.faults[req.method] ?? "ok") {
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
    if (kind === "cln") return cln(req, path, body, send, res);
    if (kind === "phoenixd") return phoenixd(req, path, body, send, res);
    if (!shape.auth(req, fake.key, fake)) return send(401, { detail: "Invalid key", message: "invalid credentials" });
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
    const p = fake.payments.get(hash) ?? { status: "lost", sends: 0, preimage: preimageOf(hash) ?? "00".repeat(32) };
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
    const p = prev ?? { status: "IN_FLIGHT", sends: 1, preimage: preimageOf(hash) ?? crypto.randomBytes(32).toString("hex") };
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

  /** Holds `res` open until the payment of `hash` ends, then runs `done`. */
  function holdUntilFinished(hash, res, done) {
    fake.hanging.add(res);
    const cb = () => {
      fake.hanging.delete(res);
      if (!res.destroyed) done();
    };
    if (!fake.payWaiters.has(hash)) fake.payWaiters.set(hash, new Set());
    fake.payWaiters.get(hash).add(cb);
    res.on("close", () => {
      fake.hanging.delete(res);
      fake.payWaiters.get(hash)?.delete(cb);
    });
  }

  /** Starts a payment of `bolt11` as `payMode` says; returns what to answer. */
  function startPayment(bolt11) {
    let hash;
    try {
      hash = fake.knownInvoices.get(bolt11) ?? decodeInvoice(bolt11).payment_hash;
    } catch {
      return { invalid: true };
    }
    const prev = fake.payments.get(hash);
    const p = prev ?? { status: "lost", sends: 0, preimage: preimageOf(hash) ?? crypto.randomBytes(32).toString("hex"), fee: 0, createdAt: Date.now() };
    p.sends += 1;
    fake.payments.set(hash, p);
    if (prev?.status === "success") return { hash, p, already: "paid" };
    if (prev?.status === "pending") return { hash, p, already: "pending" };
    const mode = fake.payMode;
    p.createdAt = Date.now();
    p.completedAt = null;
    switch (mode) {
      case "520_no_pay_once":
        fake.payMode = "ok";
        if (!prev) p.status = "lost"; // counted as a send, but nothing happened
        return { hash, p, answer: "html520" };
      case "json_failed":
        p.status = "failed";
        p.completedAt = Date.now();
        return { hash, p, answer: "failed" };
      case "pay_then_520":
        p.status = "success";
        p.completedAt = Date.now();
        return { hash, p, answer: "html520" };
      case "timeout_after_pay":
        p.status = "success";
        p.completedAt = Date.now();
        return { hash, p, answer: "hang" };
      case "in_flight":
        p.status = "pending";
        return { hash, p, answer: "wait" };
      default:
        p.status = "success";
        p.fee = 1000;
        p.completedAt = Date.now();
        return { hash, p, answer: "ok" };
    }
  }

  function hang(res) {
    fake.hanging.add(res);
    res.on("close", () => fake.hanging.delete(res));
  }

  // ---- Core Lightning, CLNRest -------------------------------------------
  // Every call is `POST /v1/<method>` with a JSON body. A result is 201; an
  // RPC error 500 {"code","message","data"}.
  function cln(req, path, body, send, res) {
    const rpcError = (code, message, status = 500) => send(status, { code, message, data: null });
    const rune = req.headers["rune"];
    if (rune === undefined) return send(403, { code: 1501, message: "Not authorized: Missing rune", data: null });
    if (rune !== fake.key) return send(401, { code: 1502, message: "Not authorized: Not derived from master", data: null });
    if (req.method !== "POST") return send(405, { code: null, message: "Method not allowed", data: null });
    const m = /^\/v1\/([a-z0-9_-]+)$/.exec(path);
    let params = {};
    if (body.length) {
      try {
        params = JSON.parse(body);
      } catch (e) {
        return send(500, { code: null, message: `Could not parse \`${body}\` JSON request: ${e.message}`, data: null });
      }
    }
    const clnInvoice = (hash) => {
      const st = fake.invoices.get(hash);
      const expired = !st.paid && Date.now() > st.expiresAt * 1000;
      const inv = {
        label: st.label, bolt11: st.bolt11, payment_hash: hash, amount_msat: st.amountMsat,
        status: st.paid ? "paid" : expired ? "expired" : "unpaid", description: st.description,
        expires_at: st.expiresAt, created_index: st.index,
      };
      if (st.paid) Object.assign(inv, { pay_index: st.index, amount_received_msat: st.amountMsat, paid_at: Math.floor(st.paidAt / 1000), payment_preimage: "00".repeat(32) });
      return inv;
    };
    switch (m?.[1]) {
      case "getinfo": {
        const info = {
          id: "02" + "ab".repeat(32), alias: "fake-cln", color: "02abab", num_peers: 3, num_pending_channels: 0,
          num_active_channels: 3, num_inactive_channels: 0, address: [], binding: [{ type: "ipv4", address: "127.0.0.1", port: 9735 }],
          version: "v25.12", blockheight: 900000, network: "bitcoin", fees_collected_msat: 0, "lightning-dir": "/var/lib/cln/bitcoin",
          our_features: { init: "08a0000a8a5961", node: "88a0000a8a5961", channel: "", invoice: "02000002024100" },
        };
        if (!fake.synced) info.warning_lightningd_sync = "Still loading latest blocks from bitcoind.";
        return send(201, info);
      }
      case "invoice": {
        for (const f of ["amount_msat", "label", "description"]) {
          if (params[f] === undefined) return rpcError(-32602, `missing required parameter: ${f}`);
        }
        if ([...fake.invoices.values()].some((i) => i.label === params.label)) return rpcError(900, `Duplicate label '${params.label}'`);
        const amountMsat = Number(params.amount_msat);
        const expiry = Number(params.expiry ?? 604800);
        const inv = signed(amountMsat / 1000, expiry);
        const index = fake.invoices.size + 1;
        const expiresAt = Math.floor(Date.now() / 1000) + expiry;
        fake.invoices.set(inv.payment_hash, { paid: false, paidAt: 0, label: params.label, bolt11: inv.payment_request, amountMsat, description: params.description, expiresAt, index });
        return send(201, { payment_hash: inv.payment_hash, expires_at: expiresAt, bolt11: inv.payment_request, payment_secret: crypto.randomBytes(32).toString("hex"), created_index: index });
      }
      case "listinvoices": {
        const hits = [...fake.invoices.keys()].filter((h) => !params.payment_hash || h === params.payment_hash);
        return send(201, { invoices: hits.map(clnInvoice) });
      }
      case "xpay": {
        if (params.invstring === undefined) return rpcError(-32602, "missing required parameter: invstring");
        const r = startPayment(params.invstring);
        if (r.invalid) return rpcError(-32602, "invstring: Unparsable invoice");
        if (r.already === "paid") return rpcError(219, "Already paid this invoice successfully");
        if (r.already === "pending") return rpcError(200, "Payment already in progress");
        const { p } = r;
        const ok = () => {
          const amount = Number(decodeInvoice(params.invstring).amount_msat ?? 0);
          send(201, { payment_preimage: p.preimage, failed_parts: 0, successful_parts: 1, amount_msat: amount, amount_sent_msat: amount + p.fee });
        };
        const failed = () => rpcError(203, "Destination said it doesn't know invoice: incorrect_or_unknown_payment_details");
        switch (r.answer) {
          case "html520": return send(520, HTML_520, "text/html; charset=UTF-8");
          case "failed": return failed();
          case "hang": return hang(res);
          case "wait": return holdUntilFinished(r.hash, res, () => (p.status === "success" ? ok() : failed()));
          default: return ok();
        }
      }
      case "listpays": {
        const entry = (hash, p) => {
          const status = p.status === "success" ? "complete" : p.status;
          const e = { created_index: 1, payment_hash: hash, status, destination: "02" + "cd".repeat(32), created_at: Math.floor(p.createdAt / 1000), amount_sent_msat: 0 };
          if (status === "complete") Object.assign(e, { completed_at: Math.floor(p.completedAt / 1000), preimage: p.preimage, amount_msat: 1000, amount_sent_msat: 1000 + p.fee });
          return e;
        };
        const hits = [...fake.payments.entries()].filter(([h, p]) => p.status !== "lost" && (!params.payment_hash || h === params.payment_hash));
        return send(201, { pays: hits.map(([h, p]) => entry(h, p)) });
      }
      default:
        return rpcError(-32601, `Unknown command '${m?.[1] ?? path}'`, 404);
    }
  }

  // ---- phoenixd ----------------------------------------------------------
  // Basic auth with an empty user; POST parameters form-encoded; JSON answers.
  function phoenixd(req, path, body, send, res) {
    const text = (status, t) => send(status, t, "text/plain; charset=UTF-8");
    const basic = /^Basic (.+)$/.exec(req.headers["authorization"] ?? "");
    const password = basic ? Buffer.from(basic[1], "base64").toString("utf8").replace(/^[^:]*:/, "") : null;
    if (password !== fake.key) return text(401, "Invalid authentication (use basic auth with the http password set in phoenix.conf)");
    if (req.method === "POST" && !/application\/x-www-form-urlencoded/.test(req.headers["content-type"] ?? "")) {
      return text(415, "Unsupported Media Type");
    }
    const form = new URLSearchParams(body);
    const incoming = (hash) => {
      const st = fake.invoices.get(hash);
      const expired = !st.paid && Date.now() > st.createdAt + st.expiry * 1000;
      const v = {
        type: "incoming_payment", subType: "lightning", paymentHash: hash, preimage: "00".repeat(32), externalId: st.externalId,
        description: st.description, invoice: st.bolt11, isPaid: st.paid, isExpired: expired, requestedSat: st.sat,
        receivedSat: st.paid ? st.sat : 0, fees: 0, expiresAt: st.createdAt + st.expiry * 1000, createdAt: st.createdAt,
      };
      if (st.paid) v.completedAt = st.paidAt;
      return v;
    };
    const outgoing = (hash, p) => {
      const v = { type: "outgoing_payment", subType: "lightning", paymentId: p.id, paymentHash: hash, isPaid: p.status === "success", sent: 1, fees: p.fee, createdAt: p.createdAt };
      if (p.status === "success") v.preimage = p.preimage;
      if (p.completedAt) v.completedAt = p.completedAt;
      return v;
    };
    let m;
    if (req.method === "GET" && path === "/getinfo") {
      return send(200, {
        nodeId: "03" + "ef".repeat(32),
        channels: [{ state: "Normal", channelId: "aa".repeat(32), balanceSat: 100000, inboundLiquiditySat: 400000, capacitySat: 500000, fundingTxId: "bb".repeat(32) }],
        chain: "mainnet", blockHeight: 900000, version: "0.6.2",
      });
    }
    if (req.method === "POST" && path === "/createinvoice") {
      const description = form.get("description");
      const descriptionHash = form.get("descriptionHash");
      if (description !== null && description.length > 128) return text(400, "Request parameter description is too long (max 128 characters)");
      if ((description === null) === (descriptionHash === null)) return text(400, "Must provide either a description or descriptionHash");
      const sat = Number(form.get("amountSat") ?? 0);
      const expiry = Number(form.get("expirySeconds") ?? 3600);
      if (!Number.isInteger(sat) || !Number.isInteger(expiry)) return text(400, "Invalid parameter amountSat or expirySeconds");
      const inv = signed(sat, expiry, descriptionHash ?? "");
      fake.invoices.set(inv.payment_hash, { paid: false, paidAt: 0, bolt11: inv.payment_request, sat, description, expiry, createdAt: Date.now(), externalId: form.get("externalId") ?? undefined });
      return send(200, { amountSat: sat, paymentHash: inv.payment_hash, serialized: inv.payment_request });
    }
    if (req.method === "GET" && (m = /^\/payments\/incoming\/([0-9a-f]{64})$/.exec(path))) {
      return fake.invoices.has(m[1]) ? send(200, incoming(m[1])) : text(404, "Not found");
    }
    if (req.method === "POST" && path === "/payinvoice") {
      if (!form.get("invoice")) return text(400, "Missing request parameter invoice");
      const r = startPayment(form.get("invoice"));
      if (r.invalid) return text(400, "Invalid parameter invoice: expected bolt11invoice");
      const reason = (why) => send(200, { paymentHash: r.hash, reason: why });
      if (r.already === "paid") return reason("this invoice has already been paid");
      if (r.already === "pending") return reason("another payment is in progress for that invoice");
      const { p } = r;
      p.id ??= crypto.randomUUID();
      const ok = () => send(200, { recipientAmountSat: 1, routingFeeSat: p.fee / 1000, paymentId: p.id, paymentHash: r.hash, paymentPreimage: p.preimage });
      const failed = () => reason("the recipient was offline or did not have enough liquidity to receive the payment");
      switch (r.answer) {
        case "html520": return send(520, HTML_520, "text/html; charset=UTF-8");
        case "failed": return failed();
        case "hang": return hang(res);
        case "wait": return holdUntilFinished(r.hash, res, () => (p.status === "success" ? ok() : failed()));
        default: return ok();
      }
    }
    if (req.method === "GET" && (m = /^\/payments\/outgoingbyhash\/([0-9a-f]{64})$/.exec(path))) {
      const p = fake.payments.get(m[1]);
      return p && p.status !== "lost" ? send(200, outgoing(m[1], p)) : text(404, "Not found");
    }
    return text(404, "Unknown endpoint (check api doc)");
  }

  /** A signed invoice for `sat` (one per amount and expiry when `reuseInvoices`). */
  function signed(sat, expiry, descriptionHash = "") {
    const cacheKey = `${sat}:${expiry}:${descriptionHash}`;
    const inv = (fake.reuseInvoices && fake.signedCache.get(cacheKey)) || signInvoice({ network: fake.network, amountMsat: sat * 1000, expiry, descriptionHash });
    if (fake.reuseInvoices) fake.signedCache.set(cacheKey, inv);
    return inv;
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

/** The fakes the receive tests chain, in their chain order: phoenixd first. */
export async function startFakes() {
  return {
    phoenixd: await startFakeProvider("phoenixd"),
    lnd: await startFakeProvider("lnd"),
    lnbits: await startFakeProvider("lnbits"),
  };
}

/** Stops a worker and any fakes or servers (each has `stop()`); tolerates missing ones. */
export async function stopAll(...things) {
  for (const t of things.flatMap((x) => (x && !x.stop ? Object.values(x) : [x]))) await t?.stop();
}
