// @ts-check
// A small shop in front of lightning-fallback: it sells an order for
// Lightning, learns that it was paid from the gateway's signed `invoice.paid`
// webhook, and refunds it with a payout whose `payout.succeeded` or
// `payout.failed` webhook it also verifies. It talks to the gateway through
// the TypeScript client generated from the gateway's openapi.json
// (openapi-typescript types in gateway-api.d.ts, openapi-fetch at runtime)
// and checks every webhook with the Standard Webhooks reference library.
//
//   GATEWAY_URL=http://localhost:8787 INVOICE_API_KEY=... PAYOUT_API_KEY=... \
//   WEBHOOK_SECRET=whsec_... SHOP_URL=https://shop.example PORT=3000 node examples/shop/shop.mjs
//
// Routes: POST /orders {"amount_sat"} → the order with its invoice;
// GET /orders/{id}; POST /orders/{id}/refund {"invoice"} → the refund;
// POST /webhooks/lightning ← the gateway's events. Orders live in memory.
import http from "node:http";
import { randomUUID } from "node:crypto";
import { pathToFileURL } from "node:url";
import createClient from "openapi-fetch";
import { Webhook } from "standardwebhooks";

/** @typedef {import("./gateway-api.js").paths} Paths */
/** @typedef {import("./gateway-api.js").components["schemas"]} Schemas */

/**
 * @typedef {object} Order
 * @property {string} id
 * @property {number} amount_sat
 * @property {"awaiting_payment" | "paid" | "expired"} status
 * @property {string} payment_hash
 * @property {string} payment_request
 * @property {string | undefined} checkout_url
 * @property {{ payout_id: string, status: string, reason?: string } | null} refund
 */

/**
 * @param {{ gatewayUrl: string, invoiceKey: string, payoutKey: string, webhookSecret: string, shopUrl: string }} cfg
 */
export function createShop(cfg) {
  /** @type {import("openapi-fetch").Client<Paths>} */
  const gateway = createClient({ baseUrl: cfg.gatewayUrl });
  const verifier = new Webhook(cfg.webhookSecret);
  /** @type {Map<string, Order>} */
  const orders = new Map();
  // Where the gateway sends this shop's events (read per request: a server
  // listening on port 0 learns its own URL after it starts).
  const hookUrl = () => `${cfg.shopUrl}/webhooks/lightning`;

  /** @param {number} amount_sat */
  async function newOrder(amount_sat) {
    const id = `order_${randomUUID()}`;
    const { data, error, response } = await gateway.POST("/api/create-invoice", {
      headers: { authorization: `Bearer ${cfg.invoiceKey}` },
      params: { header: { "Idempotency-Key": id } },
      body: { amount: amount_sat, description: `Order ${id}`, external_id: id, webhook_url: hookUrl() },
    });
    if (error) return { status: response.status, body: error };
    /** @type {Order} */
    const order = {
      id,
      amount_sat,
      status: "awaiting_payment",
      payment_hash: data.payment_hash,
      payment_request: data.payment_request,
      checkout_url: data.checkout_url,
      refund: null,
    };
    orders.set(id, order);
    return { status: 201, body: order };
  }

  /** The gateway's own view, for a customer who asks before the webhook came. @param {Order} order */
  async function refresh(order) {
    if (order.status !== "awaiting_payment") return order;
    const { data } = await gateway.GET("/api/check-invoice", {
      params: { query: { payment_hash: order.payment_hash } },
    });
    if (data?.status === "paid") order.status = "paid";
    if (data?.status === "expired") order.status = "expired";
    return order;
  }

  /** @param {Order} order @param {string} invoice */
  async function refund(order, invoice) {
    if (order.status !== "paid") return { status: 409, body: { error: "only a paid order is refunded" } };
    const { data, error, response } = await gateway.POST("/api/payouts", {
      params: { header: { "Idempotency-Key": `refund-${order.id}` } },
      headers: { authorization: `Bearer ${cfg.payoutKey}` },
      body: { destination: invoice, webhook_url: hookUrl(), external_id: order.id },
    });
    if (data) {
      order.refund = { payout_id: data.id, status: data.status };
      return { status: 202, body: order };
    }
    // A 422 is either nothing stored (an Error: the invoice is expired, for
    // another amount, over a limit) or a payout stored and already failed.
    if (response.status === 422 && error && "error" in error) {
      /** @type {Schemas["Error"] | Schemas["FailedPayout"]} */
      const refused = error;
      const reason = refused.error.message;
      if ("id" in refused) order.refund = { payout_id: refused.id, status: "failed", reason };
      return { status: 422, body: { error: reason, code: refused.error.code } };
    }
    return { status: 502, body: { error: `the gateway answered ${response.status}` } };
  }

  /** A verified event from the gateway. @param {any} event */
  function onEvent(event) {
    const data = event.data ?? {};
    if (event.type === "invoice.paid" || event.type === "invoice.expired") {
      const order = orders.get(data.external_id);
      if (order && order.payment_hash === data.payment_hash && order.status === "awaiting_payment") {
        order.status = event.type === "invoice.paid" ? "paid" : "expired";
      }
    } else if (event.type?.startsWith("payout.")) {
      const order = orders.get(data.external_id);
      if (order?.refund && order.refund.payout_id === data.id) {
        order.refund.status = data.status;
        if (data.failure_reason) order.refund.reason = data.failure_reason;
      }
    }
  }

  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const raw = Buffer.concat(chunks).toString("utf8");
    /** @param {number} status @param {unknown} body */
    const send = (status, body) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    try {
      const url = new URL(req.url ?? "/", "http://shop");
      const [, first, id, action] = url.pathname.split("/");
      if (req.method === "POST" && url.pathname === "/webhooks/lightning") {
        /** @type {Record<string, string>} */
        const headers = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers[k] = v;
        let event;
        try {
          event = verifier.verify(raw, headers); // signature, id and a timestamp within 5 minutes
        } catch {
          return send(400, { error: "bad signature" });
        }
        onEvent(event);
        return send(200, { ok: true });
      }
      if (req.method === "POST" && url.pathname === "/orders") {
        const { amount_sat } = JSON.parse(raw || "{}");
        if (!Number.isInteger(amount_sat) || amount_sat < 1) return send(400, { error: "amount_sat" });
        const r = await newOrder(amount_sat);
        return send(r.status, r.body);
      }
      const order = first === "orders" && id ? orders.get(id) : undefined;
      if (!order) return send(404, { error: "no such order" });
      if (req.method === "GET" && !action) return send(200, await refresh(order));
      if (req.method === "POST" && action === "refund") {
        const r = await refund(order, JSON.parse(raw || "{}").invoice);
        return send(r.status, r.body);
      }
      return send(404, { error: "no such route" });
    } catch (e) {
      return send(500, { error: String(e) });
    }
  });
  return { server, orders, config: cfg };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const env = (/** @type {string} */ n) => {
    const v = process.env[n];
    if (!v) throw new Error(`${n} is not set`);
    return v;
  };
  const port = Number(process.env.PORT ?? 3000);
  const { server } = createShop({
    gatewayUrl: env("GATEWAY_URL"),
    invoiceKey: env("INVOICE_API_KEY"),
    payoutKey: env("PAYOUT_API_KEY"),
    webhookSecret: env("WEBHOOK_SECRET"),
    shopUrl: process.env.SHOP_URL ?? `http://127.0.0.1:${port}`,
  });
  server.listen(port, "127.0.0.1", () => console.log(`shop on http://127.0.0.1:${port}`));
}
