// End-to-end: the API contract is served and linked, and the router sees the
// method a client really sent (schemathesis, `make contract`, checks the rest).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { startWorker } from "./support/worker.mjs";
import { ROOT } from "./support/invoice.mjs";

const KEY = "payout-key-for-openapi-test-0123";
let worker;

before(async () => {
  worker = await startWorker(
    { LIGHTNING_FALLBACK_ENABLE_MOCK: "true", PAYOUT_API_KEY: KEY, PAYOUT_PROVIDER: "mock" },
    { name: "openapi", snapshot: true },
  );
});

after(() => worker?.stop());

test("GET /openapi.json serves the document in the repository, as JSON", async () => {
  const res = await worker.request("GET", "/openapi.json");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^application\/json/);
  // The repository's document, served without its indentation (crates/gateway/build.rs).
  assert.deepEqual(JSON.parse(res.text), JSON.parse(fs.readFileSync(path.join(ROOT, "crates/gateway/src/api/openapi.json"), "utf8")));
  assert.ok(!res.text.includes("\n"));
  assert.match(res.json.openapi, /^3\.1\./);
  assert.ok(res.json.paths["/api/payouts/{id}/retry"].post);
});

test("GET / links the document (a field and an RFC 8631 Link header)", async () => {
  const res = await worker.request("GET", "/");
  assert.equal(res.status, 200);
  assert.equal(res.json.openapi, "/openapi.json");
  assert.ok(res.json.routes.includes("GET /openapi.json"));
  assert.equal(res.headers.get("link"), '</openapi.json>; rel="service-desc"');
});

// Regression (found by schemathesis): workers-rs maps any method it does not
// know to GET, so `QUERY /api/payouts/{id}` was answered like a GET. (A
// method workerd itself does not know, such as FOO, never reaches the Worker:
// workerd answers 501.)
test("a method the gateway does not know is 405, never served as GET", async () => {
  const create = await worker.request("POST", "/api/payouts", {
    json: { destination: (await worker.createInvoice({ amount: 10 })).json.payment_request },
    headers: { authorization: `Bearer ${KEY}`, "idempotency-key": "openapi-method-1" },
  });
  assert.equal(create.status, 201, create.text);
  for (const [method, route] of [
    ["QUERY", "/"],
    ["PROPFIND", "/openapi.json"],
    ["QUERY", "/api/lightning/health"],
    ["QUERY", `/api/payouts/${create.json.id}`],
    ["REPORT", "/api/payouts"],
  ]) {
    const res = await worker.request(method, route, { headers: { authorization: `Bearer ${KEY}` } });
    assert.equal(res.status, 405, `${method} ${route}: ${res.text}`);
    assert.equal(res.json.error.code, "method_not_allowed");
    assert.ok(res.headers.get("allow"), `${method} ${route}: no Allow header`);
  }
});

test("HEAD is served on GET routes: the same status and headers, no body; not on POST routes", async () => {
  for (const route of ["/", "/openapi.json", "/api/lightning/health", "/status"]) {
    const get = await worker.request("GET", route);
    const head = await worker.request("HEAD", route);
    assert.equal(head.status, get.status, route);
    assert.equal(head.headers.get("content-type"), get.headers.get("content-type"), route);
    assert.equal(head.text, "", `${route}: no body`);
  }
  const post = await worker.request("HEAD", "/api/create-invoice");
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "POST, OPTIONS");
  const allow = (await worker.request("DELETE", "/api/lightning/health")).headers.get("allow");
  assert.equal(allow, "GET, HEAD, OPTIONS");
});
