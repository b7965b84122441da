// A fault-injecting HTTP proxy on 127.0.0.1 for the chaos run. It sits
// between the gateway and LNbits. Every pay request (POST /api/v1/payments
// with "out": true) gets one decision drawn with a seeded RNG; everything
// else (status lookups, wallet, LNURL) passes through, with an optional small
// delay. Decisions:
//   pass         forward, answer LNbits' answer
//   html520      answer a Cloudflare-style HTML 520 without forwarding
//   forward520   forward, then answer an HTML 520 instead of LNbits' answer
//   forwardDrop  forward, then destroy the socket without answering
//   hang         forward, then hold the answer past the gateway's pay timeout, then drop
//   late         hold the request past the gateway's pay timeout (and past the
//                not-found grace), THEN forward it: LNbits still executes it
//   delay        wait a while (below the pay timeout), then forward and answer
// Each decision is written as one JSON line to the log file.
import fs from "node:fs";
import http from "node:http";
import { paymentHashOf } from "./bolt11.mjs";

export const DECISIONS = ["pass", "html520", "forward520", "forwardDrop", "hang", "late", "delay"];

/** mulberry32: a small seeded RNG, uniform in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HTML_520 =
  '<!DOCTYPE html>\n<html lang="en-US"><head><title>lnbits.example | 520: Web server is returning an unknown error</title></head>' +
  "<body><h1>Web server is returning an unknown error</h1><p>Error code 520</p><p>Cloudflare Ray ID: 8c0ffee0chaos</p></body></html>\n";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts the proxy. Options:
 *   upstream      LNbits base URL (http://127.0.0.1:PORT)
 *   seed          RNG seed
 *   weights       {decision: weight}; missing decisions weigh 0
 *   payTimeoutMs  the gateway's pay timeout: "hang" holds the answer past it
 *   lateMs        [min, max] hold of a "late" request before it is forwarded
 *   delayMs       [min, max] of a "delay" (keep max below the pay timeout)
 *   passDelayMs   [min, max] delay of every other request
 *   logFile       path of the JSON-lines decision log
 *   t0            origin of the log's `t` (ms), to line it up with other logs
 */
export async function startFaultProxy({
  upstream,
  seed = 1,
  weights,
  payTimeoutMs = 3000,
  lateMs = [8000, 12000],
  delayMs = [200, 1500],
  passDelayMs = [0, 30],
  logFile,
  t0 = Date.now(),
}) {
  const up = new URL(upstream);
  const rand = rng(seed);
  let total = 0;
  const setWeights = (w) => {
    const t = DECISIONS.reduce((s, d) => s + (w[d] ?? 0), 0);
    if (!(t > 0)) throw new Error("fault proxy: all weights are zero");
    weights = w;
    total = t;
  };
  setWeights(weights);
  const pick = () => {
    let x = rand() * total;
    for (const d of DECISIONS) {
      x -= weights[d] ?? 0;
      if (x < 0) return d;
    }
    return "pass";
  };
  const between = ([a, b]) => Math.round(a + rand() * (b - a));
  const log = logFile ? fs.createWriteStream(logFile, { flags: "a" }) : null;
  const counts = Object.fromEntries(DECISIONS.map((d) => [d, 0]));
  const pending = new Set(); // promises of pay requests still being handled
  let seq = 0;
  let other = 0;
  const hashes = []; // every pay request's hash and decision, in order
  let rewriteKey = null; // when set, every request carries this wallet key instead
  const write = (o) => log?.write(JSON.stringify({ t: Date.now() - t0, ...o }) + "\n");

  /** Sends the request to LNbits; resolves {status, headers, body} (or {error}). */
  function forwardRaw(req, body, key = null) {
    return new Promise((resolve) => {
      const headers = { ...req.headers };
      if (key) headers["x-api-key"] = key;
      delete headers.connection;
      delete headers["keep-alive"];
      headers["content-length"] = String(body.length);
      const r = http.request(
        { host: up.hostname, port: up.port, method: req.method, path: req.url, headers, timeout: 60_000 },
        (res) => {
          const chunks = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on("error", (e) => resolve({ error: String(e) }));
        },
      );
      r.on("timeout", () => r.destroy(new Error("upstream timeout")));
      r.on("error", (e) => resolve({ error: String(e) }));
      r.end(body);
    });
  }

  function answer(res, up) {
    if (res.destroyed || res.writableEnded) return;
    if (up.error) {
      res.writeHead(502, { "content-type": "text/plain" });
      res.end(`proxy: upstream error ${up.error}\n`);
      return;
    }
    const headers = { ...up.headers };
    delete headers["transfer-encoding"];
    delete headers.connection;
    headers["content-length"] = String(up.body.length);
    res.writeHead(up.status, headers);
    res.end(up.body);
  }

  function answer520(res) {
    if (res.destroyed || res.writableEnded) return;
    res.writeHead(520, { "content-type": "text/html; charset=UTF-8", "content-length": Buffer.byteLength(HTML_520) });
    res.end(HTML_520);
  }

  function drop(res) {
    res.socket?.destroy();
  }

  const summary = (up) => {
    if (up.error) return { up_error: up.error };
    let status;
    try {
      status = JSON.parse(up.body.toString()).status;
    } catch {}
    return { up_status: up.status, up_body_status: status };
  };

  async function handlePay(req, res, body, json) {
    const n = ++seq;
    const decision = pick();
    counts[decision]++;
    const hash = paymentHashOf(json.bolt11 ?? "") ?? null;
    const started = Date.now();
    let clientGone = false;
    res.on("close", () => {
      if (!res.writableEnded) clientGone = true;
    });
    // With a rewritten key, LNbits itself refuses the payment (401) before acting.
    const key = rewriteKey;
    const entry = { seq: n, decision, hash, ...(key ? { wrong_key: true } : {}) };
    const seen = { hash, decision, wrong_key: !!key, t: Date.now() - t0, up_status: null };
    if (hash) hashes.push(seen);
    const forward = async (r, b) => {
      const u = await forwardRaw(r, b, key);
      seen.up_status = u.status ?? null;
      return u;
    };
    switch (decision) {
      case "pass": {
        const u = await forward(req, body);
        answer(res, u);
        write({ ...entry, ...summary(u), ms: Date.now() - started });
        break;
      }
      case "html520":
        answer520(res);
        write({ ...entry, forwarded: false });
        break;
      case "forward520": {
        const u = await forward(req, body);
        answer520(res);
        write({ ...entry, ...summary(u), ms: Date.now() - started });
        break;
      }
      case "forwardDrop": {
        const u = await forward(req, body);
        drop(res);
        write({ ...entry, ...summary(u), ms: Date.now() - started });
        break;
      }
      case "hang": {
        const u = await forward(req, body);
        const wait = payTimeoutMs + 1500 - (Date.now() - started);
        if (wait > 0) await sleep(wait);
        drop(res);
        write({ ...entry, ...summary(u), ms: Date.now() - started, client_gone: clientGone });
        break;
      }
      case "late": {
        const hold = Math.max(between(lateMs), payTimeoutMs + 1000);
        write({ ...entry, phase: "held", hold_ms: hold });
        await sleep(hold);
        const u = await forward(req, body);
        drop(res);
        write({ ...entry, phase: "forwarded", ...summary(u), ms: Date.now() - started, client_gone: clientGone });
        break;
      }
      case "delay": {
        await sleep(between(delayMs));
        const u = await forward(req, body);
        answer(res, u);
        write({ ...entry, ...summary(u), ms: Date.now() - started, client_gone: clientGone });
        break;
      }
    }
  }

  async function handle(req, res) {
    const chunks = [];
    let size = 0;
    for await (const c of req) {
      size += c.length;
      if (size > 1 << 20) {
        res.writeHead(413).end();
        return;
      }
      chunks.push(c);
    }
    const body = Buffer.concat(chunks);
    const pathOnly = req.url.split("?")[0];
    if (req.method === "POST" && pathOnly === "/api/v1/payments") {
      let json = null;
      try {
        json = JSON.parse(body.toString());
      } catch {}
      // LNbits' default for "out" is true: a body without it is a pay request too.
      if (json && json.out !== false) {
        const p = handlePay(req, res, body, json).catch((e) => {
          write({ error: String(e) });
          drop(res);
        });
        pending.add(p);
        p.finally(() => pending.delete(p));
        return;
      }
    }
    other++;
    const d = between(passDelayMs);
    if (d > 0) await sleep(d);
    answer(res, await forwardRaw(req, body));
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => {
      write({ error: String(e), url: req.url });
      drop(res);
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    counts,
    hashes,
    setWeights,
    set rewriteKey(k) {
      rewriteKey = k;
    },
    get payRequests() {
      return seq;
    },
    get otherRequests() {
      return other;
    },
    get pending() {
      return pending.size;
    },
    /** Waits (at most `timeoutMs`) until no pay request is held or in flight. */
    async idle(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (pending.size > 0 && Date.now() < deadline) await sleep(200);
      return pending.size === 0;
    },
    async close() {
      await this.idle(30_000);
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
      await new Promise((r) => (log ? log.end(r) : r()));
    },
  };
}
