//! Property test of the payout engine. Simulated LNbits-shaped backends
//! keep the ground truth (what they really paid) and flag every unsafe
//! request; random interleavings of cron and alarm wake-ups (also
//! concurrent ones), duplicate requests, clock jumps, restarts of the queue
//! and backend behaviours are replayed against the real engine, state
//! machine and adapters. The backends behave as badly as real ones
//! honestly do: they pay and answer 520, time out after paying, stay
//! pending, execute a request long after the caller gave up on it, answer
//! "failed" (or a 4xx) for a payment they made, and the operator switches
//! the configured backend between steps. The LNURL server may hand out
//! invoices that expire within seconds.

use lightning_fallback_gateway as gateway;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use futures_executor::block_on;
use futures_util::future::join;
use proptest::prelude::*;
use serde_json::json;
use sha2::Digest;

use backends::bolt11::Network;
use backends::http::{HttpRequest, HttpResponse, Method, Runtime, TransportError};
use backends::{nwc, BackendConfig, BackendKind};
use gateway::backoff::RetryPolicy;
use gateway::health::breaker::BreakerPolicy;
use gateway::payout::breaker::PayoutBreaker;
use gateway::payout::config::PayoutConfig;
use gateway::payout::engine::{self, Claim, Created, PayoutStore, StoreError};
use gateway::payout::invoice_claims;
use gateway::payout::machine::PayoutPolicy;
use gateway::payout::model::{BackendId, Payout, PayoutState};
use gateway::payout::request::PayoutRequest;
use gateway::payout::safe_url::UrlPolicy;
use testkit::html_520;

#[derive(Debug, Clone, Copy, PartialEq)]
enum SendBehaviour {
    Pay,
    FailExplicit,
    Html520NoPay,
    Html520AfterPay,
    TimeoutAfterPay,
    Lost,
    Pending,
    AuthRefused,
    CutAfterPay,
    /// Held by the backend and executed later (the caller times out).
    Late,
    /// Pays, then answers `failed`.
    FailedAfterPay,
    /// Pays, then answers an HTTP 400.
    BadRequestAfterPay,
    /// Alby Hub's own call to its node errors (a timeout) while the payment
    /// is still in flight: it records the attempt failed and answers an
    /// error; the payment may still settle, and the record with it.
    StuckRecordedFailed,
    /// Someone else already paid the invoice (the wallet has no record of
    /// it): refused as already paid. Not this wallet's money: the payout
    /// may end unpaid, never succeed.
    PaidByAnother,
    /// Answers success, with a preimage of zeros, for a payment still in
    /// flight (LND's records carry 64 zeros until settled).
    SucceededWhileInFlight,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LookupBehaviour {
    Truthful,
    Error,
    Slow,
}

/// How the simulated wallets answer beyond LNbits' shape: the worst honest
/// behaviour read in their source (Alby Hub's `ToNip47Transaction` and
/// `LookupTransaction`, LNbits' `get_standalone_payment`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Quirks {
    /// NWC: an unsettled outgoing record past its invoice's expiry is
    /// reported `expired`, in flight or not.
    expired_when_unsettled: bool,
    /// NWC: one record per attempt, and a lookup answers the oldest.
    oldest_attempt_first: bool,
    /// Lookups never see outgoing payments: NWC `NOT_FOUND`, LNbits 404
    /// "Payment does not exist." (a wallet without view permission).
    blind: bool,
    /// NWC: a second pay of a paid invoice is answered `INTERNAL` "this
    /// invoice has already been paid", not `PAYMENT_FAILED`.
    already_paid_internal: bool,
}

/// One attempt as the wallet records it (NWC wallets keep one per send).
#[derive(Debug, Clone, PartialEq)]
struct AttemptRecord {
    created_ms: u64,
    state: AttemptState,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AttemptState {
    Pending,
    Failed,
    Settled,
}

#[derive(Debug, Default)]
struct HashTruth {
    paid: bool,
    in_flight: bool,
    failed: bool,
    /// The backend ever saw a send for this hash.
    known: bool,
    sends: u32,
    /// Since the last send, a lookup told the sender this hash is unpaid.
    confirmed_unpaid: bool,
    /// Requests held for late execution: when each was sent.
    late: Vec<u64>,
    /// Unix seconds after which nothing pays this invoice.
    expires_at_secs: u64,
    /// The wallet's records of the attempts that reached it, oldest first.
    attempts: Vec<AttemptRecord>,
    /// When the payment now in flight left.
    in_flight_since_ms: u64,
    /// A payment from before the run, the backend's known-paid hash.
    history: bool,
    /// Someone else paid this invoice: not this wallet's payment.
    paid_elsewhere: bool,
    /// Sends refused before acting (they never reached the wallet).
    refused: u32,
}

impl HashTruth {
    /// Could still end up paid.
    /// A held request may run (and pay, even an expired invoice: LNbits
    /// pays its own users' expired invoices) until the bound has passed.
    fn live(&self, now_secs: u64) -> bool {
        self.paid
            || self.in_flight
            || self
                .late
                .iter()
                .any(|t| now_secs.saturating_mul(1000) < t + LATE_BOUND_MS)
    }

    fn record(&mut self, now_ms: u64, state: AttemptState) {
        self.attempts.push(AttemptRecord {
            created_ms: now_ms,
            state,
        });
    }
}

/// The longest the simulated backend holds a request before running it.
const LATE_BOUND_MS: u64 = 900_000;

/// The longest a payment stays in flight (its HTLCs expire by then).
const IN_FLIGHT_BOUND_MS: u64 = 2 * LATE_BOUND_MS;

/// The simulated backends, by base URL.
pub(crate) const BACKENDS: [&str; 3] =
    ["http://lnbits.sim", "http://other.sim", "http://third.sim"];

thread_local! {
    /// Every invoice the simulation signed: payment hash → preimage (hex).
    static PREIMAGES: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
    /// Every invoice the simulation signed: payment hash → amount (msat),
    /// which names the payout it belongs to (each payout has its own).
    static AMOUNTS: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
}

fn amount_of(hash: &str) -> Option<u64> {
    AMOUNTS.with(|m| m.borrow().get(hash).copied())
}

/// Signs an invoice like the mock does, and remembers its preimage so the
/// simulated backends answer with the real one.
fn sign_invoice(
    network: Network,
    amount_msat: u64,
    description: &str,
    description_hash: Option<&str>,
    expiry_secs: u64,
    timestamp: u64,
    preimage: [u8; 32],
) -> Result<backends::mock::MockInvoice, String> {
    let inv = backends::mock::sign_invoice(
        network,
        amount_msat,
        description,
        description_hash,
        expiry_secs,
        timestamp,
        preimage,
    )?;
    PREIMAGES.with(|m| {
        m.borrow_mut()
            .insert(inv.payment_hash.clone(), hex::encode(preimage))
    });
    AMOUNTS.with(|m| m.borrow_mut().insert(inv.payment_hash.clone(), amount_msat));
    Ok(inv)
}

/// The preimage of a hash the simulation signed (a wrong one otherwise).
fn preimage_of(hash: &str) -> String {
    PREIMAGES
        .with(|m| m.borrow().get(hash).cloned())
        .unwrap_or_else(|| "00".repeat(32))
}

struct Sim {
    /// Shared with the simulated claims object (same clock for every object).
    now: Rc<Cell<u64>>,
    seed: Cell<u64>,
    sends: RefCell<Vec<SendBehaviour>>,
    lookups: RefCell<Vec<LookupBehaviour>>,
    /// Keyed by (backend base URL, payment hash).
    truth: RefCell<HashMap<(String, String), HashTruth>>,
    violations: RefCell<Vec<String>>,
    /// The LNURL server hands out the same invoice every time.
    repeat_invoice: Cell<bool>,
    /// Lifetime of the invoices the LNURL server hands out.
    invoice_expiry_secs: Cell<u64>,
    /// Invoices the LNURL server was asked for.
    lnurl_calls: Cell<u32>,
    /// Answers to pay requests never arrive (the instance is about to die).
    freeze: Cell<bool>,
    /// How the wallets answer beyond LNbits' shape.
    quirks: Cell<Quirks>,
    /// Backends in an outage: every send to one gets this behaviour.
    down: RefCell<HashMap<String, SendBehaviour>>,
}

impl Sim {
    /// A backend that answers sends and lookups as scripted (then truthfully), at a fixed start time.
    fn new(seed: u64, sends: Vec<SendBehaviour>, lookups: Vec<LookupBehaviour>) -> Sim {
        Sim {
            now: Rc::new(Cell::new(1_700_000_000_000)),
            seed: Cell::new(seed),
            sends: RefCell::new(sends),
            lookups: RefCell::new(lookups),
            truth: RefCell::new(HashMap::new()),
            violations: RefCell::new(Vec::new()),
            repeat_invoice: Cell::new(false),
            invoice_expiry_secs: Cell::new(600),
            lnurl_calls: Cell::new(0),
            freeze: Cell::new(false),
            quirks: Cell::new(Quirks::default()),
            down: RefCell::new(HashMap::new()),
        }
    }
}

struct YieldOnce(bool);
impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// What a pay request did at the wallet, before either protocol's shape.
#[derive(Debug, Clone, PartialEq)]
enum PayResult {
    Paid,
    /// Refused: the hash is paid (by an earlier attempt).
    AlreadyPaid,
    /// Refused: an earlier attempt is in flight.
    StillPending,
    /// Refused or failed, nothing paid.
    Failed(&'static str),
    /// Accepted, in flight.
    InFlight,
    /// The wallet's own call failed, the payment may still settle.
    StuckRecordedFailed,
    /// Never acted on.
    NotSent,
    /// Answered success with a preimage of zeros.
    PaidNoProof,
    /// Paid, answered 400 (LNbits shape only).
    BadRequestAfterPay,
    /// Paid, answered "failed".
    FailedAfterPay,
    /// No answer (timeout) or a cut connection, after `paid`.
    NoAnswer {
        cut: bool,
    },
    /// Paid (or not), answered an HTML 520.
    Html520,
}

impl Sim {
    fn next<T: Copy>(q: &RefCell<Vec<T>>, default: T) -> T {
        let mut q = q.borrow_mut();
        if q.is_empty() {
            default
        } else {
            q.remove(0)
        }
    }

    fn now_secs(&self) -> u64 {
        self.now.get() / 1000
    }

    /// Total hashes paid on every backend.
    fn paid_count(&self) -> usize {
        self.truth
            .borrow()
            .values()
            .filter(|t| t.paid && !t.history)
            .count()
    }

    /// Each simulated backend made one payment before the run, and `store`
    /// knows it (what a deployment's history gives the blind-lookup check).
    fn seed_history(&self, store: &MemStore) {
        let pre = [7u8; 32];
        let hash = hex::encode(sha2::Sha256::digest(pre));
        PREIMAGES.with(|m| m.borrow_mut().insert(hash.clone(), hex::encode(pre)));
        for (i, url) in BACKENDS.iter().enumerate() {
            let t = HashTruth {
                paid: true,
                known: true,
                history: true,
                attempts: vec![AttemptRecord {
                    created_ms: 0,
                    state: AttemptState::Settled,
                }],
                ..HashTruth::default()
            };
            self.truth
                .borrow_mut()
                .insert((url.to_string(), hash.clone()), t);
            let lnbits = BackendConfig {
                base_url: url.to_string(),
                ..lnbits_sim()
            };
            for b in [lnbits, nwc_sim(i)] {
                let _ = store.remember_paid(&BackendId::of(&b), &hash, 0);
            }
        }
    }

    fn any_live(&self) -> bool {
        let now = self.now_secs();
        self.truth
            .borrow()
            .values()
            .any(|t| !t.history && t.live(now))
    }

    /// A pay request reaches the wallet. `per_attempt`: the wallet keeps a
    /// record per attempt and lets a failed hash be sent again (NWC
    /// wallets); otherwise one row per hash, and a failed hash is refused
    /// (LNbits: "retrying is not possible").
    fn pay(&self, backend: &str, hash: &str, expires_at_secs: u64, per_attempt: bool) -> PayResult {
        let now_secs = self.now_secs();
        let now = self.now.get();
        let mut truth = self.truth.borrow_mut();
        let key = (backend.to_string(), hash.to_string());
        let amount = amount_of(hash);
        let others_live = truth.iter().any(|(k, t)| {
            k.1 != hash && amount_of(&k.1) == amount && !t.history && t.live(now_secs)
        });
        // A hash that may have reached one backend is never sent through another.
        let elsewhere: Vec<String> = truth
            .iter()
            .filter(|(k, t)| k.0 != backend && k.1 == hash && t.sends > t.refused)
            .map(|(k, _)| k.0.clone())
            .collect();
        let t = truth.entry(key).or_default();
        t.expires_at_secs = expires_at_secs;
        let mut v = self.violations.borrow_mut();
        if t.sends > 0 && !t.confirmed_unpaid {
            v.push(format!(
                "second send of {hash} without a lookup confirming it unpaid"
            ));
        }
        if others_live {
            v.push("a second payment hash sent while another may still be paid".into());
        }
        for other in elsewhere {
            v.push(format!(
                "{hash} sent through {backend} although a send of it may have reached {other}"
            ));
        }
        t.sends += 1;
        t.confirmed_unpaid = false;
        // A hash pays once.
        if t.paid || t.paid_elsewhere {
            return PayResult::AlreadyPaid;
        }
        if t.in_flight {
            return PayResult::StillPending;
        }
        if now_secs >= expires_at_secs {
            t.known = true;
            t.failed = true;
            return PayResult::Failed("Invoice expired");
        }
        let outage = self.down.borrow().get(backend).copied();
        let behaviour = if t.failed && !per_attempt {
            SendBehaviour::FailExplicit
        } else if let Some(b) = outage {
            b
        } else {
            Self::next(&self.sends, SendBehaviour::Pay)
        };
        let paid = |t: &mut HashTruth| {
            t.known = true;
            t.paid = true;
            t.failed = false;
            t.record(now, AttemptState::Settled);
        };
        match behaviour {
            SendBehaviour::Pay => {
                paid(t);
                PayResult::Paid
            }
            SendBehaviour::FailExplicit => {
                t.known = true;
                t.failed = true;
                t.record(now, AttemptState::Failed);
                PayResult::Failed("Payment failed")
            }
            SendBehaviour::FailedAfterPay => {
                paid(t);
                PayResult::FailedAfterPay
            }
            SendBehaviour::BadRequestAfterPay => {
                paid(t);
                PayResult::BadRequestAfterPay
            }
            SendBehaviour::Html520NoPay => PayResult::Html520,
            SendBehaviour::Html520AfterPay => {
                paid(t);
                PayResult::Html520
            }
            SendBehaviour::TimeoutAfterPay => {
                paid(t);
                PayResult::NoAnswer { cut: false }
            }
            SendBehaviour::CutAfterPay => {
                paid(t);
                PayResult::NoAnswer { cut: true }
            }
            SendBehaviour::Lost => PayResult::NoAnswer { cut: false },
            SendBehaviour::Late => {
                // Not even recorded yet: a lookup answers 404 until it runs.
                t.late.push(now);
                PayResult::NoAnswer { cut: false }
            }
            SendBehaviour::Pending => {
                t.known = true;
                t.in_flight = true;
                t.in_flight_since_ms = now;
                t.record(now, AttemptState::Pending);
                PayResult::InFlight
            }
            SendBehaviour::StuckRecordedFailed => {
                t.known = true;
                t.in_flight = true;
                t.in_flight_since_ms = now;
                t.record(now, AttemptState::Failed);
                PayResult::StuckRecordedFailed
            }
            SendBehaviour::PaidByAnother => {
                t.paid_elsewhere = true;
                PayResult::AlreadyPaid
            }
            SendBehaviour::SucceededWhileInFlight => {
                t.known = true;
                t.in_flight = true;
                t.in_flight_since_ms = now;
                t.record(now, AttemptState::Pending);
                PayResult::PaidNoProof
            }
            SendBehaviour::AuthRefused => {
                t.refused += 1;
                t.confirmed_unpaid = true; // refused before acting: the sender may resend
                PayResult::NotSent
            }
        }
    }

    /// The backend finally runs the requests it held (those still within
    /// the bound). As LNbits does, it refuses a hash already paid or
    /// failed, and it pays even an expired invoice (an internal one).
    fn execute_late(&self) {
        let now = self.now.get();
        for t in self.truth.borrow_mut().values_mut() {
            if t.late.is_empty() {
                continue;
            }
            let runs = t.late.iter().any(|s| now < s + LATE_BOUND_MS);
            t.late.clear();
            if runs {
                t.known = true;
                if !t.paid && !t.failed && !t.in_flight {
                    t.paid = true;
                    t.record(now, AttemptState::Settled);
                }
            }
        }
    }

    /// A lookup, in LNbits' shape (one row per hash).
    fn lookup(&self, backend: &str, hash: &str) -> Result<HttpResponse, TransportError> {
        match Self::next(&self.lookups, LookupBehaviour::Truthful) {
            LookupBehaviour::Error => return Ok(html_520()),
            LookupBehaviour::Slow => return Err(TransportError::Timeout),
            LookupBehaviour::Truthful => {}
        }
        let mut truth = self.truth.borrow_mut();
        let t = truth
            .entry((backend.to_string(), hash.to_string()))
            .or_default();
        let created = t
            .attempts
            .first()
            .map(|a| gateway::time::iso8601_ms(a.created_ms));
        if self.quirks.get().blind || !t.known {
            t.confirmed_unpaid = true;
            return Ok(HttpResponse::json(
                404,
                &json!({"detail": "Payment does not exist."}),
            ));
        }
        if t.paid {
            let pre = preimage_of(hash);
            Ok(HttpResponse::json(
                200,
                &json!({"paid": true, "preimage": pre, "details": {"status": "success", "preimage": pre, "created_at": created}}),
            ))
        } else if t.in_flight {
            Ok(HttpResponse::json(
                200,
                &json!({"paid": false, "status": "pending", "details": {"status": "pending", "created_at": created}}),
            ))
        } else if t.failed {
            t.confirmed_unpaid = true;
            Ok(HttpResponse::json(
                200,
                &json!({"paid": false, "status": "failed", "details": {"status": "failed", "created_at": created}}),
            ))
        } else {
            Ok(HttpResponse::json(
                200,
                &json!({"paid": false, "status": "pending", "details": {"status": "pending", "created_at": created}}),
            ))
        }
    }

    /// In-flight payments end, one way or the other. A record the wallet
    /// marked failed while the payment was in flight settles with it.
    fn settle(&self, pay: bool) {
        for t in self.truth.borrow_mut().values_mut() {
            Self::resolve(t, pay);
        }
    }

    /// No payment stays in flight longer than its HTLCs live: one that has
    /// is over by now, paid or not (the seed decides).
    fn end_overdue_payments(&self) {
        let now = self.now.get();
        let mut coin = [0u8; 1];
        self.random_bytes(&mut coin);
        for t in self.truth.borrow_mut().values_mut() {
            if t.in_flight && now >= t.in_flight_since_ms + IN_FLIGHT_BOUND_MS - 1_000 {
                Self::resolve(t, coin[0] & 1 == 1);
            }
        }
    }

    fn resolve(t: &mut HashTruth, pay: bool) {
        {
            if t.in_flight {
                t.in_flight = false;
                if pay {
                    t.paid = true;
                    // Alby Hub settles the pending record, else the latest failed one.
                    let i = t
                        .attempts
                        .iter()
                        .rposition(|a| a.state == AttemptState::Pending)
                        .or_else(|| {
                            t.attempts
                                .iter()
                                .rposition(|a| a.state == AttemptState::Failed)
                        });
                    if let Some(i) = i {
                        t.attempts[i].state = AttemptState::Settled;
                    }
                } else {
                    t.failed = true;
                    for a in t.attempts.iter_mut() {
                        if a.state == AttemptState::Pending {
                            a.state = AttemptState::Failed;
                        }
                    }
                }
            }
        }
    }

    fn lnurl(&self, req: &HttpRequest) -> HttpResponse {
        if req.url.contains("/.well-known/lnurlp/") {
            return HttpResponse::json(
                200,
                &json!({"tag": "payRequest", "callback": "https://lnurl.sim/cb", "minSendable": 1000, "maxSendable": 100_000_000, "metadata": "[]"}),
            );
        }
        self.lnurl_calls.set(self.lnurl_calls.get() + 1);
        let url = url::Url::parse(&req.url).unwrap_or_else(|_| panic!("url"));
        let amount: u64 = url
            .query_pairs()
            .find(|(k, _)| k == "amount")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        // Normally a fresh invoice per call; with `repeat_invoice`, the same one every time.
        let mut pre = [5u8; 32];
        let mut ts = 1_700_000_000;
        if !self.repeat_invoice.get() {
            self.random_bytes(&mut pre);
            ts = self.now.get() / 1000;
        }
        let metadata_hash = hex::encode(sha2::Sha256::digest(b"[]"));
        let expiry = self.invoice_expiry_secs.get();
        match sign_invoice(
            Network::Bitcoin,
            amount,
            "sim",
            Some(&metadata_hash),
            expiry,
            ts,
            pre,
        ) {
            Ok(i) => HttpResponse::json(200, &json!({"pr": i.payment_request})),
            Err(e) => HttpResponse::json(500, &json!({"e": e})),
        }
    }
}

/// A pay result as LNbits answers it.
fn lnbits_pay_answer(r: PayResult, hash: &str) -> Result<HttpResponse, TransportError> {
    let j = |status: u16, v: serde_json::Value| Ok(HttpResponse::json(status, &v));
    match r {
        PayResult::Paid => j(
            201,
            json!({"payment_hash": hash, "status": "success", "preimage": preimage_of(hash)}),
        ),
        PayResult::PaidNoProof => j(
            201,
            json!({"payment_hash": hash, "status": "success", "preimage": "00".repeat(32)}),
        ),
        PayResult::AlreadyPaid => j(
            520,
            json!({"detail": "Internal invoice already paid.", "status": "failed"}),
        ),
        PayResult::StillPending => j(
            520,
            json!({"detail": "Payment is still pending.", "status": "pending"}),
        ),
        PayResult::Failed(why) => j(520, json!({"detail": why, "status": "failed"})),
        PayResult::FailedAfterPay => j(
            520,
            json!({"detail": "Internal invoice already paid.", "status": "failed"}),
        ),
        PayResult::BadRequestAfterPay => j(400, json!({"detail": "bad request"})),
        PayResult::InFlight | PayResult::StuckRecordedFailed => {
            j(201, json!({"payment_hash": hash, "status": "pending"}))
        }
        PayResult::NotSent => j(401, json!({"detail": "Invalid key"})),
        PayResult::NoAnswer { cut: false } => Err(TransportError::Timeout),
        PayResult::NoAnswer { cut: true } => {
            Err(TransportError::Network("connection reset".into()))
        }
        PayResult::Html520 => Ok(html_520()),
    }
}

/// The same backends spoken to through Nostr Wallet Connect: the relay
/// header names the backend; answers are what an NWC wallet service would
/// say (Alby Hub's shapes with the quirks switched on: a relay that drops
/// the connection for the HTML 520, no answer in time for an in-flight
/// payment, errors as `INTERNAL`).
impl Sim {
    async fn nwc(
        &self,
        request: &HttpRequest,
        body: &serde_json::Value,
    ) -> Result<HttpResponse, TransportError> {
        let relay = request
            .headers
            .iter()
            .find(|(k, _)| k == nwc::HEADER_RELAY)
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let Some(backend) = BACKENDS.iter().find(|b| **b == relay) else {
            return Err(TransportError::Network("no such relay".into()));
        };
        let method = body["method"].as_str().unwrap_or("");
        let params = &body["params"];
        let error = |code: &str, message: &str| {
            Ok(HttpResponse::json(
                200,
                &json!({"result_type": method, "error": {"code": code, "message": message}}),
            ))
        };
        let result = |r: serde_json::Value| {
            Ok(HttpResponse::json(
                200,
                &json!({"result_type": method, "result": r}),
            ))
        };
        let quirks = self.quirks.get();
        match method {
            "pay_invoice" => {
                let bolt11 = params["invoice"].as_str().unwrap_or("");
                let (hash, expires) = backends::bolt11::parse(bolt11)
                    .map(|i| (i.payment_hash.clone(), i.expires_at_secs()))
                    .unwrap_or_default();
                let answer = self.pay(backend, &hash, expires, true);
                if self.freeze.get() {
                    std::future::pending::<()>().await;
                }
                match answer {
                    PayResult::Paid => result(json!({"preimage": preimage_of(&hash)})),
                    PayResult::PaidNoProof => result(json!({"preimage": "00".repeat(32)})),
                    PayResult::AlreadyPaid if quirks.already_paid_internal => {
                        error("INTERNAL", "this invoice has already been paid")
                    }
                    PayResult::AlreadyPaid | PayResult::FailedAfterPay => {
                        error("PAYMENT_FAILED", "sim")
                    }
                    PayResult::StillPending => error(
                        "INTERNAL",
                        "there is already a payment pending for this invoice",
                    ),
                    PayResult::Failed(why) => error("PAYMENT_FAILED", why),
                    PayResult::StuckRecordedFailed => {
                        error("INTERNAL", "context deadline exceeded")
                    }
                    PayResult::InFlight | PayResult::NoAnswer { cut: false } => {
                        Err(TransportError::Timeout)
                    }
                    PayResult::NoAnswer { cut: true } | PayResult::Html520 => Err(
                        TransportError::Network("the relay closed the connection".into()),
                    ),
                    PayResult::NotSent => error("UNAUTHORIZED", "sim"),
                    PayResult::BadRequestAfterPay => error("OTHER", "sim"),
                }
            }
            "lookup_invoice" => {
                match Self::next(&self.lookups, LookupBehaviour::Truthful) {
                    LookupBehaviour::Error => return error("INTERNAL", "sim"),
                    LookupBehaviour::Slow => return Err(TransportError::Timeout),
                    LookupBehaviour::Truthful => {}
                }
                let hash = params["payment_hash"].as_str().unwrap_or("");
                let now = self.now.get();
                let mut truth = self.truth.borrow_mut();
                let t = truth
                    .entry((backend.to_string(), hash.to_string()))
                    .or_default();
                let record = if quirks.oldest_attempt_first {
                    t.attempts.first()
                } else {
                    t.attempts
                        .iter()
                        .rfind(|a| a.state == AttemptState::Settled)
                        .or(t.attempts.last())
                };
                let Some(record) = record.cloned().filter(|_| !quirks.blind) else {
                    t.confirmed_unpaid = true;
                    return error("NOT_FOUND", "The transaction requested was not found");
                };
                let past_expiry = now / 1000 > t.expires_at_secs;
                let state = match record.state {
                    AttemptState::Settled => "settled",
                    _ if quirks.expired_when_unsettled && past_expiry => "expired",
                    AttemptState::Pending => "pending",
                    AttemptState::Failed => "failed",
                };
                if state != "settled" && state != "pending" {
                    t.confirmed_unpaid = true;
                }
                let preimage = if state == "settled" {
                    preimage_of(hash)
                } else {
                    String::new()
                };
                result(json!({
                    "type": "outgoing",
                    "state": state,
                    "payment_hash": hash,
                    "preimage": preimage,
                    "created_at": record.created_ms / 1000,
                }))
            }
            _ => error("NOT_IMPLEMENTED", "sim"),
        }
    }
}

impl Runtime for Sim {
    async fn send(
        &self,
        request: HttpRequest,
        _timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError> {
        YieldOnce(false).await; // let a concurrent wake-up run here, as at a real `await`
        self.now.set(self.now.get() + 10);
        self.end_overdue_payments();
        if request.url.contains("://lnurl.sim/") {
            return Ok(self.lnurl(&request));
        }
        let body: serde_json::Value =
            serde_json::from_str(request.body.as_deref().unwrap_or("{}")).unwrap_or_default();
        if nwc::is_nwc(&request) {
            return self.nwc(&request, &body).await;
        }
        let Some(backend) = BACKENDS.iter().find(|b| request.url.starts_with(*b)) else {
            return Err(TransportError::Network("no such host".into()));
        };
        let path = request.url[backend.len()..].to_string();
        match (request.method, path.strip_prefix("/api/v1/payments")) {
            (Method::Post, Some("")) => {
                let bolt11 = body["bolt11"].as_str().unwrap_or("");
                let (hash, expires) = backends::bolt11::parse(bolt11)
                    .map(|i| (i.payment_hash.clone(), i.expires_at_secs()))
                    .unwrap_or_default();
                let answer = self.pay(backend, &hash, expires, false);
                if self.freeze.get() {
                    // The backend got it; its answer never comes back.
                    std::future::pending::<()>().await;
                }
                lnbits_pay_answer(answer, &hash)
            }
            (Method::Get, Some(path)) => self.lookup(backend, path.trim_start_matches('/')),
            _ => Ok(HttpResponse::json(404, &json!({}))),
        }
    }

    async fn sleep(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
    }

    fn now_ms(&self) -> u64 {
        self.now.get()
    }

    fn random_bytes(&self, buf: &mut [u8]) {
        testkit::xorshift_fill(&self.seed, buf);
    }
}

/// A stored payout, its wake time and its UTC day.
type Row = (Payout, Option<u64>, String);

#[derive(Default)]
struct MemStore {
    rows: RefCell<BTreeMap<String, Row>>,
    lease: RefCell<Option<(String, u64)>>,
    /// The queue instance; a restart changes it.
    instance: RefCell<String>,
    /// With several shards: the claims object they share.
    claims: Option<Rc<SimClaims>>,
    /// Per backend identity, the hashes seen paid through it and when.
    known_paid: RefCell<HashMap<String, Vec<(String, u64)>>>,
    breakers: RefCell<HashMap<String, PayoutBreaker>>,
}

/// The claims object and the shards it can reach, as in the Worker
/// (`src/claims_link.rs`), with a call that can take a while.
struct SimClaims {
    now: Rc<Cell<u64>>,
    rows: RefCell<HashMap<String, invoice_claims::ClaimRow>>,
    shards: RefCell<Vec<Weak<MemStore>>>,
    /// How long each claim call takes.
    delay_ms: Cell<u64>,
    /// Shards that do not answer another shard's calls.
    silent: RefCell<Vec<Weak<MemStore>>>,
    /// How long asking the other shards for their known payments takes.
    peer_delay_ms: Cell<u64>,
    /// How long a read of a holder on its shard takes.
    holder_delay_ms: Cell<u64>,
}

/// `n` shards sharing one claims object.
fn shards(sim: &Sim, n: usize) -> (Rc<SimClaims>, Vec<Rc<MemStore>>) {
    let reg = Rc::new(SimClaims {
        now: sim.now.clone(),
        rows: RefCell::new(HashMap::new()),
        shards: RefCell::new(Vec::new()),
        delay_ms: Cell::new(0),
        holder_delay_ms: Cell::new(0),
        silent: RefCell::new(Vec::new()),
        peer_delay_ms: Cell::new(0),
    });
    let stores: Vec<Rc<MemStore>> = (0..n)
        .map(|_| {
            Rc::new(MemStore {
                claims: Some(reg.clone()),
                ..MemStore::default()
            })
        })
        .collect();
    *reg.shards.borrow_mut() = stores.iter().map(Rc::downgrade).collect();
    (reg, stores)
}

impl invoice_claims::ClaimsLink for SimClaims {
    async fn claim(
        &self,
        hash: &str,
        id: &str,
        takeover: Option<&invoice_claims::Takeover>,
    ) -> Result<invoice_claims::Answer, StoreError> {
        self.now.set(self.now.get() + self.delay_ms.get());
        let now = self.now.get();
        let claim = invoice_claims::decide(self.rows.borrow().get(hash), id, takeover, now);
        if matches!(claim, invoice_claims::Answer::Granted { .. }) {
            self.rows.borrow_mut().insert(
                hash.to_string(),
                invoice_claims::ClaimRow {
                    payout_id: id.to_string(),
                    claimed_at_ms: now,
                },
            );
        }
        Ok(claim)
    }

    async fn holder(&self, owner: &str) -> Result<invoice_claims::Holder, StoreError> {
        self.now.set(self.now.get() + self.holder_delay_ms.get());
        for shard in self.shards.borrow().iter().filter_map(Weak::upgrade) {
            if let Some(p) = shard.get(owner)? {
                return Ok(invoice_claims::Holder::Found {
                    failed: matches!(p.state, PayoutState::Failed { .. }),
                    payment_hash: p.payment_hash,
                });
            }
        }
        Ok(invoice_claims::Holder::Absent)
    }

    async fn release(&self, hash: &str, id: &str, at: u64) -> Result<(), StoreError> {
        let mut rows = self.rows.borrow_mut();
        if rows
            .get(hash)
            .is_some_and(|r| r.payout_id == id && r.claimed_at_ms == at)
        {
            rows.remove(hash);
        }
        Ok(())
    }
}

impl PayoutStore for MemStore {
    fn payout_breaker(&self, backend: &BackendId) -> Result<PayoutBreaker, StoreError> {
        Ok(self
            .breakers
            .borrow()
            .get(&backend.key())
            .cloned()
            .unwrap_or_default())
    }

    fn save_payout_breaker(
        &self,
        backend: &BackendId,
        b: &PayoutBreaker,
    ) -> Result<(), StoreError> {
        self.breakers.borrow_mut().insert(backend.key(), b.clone());
        Ok(())
    }

    async fn claim_across_shards(&self, hash: &str, payout_id: &str) -> Result<Claim, StoreError> {
        match &self.claims {
            Some(reg) => invoice_claims::claim(reg.as_ref(), hash, payout_id).await,
            None => Ok(Claim::Granted { at_ms: 0 }),
        }
    }
    async fn release_across_shards(
        &self,
        hash: &str,
        payout_id: &str,
        at: u64,
    ) -> Result<(), StoreError> {
        match &self.claims {
            Some(reg) => {
                invoice_claims::ClaimsLink::release(reg.as_ref(), hash, payout_id, at).await
            }
            None => Ok(()),
        }
    }
    fn get(&self, id: &str) -> Result<Option<Payout>, StoreError> {
        Ok(self.rows.borrow().get(id).map(|r| r.0.clone()))
    }
    fn by_idempotency_key(&self, key: &str) -> Result<Option<Payout>, StoreError> {
        Ok(self
            .rows
            .borrow()
            .values()
            .find(|r| r.0.idempotency_key == key)
            .map(|r| r.0.clone()))
    }
    fn by_payment_hash(&self, hash: &str) -> Result<Option<Payout>, StoreError> {
        Ok(self
            .rows
            .borrow()
            .values()
            .filter(|r| r.0.payment_hash == hash)
            .min_by_key(|r| matches!(r.0.state, PayoutState::Failed { .. }))
            .map(|r| r.0.clone()))
    }
    fn insert(&self, p: &Payout, wake: Option<u64>, day: &str) -> Result<bool, StoreError> {
        let mut rows = self.rows.borrow_mut();
        if rows.contains_key(&p.id) {
            return Ok(false);
        }
        rows.insert(p.id.clone(), (p.clone(), wake, day.to_string()));
        Ok(true)
    }
    fn update(&self, p: &Payout, expected: u64, wake: Option<u64>) -> Result<bool, StoreError> {
        let mut rows = self.rows.borrow_mut();
        match rows.get_mut(&p.id) {
            Some(r) if r.0.version == expected => {
                r.0 = p.clone();
                r.1 = wake;
                r.2 = engine::day_of(p.age_from_ms);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    fn due(&self, now: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self
            .rows
            .borrow()
            .iter()
            .filter(|(_, r)| r.1.is_some_and(|w| w <= now))
            .map(|(k, _)| k.clone())
            .take(limit)
            .collect())
    }
    fn next_wake(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.rows.borrow().values().filter_map(|r| r.1).min())
    }
    fn reserved_on(&self, day: &str) -> Result<u64, StoreError> {
        Ok(self
            .rows
            .borrow()
            .values()
            .filter(|r| r.2 == day && r.0.reserves_budget())
            .map(|r| r.0.amount_sat)
            .sum())
    }
    fn instance(&self) -> String {
        self.instance.borrow().clone()
    }
    fn known_paid(&self, backend: &BackendId) -> Result<Vec<(String, u64)>, StoreError> {
        let mut v = self
            .known_paid
            .borrow()
            .get(&backend.key())
            .cloned()
            .unwrap_or_default();
        v.sort_by_key(|x| std::cmp::Reverse(x.1));
        Ok(v)
    }
    async fn known_paid_on_other_shards(
        &self,
        backend: &BackendId,
        _own: &str,
    ) -> Result<engine::OtherShards, StoreError> {
        let mut out = engine::OtherShards::default();
        let Some(reg) = &self.claims else {
            return Ok(out);
        };
        reg.now.set(reg.now.get() + reg.peer_delay_ms.get());
        for other in reg.shards.borrow().iter().filter_map(Weak::upgrade) {
            if !std::ptr::eq(&*other, self) {
                out.asked += 1;
                if !reg
                    .silent
                    .borrow()
                    .iter()
                    .any(|s| std::ptr::eq(s.as_ptr(), &*other))
                {
                    out.answered += 1;
                    out.hashes.extend(other.known_paid(backend)?);
                }
            }
        }
        Ok(out)
    }
    fn remember_paid(&self, backend: &BackendId, hash: &str, now: u64) -> Result<(), StoreError> {
        let mut all = self.known_paid.borrow_mut();
        let v = all.entry(backend.key()).or_default();
        if !v.iter().any(|(h, _)| h == hash) {
            v.push((hash.to_string(), now));
        }
        Ok(())
    }
    fn blocked(&self, limit: usize) -> Result<Vec<Payout>, StoreError> {
        Ok(self
            .rows
            .borrow()
            .values()
            .filter(|r| r.0.blocked.is_some())
            .take(limit)
            .map(|r| r.0.clone())
            .collect())
    }
    fn defer(&self, id: &str, wake: u64) -> Result<(), StoreError> {
        if let Some(r) = self.rows.borrow_mut().get_mut(id) {
            r.1 = Some(wake);
        }
        Ok(())
    }
    fn try_lease(&self, holder: &str, now: u64, ttl: u64) -> Result<bool, StoreError> {
        let mut l = self.lease.borrow_mut();
        let prefix = format!("{}/", self.instance.borrow());
        match &*l {
            Some((h, until)) if h != holder && h.starts_with(&prefix) && *until > now => Ok(false),
            _ => {
                *l = Some((holder.to_string(), now + ttl));
                Ok(true)
            }
        }
    }
    fn release_lease(&self, holder: &str) -> Result<(), StoreError> {
        let mut l = self.lease.borrow_mut();
        if l.as_ref().is_some_and(|(h, _)| h == holder) {
            *l = None;
        }
        Ok(())
    }
}

fn lnbits_sim() -> BackendConfig {
    BackendConfig {
        kind: BackendKind::Lnbits,
        base_url: "http://lnbits.sim".into(),
        credential: "admin".into(),
    }
}

/// A simulated backend reached through NWC; `instance` picks the relay (the backend).
fn nwc_sim(instance: usize) -> BackendConfig {
    BackendConfig {
        kind: BackendKind::Nwc,
        base_url: nwc::uri::public_form(&"b8".repeat(32), BACKENDS[instance]),
        credential: "71".repeat(32),
    }
}

/// The simulation's configuration, speaking LNbits or NWC to the backends.
fn config_for(via_nwc: bool) -> PayoutConfig {
    let mut cfg = config();
    if via_nwc {
        cfg.default_backend = nwc_sim(0);
        cfg.chain = vec![nwc_sim(0)];
        cfg.backends = vec![nwc_sim(0)];
    }
    cfg
}

fn config() -> PayoutConfig {
    PayoutConfig {
        api_keys: vec!["k".repeat(16)],
        default_backend: lnbits_sim(),
        chain: vec![lnbits_sim()],
        breaker: BreakerPolicy {
            failure_threshold: 3,
            cooldown_ms: 30_000,
        },
        backends: vec![lnbits_sim()],
        network: Network::Bitcoin,
        max_sat: 1_000_000,
        daily_limit_sat: 10_000_000,
        policy: PayoutPolicy {
            max_attempts: 3,
            max_age_ms: 3_600_000,
            retry: RetryPolicy {
                base_delay_ms: 1_000,
                max_delay_ms: 60_000,
                ..PayoutPolicy::default().retry
            },
            lookup: RetryPolicy {
                base_delay_ms: 1_000,
                max_delay_ms: 60_000,
                ..PayoutPolicy::default().lookup
            },
            not_found_grace_ms: 5_000,
            sending_timeout_ms: 60_000,
            expiry_margin_secs: 30,
            expiry_lookup_margin_secs: 120,
            max_invoices: 10,
            watch_window_ms: 3_600_000,
            pay_timeout_ms: 20_000,
            late_execution_bound_ms: LATE_BOUND_MS,
            late_execution_bound_set: true,
            clock_skew_ms: 5_000,
            in_flight_bound_ms: IN_FLIGHT_BOUND_MS,
            not_found_waits_in_flight: false,
            may_move: false,
        },
        webhook_secret: None,
        operator_webhook_url: None,
        url_policy: UrlPolicy {
            allow_http_hosts: vec!["lnurl.sim".into()],
            ..UrlPolicy::default()
        },
        lnurl_timeout_ms: 1_000,
        max_in_flight_per_backend: 4,
        shards: 1,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Cron,
    Alarm,
    /// Cron and alarm at the same moment.
    Overlap,
    /// Two advances of the same payout at once, bypassing the lease.
    RaceAdvance,
    Duplicate,
    Advance(u64),
    Settle(bool),
    /// The backend runs the requests it held.
    ExecuteLate,
    /// The queue instance dies at its `n`th await of a drain, then restarts.
    Crash(u8),
    /// The operator changes the configuration: 0 back to the start, 1 new
    /// payouts to the other backend (the old one kept), 2 the old backend
    /// removed, 3 the old backend's URL pointed at the other instance.
    Switch(u8),
    /// The LNURL server starts handing out invoices that expire in 5 s.
    ShortInvoices,
    /// An admin cancels the payout (refused unless nothing of it can pay).
    Cancel,
}

/// Failing cases are kept in `proptest-regressions/payout_sim.txt` (the
/// package's root is the working directory of its tests), replayed first.
fn regressions() -> Option<Box<dyn proptest::test_runner::FailurePersistence>> {
    Some(Box::new(
        proptest::test_runner::FileFailurePersistence::Direct(
            "proptest-regressions/payout_sim.txt",
        ),
    ))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Cron),
        2 => Just(Op::Alarm),
        2 => Just(Op::Overlap),
        2 => Just(Op::RaceAdvance),
        2 => Just(Op::Duplicate),
        4 => (1u64..400_000).prop_map(Op::Advance),
        1 => any::<bool>().prop_map(Op::Settle),
        2 => Just(Op::ExecuteLate),
        1 => (0u8..4).prop_map(Op::Crash),
        1 => (0u8..4).prop_map(Op::Switch),
        1 => Just(Op::ShortInvoices),
        1 => Just(Op::Cancel),
    ]
}

fn send_behaviour() -> impl Strategy<Value = SendBehaviour> {
    prop_oneof![
        Just(SendBehaviour::Pay),
        Just(SendBehaviour::FailExplicit),
        Just(SendBehaviour::Html520NoPay),
        Just(SendBehaviour::Html520AfterPay),
        Just(SendBehaviour::TimeoutAfterPay),
        Just(SendBehaviour::Lost),
        Just(SendBehaviour::Pending),
        Just(SendBehaviour::AuthRefused),
        Just(SendBehaviour::CutAfterPay),
        Just(SendBehaviour::Late),
        Just(SendBehaviour::FailedAfterPay),
        Just(SendBehaviour::BadRequestAfterPay),
        Just(SendBehaviour::StuckRecordedFailed),
        Just(SendBehaviour::PaidByAnother),
        Just(SendBehaviour::SucceededWhileInFlight),
    ]
}

fn quirks() -> impl Strategy<Value = Quirks> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(e, o, b, a)| Quirks {
        expired_when_unsettled: e,
        oldest_attempt_first: o,
        blind: b,
        already_paid_internal: a,
    })
}

fn lookup_behaviour() -> impl Strategy<Value = LookupBehaviour> {
    prop_oneof![4 => Just(LookupBehaviour::Truthful), 1 => Just(LookupBehaviour::Error), 1 => Just(LookupBehaviour::Slow)]
}

fn check(sim: &Sim, store: &MemStore) -> Result<(), TestCaseError> {
    let v = sim.violations.borrow();
    prop_assert!(v.is_empty(), "violations: {:?}", *v);
    let paid = sim.paid_count();
    prop_assert!(paid <= 1, "paid {} times", paid);
    for (p, _, _) in store.rows.borrow().values() {
        match &p.state {
            PayoutState::Succeeded { .. } => {
                prop_assert!(paid == 1, "succeeded without the backend paying")
            }
            PayoutState::Failed { reason, .. } => {
                prop_assert!(
                    !sim.any_live(),
                    "failed ({}) although a backend paid, is paying or may still pay",
                    reason
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// A lease holder name of the store's current instance.
fn holder(store: &MemStore, who: &str) -> String {
    format!("{}/{who}", store.instance.borrow())
}

/// The configuration after `Op::Switch(mode)`.
fn switched(mode: u8, via_nwc: bool) -> PayoutConfig {
    let mut cfg = config_for(via_nwc);
    let (first, other) = if via_nwc {
        (nwc_sim(0), nwc_sim(1))
    } else {
        (
            lnbits_sim(),
            BackendConfig {
                base_url: BACKENDS[1].into(),
                ..lnbits_sim()
            },
        )
    };
    match mode {
        1 => {
            cfg.default_backend = other.clone();
            cfg.backends = vec![other, first];
        }
        2 => {
            cfg.default_backend = other.clone();
            cfg.backends = vec![other];
        }
        3 => {
            // Same kind and key, another instance behind the old name.
            cfg.default_backend = other.clone();
            cfg.backends = vec![other];
        }
        _ => {}
    }
    cfg.chain = vec![cfg.default_backend.clone()];
    cfg
}

/// Drives a drain until its `n`th suspension, then drops it: the instance
/// died there. The store then belongs to a new instance.
fn crash_during_drain(sim: &Sim, store: &MemStore, cfg: &PayoutConfig, n: u8) {
    let who = holder(store, "crashing");
    let fut = engine::drain(sim, store, cfg, &who);
    let mut fut = std::pin::pin!(fut);
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    sim.freeze.set(true);
    for _ in 0..=n {
        if fut.as_mut().poll(&mut cx).is_ready() {
            break;
        }
    }
    sim.freeze.set(false);
    let next = format!("{}x", store.instance.borrow());
    *store.instance.borrow_mut() = next;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, failure_persistence: regressions(), .. ProptestConfig::default() })]

    #[test]
    fn no_interleaving_pays_twice_or_ends_without_the_backends_word(
        address in any::<bool>(),
        sends in proptest::collection::vec(send_behaviour(), 0..8),
        lookups in proptest::collection::vec(lookup_behaviour(), 0..8),
        ops in proptest::collection::vec(op(), 1..40),
        seed in 1u64..u64::MAX,
        via_nwc in any::<bool>(),
        quirks in quirks(),
    ) {
        let sim = Sim::new(seed, sends, lookups);
        sim.quirks.set(quirks);
        let store = MemStore::default();
        sim.seed_history(&store);
        let mut cfg = config_for(via_nwc);
        let destination = if address {
            "alice@lnurl.sim".to_string()
        } else {
            let mut pre = [0u8; 32];
            sim.random_bytes(&mut pre);
            sign_invoice(Network::Bitcoin, 5_000_000, "b", None, 900, sim.now.get() / 1000, pre)
                .map(|i| i.payment_request)
                .unwrap_or_default()
        };
        let req = PayoutRequest { destination, amount_sat: Some(5_000), comment: None, webhook_url: None, external_id: None };
        let first = block_on(engine::create(&sim, &store, &cfg, req.clone(), "key-1"));
        let id = match first {
            Ok(Created::New(p)) => p.id,
            other => return Err(TestCaseError::fail(format!("create failed: {:?}", other.err()))),
        };
        check(&sim, &store)?;
        for op in ops {
            match op {
                Op::Cron => { block_on(engine::drain(&sim, &store, &cfg, &holder(&store, "cron"))).map_err(|e| TestCaseError::fail(e.0))?; }
                Op::Alarm => { block_on(engine::drain(&sim, &store, &cfg, &holder(&store, "alarm"))).map_err(|e| TestCaseError::fail(e.0))?; }
                Op::Overlap => {
                    let (a, b) = block_on(join(engine::drain(&sim, &store, &cfg, &holder(&store, "cron")), engine::drain(&sim, &store, &cfg, &holder(&store, "alarm"))));
                    a.map_err(|e| TestCaseError::fail(e.0))?;
                    b.map_err(|e| TestCaseError::fail(e.0))?;
                }
                Op::RaceAdvance => {
                    let (a, b) = block_on(join(engine::advance(&sim, &store, &cfg, &id), engine::advance(&sim, &store, &cfg, &id)));
                    a.map_err(|e| TestCaseError::fail(e.0))?;
                    b.map_err(|e| TestCaseError::fail(e.0))?;
                }
                Op::Duplicate => {
                    let sends_before: u32 = sim.truth.borrow().values().map(|t| t.sends).sum();
                    match block_on(engine::create(&sim, &store, &cfg, req.clone(), "key-1")) {
                        Ok(Created::Replayed(p)) => prop_assert_eq!(&p.id, &id),
                        other => return Err(TestCaseError::fail(format!("duplicate was not replayed: {:?}", other.err()))),
                    }
                    let sends_after: u32 = sim.truth.borrow().values().map(|t| t.sends).sum();
                    prop_assert_eq!(sends_before, sends_after, "a duplicate request sent a payment");
                }
                Op::Advance(ms) => sim.now.set(sim.now.get() + ms),
                Op::Settle(pay) => sim.settle(pay),
                Op::ExecuteLate => sim.execute_late(),
                Op::Crash(n) => crash_during_drain(&sim, &store, &cfg, n),
                Op::Switch(mode) => cfg = switched(mode, via_nwc),
                Op::ShortInvoices => sim.invoice_expiry_secs.set(5),
                Op::Cancel => {
                    let sends_before: u32 = sim.truth.borrow().values().map(|t| t.sends).sum();
                    if let Ok(p) = block_on(engine::cancel(&sim, &store, &cfg, &id)) {
                        prop_assert_eq!(p.status(), "failed");
                    }
                    let sends_after: u32 = sim.truth.borrow().values().map(|t| t.sends).sum();
                    prop_assert_eq!(sends_before, sends_after, "a cancel sent a payment");
                }
            }
            check(&sim, &store)?;
        }
        prop_assert_eq!(store.rows.borrow().len(), 1, "one idempotency key, one payout");
    }
}

#[test]
fn pay_then_520_is_not_paid_twice_and_ends_succeeded_after_a_lookup() {
    let sim = Sim::new(7, vec![SendBehaviour::Html520AfterPay], vec![]);
    let store = MemStore::default();
    let cfg = config();
    let req = PayoutRequest {
        destination: "bob@lnurl.sim".into(),
        amount_sat: Some(21),
        comment: None,
        webhook_url: None,
        external_id: None,
    };
    let p = match block_on(engine::create(&sim, &store, &cfg, req, "k")) {
        Ok(Created::New(p)) => p,
        _ => panic!("create"),
    };
    assert_eq!(p.status(), "unknown");
    sim.now.set(sim.now.get() + 120_000);
    let _ = block_on(engine::drain(&sim, &store, &cfg, &holder(&store, "cron")));
    let p = store
        .get(&p.id)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("stored"));
    assert_eq!(p.status(), "succeeded");
    assert_eq!(sim.truth.borrow().values().map(|t| t.sends).sum::<u32>(), 1);
    assert!(sim.violations.borrow().is_empty());
}

#[test]
fn an_lnurl_server_repeating_a_tried_invoice_gets_no_second_send() {
    let sim = Sim::new(11, vec![SendBehaviour::FailExplicit], vec![]);
    sim.repeat_invoice.set(true);
    let store = MemStore::default();
    let mut cfg = config();
    cfg.policy.max_attempts = 50;
    let req = PayoutRequest {
        destination: "carol@lnurl.sim".into(),
        amount_sat: Some(21),
        comment: None,
        webhook_url: None,
        external_id: None,
    };
    let id = match block_on(engine::create(&sim, &store, &cfg, req, "k")) {
        Ok(Created::New(p)) => p.id,
        _ => panic!("create"),
    };
    // Past the invoice's expiry plus the margin, the hash is proven dead and
    // a new invoice is asked for; the server repeats the old one.
    for _ in 0..25 {
        sim.now.set(sim.now.get() + 100_000);
        let _ = block_on(engine::drain(&sim, &store, &cfg, &holder(&store, "cron")));
    }
    let p = store
        .get(&id)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("stored"));
    assert!(
        p.log
            .iter()
            .any(|l| l.event.starts_with("could not fetch a new invoice")),
        "{:?}",
        p.log
    );
    assert_eq!(sim.truth.borrow().len(), 1, "one hash was ever sent");
    assert!(sim.violations.borrow().is_empty());
}

#[test]
fn an_admin_retry_reserves_the_amount_on_the_day_of_the_retry() {
    let sim = Sim::new(3, vec![SendBehaviour::FailExplicit], vec![]);
    let store = MemStore::default();
    let mut cfg = config();
    cfg.policy.max_attempts = 1;
    let req = PayoutRequest {
        destination: "dan@lnurl.sim".into(),
        amount_sat: Some(21),
        comment: None,
        webhook_url: None,
        external_id: None,
    };
    let id = match block_on(engine::create(&sim, &store, &cfg, req, "k")) {
        Ok(Created::New(p)) => p.id,
        _ => panic!("create"),
    };
    for _ in 0..40 {
        sim.now.set(sim.now.get() + 70_000);
        let _ = block_on(engine::drain(&sim, &store, &cfg, &holder(&store, "cron")));
    }
    let p = store
        .get(&id)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("stored"));
    assert_eq!(p.status(), "failed", "{:?}", p.log);
    let first_day = engine::day_of(p.created_at_ms);
    assert_eq!(
        store.reserved_on(&first_day).ok(),
        Some(0),
        "a failed payout reserves nothing"
    );

    sim.now.set(sim.now.get() + 2 * 86_400_000);
    let p = block_on(engine::retry(&sim, &store, &cfg, &id)).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.status(), "succeeded", "{:?}", p.log);
    assert_eq!(
        store.reserved_on(&engine::day_of(sim.now.get())).ok(),
        Some(21)
    );
    assert_eq!(store.reserved_on(&first_day).ok(), Some(0));
    assert!(
        sim.violations.borrow().is_empty(),
        "{:?}",
        sim.violations.borrow()
    );
}

fn address_request(name: &str) -> PayoutRequest {
    PayoutRequest {
        destination: format!("{name}@lnurl.sim"),
        amount_sat: Some(21),
        comment: None,
        webhook_url: None,
        external_id: None,
    }
}

fn created(sim: &Sim, store: &MemStore, cfg: &PayoutConfig, req: PayoutRequest) -> String {
    match block_on(engine::create(sim, store, cfg, req, "k")) {
        Ok(Created::New(p)) => p.id,
        other => panic!("create: {:?}", other.err()),
    }
}

fn stored(store: &MemStore, id: &str) -> Payout {
    store
        .get(id)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("stored"))
}

fn drain_for(sim: &Sim, store: &MemStore, cfg: &PayoutConfig, steps: u32, step_ms: u64) {
    for _ in 0..steps {
        sim.now.set(sim.now.get() + step_ms);
        let _ = block_on(engine::drain(sim, store, cfg, &holder(store, "cron")));
    }
}

/// The reproduction of the double pay seen against LNbits: a pay request
/// the gateway gave up on runs a minute later. The address payout must not
/// take a second invoice while the first can still be paid.
#[test]
fn a_request_executed_late_never_leads_to_a_second_invoice() {
    let sim = Sim::new(21, vec![SendBehaviour::Late], vec![]);
    let store = MemStore::default();
    let cfg = config();
    let id = created(&sim, &store, &cfg, address_request("late"));
    // Lookups say "not found" for minutes; the same hash may be re-sent,
    // which the backend refuses once the late request ran.
    drain_for(&sim, &store, &cfg, 30, 10_000);
    sim.execute_late();
    drain_for(&sim, &store, &cfg, 200, 10_000);
    let p = stored(&store, &id);
    assert_eq!(sim.paid_count(), 1, "{:?}", p.log);
    assert_eq!(p.status(), "succeeded");
    assert!(p.previous_hashes.is_empty(), "{:?}", p.log);
    assert!(sim.violations.borrow().is_empty(), "{:?}", sim.violations);
}

/// NWC: a wallet that paid and then answers PAYMENT_FAILED (and one that
/// really failed) on the only attempt. The failure is confirmed with
/// lookup_invoice before the payout ends; nothing is paid twice.
#[test]
fn nwc_payment_failed_is_confirmed_by_lookup_invoice() {
    for (behaviour, paid, status) in [
        (SendBehaviour::FailedAfterPay, 1, "succeeded"),
        (SendBehaviour::FailExplicit, 0, "failed"),
    ] {
        let sim = Sim::new(5, vec![behaviour], vec![]);
        let store = MemStore::default();
        let mut cfg = config_for(true);
        cfg.policy.max_attempts = 1;
        let id = created(&sim, &store, &cfg, address_request("nwc"));
        let p = stored(&store, &id);
        assert!(
            p.log.iter().any(|l| l.event.contains("NWC PAYMENT_FAILED")),
            "{:?}",
            p.log
        );
        assert_eq!(
            p.status(),
            "queued",
            "not failed on the wallet's word alone"
        );
        // Ending failed needs the invoice expired and a lookup after that.
        drain_for(&sim, &store, &cfg, 150, 60_000);
        let p = stored(&store, &id);
        assert_eq!(p.status(), status, "{:?}", p.log);
        assert!(p.lookups >= 1, "{:?}", p.log);
        assert_eq!(sim.paid_count(), paid);
        assert_eq!(sim.truth.borrow().values().map(|t| t.sends).sum::<u32>(), 1);
        assert!(sim.violations.borrow().is_empty(), "{:?}", sim.violations);
    }
}

/// NWC: the relay drops the connection after the wallet paid; the payout is
/// resolved by lookup_invoice, never by a second pay_invoice.
#[test]
fn nwc_dropped_relay_is_resolved_by_lookup_not_a_second_pay() {
    let sim = Sim::new(9, vec![SendBehaviour::Html520AfterPay], vec![]);
    let store = MemStore::default();
    let cfg = config_for(true);
    let id = created(&sim, &store, &cfg, address_request("drop"));
    assert_eq!(stored(&store, &id).status(), "unknown");
    drain_for(&sim, &store, &cfg, 30, 10_000);
    let p = stored(&store, &id);
    assert_eq!(p.status(), "succeeded", "{:?}", p.log);
    assert_eq!(sim.truth.borrow().values().map(|t| t.sends).sum::<u32>(), 1);
    assert!(sim.violations.borrow().is_empty(), "{:?}", sim.violations);
}

/// "Failed" on the last attempt for a payment the backend made.
#[test]
fn failed_on_the_last_attempt_is_checked_before_the_payout_ends() {
    let sim = Sim::new(5, vec![SendBehaviour::FailedAfterPay], vec![]);
    let store = MemStore::default();
    let mut cfg = config();
    cfg.policy.max_attempts = 1;
    let id = created(&sim, &store, &cfg, address_request("last"));
    drain_for(&sim, &store, &cfg, 10, 10_000);
    assert_eq!(stored(&store, &id).status(), "succeeded");
    assert!(sim.violations.borrow().is_empty());
}

/// The operator switches `PAYOUT_PROVIDER` (or removes the old key) while a
/// payout's outcome is unknown: it waits for its own backend.
#[test]
fn a_payout_is_never_looked_up_or_sent_through_another_backend() {
    let sim = Sim::new(9, vec![SendBehaviour::TimeoutAfterPay], vec![]);
    let store = MemStore::default();
    let id = created(&sim, &store, &config(), address_request("pin"));
    let cfg = switched(2, false);
    drain_for(&sim, &store, &cfg, 50, 60_000);
    let p = stored(&store, &id);
    assert_eq!(p.status(), "unknown", "{:?}", p.log);
    assert!(p.blocked.is_some(), "visible as blocked");
    assert_eq!(
        sim.truth.borrow().len(),
        1,
        "nothing went to the other backend"
    );
    // Configured again: it finishes through its own backend.
    drain_for(&sim, &store, &config(), 10, 60_000);
    let p = stored(&store, &id);
    assert_eq!(p.status(), "succeeded");
    assert!(p.blocked.is_none());
    // Keeping the old backend configured while new payouts go elsewhere works too.
    let both = switched(1, false);
    let id2 = match block_on(engine::create(
        &sim,
        &store,
        &both,
        address_request("new"),
        "k2",
    )) {
        Ok(Created::New(p)) => p.id,
        other => panic!("{:?}", other.err()),
    };
    let p2 = stored(&store, &id2);
    assert_eq!(p2.status(), "succeeded");
    assert_eq!(
        p2.backend.as_ref().map(|b| b.base_url.as_str()),
        Some(BACKENDS[1])
    );
}

/// Rows stored while the Alby wallet API was a backend (the kind `alby`,
/// now retired) still load; a sent one waits as blocked and is never sent
/// or looked up anywhere else, rows pinned before pinning existed too.
#[test]
fn a_payout_pinned_to_the_retired_alby_kind_loads_and_waits() {
    let sim = Sim::new(9, vec![SendBehaviour::TimeoutAfterPay], vec![]);
    let store = MemStore::default();
    let id = created(&sim, &store, &config(), address_request("legacy"));
    let sent = stored(&store, &id);
    assert_eq!(sent.status(), "unknown");
    // Rewrite the stored row as an old deployment wrote it.
    let mut json = serde_json::to_value(&sent).unwrap_or_default();
    json["provider"] = "alby".into();
    json["backend"]["kind"] = "alby".into();
    json["backend"]["base_url"] = "https://api.getalby.com".into();
    let legacy: Payout = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("an old row must stay readable: {e}"));
    assert_eq!(legacy.provider, BackendKind::Alby);
    {
        let mut rows = store.rows.borrow_mut();
        let row = rows.get_mut(&id).unwrap_or_else(|| panic!("row"));
        row.0 = legacy;
    }
    let sends = sim.truth.borrow().len();
    drain_for(&sim, &store, &config(), 20, 60_000);
    let p = stored(&store, &id);
    assert_eq!(p.status(), "unknown", "{:?}", p.log);
    assert!(
        p.blocked
            .as_ref()
            .is_some_and(|b| format!("{b:?}").contains("alby")),
        "{:?}",
        p.blocked
    );
    assert_eq!(
        sim.truth.borrow().len(),
        sends,
        "nothing sent anywhere else"
    );
    // A row stored before pinning, naming only the kind, waits as well.
    json["backend"] = serde_json::Value::Null;
    let unpinned: Payout = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
    {
        let mut rows = store.rows.borrow_mut();
        let row = rows.get_mut(&id).unwrap_or_else(|| panic!("row"));
        row.0 = Payout {
            version: row.0.version,
            ..unpinned
        };
    }
    drain_for(&sim, &store, &config(), 5, 60_000);
    let p = stored(&store, &id);
    assert_eq!(p.status(), "unknown", "{:?}", p.log);
    assert!(p.blocked.is_some());
    assert_eq!(sim.truth.borrow().len(), sends);
    assert!(sim.violations.borrow().is_empty(), "{:?}", sim.violations);
}

/// A never-sent payout may move when its backend goes away.
#[test]
fn a_payout_never_sent_moves_to_the_current_backend() {
    let sim = Sim::new(4, vec![SendBehaviour::AuthRefused], vec![]);
    let store = MemStore::default();
    let id = created(&sim, &store, &config(), address_request("moves"));
    assert_eq!(stored(&store, &id).status(), "queued");
    drain_for(&sim, &store, &switched(2, false), 5, 60_000);
    let p = stored(&store, &id);
    assert_eq!(p.status(), "succeeded", "{:?}", p.log);
    assert_eq!(p.backend.map(|b| b.base_url), Some(BACKENDS[1].to_string()));
}

/// A recipient handing out invoices that expire within seconds: refused at
/// creation, and later refreshes back off with a bounded history.
#[test]
fn short_lived_invoices_are_refused_and_refreshes_back_off() {
    let sim = Sim::new(13, vec![SendBehaviour::FailExplicit], vec![]);
    sim.invoice_expiry_secs.set(5);
    let store = MemStore::default();
    let mut cfg = config();
    cfg.policy.max_attempts = 50;
    let refused = block_on(engine::create(
        &sim,
        &store,
        &cfg,
        address_request("short"),
        "k",
    ));
    assert!(
        matches!(refused, Err(engine::PayoutError::Lnurl(_))),
        "{:?}",
        refused.err()
    );
    sim.invoice_expiry_secs.set(600);
    let id = created(&sim, &store, &cfg, address_request("short"));
    sim.invoice_expiry_secs.set(5);
    let before = sim.lnurl_calls.get();
    // An hour of wake-ups every second.
    drain_for(&sim, &store, &cfg, 3_600, 1_000);
    let p = stored(&store, &id);
    let calls = sim.lnurl_calls.get() - before;
    // Capped at one a minute here (the test policy); about 2,900 without backoff.
    assert!(
        calls < 120,
        "{calls} invoice requests in an hour: no backoff"
    );
    assert!(p.previous_hashes.len() < cfg.policy.max_invoices as usize);
    assert!(serde_json::to_string(&p).map(|s| s.len()).unwrap_or(0) < 32 * 1024);
    assert!(sim.violations.borrow().is_empty());
}

/// A payout with a `webhook_url` that succeeded (so it has an event), on a
/// deployment whose operator then removed `WEBHOOK_SECRET`.
fn ended_with_webhook_then_secret_removed(seed: u64) -> (Sim, MemStore, PayoutConfig, String) {
    let sim = Sim::new(seed, vec![], vec![]);
    let store = MemStore::default();
    let mut cfg = config();
    cfg.webhook_secret = gateway::payout::webhook::WebhookSecrets::from_vars(
        Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        None,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let mut req = address_request("hook");
    req.webhook_url = Some("https://hooks.example.com/x".into());
    let id = created(&sim, &store, &cfg, req);
    assert_eq!(stored(&store, &id).status(), "succeeded", "an event exists");
    cfg.webhook_secret = None; // removed by the operator
    (sim, store, cfg, id)
}

/// A payout that cannot progress (a due webhook without a secret) is
/// rescheduled, never left due in the past.
#[test]
fn nothing_stays_due_in_the_past_after_a_drain() {
    let (sim, store, cfg, _id) = ended_with_webhook_then_secret_removed(17);
    for _ in 0..5 {
        let _ = block_on(engine::drain(&sim, &store, &cfg, &holder(&store, "alarm")));
        let wake = store.next_wake().ok().flatten();
        assert!(
            wake.is_none_or(|w| w > sim.now.get()),
            "due in the past: {wake:?} <= {}",
            sim.now.get()
        );
    }
}

/// An admin redelivery after the operator removed `WEBHOOK_SECRET` is
/// refused (403 `webhooks_disabled`) and changes nothing: no attempt is
/// recorded for a request that could not be signed.
#[test]
fn a_redelivery_without_the_secret_is_refused_and_changes_nothing() {
    let (sim, store, cfg, id) = ended_with_webhook_then_secret_removed(18);
    let before = stored(&store, &id);
    let answer = block_on(engine::redeliver_webhook(&sim, &store, &cfg, &id));
    let err = answer.err().map(gateway::api::error::ApiError::from);
    assert_eq!(
        err.as_ref().map(|e| (e.status(), e.code())),
        Some((403, "webhooks_disabled"))
    );
    assert_eq!(before, stored(&store, &id), "the stored payout changed");
}

/// The queue instance dies with a pay request in the air: the next instance
/// looks the hash up at its first wake-up, not minutes later.
#[test]
fn a_restart_in_the_middle_of_a_send_costs_seconds() {
    let sim = Sim::new(19, vec![SendBehaviour::AuthRefused], vec![]);
    let store = MemStore::default();
    let cfg = config();
    let id = created(&sim, &store, &cfg, address_request("crash"));
    sim.now.set(sim.now.get() + 60_000);
    crash_during_drain(&sim, &store, &cfg, 0);
    assert_eq!(stored(&store, &id).status(), "sending");
    // Once the send must have ended, a new instance finds it: the lease is
    // void and the send is recovered, without waiting for the sending timeout.
    sim.now
        .set(sim.now.get() + cfg.policy.pay_timeout_ms + engine::SENDING_RECHECK_MS);
    let r = block_on(engine::drain(&sim, &store, &cfg, &holder(&store, "alarm")));
    assert!(
        matches!(r, Ok(engine::Drain::Done { processed: 1, .. })),
        "{r:?}"
    );
    let p = stored(&store, &id);
    assert!(
        p.log
            .iter()
            .any(|l| l.event.contains("never reported back"))
            && p.lookups >= 1,
        "{:?}",
        p.log
    );
    assert!(sim.violations.borrow().is_empty());
}

/// An admin retry is refused while another live payout pays the invoice.
#[test]
fn an_admin_retry_never_reopens_an_invoice_another_payout_pays() {
    let sim = Sim::new(23, vec![SendBehaviour::AuthRefused], vec![]);
    let store = MemStore::default();
    let mut cfg = config();
    cfg.policy.max_attempts = 1;
    let mut pre = [0u8; 32];
    sim.random_bytes(&mut pre);
    let invoice = sign_invoice(
        Network::Bitcoin,
        21_000,
        "b",
        None,
        3_600,
        sim.now.get() / 1000,
        pre,
    )
    .map(|i| i.payment_request)
    .unwrap_or_default();
    let req = PayoutRequest {
        destination: invoice,
        amount_sat: None,
        comment: None,
        webhook_url: None,
        external_id: None,
    };
    let first = created(&sim, &store, &cfg, req.clone());
    assert_eq!(
        stored(&store, &first).status(),
        "failed",
        "never sent, no attempts left"
    );
    cfg.policy.max_attempts = 5;
    sim.sends.borrow_mut().push(SendBehaviour::Pending);
    let second = match block_on(engine::create(&sim, &store, &cfg, req, "k2")) {
        Ok(Created::New(p)) => p.id,
        other => panic!("{:?}", other.err()),
    };
    assert_eq!(stored(&store, &second).status(), "unknown");
    let retry = block_on(engine::retry(&sim, &store, &cfg, &first));
    assert!(
        matches!(retry, Err(engine::PayoutError::InvoiceAlreadyUsed(ref o)) if *o == second),
        "{:?}",
        retry.err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 60, failure_persistence: regressions(), .. ProptestConfig::default() })]

    /// Many payouts drained concurrently (several in flight per backend),
    /// with overlapping wake-ups, crashes and late executions: each payout
    /// is still paid at most once and never ends against the truth.
    #[test]
    fn concurrent_drains_keep_every_payout_safe(
        n in 2usize..12,
        sends in proptest::collection::vec(send_behaviour(), 0..24),
        ops in proptest::collection::vec(op(), 1..30),
        seed in 1u64..u64::MAX,
    ) {
        let sim = Sim::new(seed, sends, vec![]);
        let store = MemStore::default();
        sim.seed_history(&store);
        let mut cfg = config();
        for i in 0..n {
            let destination = if i % 2 == 0 {
                format!("user{i}@lnurl.sim")
            } else {
                let mut pre = [0u8; 32];
                sim.random_bytes(&mut pre);
                sign_invoice(Network::Bitcoin, 5_000_000, "b", None, 900, sim.now.get() / 1000, pre)
                    .map(|x| x.payment_request)
                    .unwrap_or_default()
            };
            let req = PayoutRequest { destination, amount_sat: Some(5_000), comment: None, webhook_url: None, external_id: None };
            let _ = block_on(engine::create(&sim, &store, &cfg, req, &format!("key-{i}")));
        }
        for op in ops {
            match op {
                Op::Cron | Op::Alarm | Op::Duplicate | Op::RaceAdvance => {
                    block_on(engine::drain(&sim, &store, &cfg, &holder(&store, "cron"))).map_err(|e| TestCaseError::fail(e.0))?;
                }
                Op::Overlap => {
                    let (a, b) = block_on(join(
                        engine::drain(&sim, &store, &cfg, &holder(&store, "cron")),
                        engine::drain(&sim, &store, &cfg, &holder(&store, "alarm")),
                    ));
                    a.map_err(|e| TestCaseError::fail(e.0))?;
                    b.map_err(|e| TestCaseError::fail(e.0))?;
                }
                Op::Advance(ms) => sim.now.set(sim.now.get() + ms),
                Op::Settle(pay) => sim.settle(pay),
                Op::ExecuteLate => sim.execute_late(),
                Op::Crash(k) => crash_during_drain(&sim, &store, &cfg, k),
                Op::Switch(mode) => cfg = switched(mode, false),
                Op::ShortInvoices => sim.invoice_expiry_secs.set(5),
                Op::Cancel => {
                    let ids: Vec<String> = store.rows.borrow().keys().cloned().collect();
                    for id in ids {
                        let _ = block_on(engine::cancel(&sim, &store, &cfg, &id));
                    }
                }
            }
            let v = sim.violations.borrow();
            // With many payouts, another payout's live hash is no violation.
            let real: Vec<_> = v.iter().filter(|m| !m.contains("second payment hash")).collect();
            prop_assert!(real.is_empty(), "violations: {:?}", real);
            drop(v);
            let now = sim.now_secs();
            let truth = sim.truth.borrow();
            for (p, _, _) in store.rows.borrow().values() {
                let mine: Vec<&String> = std::iter::once(&p.payment_hash).chain(p.previous_hashes.iter()).collect();
                let paid = truth.iter().filter(|(k, t)| mine.contains(&&k.1) && t.paid).count();
                let live = truth.iter().any(|(k, t)| mine.contains(&&k.1) && t.live(now));
                prop_assert!(paid <= 1, "payout {} paid {} times", p.id, paid);
                match p.state {
                    PayoutState::Succeeded { .. } => prop_assert_eq!(paid, 1, "succeeded but unpaid: {}", p.id),
                    PayoutState::Failed { .. } => prop_assert!(!live, "failed but paid or payable: {}", p.id),
                    _ => {}
                }
            }
        }
    }
}

#[path = "payout_sim/shards.rs"]
mod shards;

/// The hashes the simulation saw sent, and how often, without history.
fn sends_per_hash(sim: &Sim) -> Vec<u32> {
    sim.truth
        .borrow()
        .values()
        .filter(|t| !t.history && t.sends > 0)
        .map(|t| t.sends)
        .collect()
}

/// Issue 14, case 1: an NWC wallet (Alby Hub) says `expired` of a payment
/// stuck in flight once its invoice's lifetime is over. The recipient was
/// paid; the payout must never take a second invoice, and ends paid once
/// the payment settles.
#[test]
fn nwc_expired_for_a_stuck_payment_never_leads_to_a_second_invoice() {
    let sim = Sim::new(41, vec![SendBehaviour::Pending], vec![]);
    sim.quirks.set(Quirks {
        expired_when_unsettled: true,
        ..Quirks::default()
    });
    sim.invoice_expiry_secs.set(130);
    let store = MemStore::default();
    sim.seed_history(&store);
    let cfg = config_for(true);
    let id = created(&sim, &store, &cfg, address_request("stuck"));
    // Hours of lookups saying pending, then `expired`.
    drain_for(&sim, &store, &cfg, 100, 10_000);
    let p = stored(&store, &id);
    assert_eq!(p.status(), "unknown", "{:?}", p.log);
    assert!(p.previous_hashes.is_empty(), "{:?}", p.log);
    assert_eq!(sim.lnurl_calls.get(), 1, "no second invoice");
    sim.settle(true);
    drain_for(&sim, &store, &cfg, 30, 10_000);
    let p = stored(&store, &id);
    assert_eq!(p.status(), "succeeded", "{:?}", p.log);
    assert_eq!(sim.paid_count(), 1);
    assert_eq!(sends_per_hash(&sim), vec![1]);
    assert!(sim.violations.borrow().is_empty(), "{:?}", sim.violations);
}

/// Issue 14, case 2: a wallet keeping one record per attempt answers the
/// oldest. After a failed lookup the same hash is never sent again there,
/// so no later, paid attempt can hide behind the failed one.
#[test]
fn a_wallet_answering_its_oldest_attempt_never_gets_a_second_send() {
    let sim = Sim::new(43, vec![SendBehaviour::FailExplicit], vec![]);
    sim.quirks.set(Quirks {
        oldest_attempt_first: true,
        already_paid_internal: true,
        ..Quirks::default()
    });
    let store = MemStore::default();
    sim.seed_history(&store);
    let cfg = config_for(true);
    let id = created(&sim, &store, &cfg, address_request("oldest"));
    drain_for(&sim, &store, &cfg, 60, 10_000);
    let p = stored(&store, &id);
    assert_eq!(sends_per_hash(&sim)[..1], [1], "{:?}", p.log);
    assert_ne!(p.status(), "failed", "{:?}", p.log);
    assert!(sim.paid_count() <= 1);
    assert!(sim.violations.borrow().is_empty(), "{:?}", sim.violations);
}

/// Issue 14, case 3: lookups that cannot see outgoing payments (LNbits
/// without view permission, an NWC wallet whose lookups cover invoices
/// only). The payment went through but its answer was lost: "not found"
/// never proves it absent, and the payout waits, visibly, naming the backend.
#[test]
fn blind_lookups_never_prove_a_payment_absent() {
    for via_nwc in [false, true] {
        let sim = Sim::new(47, vec![SendBehaviour::Html520AfterPay], vec![]);
        sim.quirks.set(Quirks {
            blind: true,
            ..Quirks::default()
        });
        let store = MemStore::default();
        sim.seed_history(&store);
        let cfg = config_for(via_nwc);
        let id = created(&sim, &store, &cfg, address_request("blind"));
        drain_for(&sim, &store, &cfg, 120, 60_000);
        let p = stored(&store, &id);
        assert_ne!(p.status(), "failed", "{:?}", p.log);
        assert!(!p.hash_dead, "{:?}", p.log);
        assert_eq!(sim.lnurl_calls.get(), 1, "no second invoice");
        assert!(p.lookups_failing_since_ms.is_some());
        let why = p.last_error.clone().unwrap_or_default();
        assert!(
            why.contains("may not see outgoing payments")
                && why.contains(cfg.default_backend.kind.as_str()),
            "{why}"
        );
        assert_eq!(sim.paid_count(), 1);
        assert!(sim.violations.borrow().is_empty(), "{:?}", sim.violations);
    }
}

/// Issue 14: a wallet that refuses a send because the invoice is already
/// paid says the hash may be paid. Its lookups find nothing of ours (the
/// payment it speaks of may be one they miss): the hash is never proven
/// dead, so the payout neither fails nor takes another invoice.
#[test]
fn an_invoice_said_to_be_already_paid_is_never_proven_dead() {
    for via_nwc in [false, true] {
        let sim = Sim::new(53, vec![SendBehaviour::PaidByAnother], vec![]);
        sim.quirks.set(Quirks {
            already_paid_internal: true,
            ..Quirks::default()
        });
        let store = MemStore::default();
        sim.seed_history(&store);
        let cfg = config_for(via_nwc);
        let id = created(&sim, &store, &cfg, address_request("paid"));
        drain_for(&sim, &store, &cfg, 120, 60_000);
        let p = stored(&store, &id);
        assert!(p.hash_said_paid, "{:?}", p.log);
        assert!(!p.hash_dead && p.status() != "failed", "{:?}", p.log);
        assert_eq!(sim.lnurl_calls.get(), 1, "no second invoice: {:?}", p.log);
    }
}

/// Success is accepted only with the preimage of the hash: a wallet that
/// says "success" with zeros for a payment in flight (which then fails)
/// leaves the payout unknown, never succeeded.
#[test]
fn success_without_the_preimage_is_not_success() {
    let sim = Sim::new(59, vec![SendBehaviour::SucceededWhileInFlight], vec![]);
    let store = MemStore::default();
    sim.seed_history(&store);
    let cfg = config();
    let id = created(&sim, &store, &cfg, address_request("zeros"));
    let p = stored(&store, &id);
    assert_eq!(p.status(), "unknown", "{:?}", p.log);
    assert!(
        p.log.iter().any(|l| l.event.contains("preimage")),
        "{:?}",
        p.log
    );
    sim.settle(false);
    drain_for(&sim, &store, &cfg, 10, 10_000);
    assert_ne!(stored(&store, &id).status(), "succeeded");
    assert_eq!(sim.paid_count(), 0);
}

/// A payout blocked because its backend was removed resumes at the first
/// wake-up after the backend is configured again, not at the end of a
/// backoff that had grown while it was away.
#[test]
fn a_blocked_payout_resumes_at_the_first_wake_up_after_its_backend_returns() {
    let sim = Sim::new(61, vec![SendBehaviour::TimeoutAfterPay], vec![]);
    let store = MemStore::default();
    sim.seed_history(&store);
    // Production backoffs (up to 15 minutes between checks).
    let mut back = config();
    back.policy.lookup = PayoutPolicy::default().lookup;
    let mut away = switched(2, false);
    away.policy.lookup = PayoutPolicy::default().lookup;
    let id = created(&sim, &store, &back, address_request("back"));
    // The backend is removed for a long while: the backoff grows.
    drain_for(&sim, &store, &away, 60, 60_000);
    let p = stored(&store, &id);
    assert!(p.blocked.is_some(), "{:?}", p.log);
    let next = p.wake_at_ms(0).unwrap_or(0);
    assert!(next > sim.now.get() + 5 * 60_000, "a long backoff: {next}");
    // Put back: one wake-up a few seconds later finishes it.
    drain_for(&sim, &store, &back, 1, 5_000);
    let p = stored(&store, &id);
    assert_eq!(p.status(), "succeeded", "{:?}", p.log);
    assert!(p.blocked.is_none());
}

// ---- Payout failover across a chain of backends ----

/// Backend `i` of the simulation, spoken to through LNbits' API or NWC.
fn backend(i: usize, via_nwc: bool) -> BackendConfig {
    if via_nwc {
        nwc_sim(i)
    } else {
        BackendConfig {
            base_url: BACKENDS[i].into(),
            ..lnbits_sim()
        }
    }
}

/// A chain of backends (by index, each LNbits or NWC as `nwc[i]` says);
/// `configured` are the ones whose payouts can still finish.
fn chain_config(order: &[usize], configured: &[usize], nwc: [bool; 3]) -> PayoutConfig {
    let mut cfg = config();
    cfg.chain = order.iter().map(|i| backend(*i, nwc[*i])).collect();
    cfg.default_backend = cfg.chain[0].clone();
    cfg.backends = configured.iter().map(|i| backend(*i, nwc[*i])).collect();
    cfg.breaker = BreakerPolicy {
        failure_threshold: 2,
        cooldown_ms: 30_000,
    };
    cfg
}

/// The chains the operator switches between: reordered, shortened, a
/// backend removed (its payouts wait) and put back.
fn chain_mode(mode: u8, nwc: [bool; 3]) -> PayoutConfig {
    match mode {
        1 => chain_config(&[1, 0], &[0, 1, 2], nwc),
        2 => chain_config(&[1, 2], &[1, 2], nwc),
        3 => chain_config(&[2], &[0, 1, 2], nwc),
        4 => chain_config(&[0], &[0, 1, 2], nwc),
        _ => chain_config(&[0, 1, 2], &[0, 1, 2], nwc),
    }
}

#[derive(Debug, Clone)]
enum ChainOp {
    Cron,
    Advance(u64),
    Settle(bool),
    ExecuteLate,
    Crash(u8),
    /// A new payout (address or BOLT11).
    Create(bool),
    /// Backend `i` fails every send this way (an outage), or recovers.
    Down(usize, SendBehaviour),
    Up(usize),
    Chain(u8),
    ShortInvoices,
}

fn chain_op() -> impl Strategy<Value = ChainOp> {
    prop_oneof![
        4 => Just(ChainOp::Cron),
        4 => (1u64..400_000).prop_map(ChainOp::Advance),
        1 => any::<bool>().prop_map(ChainOp::Settle),
        2 => Just(ChainOp::ExecuteLate),
        1 => (0u8..4).prop_map(ChainOp::Crash),
        3 => any::<bool>().prop_map(ChainOp::Create),
        2 => ((0usize..3), send_behaviour()).prop_map(|(i, b)| ChainOp::Down(i, b)),
        1 => (0usize..3).prop_map(ChainOp::Up),
        1 => (0u8..5).prop_map(ChainOp::Chain),
        1 => Just(ChainOp::ShortInvoices),
    ]
}

/// Every payout's hashes are paid at most once in all (on every backend
/// together); one that succeeded was paid; one that failed has no hash
/// that any backend paid, is paying or may still pay.
fn check_chain(sim: &Sim, store: &MemStore) -> Result<(), TestCaseError> {
    let v = sim.violations.borrow();
    prop_assert!(v.is_empty(), "violations: {:?}", *v);
    let truth = sim.truth.borrow();
    let now = sim.now_secs();
    for (p, _, _) in store.rows.borrow().values() {
        let mut hashes = p.previous_hashes.clone();
        hashes.push(p.payment_hash.clone());
        let mine = |k: &(String, String)| hashes.contains(&k.1);
        let paid = truth
            .iter()
            .filter(|(k, t)| mine(k) && t.paid && !t.history)
            .count();
        prop_assert!(paid <= 1, "{} paid {} times", p.id, paid);
        match &p.state {
            PayoutState::Succeeded { .. } => {
                prop_assert!(paid == 1, "{} succeeded without a backend paying", p.id)
            }
            PayoutState::Failed { reason, .. } => {
                let live = truth
                    .iter()
                    .any(|(k, t)| mine(k) && !t.history && t.live(now));
                prop_assert!(
                    !live,
                    "{} failed ({}) although a backend may still pay",
                    p.id,
                    reason
                );
            }
            _ => {}
        }
    }
    Ok(())
}

fn new_payout(sim: &Sim, store: &MemStore, cfg: &PayoutConfig, n: u64, address: bool) {
    let amount_sat = 5_000 + n;
    let req = if address {
        PayoutRequest {
            amount_sat: Some(amount_sat),
            ..address_request("alice")
        }
    } else {
        bolt11_request(sim, amount_sat)
    };
    let _ = block_on(engine::create(sim, store, cfg, req, &format!("chain-{n}")));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: regressions(), .. ProptestConfig::default() })]

    /// Several backends, each able to refuse before acting, answer
    /// ambiguously, pay late, lie in its lookups, fail for a while and be
    /// removed or re-added: no hash is ever sent through two backends
    /// unless every earlier send of it was refused before acting, and no
    /// payout is paid twice.
    #[test]
    fn failover_never_sends_a_hash_through_two_backends_or_pays_twice(
        sends in proptest::collection::vec(send_behaviour(), 0..10),
        lookups in proptest::collection::vec(lookup_behaviour(), 0..6),
        ops in proptest::collection::vec(chain_op(), 1..45),
        seed in 1u64..u64::MAX,
        nwc in any::<[bool; 3]>(),
        quirks in quirks(),
    ) {
        let sim = Sim::new(seed, sends, lookups);
        sim.quirks.set(quirks);
        let store = MemStore::default();
        sim.seed_history(&store);
        let mut cfg = chain_mode(0, nwc);
        let mut n = 0u64;
        new_payout(&sim, &store, &cfg, n, true);
        check_chain(&sim, &store)?;
        for op in ops {
            match op {
                ChainOp::Cron => { block_on(engine::drain(&sim, &store, &cfg, &holder(&store, "cron"))).map_err(|e| TestCaseError::fail(e.0))?; }
                ChainOp::Advance(ms) => sim.now.set(sim.now.get() + ms),
                ChainOp::Settle(pay) => sim.settle(pay),
                ChainOp::ExecuteLate => sim.execute_late(),
                ChainOp::Crash(k) => crash_during_drain(&sim, &store, &cfg, k),
                ChainOp::Create(address) => {
                    n += 1;
                    new_payout(&sim, &store, &cfg, n, address);
                }
                ChainOp::Down(i, b) => { sim.down.borrow_mut().insert(BACKENDS[i].to_string(), b); }
                ChainOp::Up(i) => { sim.down.borrow_mut().remove(BACKENDS[i]); }
                ChainOp::Chain(mode) => cfg = chain_mode(mode, nwc),
                ChainOp::ShortInvoices => sim.invoice_expiry_secs.set(5),
            }
            check_chain(&sim, &store)?;
        }
    }
}

fn chain_created(
    sim: &Sim,
    store: &MemStore,
    cfg: &PayoutConfig,
    req: PayoutRequest,
    key: &str,
) -> Payout {
    match block_on(engine::create(sim, store, cfg, req, key)) {
        Ok(Created::New(p)) => p,
        other => panic!("create failed: {:?}", other.err()),
    }
}

fn bolt11_request(sim: &Sim, amount_sat: u64) -> PayoutRequest {
    let mut pre = [0u8; 32];
    sim.random_bytes(&mut pre);
    let destination = sign_invoice(
        Network::Bitcoin,
        amount_sat * 1000,
        "b",
        None,
        900,
        sim.now_secs(),
        pre,
    )
    .map(|i| i.payment_request)
    .unwrap_or_default();
    PayoutRequest {
        destination,
        amount_sat: None,
        comment: None,
        webhook_url: None,
        external_id: None,
    }
}

fn sends_at(sim: &Sim, backend: usize) -> u32 {
    sim.truth
        .borrow()
        .iter()
        .filter(|(k, t)| k.0 == BACKENDS[backend] && !t.history)
        .map(|(_, t)| t.sends)
        .sum()
}

/// A refusal before acting (the key is rejected) moves the payout to the
/// next backend within the create request.
#[test]
fn a_refusal_before_acting_moves_the_payout_at_once() {
    for nwc in [[false; 3], [true; 3], [true, false, false]] {
        let sim = Sim::new(21, vec![], vec![]);
        sim.down
            .borrow_mut()
            .insert(BACKENDS[0].into(), SendBehaviour::AuthRefused);
        let store = MemStore::default();
        let cfg = chain_mode(0, nwc);
        let p = chain_created(&sim, &store, &cfg, bolt11_request(&sim, 2_000), "refused");
        assert_eq!(p.status(), "succeeded", "{:?}", p.log);
        assert_eq!(
            p.backend.as_ref().map(|b| b.base_url.contains("other.sim")),
            Some(true),
            "{:?}",
            p.backend
        );
        assert_eq!(p.route.len(), 2, "the route shows the move: {:?}", p.route);
        assert!(
            p.route[1].why.contains("refused it before acting"),
            "{}",
            p.route[1].why
        );
        assert!(p.moved_at_ms.is_some());
        assert_eq!(sends_at(&sim, 0), 1);
        assert!(sim.violations.borrow().is_empty(), "{:?}", sim.violations);
    }
}

/// An ambiguous answer (an HTML 520, a timeout, a cut connection) pins the
/// payout to its backend: it is never sent through the next one, however
/// long that backend stays down. Guards `machine::movable`'s `hash_spent`.
#[test]
fn an_ambiguous_answer_keeps_the_payout_where_it_was_sent() {
    for outage in [
        SendBehaviour::Html520NoPay,
        SendBehaviour::Lost,
        SendBehaviour::Late,
    ] {
        let sim = Sim::new(22, vec![], vec![]);
        sim.down.borrow_mut().insert(BACKENDS[0].into(), outage);
        let store = MemStore::default();
        // Lookups that can be trusted: "not found" lets the same hash be
        // sent again, through its own backend only.
        sim.seed_history(&store);
        // A's breaker opens at the first failure and stays open: only the
        // pin keeps the re-sends on A.
        let mut cfg = chain_mode(0, [false; 3]);
        cfg.breaker = BreakerPolicy {
            failure_threshold: 1,
            cooldown_ms: 24 * 3_600_000,
        };
        let p = chain_created(&sim, &store, &cfg, bolt11_request(&sim, 2_000), "pinned");
        assert_ne!(p.status(), "succeeded");
        drain_for(&sim, &store, &cfg, 40, 30_000);
        sim.execute_late();
        drain_for(&sim, &store, &cfg, 40, 60_000);
        let p = stored(&store, &p.id);
        assert_eq!(
            sends_at(&sim, 1),
            0,
            "{outage:?}: nothing went to the next backend: {:?}",
            p.log
        );
        assert_eq!(p.route.len(), 1);
        assert!(sim.violations.borrow().is_empty(), "{:?}", sim.violations);
    }
}

/// The payout seed's outage: every payment POST answers 520. The first
/// payouts wait on A; once A's payout breaker opens, new payouts go
/// straight to B and never touch A; after the cooldown one real payout
/// probes A, and A takes payouts again once it pays.
#[test]
fn once_the_breaker_opens_new_payouts_go_straight_to_the_next_backend() {
    let sim = Sim::new(23, vec![], vec![]);
    sim.down
        .borrow_mut()
        .insert(BACKENDS[0].into(), SendBehaviour::Html520NoPay);
    let store = MemStore::default();
    let cfg = chain_mode(0, [false; 3]);
    let first: Vec<Payout> = (0..2)
        .map(|i| {
            chain_created(
                &sim,
                &store,
                &cfg,
                bolt11_request(&sim, 3_000 + i),
                &format!("a{i}"),
            )
        })
        .collect();
    for p in &first {
        assert_eq!(p.status(), "unknown", "{:?}", p.log);
    }
    let a_sends = sends_at(&sim, 0);
    assert_eq!(a_sends, 2);
    let next = chain_created(&sim, &store, &cfg, bolt11_request(&sim, 3_100), "b0");
    assert_eq!(next.status(), "succeeded", "{:?}", next.log);
    assert!(next
        .backend
        .as_ref()
        .is_some_and(|b| b.base_url == BACKENDS[1]));
    assert_eq!(next.route.len(), 1, "went straight to B: not a move");
    assert_eq!(sends_at(&sim, 0), a_sends, "A was not touched");
    let a = store
        .payout_breaker(&BackendId::of(&backend(0, false)))
        .unwrap_or_default();
    assert_eq!(a.last_hour(sim.now.get()).2, 1, "counted as going past A");
    // A recovers; after the cooldown one new payout probes it.
    sim.down.borrow_mut().clear();
    sim.now.set(sim.now.get() + 31_000);
    let probe = chain_created(&sim, &store, &cfg, bolt11_request(&sim, 3_200), "probe");
    assert!(
        probe
            .backend
            .as_ref()
            .is_some_and(|b| b.base_url == BACKENDS[0]),
        "{:?}",
        probe.log
    );
    assert_eq!(probe.status(), "succeeded");
    let after = chain_created(&sim, &store, &cfg, bolt11_request(&sim, 3_300), "after");
    assert!(after
        .backend
        .as_ref()
        .is_some_and(|b| b.base_url == BACKENDS[0]));
    // The first two never left A, and finish there.
    drain_for(&sim, &store, &cfg, 60, 60_000);
    for p in &first {
        let p = stored(&store, &p.id);
        assert!(p
            .backend
            .as_ref()
            .is_some_and(|b| b.base_url == BACKENDS[0]));
        assert_eq!(p.route.len(), 1);
    }
    assert!(sim.violations.borrow().is_empty(), "{:?}", sim.violations);
}

/// A's payments fail ambiguously but its lookups answer: an address
/// payout whose invoice is proven dead at A (expired, past the
/// late-execution bound, then absent) fetches a new invoice, which goes to
/// B; the old hash is still looked up at A.
#[test]
fn a_hash_proven_dead_moves_an_address_payout_with_a_new_invoice() {
    let sim = Sim::new(24, vec![], vec![]);
    sim.invoice_expiry_secs.set(120);
    sim.down
        .borrow_mut()
        .insert(BACKENDS[0].into(), SendBehaviour::Html520NoPay);
    let store = MemStore::default();
    // A's earlier payments are known: its "not found" can be trusted.
    sim.seed_history(&store);
    let mut cfg = chain_mode(0, [false; 3]);
    cfg.breaker.failure_threshold = 1;
    let p = chain_created(&sim, &store, &cfg, address_request("dead"), "dead");
    assert_eq!(p.status(), "unknown");
    let first_hash = p.payment_hash.clone();
    drain_for(&sim, &store, &cfg, 80, 30_000);
    let p = stored(&store, &p.id);
    assert_eq!(p.status(), "succeeded", "{:?}", p.log);
    assert_ne!(p.payment_hash, first_hash);
    assert!(p
        .backend
        .as_ref()
        .is_some_and(|b| b.base_url == BACKENDS[1]));
    assert_eq!(p.route.len(), 2, "{:?}", p.route);
    let w = p.watched.iter().find(|w| w.hash == first_hash);
    assert!(
        w.is_some_and(|w| w
            .backend
            .as_ref()
            .is_some_and(|b| b.base_url == BACKENDS[0])),
        "the dead hash stays looked up at A: {:?}",
        p.watched
    );
    assert_eq!(
        sim.truth
            .borrow()
            .get(&(BACKENDS[1].to_string(), first_hash))
            .map(|t| t.sends),
        None
    );
    assert!(sim.violations.borrow().is_empty(), "{:?}", sim.violations);
}

/// A pay answer "not sent" that arrives after the send was presumed lost
/// (the payout is unknown by then) says nothing about the earlier send: the
/// payout stays where it was sent.
#[test]
fn a_late_refusal_does_not_free_a_payout_that_may_have_been_sent() {
    let mut p = {
        let sim = Sim::new(25, vec![SendBehaviour::Lost], vec![]);
        let store = MemStore::default();
        chain_created(
            &sim,
            &store,
            &chain_mode(0, [false; 3]),
            bolt11_request(&sim, 1_000),
            "late",
        )
    };
    assert_eq!(p.status(), "unknown");
    let before = p.clone();
    let policy = config().policy;
    let at = p.created_at_ms + 1;
    let _ = gateway::payout::machine::apply_pay(
        &mut p,
        gateway::payout::machine::PayOutcome::NotSent("401".into()),
        at,
        &policy,
        1,
    );
    assert_eq!(p.hash_refusals, before.hash_refusals);
    assert!(!gateway::payout::machine::movable(&p));
}

/// A row stored before the payout chain whose earlier hash was left on
/// weaker proof never moves, even with its backend's breaker open: the
/// earlier hash may still be paid there, and a new invoice elsewhere could
/// pay the recipient twice.
#[test]
fn a_row_from_before_the_chain_that_sent_anything_never_moves() {
    let sim = Sim::new(26, vec![], vec![]);
    let store = MemStore::default();
    let cfg = chain_mode(0, [false; 3]);
    let p = chain_created(&sim, &store, &cfg, address_request("old"), "old");
    assert_eq!(p.status(), "succeeded");
    // Rewrite it as an old deployment left it: an earlier hash left, the
    // current invoice never sent, queued.
    let mut old = stored(&store, &p.id);
    old.move_safe = false;
    old.ever_sent = true;
    old.previous_hashes.push("ab".repeat(32));
    old.hash_spent = false;
    old.hash_sends = 0;
    old.paid_hashes.clear();
    old.state = PayoutState::Queued {
        next_at_ms: 0,
        verify_first: false,
    };
    assert!(!gateway::payout::machine::movable(&old));
    // A's breaker is open: a movable payout would go to B.
    let a = BackendId::of(&backend(0, false));
    let mut open = store.payout_breaker(&a).unwrap_or_default();
    open.state = gateway::health::breaker::BreakerState::Open { until_ms: u64::MAX };
    let _ = store.save_payout_breaker(&a, &open);
    let v = old.version;
    assert_eq!(store.update(&old, v, Some(0)), Ok(true));
    drain_for(&sim, &store, &cfg, 3, 1_000);
    let after = stored(&store, &p.id);
    assert!(
        after
            .backend
            .as_ref()
            .is_some_and(|b| b.base_url == BACKENDS[0]),
        "{:?}",
        after.log
    );
    assert_eq!(after.route.len(), 1, "{:?}", after.route);
    assert_eq!(sends_at(&sim, 1), 0);
}

/// Refused at A, then sent through B: only B's send counts as a send of
/// the hash, so B's own one-attempt record can prove it unpaid.
#[test]
fn a_refused_send_is_not_counted_as_a_send_of_the_hash() {
    let sim = Sim::new(27, vec![], vec![]);
    sim.down
        .borrow_mut()
        .insert(BACKENDS[0].into(), SendBehaviour::AuthRefused);
    sim.down
        .borrow_mut()
        .insert(BACKENDS[1].into(), SendBehaviour::Lost);
    let store = MemStore::default();
    let cfg = chain_mode(0, [true; 3]);
    let p = chain_created(&sim, &store, &cfg, bolt11_request(&sim, 1_500), "counted");
    assert_eq!(p.status(), "unknown", "{:?}", p.log);
    assert_eq!(p.hash_sends, 1, "the refusal at A is not a send");
    assert_eq!(p.hash_refusals, 1);
    assert!(p
        .backend
        .as_ref()
        .is_some_and(|b| b.base_url.contains("other.sim")));
    assert!(p.hash_first_sent_at_ms.is_some());
}
