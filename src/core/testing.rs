//! A scripted [`Runtime`] for host tests: a virtual clock that sleeps and
//! timeouts advance, and replies chosen by URL prefix.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use serde_json::json;

use crate::core::bolt11::Network;
use crate::core::http::{HttpRequest, HttpResponse, ReadLimits, Runtime, TransportError};
use crate::core::providers::mock::sign_invoice;

pub type ReplyFn = Rc<dyn Fn(&HttpRequest, u64) -> HttpResponse>;

#[derive(Clone)]
pub enum Reply {
    /// Answer after `latency_ms`.
    Respond(HttpResponse, u64),
    /// Build the answer from the request and the clock (ms).
    Func(ReplyFn, u64),
    /// Never answer: the caller's timeout fires.
    Hang,
    Fail(TransportError),
}

pub struct FakeRuntime {
    now: Cell<u64>,
    seed: Cell<u64>,
    rules: RefCell<Vec<(String, VecDeque<Reply>)>>,
    pub sent: RefCell<Vec<(String, u64)>>,
    /// The read limits of each request, in order (the default for `send`).
    pub limits: RefCell<Vec<(String, ReadLimits)>>,
    pub slept: RefCell<Vec<u64>>,
}

impl FakeRuntime {
    pub fn new(now_ms: u64) -> Self {
        FakeRuntime {
            now: Cell::new(now_ms),
            seed: Cell::new(0x9e37_79b9_7f4a_7c15),
            rules: RefCell::new(Vec::new()),
            sent: RefCell::new(Vec::new()),
            limits: RefCell::new(Vec::new()),
            slept: RefCell::new(Vec::new()),
        }
    }

    /// Replies for URLs starting with `prefix`, in order; the last repeats.
    pub fn on(&self, prefix: &str, replies: Vec<Reply>) {
        self.rules
            .borrow_mut()
            .push((prefix.to_string(), replies.into()));
    }

    pub fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
    }

    pub fn calls_to(&self, prefix: &str) -> usize {
        self.sent
            .borrow()
            .iter()
            .filter(|(u, _)| u.starts_with(prefix))
            .count()
    }

    fn next_reply(&self, url: &str) -> Reply {
        let mut rules = self.rules.borrow_mut();
        for (prefix, q) in rules.iter_mut() {
            if url.starts_with(prefix.as_str()) {
                if q.len() > 1 {
                    if let Some(r) = q.pop_front() {
                        return r;
                    }
                }
                if let Some(r) = q.front() {
                    return r.clone();
                }
            }
        }
        Reply::Fail(TransportError::Network(format!(
            "connection refused: {url}"
        )))
    }
}

impl FakeRuntime {
    /// The scripted answer, before any read limits.
    async fn send_unlimited(
        &self,
        request: HttpRequest,
        timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError> {
        self.sent
            .borrow_mut()
            .push((request.url.clone(), timeout_ms));
        match self.next_reply(&request.url) {
            Reply::Respond(_, latency) | Reply::Func(_, latency) if latency >= timeout_ms => {
                self.advance(timeout_ms);
                Err(TransportError::Timeout)
            }
            Reply::Respond(r, latency) => {
                self.advance(latency);
                Ok(r)
            }
            Reply::Func(f, latency) => {
                self.advance(latency);
                Ok(f(&request, self.now.get()))
            }
            Reply::Hang => {
                self.advance(timeout_ms);
                Err(TransportError::Timeout)
            }
            Reply::Fail(e) => Err(e),
        }
    }
}

impl Runtime for FakeRuntime {
    async fn send(
        &self,
        request: HttpRequest,
        timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError> {
        self.send_limited(request, timeout_ms, ReadLimits::default())
            .await
    }

    /// Scripted bodies are held whole; the limits are applied to them as the
    /// Worker applies them while streaming (cap, first line), and recorded.
    async fn send_limited(
        &self,
        request: HttpRequest,
        timeout_ms: u64,
        limits: ReadLimits,
    ) -> Result<HttpResponse, TransportError> {
        self.limits.borrow_mut().push((request.url.clone(), limits));
        limits.apply(self.send_unlimited(request, timeout_ms).await?)
    }

    async fn sleep(&self, ms: u64) {
        self.slept.borrow_mut().push(ms);
        self.advance(ms);
    }

    fn now_ms(&self) -> u64 {
        self.now.get()
    }

    fn random_bytes(&self, buf: &mut [u8]) {
        xorshift_fill(&self.seed, buf);
    }
}

/// xorshift64: deterministic, good enough for jitter and preimages in tests.
pub fn xorshift_fill(seed: &Cell<u64>, buf: &mut [u8]) {
    for b in buf.iter_mut() {
        let mut x = seed.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        seed.set(x);
        *b = x as u8;
    }
}

/// A configuration from `pairs` on top of a development base.
pub fn config(pairs: &[(&str, &str)]) -> crate::core::config::Config {
    let mut m: std::collections::HashMap<String, String> = [("ENVIRONMENT", "development")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in pairs {
        m.insert(k.to_string(), v.to_string());
    }
    match crate::core::config::Config::from_lookup(|k| m.get(k).cloned()) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e:?}"),
    }
}

/// A reply that answers with a real invoice for the amount in the request
/// body, shaped like `kind`'s API (`alby`, `lnd` or `lnbits`).
pub fn invoice_reply(kind: &'static str, network: Network, latency_ms: u64) -> Reply {
    Reply::Func(
        Rc::new(move |req: &HttpRequest, now_ms: u64| {
            let body: serde_json::Value =
                serde_json::from_str(req.body.as_deref().unwrap_or("{}")).unwrap_or_default();
            let sat = match &body.get(if kind == "lnd" { "value" } else { "amount" }) {
                Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
                Some(v) => v.as_u64().unwrap_or(0),
                None => 0,
            };
            let mut pre = [0u8; 32];
            pre[..8].copy_from_slice(&now_ms.to_le_bytes());
            let inv =
                match sign_invoice(network, sat * 1000, "fake", None, 3600, now_ms / 1000, pre) {
                    Ok(i) => i,
                    Err(e) => return HttpResponse::json(500, &json!({"detail": e})),
                };
            let v = match kind {
                "lnd" => {
                    use base64::Engine;
                    let raw = hex::decode(&inv.payment_hash).unwrap_or_default();
                    json!({"r_hash": base64::engine::general_purpose::STANDARD.encode(raw), "payment_request": inv.payment_request})
                }
                "lnbits" => {
                    json!({"payment_hash": inv.payment_hash, "bolt11": inv.payment_request, "status": "pending"})
                }
                _ => {
                    json!({"payment_hash": inv.payment_hash, "payment_request": inv.payment_request})
                }
            };
            HttpResponse::json(201, &v)
        }),
        latency_ms,
    )
}
