// A small program against the TypeScript client generated from the
// gateway's openapi.json (openapi-typescript's types, openapi-fetch at
// runtime): create an invoice, check it, pay it with a payout, and handle a
// 422. tests/clients/run.mjs type-checks it with tsc --strict, compiles it and
// runs it against the built Worker.
import createClient from "openapi-fetch";
import type { components, paths } from "../../examples/shop/gateway-api.js";

type Schemas = components["schemas"];

async function main(): Promise<number> {
  const base = process.env.GATEWAY_URL ?? "";
  const payoutKey = process.env.PAYOUT_KEY ?? "";
  const run = process.env.RUN_ID ?? "1";
  const gateway = createClient<paths>({ baseUrl: base });

  const created = await gateway.POST("/api/create-invoice", { body: { amount: 1000, description: "order 2" } });
  if (!created.data) {
    console.log(`create-invoice: ${created.response.status}`, created.error);
    return 1;
  }
  const invoice: Schemas["CreateInvoiceResponse"] = created.data;

  const checked = await gateway.GET("/api/check-invoice", { params: { query: { payment_hash: invoice.payment_hash } } });
  if (!checked.data) {
    console.log(`check-invoice: ${checked.response.status}`, checked.error);
    return 1;
  }
  console.log(`invoice ${invoice.payment_hash.slice(0, 12)}… is ${checked.data.status}`);

  const auth = { authorization: `Bearer ${payoutKey}` };
  const paid = await gateway.POST("/api/payouts", {
    headers: auth,
    params: { header: { "Idempotency-Key": `ts-client-${run}` } },
    body: { destination: invoice.payment_request },
  });
  if (!paid.data) {
    console.log(`payout: ${paid.response.status}`, paid.error);
    return 1;
  }
  const payout: Schemas["Payout"] = paid.data;
  console.log(`payout ${payout.id} is ${payout.status}`);

  // A 422: the amount does not match the invoice's. Nothing stored (an
  // Error), or stored and already failed (a FailedPayout, which has an id).
  const wrong = await gateway.POST("/api/payouts", {
    headers: auth,
    params: { header: { "Idempotency-Key": `ts-client-422-${run}` } },
    body: { destination: invoice.payment_request, amount_sat: 7 },
  });
  if (wrong.response.status !== 422 || !wrong.error || !("error" in wrong.error)) {
    console.log(`expected a 422, got ${wrong.response.status}`, wrong.error ?? wrong.data);
    return 1;
  }
  const refused: Schemas["Error"] | Schemas["FailedPayout"] = wrong.error;
  console.log("id" in refused ? `422: stored and failed: ${refused.error.message}` : `422 ${refused.error.code}: ${refused.error.message}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
