// End-to-end: a Lightning Address served by the gateway (LUD-16/06/12/21),
// resolved and paid with a third-party LNURL client (npm
// `@getalby/lightning-tools`), against a real LNbits behind a primary backend
// that is down. lightning-tools only accepts a domain name (no port) and only
// speaks https to it, so the address is `shop@gateway.test` (a reserved TLD):
// this process resolves `gateway.test` to 127.0.0.1, where a TLS terminator
// with a throwaway self-signed certificate listens on port 443 (the tests run
// as root) in front of the Worker.
//
// Zaps (NIP-57) are made and checked with `nostr-tools`: its
// getZapEndpoint reads the payRequest, makeZapRequest builds the request, and
// the receipt the gateway publishes to a real relay on 127.0.0.1
// (`@nostr-relay/core`) must pass its validation and equal what its
// makeZapReceipt builds from the same payment.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import dns from "node:dns";
import { createHash } from "node:crypto";
import { LightningAddress } from "@getalby/lightning-tools";
import { startLnbits } from "./support/lnbits.mjs";
import { startFakeProvider } from "./support/fake-provider.mjs";
import { startWebhookReceiver } from "./support/webhook-receiver.mjs";
import { startWorker, backendVars } from "./support/worker.mjs";
import { decodeInvoice } from "./support/invoice.mjs";
import { startRelay } from "./support/nostr-relay.mjs";
import WebSocket from "ws";
import { generateSecretKey, getPublicKey, finalizeEvent, verifyEvent } from "nostr-tools/pure";
import { getZapEndpoint, makeZapRequest, makeZapReceipt, validateZapRequest } from "nostr-tools/nip57";

const SECRET = `whsec_${Buffer.alloc(32, 5).toString("base64")}`;
const ZAP_SECRET = "7f".repeat(32);
let lnbits, shop, customer, primary, tls, ops, worker, domain, relay;

/** An https server on 127.0.0.1 forwarding to `target()` (the Worker). */
async function startTlsTerminator(target) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lnfb-tls-"));
  const [key, cert] = [path.join(dir, "key.pem"), path.join(dir, "cert.pem")];
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"], { stdio: "ignore" });
  const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, async (req, res) => {
    try {
      const r = await fetch(target() + req.url, { method: req.method, headers: { accept: req.headers.accept ?? "*/*" } });
      res.writeHead(r.status, { "content-type": r.headers.get("content-type") ?? "application/json" });
      res.end(Buffer.from(await r.arrayBuffer()));
    } catch (e) {
      res.writeHead(502);
      res.end(String(e));
    }
  });
  await new Promise((resolve, reject) => {
    server.once("error", (e) => reject(new Error(`the TLS terminator needs 127.0.0.1:443 (root): ${e.message}`)));
    server.listen(443, "127.0.0.1", resolve);
  });
  return { port: 443, stop: () => new Promise((r) => server.close(r)), dir };
}

before(async () => {
  // The client below trusts the throwaway certificate (this process only).
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
  // `gateway.test` is 127.0.0.1 for this process only; nothing else is resolved differently.
  const lookup = dns.lookup;
  dns.lookup = (host, opts, cb) => {
    if (typeof opts === "function") [cb, opts] = [opts, {}];
    if (host !== "gateway.test") return lookup(host, opts, cb);
    return opts?.all ? cb(null, [{ address: "127.0.0.1", family: 4 }]) : cb(null, "127.0.0.1", 4);
  };
  lnbits = await startLnbits({ funding: true });
  shop = await lnbits.createWallet("shop");
  customer = await lnbits.createWallet("customer");
  await lnbits.fund(customer.id, 50_000);
  primary = await startFakeProvider("phoenixd");
  await primary.fail("refuse"); // the first backend is down all along
  ops = await startWebhookReceiver({ secrets: { current: SECRET } });
  relay = await startRelay();
  tls = await startTlsTerminator(() => worker.base);
  domain = "gateway.test";
  worker = await startWorker(
    {
      LIGHTNING_PROVIDERS: "phoenixd,lnbits",
      ...backendVars(primary),
      LNBITS_URL: lnbits.url,
      LNBITS_INVOICE_KEY: shop.inkey,
      LIGHTNING_ADDRESS_NAMES: "shop,tips",
      LIGHTNING_ADDRESS_SETTINGS: JSON.stringify({ shop: { min_sats: 10, max_sats: 5000, description: "Pay the e2e shop", comment_allowed: 40 } }),
      PUBLIC_BASE_URL: `https://${domain}`,
      WEBHOOK_SECRET: SECRET,
      INVOICE_WEBHOOK_URL: ops.url,
      LNURL_ALLOW_HTTP_HOSTS: "127.0.0.1",
      NOSTR_ZAP_SECRET: ZAP_SECRET,
      SERVER_TIMING: "true",
    },
    { name: "lightning-address" },
  );
});

after(async () => {
  await worker?.stop();
  await tls?.stop();
  await ops?.stop();
  await relay?.stop();
  await primary?.stop();
  await lnbits?.stop();
});

test("a third-party LNURL client resolves the address, gets an invoice from the next backend, and verifies the payment", async () => {
  const ln = new LightningAddress(`shop@${domain}`, { proxy: false });
  await ln.fetch();
  assert.equal(ln.lnurlpData.min, 10_000);
  assert.equal(ln.lnurlpData.max, 5_000_000);
  assert.equal(ln.lnurlpData.description, "Pay the e2e shop");
  assert.equal(ln.lnurlpData.commentAllowed, 40);
  assert.equal(ln.lnurlpData.identifier, `shop@${domain}`);
  const invoice = await ln.requestInvoice({ satoshi: 21, comment: "thanks!" });
  assert.equal(invoice.satoshi, 21);
  // The invoice commits to the payRequest's metadata (LUD-06).
  const decoded = decodeInvoice(invoice.paymentRequest);
  assert.equal(decoded.description_hash, createHash("sha256").update(ln.lnurlpData.rawData.metadata).digest("hex"));
  assert.equal(await invoice.verifyPayment(), false, "not paid yet");
  const paid = await lnbits.pay(customer.adminkey, invoice.paymentRequest);
  assert.equal(paid.status, 201, JSON.stringify(paid.json));
  let settled = false;
  for (let i = 0; i < 60 && !settled; i++) {
    settled = await invoice.verifyPayment();
    if (!settled) await new Promise((r) => setTimeout(r, 500));
  }
  assert.ok(settled, "LUD-21 verify says settled");
  assert.equal(createHash("sha256").update(Buffer.from(invoice.preimage, "hex")).digest("hex"), invoice.paymentHash);
  // Its invoice.paid names the address and carries the comment.
  let event;
  for (let i = 0; i < 60 && !event; i++) {
    event = ops.received.map((d) => ({ ...d, json: JSON.parse(d.body) })).find((d) => d.json.data.payment_hash === invoice.paymentHash && d.json.type === "invoice.paid");
    if (!event) await new Promise((r) => setTimeout(r, 500));
  }
  assert.ok(event, "invoice.paid delivered");
  assert.equal(event.verified.current, true);
  assert.equal(event.json.data.lightning_address, `shop@${domain}`);
  assert.equal(event.json.data.comment, "thanks!");
  assert.equal(event.json.data.provider, "lnbits", "made by the next backend");
});

test("a name alone gets defaults; unknown names, bad amounts and long comments get LUD-06 errors with a code", async () => {
  const tips = await worker.request("GET", "/.well-known/lnurlp/tips");
  assert.equal(tips.status, 200, tips.text);
  assert.equal(tips.json.tag, "payRequest");
  assert.equal(tips.json.minSendable, 1000);
  assert.equal(tips.json.callback, `https://${domain}/lnurlp/tips/callback`);
  // SERVER_TIMING=true: the callback's invoice says how long each step waited.
  const paid = await worker.request("GET", "/lnurlp/tips/callback?amount=21000");
  assert.equal(paid.status, 200, paid.text);
  assert.ok(paid.json.pr, paid.text);
  assert.match(paid.headers.get("server-timing") ?? "", /^health;dur=\d+, provider;dur=\d+, health-write;dur=\d+, kv;dur=\d+, watch;dur=\d+, total;dur=\d+$/);
  const cases = [
    ["/.well-known/lnurlp/nobody", 404, "unknown_address"],
    ["/.well-known/lnurlp/SHOP", 404, "unknown_address"],
    ["/lnurlp/nobody/callback?amount=21000", 404, "unknown_address"],
    ["/lnurlp/shop/callback", 400, "invalid_amount"],
    ["/lnurlp/shop/callback?amount=21", 400, "amount_out_of_range"],
    ["/lnurlp/shop/callback?amount=21500", 400, "invalid_amount"],
    ["/lnurlp/shop/callback?amount=-21000", 400, "invalid_amount"],
    ["/lnurlp/shop/callback?amount=2.1e4", 400, "invalid_amount"],
    ["/lnurlp/shop/callback?amount=5000001000", 400, "amount_out_of_range"],
    [`/lnurlp/shop/callback?amount=21000&comment=${"x".repeat(41)}`, 400, "comment_too_long"],
    [`/lnurlp/verify/${"ab".repeat(32)}`, 404, "invoice_not_found"],
  ];
  for (const [route, status, code] of cases) {
    const r = await worker.request("GET", route);
    assert.equal(r.status, status, `${route}: ${r.text}`);
    assert.equal(r.json.status, "ERROR", route);
    assert.equal(typeof r.json.reason, "string");
    assert.equal(r.json.error.code, code, route);
  }
  const bad = await worker.request("GET", "/lnurlp/verify/xyz");
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.code, "invalid_payment_hash");
});

/** A signed zap request for `msat` to the recipient `p`, naming `relays`. */
function zapRequest(sk, { p, msat, relays, comment = "zap!" }) {
  return finalizeEvent(makeZapRequest({ pubkey: p, amount: msat, relays, comment }), sk);
}

test("zaps: nostr-tools finds the zap endpoint, the invoice commits to the zap request, and a valid receipt reaches the relay", async () => {
  const recipient = getPublicKey(generateSecretKey());
  const profile = finalizeEvent({ kind: 0, created_at: Math.floor(Date.now() / 1000), tags: [], content: JSON.stringify({ lud16: `shop@${domain}` }) }, generateSecretKey());
  // getZapEndpoint returns the callback only when allowsNostr and nostrPubkey are there.
  const callback = await getZapEndpoint(profile);
  assert.equal(callback, `https://${domain}/lnurlp/shop/callback`);
  const pay = await worker.request("GET", "/.well-known/lnurlp/shop");
  assert.equal(pay.json.allowsNostr, true);
  assert.equal(pay.json.nostrPubkey, getPublicKey(Buffer.from(ZAP_SECRET, "hex")));

  const sender = generateSecretKey();
  const zr = zapRequest(sender, { p: recipient, msat: 21_000, relays: [relay.url] });
  const raw = JSON.stringify(zr);
  assert.equal(validateZapRequest(raw), null);
  const res = await fetch(`${callback}?amount=21000&nostr=${encodeURIComponent(raw)}`);
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  const decoded = decodeInvoice(body.pr);
  assert.equal(decoded.description_hash, createHash("sha256").update(raw).digest("hex"), "the invoice commits to the zap request");

  const paid = await lnbits.pay(customer.adminkey, body.pr);
  assert.equal(paid.status, 201, JSON.stringify(paid.json));
  let receipt;
  for (let i = 0; i < 80 && !receipt; i++) {
    receipt = relay.published(9735).find((e) => e.tags.some(([t, v]) => t === "bolt11" && v === body.pr));
    if (!receipt) await new Promise((r) => setTimeout(r, 250));
  }
  assert.ok(receipt, "a zap receipt was published to the relay the request named");
  assert.ok(verifyEvent(receipt), "signed");
  assert.equal(receipt.pubkey, pay.json.nostrPubkey, "by the key the payRequest advertised");
  const description = receipt.tags.find(([t]) => t === "description")[1];
  assert.equal(description, raw);
  assert.equal(validateZapRequest(description), null);
  assert.equal(createHash("sha256").update(description).digest("hex"), decoded.description_hash);
  const preimage = receipt.tags.find(([t]) => t === "preimage")?.[1];
  assert.ok(preimage, "LNbits shows the preimage");
  assert.equal(createHash("sha256").update(Buffer.from(preimage, "hex")).digest("hex"), decoded.payment_hash);
  // nostr-tools' own receipt for the same payment has the same tags and date.
  const reference = makeZapReceipt({ zapRequest: raw, preimage, bolt11: body.pr, paidAt: new Date(receipt.created_at * 1000) });
  assert.deepEqual(receipt.tags, reference.tags);
  assert.equal(receipt.kind, reference.kind);
  assert.equal(receipt.content, "");
  // The relay holds it: a subscriber sees it.
  const stored = await new Promise((resolve, reject) => {
    const ws = new WebSocket(relay.url);
    const found = [];
    ws.on("open", () => ws.send(JSON.stringify(["REQ", "z", { kinds: [9735], "#p": [recipient] }])));
    ws.on("message", (data) => {
      const msg = JSON.parse(data.toString());
      if (msg[0] === "EVENT") found.push(msg[2]);
      if (msg[0] === "EOSE") {
        ws.close();
        resolve(found);
      }
    });
    ws.on("error", reject);
  });
  assert.deepEqual(stored.map((e) => e.id), [receipt.id]);
});

test("zaps: forged, wrong-amount and malformed zap requests, and private, plain-ws or too many relays, are refused with a code", async () => {
  const sender = generateSecretKey();
  const p = getPublicKey(generateSecretKey());
  const good = zapRequest(sender, { p, msat: 21_000, relays: ["wss://relay.example.com"] });
  const forged = { ...good, content: "changed after signing" };
  const other = finalizeEvent({ ...makeZapRequest({ pubkey: p, amount: 21_000, relays: ["wss://relay.example.com"], comment: "" }), kind: 1 }, sender);
  const twoP = finalizeEvent({ kind: 9734, created_at: Math.floor(Date.now() / 1000), content: "", tags: [["p", p], ["p", p], ["relays", "wss://relay.example.com"]] }, sender);
  const cases = [
    [JSON.stringify(good), 22_000, "invalid_zap_request"],
    [JSON.stringify(forged), 21_000, "invalid_zap_request"],
    [JSON.stringify(other), 21_000, "invalid_zap_request"],
    [JSON.stringify(twoP), 21_000, "invalid_zap_request"],
    ["{not json", 21_000, "invalid_zap_request"],
    ["[]", 21_000, "invalid_zap_request"],
    [JSON.stringify({ kind: 9734 }), 21_000, "invalid_zap_request"],
    [JSON.stringify(zapRequest(sender, { p, msat: 21_000, relays: ["ws://relay.example.com"] })), 21_000, "zap_relay_not_allowed"],
    [JSON.stringify(zapRequest(sender, { p, msat: 21_000, relays: ["wss://10.0.0.8"] })), 21_000, "zap_relay_not_allowed"],
    [JSON.stringify(zapRequest(sender, { p, msat: 21_000, relays: ["wss://localhost:7777"] })), 21_000, "zap_relay_not_allowed"],
    [JSON.stringify(zapRequest(sender, { p, msat: 21_000, relays: ["wss://[::1]"] })), 21_000, "zap_relay_not_allowed"],
    [JSON.stringify(zapRequest(sender, { p, msat: 21_000, relays: ["https://relay.example.com"] })), 21_000, "zap_relay_not_allowed"],
    [JSON.stringify(zapRequest(sender, { p, msat: 21_000, relays: [1, 2, 3, 4, 5, 6].map((i) => `wss://r${i}.example.com`) })), 21_000, "zap_relay_not_allowed"],
    ["x".repeat(9000), 21_000, "invalid_zap_request"],
  ];
  for (const [raw, msat, code] of cases) {
    const r = await worker.request("GET", `/lnurlp/shop/callback?amount=${msat}&nostr=${encodeURIComponent(raw)}`);
    assert.equal(r.status, 400, `${raw.slice(0, 120)}: ${r.text}`);
    assert.equal(r.json.status, "ERROR");
    assert.equal(r.json.error.code, code, raw.slice(0, 200));
  }
});
