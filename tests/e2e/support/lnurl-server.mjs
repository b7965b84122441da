// A fake recipient on 127.0.0.1 serving Lightning Addresses (LUD-16) and
// LNURL-pay (LUD-06) with real signed invoices; it can misbehave.
import http from "node:http";
import { signInvoice } from "./invoice.mjs";

export async function startLnurlServer() {
  const srv = {
    mode: "ok", // ok | inflate | error | redirect
    resolutions: [], // {name, amount, comment}
    port: 0,
    get host() {
      return `127.0.0.1:${this.port}`;
    },
    address(name) {
      return `${name}@${this.host}`;
    },
  };
  srv.server = http.createServer((req, res) => {
    const url = new URL(req.url, `http://${srv.host}`);
    const send = (status, obj, headers = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify(obj));
    };
    let m = /^\/\.well-known\/lnurlp\/([a-z0-9._-]+)$/.exec(url.pathname);
    if (m) {
      if (srv.mode === "error") return send(200, { status: "ERROR", reason: "no such user" });
      if (srv.mode === "redirect") return send(302, {}, { location: "http://10.0.0.1/steal" });
      return send(200, {
        tag: "payRequest",
        callback: `http://${srv.host}/lnurl/cb/${m[1]}`,
        minSendable: 1000,
        maxSendable: 1_000_000_000,
        metadata: JSON.stringify([["text/plain", `pay ${m[1]}`]]),
        commentAllowed: 140,
      });
    }
    m = /^\/lnurl\/cb\/([a-z0-9._-]+)$/.exec(url.pathname);
    if (m) {
      const amount = Number(url.searchParams.get("amount"));
      srv.resolutions.push({ name: m[1], amount, comment: url.searchParams.get("comment") });
      const inv = signInvoice({ amountMsat: srv.mode === "inflate" ? amount * 2 : amount, expiry: 600 });
      return send(200, { pr: inv.payment_request, routes: [] });
    }
    send(404, { status: "ERROR", reason: "not found" });
  });
  await new Promise((r) => srv.server.listen(0, "127.0.0.1", r));
  srv.port = srv.server.address().port;
  srv.stop = () => new Promise((r) => srv.server.close(r));
  return srv;
}

/** Receives webhooks; answers with `statuses` in turn (the last repeats). */
export async function startWebhookReceiver(statuses = [200]) {
  const rx = { received: [], statuses: [...statuses], port: 0 };
  rx.server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    rx.received.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
    const status = rx.statuses.length > 1 ? rx.statuses.shift() : rx.statuses[0];
    res.writeHead(status);
    res.end();
  });
  await new Promise((r) => rx.server.listen(0, "127.0.0.1", r));
  rx.port = rx.server.address().port;
  rx.url = `http://127.0.0.1:${rx.port}/hooks/payouts`;
  rx.stop = () => new Promise((r) => rx.server.close(r));
  return rx;
}
