//! Test fixtures for the crates of lightning-fallback: a scripted
//! [`Runtime`] for host tests (a virtual clock that sleeps and timeouts
//! advance, and replies chosen by URL prefix), seeded randomness, signed
//! invoices and the answers of real backends.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use serde_json::json;

use backends::bolt11::Network;
use backends::http::{HttpRequest, HttpResponse, ReadLimits, Runtime, TransportError};
use backends::mock::sign_invoice;

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

/// A reply that answers with a real invoice for the amount in the request
/// body, shaped like `kind`'s API (`lnd`, `cln`, `phoenixd` or `lnbits`).
pub fn invoice_reply(kind: &'static str, network: Network, latency_ms: u64) -> Reply {
    Reply::Func(
        Rc::new(move |req: &HttpRequest, now_ms: u64| {
            let raw = req.body.as_deref().unwrap_or("{}");
            // phoenixd takes a form; the others JSON.
            let body: serde_json::Value = if kind == "phoenixd" {
                url::form_urlencoded::parse(raw.as_bytes())
                    .map(|(k, v)| (k.into_owned(), serde_json::Value::from(v.into_owned())))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            } else {
                serde_json::from_str(raw).unwrap_or_default()
            };
            let field = match kind {
                "lnd" => "value",
                "cln" => "amount_msat",
                "phoenixd" => "amountSat",
                _ => "amount",
            };
            let n: u64 = match &body.get(field) {
                Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
                Some(v) => v.as_u64().unwrap_or(0),
                None => 0,
            };
            let sat = if kind == "cln" { n / 1000 } else { n };
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
                "cln" => {
                    json!({"payment_hash": inv.payment_hash, "bolt11": inv.payment_request, "expires_at": now_ms / 1000 + 3600})
                }
                "phoenixd" => {
                    json!({"amountSat": sat, "paymentHash": inv.payment_hash, "serialized": inv.payment_request})
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

/// A [`Runtime`] whose clock only moves when every task waits: concurrent
/// sleeps and in-flight sends overlap in virtual time, as they would on the
/// real runtime. Replies come from the wrapped [`FakeRuntime`]'s script
/// (`rt.on(...)`, `rt.calls_to(...)` work through `Deref`). Drive futures
/// with [`VirtualRuntime::run`], not `block_on`.
pub struct VirtualRuntime {
    pub fake: FakeRuntime,
    timers: RefCell<Vec<VirtualTimer>>,
    next_timer: Cell<u64>,
}

struct VirtualTimer {
    id: u64,
    at_ms: u64,
    waker: Option<std::task::Waker>,
}

impl std::ops::Deref for VirtualRuntime {
    type Target = FakeRuntime;
    fn deref(&self) -> &FakeRuntime {
        &self.fake
    }
}

/// A root waker that only notes that it was woken.
struct WokenFlag(std::sync::atomic::AtomicBool);

impl std::task::Wake for WokenFlag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl VirtualRuntime {
    pub fn new(now_ms: u64) -> Self {
        VirtualRuntime {
            fake: FakeRuntime::new(now_ms),
            timers: RefCell::new(Vec::new()),
            next_timer: Cell::new(0),
        }
    }

    /// Runs `fut` to completion: polls it, and whenever nothing can move,
    /// jumps the clock to the earliest pending timer. Panics if the future
    /// waits on nothing (it would hang on a real runtime too).
    pub fn run<F: std::future::Future>(&self, fut: F) -> F::Output {
        use std::sync::atomic::Ordering;
        use std::task::{Context, Poll};
        let flag = std::sync::Arc::new(WokenFlag(std::sync::atomic::AtomicBool::new(false)));
        let waker = std::task::Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            flag.0.store(false, Ordering::SeqCst);
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            if flag.0.load(Ordering::SeqCst) {
                continue; // woken during the poll: progress at the same instant
            }
            let next = self
                .timers
                .borrow()
                .iter()
                .filter(|t| t.waker.is_some())
                .map(|t| t.at_ms)
                .min();
            let Some(at) = next else {
                panic!("virtual runtime stalled: the future waits on no timer");
            };
            let now = self.fake.now_ms();
            if at > now {
                self.fake.advance(at - now);
            }
            let due: Vec<std::task::Waker> = self
                .timers
                .borrow_mut()
                .iter_mut()
                .filter(|t| t.at_ms <= at)
                .filter_map(|t| t.waker.take())
                .collect();
            for w in due {
                w.wake();
            }
        }
    }

    fn sleep_until(&self, at_ms: u64) -> VirtualSleep<'_> {
        let id = self.next_timer.get();
        self.next_timer.set(id + 1);
        VirtualSleep {
            rt: self,
            id,
            at_ms,
        }
    }
}

struct VirtualSleep<'a> {
    rt: &'a VirtualRuntime,
    id: u64,
    at_ms: u64,
}

impl std::future::Future for VirtualSleep<'_> {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let mut timers = self.rt.timers.borrow_mut();
        if self.rt.fake.now_ms() >= self.at_ms {
            timers.retain(|t| t.id != self.id);
            return std::task::Poll::Ready(());
        }
        match timers.iter_mut().find(|t| t.id == self.id) {
            Some(t) => t.waker = Some(cx.waker().clone()),
            None => timers.push(VirtualTimer {
                id: self.id,
                at_ms: self.at_ms,
                waker: Some(cx.waker().clone()),
            }),
        }
        std::task::Poll::Pending
    }
}

impl Drop for VirtualSleep<'_> {
    fn drop(&mut self) {
        // A dropped wait must not pull the clock forward.
        self.rt.timers.borrow_mut().retain(|t| t.id != self.id);
    }
}

impl Runtime for VirtualRuntime {
    async fn send(
        &self,
        request: HttpRequest,
        timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError> {
        let start = self.fake.now_ms();
        self.fake
            .sent
            .borrow_mut()
            .push((request.url.clone(), timeout_ms));
        let reply = self.fake.next_reply(&request.url);
        let latency = match &reply {
            Reply::Fail(e) => return Err(e.clone()),
            Reply::Hang => timeout_ms,
            Reply::Respond(_, l) | Reply::Func(_, l) => (*l).min(timeout_ms),
        };
        self.sleep_until(start + latency).await;
        match reply {
            Reply::Respond(resp, l) if l < timeout_ms => Ok(resp),
            Reply::Func(f, l) if l < timeout_ms => Ok(f(&request, self.fake.now_ms())),
            _ => Err(TransportError::Timeout),
        }
    }

    async fn sleep(&self, ms: u64) {
        self.fake.slept.borrow_mut().push(ms);
        self.sleep_until(self.fake.now_ms() + ms).await;
    }

    fn now_ms(&self) -> u64 {
        self.fake.now_ms()
    }

    fn random_bytes(&self, buf: &mut [u8]) {
        self.fake.random_bytes(buf);
    }
}

/// What a Cloudflare edge answers when the origin fails: an HTML 520.
pub fn html_520() -> HttpResponse {
    HttpResponse {
        status: 520,
        content_type: Some("text/html; charset=UTF-8".into()),
        body: "<!DOCTYPE html><html><head><title>example.test | 520: Web server is returning an unknown error</title></head><body>Cloudflare</body></html>".into(),
    }
}
