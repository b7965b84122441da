// A Nostr Wallet Connect wallet service on a real relay, built on
// `@getalby/sdk`'s NWCWalletService (NIP-47 requests, NIP-44/NIP-04,
// signed responses), whose funds are a wallet of the real LNbits: each
// NIP-47 method is answered by the LNbits API with that wallet's admin key.
import { WebSocket } from "ws";
import { generateSecretKey, getPublicKey, finalizeEvent } from "nostr-tools/pure";

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
 */
export async function startNwcWallet({ relayUrl, connectUrl = relayUrl, lnbits, wallet, nip04Only = false }) {
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
