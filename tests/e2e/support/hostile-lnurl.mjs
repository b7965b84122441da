// The fake Lightning Address server of lnurl-server.mjs, extended with the
// hostile behaviours of the bad-input corpus. Its own modes keep working; the
// modes below are answered here, before its handler sees the request.
import crypto from "node:crypto";
import { startLnurlServer } from "./lnurl-server.mjs";
import { signInvoice, corruptAt } from "./invoice.mjs";

const sha256 = (s) => crypto.createHash("sha256").update(s).digest("hex");
const metadataOf = (name) => JSON.stringify([["text/plain", `pay ${name}`]]);

/**
 * The first step (`/.well-known/lnurlp/<name>`):
 *   redirect-local (302 to this very server, which would work if followed),
 *   redirect-other (307 to another host), html, bad-json, deep-json,
 *   number-overflow (minSendable 1e400), huge-length (2 MB with a Content-Length),
 *   huge-chunked (48 MB without one; `streamedBytes` counts what left),
 *   trickle (a byte every 200 ms, no Content-Length), wrong-tag, no-callback,
 *   bad-range (min > max), narrow-range (1 sat only), callback-private (a
 *   callback on 127.0.0.2), callback-creds (user:password@ in the callback),
 *   callback-scheme (a file: callback), no-comments (commentAllowed 0).
 * The callback step (`/lnurl/cb/<name>`):
 *   deflate (half the amount), msat-off (one msat more), cb-error, cb-html,
 *   cb-no-pr, cb-pr-number, cb-garbage-pr, cb-bad-checksum, cb-wrong-network,
 *   cb-short-expiry (expires in 5 s), cb-fixed (serves `fixedInvoice`, e.g. an
 *   expired or amountless one), cb-wrong-hash (commits to a description hash
 *   that is not the metadata's), cb-huge, cb-redirect-local.
 */
export async function startHostileLnurlServer() {
  const srv = await startLnurlServer();
  srv.streamedBytes = 0;
  srv.fixedInvoice = null;
  const [base] = srv.server.listeners("request");
  srv.server.removeAllListeners("request");
  srv.server.on("request", (req, res) => {
    const answered = hostile(srv, req, res);
    if (!answered) base(req, res);
  });
  const stop = srv.stop;
  srv.stop = () => {
    srv.server.closeAllConnections(); // a trickling answer must not hold the server open
    return stop();
  };
  return srv;
}

function hostile(srv, req, res) {
  const url = new URL(req.url, `http://${srv.host}`);
  const send = (status, body, headers = {}) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(typeof body === "string" ? body : JSON.stringify(body));
    return true;
  };
  const html = () => send(200, "<!doctype html><html><body><h1>Welcome</h1></body></html>", { "content-type": "text/html" });
  const stream = (head, total, chunk, delayMs = 0) => {
    // No Content-Length: the body goes out chunked, until done or the reader hangs up.
    res.writeHead(200, { "content-type": "application/json" });
    let closed = false;
    res.on("close", () => (closed = true));
    (async () => {
      const write = async (b) => {
        srv.streamedBytes += Buffer.byteLength(b);
        if (!res.write(b)) await new Promise((r) => (res.once("drain", r), res.once("close", r)));
      };
      await write(head);
      for (let sent = 0; !closed && sent < total; sent += chunk.length) {
        await write(chunk);
        if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      }
      if (!closed) res.end('"}');
    })();
    return true;
  };
  let m = /^\/\.well-known\/lnurlp\/([a-z0-9._+-]+)$/.exec(url.pathname);
  if (m) {
    const name = m[1];
    const payRequest = (extra = {}) => ({
      tag: "payRequest",
      callback: `http://${srv.host}/lnurl/cb/${name}`,
      minSendable: 1000,
      maxSendable: 1_000_000_000,
      metadata: metadataOf(name),
      commentAllowed: 140,
      ...extra,
    });
    const padded = JSON.stringify(payRequest()).slice(0, -1) + ',"padding":"';
    switch (srv.mode) {
      case "redirect-local":
        return send(302, {}, { location: `http://${srv.host}/.well-known/lnurlp/${name}` });
      case "redirect-other":
        return send(307, {}, { location: `https://example.com/.well-known/lnurlp/${name}` });
      case "html":
        return html();
      case "bad-json":
        return send(200, '{"tag": "payRequest", "callback": ');
      case "deep-json":
        return send(200, "[".repeat(20_000) + "]".repeat(20_000));
      case "number-overflow":
        return send(200, JSON.stringify(payRequest()).replace('"minSendable":1000', '"minSendable":1e400'));
      case "huge-length":
        return send(200, { ...payRequest(), padding: "x".repeat(2 * 1024 * 1024) });
      case "huge-chunked":
        return stream(padded, 48 * 1024 * 1024, "x".repeat(64 * 1024));
      case "trickle":
        return stream(padded, 150, "x", 200);
      case "wrong-tag":
        return send(200, payRequest({ tag: "withdrawRequest" }));
      case "no-callback":
        return send(200, payRequest({ callback: undefined }));
      case "bad-range":
        return send(200, payRequest({ minSendable: 5_000_000, maxSendable: 1000 }));
      case "narrow-range":
        return send(200, payRequest({ minSendable: 1000, maxSendable: 1000 }));
      case "callback-private":
        return send(200, payRequest({ callback: `http://127.0.0.2:${srv.port}/lnurl/cb/${name}` }));
      case "callback-creds":
        return send(200, payRequest({ callback: `http://user:secret@${srv.host}/lnurl/cb/${name}` }));
      case "callback-scheme":
        return send(200, payRequest({ callback: "file:///etc/passwd" }));
      case "no-comments":
        return send(200, payRequest({ commentAllowed: 0 }));
      default:
        return false;
    }
  }
  m = /^\/lnurl\/cb\/([a-z0-9._+-]+)$/.exec(url.pathname);
  if (m) {
    const name = m[1];
    const amount = Number(url.searchParams.get("amount"));
    const invoice = (opts = {}) =>
      signInvoice({ amountMsat: amount, expiry: 600, descriptionHash: sha256(metadataOf(name)), ...opts }).payment_request;
    const pr = (p) => send(200, { pr: p, routes: [] });
    const record = () => srv.resolutions.push({ name, amount, comment: url.searchParams.get("comment") });
    switch (srv.mode) {
      case "deflate":
        return record(), pr(invoice({ amountMsat: Math.floor(amount / 2) }));
      case "msat-off":
        return record(), pr(invoice({ amountMsat: amount + 1 }));
      case "cb-error":
        return record(), send(200, { status: "ERROR", reason: "cannot issue an invoice now" });
      case "cb-html":
        return record(), html();
      case "cb-no-pr":
        return record(), send(200, { routes: [] });
      case "cb-pr-number":
        return record(), send(200, { pr: 12345, routes: [] });
      case "cb-garbage-pr":
        return record(), pr("lnbc1garbage");
      case "cb-bad-checksum":
        return record(), pr(corruptAt(invoice(), -1));
      case "cb-wrong-network":
        return record(), pr(invoice({ network: "regtest" }));
      case "cb-short-expiry":
        return record(), pr(invoice({ expiry: 5 }));
      case "cb-fixed":
        return record(), pr(srv.fixedInvoice);
      case "cb-wrong-hash":
        return record(), pr(invoice({ descriptionHash: sha256(`not ${metadataOf(name)}`) }));
      case "cb-huge":
        return record(), send(200, { pr: invoice(), routes: [], padding: "x".repeat(2 * 1024 * 1024) });
      case "cb-redirect-local":
        return record(), send(302, {}, { location: `http://${srv.host}/lnurl/cb/${name}?amount=${amount}` });
      default:
        return false;
    }
  }
  return false;
}
