// A fake recipient on 127.0.0.1 serving Lightning Addresses (LUD-16) and
// LNURL-pay (LUD-06) with real signed invoices; it can misbehave.
import http from "node:http";
import { signInvoice } from "./invoice.mjs";

// Modes:
//   ok            a correct server (invoices carry a `d` description, which is accepted)
//   inflate       the invoice asks for twice the amount
//   error         {"status":"ERROR"} at the first step
//   redirect      a 302 towards a private address
//   short_expiry  the invoice expires 5 s after it is issued
//   huge          the callback streams a 10 MB chunked body with no Content-Length
//   creds         the callback URL carries user:password@ credentials
//   repeat        the same invoice for every request of an amount (a broken
//                 or hostile server handing one invoice to several payers)
export async function startLnurlServer() {
  const srv = {
    mode: "ok",
    // In mode "ok": `async (amountMsat) => bolt11` makes the invoices instead
    // (a real LNbits wallet's, for instance); by default the testkit signs them.
    makeInvoice: null,
    resolutions: [], // {name, amount, comment}
    hugeBytesSent: 0, // bytes the last `huge` answer wrote before the client went away
    hugeClosed: null, // a promise that settles when the last `huge` answer ended
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
      const creds = srv.mode === "creds" ? "user:secret@" : "";
      return send(200, {
        tag: "payRequest",
        callback: `http://${creds}${srv.host}/lnurl/cb/${m[1]}`,
        minSendable: 1000,
        maxSendable: 1_000_000_000,
        metadata: JSON.stringify([["text/plain", `pay ${m[1]}`]]),
        commentAllowed: 140,
      });
    }
    m = /^\/lnurl\/cb\/([a-z0-9._-]+)$/.exec(url.pathname);
    if (m && srv.mode === "ok" && srv.makeInvoice) {
      const amount = Number(url.searchParams.get("amount"));
      srv.resolutions.push({ name: m[1], amount, comment: url.searchParams.get("comment") });
      srv.makeInvoice(amount).then(
        (pr) => send(200, { pr, routes: [] }),
        (e) => send(200, { status: "ERROR", reason: String(e.message ?? e) }),
      );
      return;
    }
    if (m) {
      const amount = Number(url.searchParams.get("amount"));
      srv.resolutions.push({ name: m[1], amount, comment: url.searchParams.get("comment") });
      if (srv.mode === "huge") return streamHuge(srv, res);
      if (srv.mode === "repeat") {
        srv.repeated ??= new Map();
        if (!srv.repeated.has(amount)) srv.repeated.set(amount, signInvoice({ amountMsat: amount, expiry: 600 }));
        return send(200, { pr: srv.repeated.get(amount).payment_request, routes: [] });
      }
      const inv = signInvoice({
        amountMsat: srv.mode === "inflate" ? amount * 2 : amount,
        expiry: srv.mode === "short_expiry" ? 5 : 600,
      });
      return send(200, { pr: inv.payment_request, routes: [] });
    }
    send(404, { status: "ERROR", reason: "not found" });
  });
  await new Promise((r) => srv.server.listen(0, "127.0.0.1", r));
  srv.port = srv.server.address().port;
  srv.stop = () => new Promise((r) => srv.server.close(r));
  return srv;
}

/** Writes a 10 MB JSON-looking body in 64 KiB chunks (chunked encoding, no
 * Content-Length), honouring backpressure, until done or the client leaves. */
function streamHuge(srv, res) {
  const total = 10 * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024, "x");
  srv.hugeBytesSent = 0;
  let gone = false;
  srv.hugeClosed = new Promise((resolve) => res.on("close", resolve));
  res.on("close", () => (gone = true));
  res.writeHead(200, { "content-type": "application/json" });
  res.write('{"pr":"');
  const pump = () => {
    while (!gone && srv.hugeBytesSent < total) {
      srv.hugeBytesSent += chunk.length;
      if (!res.write(chunk)) return res.once("drain", pump);
    }
    if (!gone) res.end('"}');
  };
  pump();
}
