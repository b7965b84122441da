// A Nostr Wallet Connect wallet service on a real relay, built on
// `@getalby/sdk`'s NWCWalletService (NIP-47 requests, NIP-44/NIP-04,
// signed responses), whose funds are a wallet of the real LNbits: each
// NIP-47 method is answered by the LNbits API with that wallet's admin key.
import { WebSocket } from "ws";
import { generateSecretKey, getPublicKey, finalizeEvent } from "nostr-tools/pure";
import { decodeInvoice } from "./invoice.mjs";

// Node 20 has no global WebSocket; nostr-tools (under the SDK) needs one.
globalThis.WebSocket ??= WebSocket;
const { NWCWalletService, NWCWalletServiceKeyPair } = await import("@getalby/sdk/nwc");

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const METHODS = ["get_info", "get_balance", "make_invoice", "lookup_invoice", "pay_invoice"];

/**
 * Starts the service for one client connection. `relayUrl`: where the
 * service listens; `connectUrl`: the relay the gateway is told to use (a
 * proxy in front of it, for instance). `nip04Only` publishes an info event
 * without NIP-44. Returns the connection URI and a record of the calls.
 *
 * `hub` makes outgoing payments answer as Alby Hub v1.24.0 does (read in its
 * source: `transactions/transactions_service.go` SendPaymentSync and
 * LookupTransaction, `nip47/models/transactions.go` ToNip47Transaction,
 * `nip47/controllers/map_nip47_error.go`): one record per pay attempt,
 * created before the payment leaves; a second pay of a settled invoice
 * refused with INTERNAL "this invoice has already been paid", of a pending
 * one with INTERNAL "there is already a payment pending for this invoice";
 * every send failure as INTERNAL with the error text (never PAYMENT_FAILED);
 * any unsettled record past its ExpiresAt (the attempt time plus the
 * invoice's expiry) reported `expired`, in flight or not. Its switches:
 *   stuck        the payment reaches the recipient at once but stays in
 *                flight at the wallet (a hop holds it): pay_invoice gets no
 *                answer and the record stays pending until `release()`;
 *   oldestFirst  lookups answer the oldest record of the hash (as Alby Hub's
 *                `settled_at desc` does on PostgreSQL, where NULLs sort first);
 *   blind        lookups never see outgoing payments (NOT_FOUND).
 */
export async function startNwcWallet({ relayUrl, connectUrl = relayUrl, lnbits, wallet, nip04Only = false, hub = null }) {
  const walletSecret = hex(generateSecretKey());
  const clientSecret = hex(generateSecretKey());
  const walletPubkey = getPublicKey(Buffer.from(walletSecret, "hex"));
  const clientPubkey = getPublicKey(Buffer.from(clientSecret, "hex"));
  const calls = []; // [method, params]
  const api = async (method, path, body) => {
    const r = await fetch(lnbits.url + path, {
      method,
      headers: { "content-type": "application/json", "X-Api-Key": wallet.adminkey },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: r.status, json: await r.json().catch(() => null) };
  };
  const ok = (result) => ({ result, error: undefined });
  const fail = (code, message) => ({ result: undefined, error: { code, message } });
  // Alby-Hub-like outgoing records: hash -> [{createdAt, expiresAt, state, preimage, fees}], oldest first.
  const records = new Map();
  const stuckPayments = []; // records waiting for `release()`
  const now = () => Math.floor(Date.now() / 1000);
  const hubPay = async (p) => {
    const { payment_hash: hash, expires_at: invoiceExpiresAt, timestamp } = decodeInvoice(p.invoice);
    const list = records.get(hash) ?? [];
    if (list.some((r) => r.state === "settled")) return fail("INTERNAL", "this invoice has already been paid");
    if (list.some((r) => r.state === "pending")) return fail("INTERNAL", "there is already a payment pending for this invoice");
    const rec = { createdAt: now(), expiresAt: now() + (invoiceExpiresAt - timestamp), state: "pending", preimage: "", fees: 0 };
    list.push(rec);
    records.set(hash, list);
    const r = await api("POST", "/api/v1/payments", { out: true, bolt11: p.invoice });
    const paid = (r.status === 201 || r.status === 200) && r.json?.status === "success";
    if (paid && hub.stuck) {
      // The recipient has been paid; the wallet's payment stays in flight.
      rec.pendingPreimage = r.json.preimage;
      stuckPayments.push(rec);
      return new Promise(() => {}); // no answer, ever
    }
    if (paid) {
      Object.assign(rec, { state: "settled", preimage: r.json.preimage, fees: Math.abs(r.json.fee ?? 0) });
      return ok({ preimage: rec.preimage, fees_paid: rec.fees });
    }
    rec.state = "failed";
    return fail("INTERNAL", r.json?.detail ?? `LNbits ${r.status}`);
  };
  const hubLookup = (hash) => {
    const list = records.get(hash);
    if (!list?.length) return null;
    if (hub.blind) return fail("NOT_FOUND", "The transaction requested was not found");
    const rec = hub.oldestFirst ? list[0] : (list.findLast((r) => r.state === "settled") ?? list.at(-1));
    const state = rec.state !== "settled" && now() > rec.expiresAt ? "expired" : rec.state;
    return ok({
      type: "outgoing",
      state,
      payment_hash: hash,
      preimage: rec.state === "settled" ? rec.preimage : "",
      fees_paid: rec.fees,
      created_at: rec.createdAt,
      expires_at: rec.expiresAt,
      settled_at: rec.state === "settled" ? now() : undefined,
    });
  };
  const guard = (method, f) => async (params) => {
    calls.push([method, params ?? {}]);
    try {
      return await f(params ?? {});
    } catch (e) {
      return fail("INTERNAL", String(e.message ?? e));
    }
  };
  const handler = {
    getInfo: guard("get_info", async () =>
      ok({ alias: "e2e-lnbits", color: "#000000", pubkey: "", network: "mainnet", block_height: 0, block_hash: "", methods: METHODS }),
    ),
    getBalance: guard("get_balance", async () => {
      const r = await api("GET", "/api/v1/wallet");
      return r.status === 200 ? ok({ balance: r.json.balance }) : fail("INTERNAL", `LNbits ${r.status}`);
    }),
    makeInvoice: guard("make_invoice", async (p) => {
      const body = { out: false, amount: Math.floor(p.amount / 1000), memo: p.description ?? "", expiry: p.expiry };
      if (p.description_hash) body.description_hash = p.description_hash;
      const r = await api("POST", "/api/v1/payments", body);
      if (r.status !== 201 && r.status !== 200) return fail("INTERNAL", `LNbits ${r.status}: ${JSON.stringify(r.json)}`);
      const now = Math.floor(Date.now() / 1000);
      return ok({
        type: "incoming",
        state: "pending",
        invoice: r.json.bolt11 ?? r.json.payment_request,
        description: p.description ?? "",
        payment_hash: r.json.payment_hash,
        amount: p.amount,
        fees_paid: 0,
        created_at: now,
        expires_at: now + (p.expiry ?? 3600),
      });
    }),
    lookupInvoice: guard("lookup_invoice", async (p) => {
      const own = hub ? hubLookup(p.payment_hash) : null;
      if (own) return own;
      const r = await api("GET", `/api/v1/payments/${p.payment_hash}`);
      if (r.status === 404) return fail("NOT_FOUND", "no payment with this hash");
      if (r.status !== 200 || !r.json?.details) return fail("INTERNAL", `LNbits ${r.status}`);
      const d = r.json.details;
      const state = r.json.paid ? "settled" : r.json.status === "failed" ? "failed" : "pending";
      return ok({
        type: d.amount < 0 ? "outgoing" : "incoming",
        state,
        invoice: d.bolt11,
        payment_hash: p.payment_hash,
        preimage: r.json.paid ? r.json.preimage ?? d.preimage ?? "" : "",
        amount: Math.abs(d.amount),
        fees_paid: Math.abs(d.fee ?? 0),
        created_at: Math.floor(Date.parse(d.time ?? d.created_at ?? 0) / 1000) || 0,
        settled_at: r.json.paid ? Math.floor(Date.now() / 1000) : undefined,
      });
    }),
    payInvoice: guard("pay_invoice", async (p) => {
      if (hub) return hubPay(p);
      const r = await api("POST", "/api/v1/payments", { out: true, bolt11: p.invoice });
      if ((r.status === 201 || r.status === 200) && r.json?.status === "success")
        return ok({ preimage: r.json.preimage, fees_paid: Math.abs(r.json.fee ?? 0) });
      if (r.json?.status === "failed" || (r.status >= 400 && r.status < 500))
        return fail("PAYMENT_FAILED", r.json?.detail ?? `LNbits ${r.status}`);
      return fail("INTERNAL", `LNbits ${r.status}: ${JSON.stringify(r.json)}`);
    }),
  };
  const service = new NWCWalletService({ relayUrls: [relayUrl] });
  if (nip04Only) {
    // The SDK advertises NIP-44; a NIP-04-only wallet publishes its own info event.
    const ws = new WebSocket(relayUrl);
    await new Promise((r, j) => (ws.once("open", r), ws.once("error", j)));
    const info = finalizeEvent({ kind: 13194, created_at: Math.floor(Date.now() / 1000), tags: [], content: METHODS.join(" ") }, Buffer.from(walletSecret, "hex"));
    const acked = new Promise((r) => ws.on("message", (d) => JSON.parse(d.toString())[0] === "OK" && r()));
    ws.send(JSON.stringify(["EVENT", info]));
    await acked;
    ws.close();
  } else {
    await service.publishWalletServiceInfoEvent(walletSecret, METHODS, []);
  }
  const unsubscribe = await service.subscribe(new NWCWalletServiceKeyPair(walletSecret, clientPubkey), handler);
  // The subscription is live once the relay acknowledged it; give it a moment.
  await new Promise((r) => setTimeout(r, 300));
  const relayParam = encodeURIComponent(connectUrl);
  return {
    uri: `nostr+walletconnect://${walletPubkey}?relay=${relayParam}&secret=${clientSecret}`,
    clientSecret,
    walletPubkey,
    calls,
    /** Alby-Hub mode's switches, changeable while it runs. */
    hub,
    /** Alby-Hub mode: the stuck payments settle (their records with them). */
    release() {
      for (const rec of stuckPayments.splice(0)) Object.assign(rec, { state: "settled", preimage: rec.pendingPreimage });
    },
    /** Alby-Hub mode: an earlier attempt at `hash` that failed (another client's, say). */
    seedFailedAttempt(hash, createdAt = now() - 3600) {
      const list = records.get(hash) ?? [];
      list.unshift({ createdAt, expiresAt: createdAt + 600, state: "failed", preimage: "", fees: 0 });
      records.set(hash, list);
    },
    /** Alby-Hub mode: the records of `hash`. */
    recordsOf(hash) {
      return records.get(hash) ?? [];
    },
    /** How many times `method` was called (with `match` on its params). */
    count(method, match = () => true) {
      return calls.filter(([m, p]) => m === method && match(p)).length;
    },
    async stop() {
      unsubscribe();
      // The SDK publishes responses fire-and-forget; closing rejects those
      // promises with "closed by us" and nobody handles them. Only that is ignored.
      process.on("unhandledRejection", (e) => {
        const messages = [e?.message, ...(e?.errors ?? []).map((x) => x?.message)].join(" ");
        if (!/closed by us/.test(messages)) throw e;
      });
      service.close();
    },
  };
}
