// A webhook receiver that checks every delivery the way a client's server
// would: with the Standard Webhooks reference verifier (npm `standardwebhooks`),
// third-party code rather than ours. It holds any number of named secrets, one
// verifier each, so a test can show that a receiver holding only the new or
// only the previous secret accepts a delivery sent during a rotation.
import http from "node:http";
import { Webhook } from "standardwebhooks";

/**
 * `secrets`: `{ name: "whsec_…" }`. `statuses`: the answers to successive
 * deliveries that verify (the last one repeats). A delivery that no held secret
 * verifies is answered 401, as a real receiver would.
 * Each entry of `received` is `{ headers, body, verified: { name: true | "error" } }`.
 */
export async function startWebhookReceiver({ secrets, statuses = [200] }) {
  const verifiers = Object.entries(secrets).map(([name, secret]) => [name, new Webhook(secret)]);
  const rx = { received: [], statuses: [...statuses], port: 0 };
  rx.server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks).toString("utf8");
    const verified = {};
    for (const [name, wh] of verifiers) verified[name] = check(wh, body, req.headers);
    rx.received.push({ headers: req.headers, body, verified });
    const ok = Object.values(verified).some((v) => v === true);
    const status = !ok ? 401 : rx.statuses.length > 1 ? rx.statuses.shift() : rx.statuses[0];
    res.writeHead(status);
    res.end();
  });
  await new Promise((r) => rx.server.listen(0, "127.0.0.1", r));
  rx.port = rx.server.address().port;
  rx.url = `http://127.0.0.1:${rx.port}/hooks/payouts`;
  rx.stop = () => new Promise((r) => rx.server.close(r));
  /** Verifies a (possibly altered) delivery with the secret named `name`: true or the error. */
  rx.verify = (name, { headers, body }) => {
    const found = verifiers.find(([n]) => n === name);
    if (!found) throw new Error(`no secret named ${name}`);
    return check(found[1], body, headers);
  };
  return rx;
}

function check(wh, body, headers) {
  try {
    wh.verify(body, {
      "webhook-id": headers["webhook-id"],
      "webhook-timestamp": headers["webhook-timestamp"],
      "webhook-signature": headers["webhook-signature"],
    });
    return true;
  } catch (e) {
    return String(e?.message ?? e);
  }
}
