//! Property test of the payout engine. A simulated LNbits-shaped backend
//! keeps the ground truth (what it really paid) and flags every unsafe
//! request; random interleavings of cron and alarm wake-ups (also
//! concurrent ones), duplicate requests, clock jumps and backend behaviours
//! (pay then answer 520, time out after paying, stay pending, fail...) are
//! replayed against the real engine, state machine and adapters.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_executor::block_on;
use futures_util::future::join;
use proptest::prelude::*;
use serde_json::json;

use crate::core::backoff::RetryPolicy;
use crate::core::bolt11::Network;
use crate::core::http::{HttpRequest, HttpResponse, Method, Runtime, TransportError};
use crate::core::payout::config::PayoutConfig;
use crate::core::payout::engine::{self, Created, PayoutStore, StoreError};
use crate::core::payout::machine::PayoutPolicy;
use crate::core::payout::model::{Payout, PayoutState};
use crate::core::payout::request::PayoutRequest;
use crate::core::payout::safe_url::UrlPolicy;
use crate::core::providers::mock::sign_invoice;
use crate::core::providers::test_support::html_520;
use crate::core::providers::{ProviderConfig, ProviderKind};

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
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LookupBehaviour {
    Truthful,
    Error,
    Slow,
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
}

struct Sim {
    now: Cell<u64>,
    seed: Cell<u64>,
    sends: RefCell<Vec<SendBehaviour>>,
    lookups: RefCell<Vec<LookupBehaviour>>,
    truth: RefCell<HashMap<String, HashTruth>>,
    violations: RefCell<Vec<String>>,
    /// The LNURL server hands out the same invoice every time.
    repeat_invoice: Cell<bool>,
}

impl Sim {
    /// A backend that answers sends and lookups as scripted (then truthfully), at a fixed start time.
    fn new(seed: u64, sends: Vec<SendBehaviour>, lookups: Vec<LookupBehaviour>) -> Sim {
        Sim {
            now: Cell::new(1_700_000_000_000),
            seed: Cell::new(seed),
            sends: RefCell::new(sends),
            lookups: RefCell::new(lookups),
            truth: RefCell::new(HashMap::new()),
            violations: RefCell::new(Vec::new()),
            repeat_invoice: Cell::new(false),
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

impl Sim {
    fn next<T: Copy>(q: &RefCell<Vec<T>>, default: T) -> T {
        let mut q = q.borrow_mut();
        if q.is_empty() {
            default
        } else {
            q.remove(0)
        }
    }

    fn pay(&self, hash: &str) -> Result<HttpResponse, TransportError> {
        let mut truth = self.truth.borrow_mut();
        let others_live = truth
            .iter()
            .any(|(h, t)| h != hash && (t.paid || t.in_flight));
        let t = truth.entry(hash.to_string()).or_default();
        let mut v = self.violations.borrow_mut();
        if t.paid || t.in_flight {
            v.push(format!(
                "send of {hash} while the backend has it paid or in flight"
            ));
        }
        if t.sends > 0 && !t.confirmed_unpaid {
            v.push(format!(
                "second send of {hash} without a lookup confirming it unpaid"
            ));
        }
        if others_live {
            v.push("a second payment hash sent while another may be paid".into());
        }
        t.sends += 1;
        t.confirmed_unpaid = false;
        // LNbits refuses to retry an invoice that failed: it cannot be paid.
        let behaviour = if t.failed {
            SendBehaviour::FailExplicit
        } else {
            Self::next(&self.sends, SendBehaviour::Pay)
        };
        let paid = |t: &mut HashTruth| {
            t.known = true;
            t.paid = true;
        };
        match behaviour {
            SendBehaviour::Pay => {
                paid(t);
                Ok(HttpResponse::json(
                    201,
                    &json!({"payment_hash": hash, "status": "success", "preimage": "00"}),
                ))
            }
            SendBehaviour::FailExplicit => {
                t.known = true;
                t.failed = true;
                Ok(HttpResponse::json(
                    520,
                    &json!({"detail": "Payment failed", "status": "failed"}),
                ))
            }
            SendBehaviour::Html520NoPay => Ok(html_520()),
            SendBehaviour::Html520AfterPay => {
                paid(t);
                Ok(html_520())
            }
            SendBehaviour::TimeoutAfterPay => {
                paid(t);
                Err(TransportError::Timeout)
            }
            SendBehaviour::CutAfterPay => {
                paid(t);
                Err(TransportError::Network("connection reset".into()))
            }
            SendBehaviour::Lost => Err(TransportError::Timeout),
            SendBehaviour::Pending => {
                t.known = true;
                t.in_flight = true;
                Ok(HttpResponse::json(
                    201,
                    &json!({"payment_hash": hash, "status": "pending"}),
                ))
            }
            SendBehaviour::AuthRefused => {
                t.confirmed_unpaid = true; // refused before acting: the sender may resend
                Ok(HttpResponse::json(401, &json!({"detail": "Invalid key"})))
            }
        }
    }

    fn lookup(&self, hash: &str) -> Result<HttpResponse, TransportError> {
        match Self::next(&self.lookups, LookupBehaviour::Truthful) {
            LookupBehaviour::Error => return Ok(html_520()),
            LookupBehaviour::Slow => return Err(TransportError::Timeout),
            LookupBehaviour::Truthful => {}
        }
        let mut truth = self.truth.borrow_mut();
        let t = truth.entry(hash.to_string()).or_default();
        if t.paid {
            Ok(HttpResponse::json(
                200,
                &json!({"paid": true, "status": "success", "preimage": "00"}),
            ))
        } else if t.in_flight {
            Ok(HttpResponse::json(
                200,
                &json!({"paid": false, "status": "pending"}),
            ))
        } else if t.failed {
            t.confirmed_unpaid = true;
            Ok(HttpResponse::json(
                200,
                &json!({"paid": false, "status": "failed"}),
            ))
        } else if !t.known {
            t.confirmed_unpaid = true;
            Ok(HttpResponse::json(
                404,
                &json!({"detail": "Payment does not exist."}),
            ))
        } else {
            Ok(HttpResponse::json(
                200,
                &json!({"paid": false, "status": "pending"}),
            ))
        }
    }

    /// In-flight payments end, one way or the other.
    fn settle(&self, pay: bool) {
        for t in self.truth.borrow_mut().values_mut() {
            if t.in_flight {
                t.in_flight = false;
                if pay {
                    t.paid = true;
                } else {
                    t.failed = true;
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
        match sign_invoice(Network::Bitcoin, amount, "sim", None, 600, ts, pre) {
            Ok(i) => HttpResponse::json(200, &json!({"pr": i.payment_request})),
            Err(e) => HttpResponse::json(500, &json!({"e": e})),
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
        if request.url.contains("://lnurl.sim/") {
            return Ok(self.lnurl(&request));
        }
        let body: serde_json::Value =
            serde_json::from_str(request.body.as_deref().unwrap_or("{}")).unwrap_or_default();
        match (
            request.method,
            request
                .url
                .strip_prefix("http://lnbits.sim/api/v1/payments"),
        ) {
            (Method::Post, Some("")) => {
                let bolt11 = body["bolt11"].as_str().unwrap_or("");
                let hash = crate::core::bolt11::parse(bolt11)
                    .map(|i| i.payment_hash)
                    .unwrap_or_default();
                self.pay(&hash)
            }
            (Method::Get, Some(path)) => self.lookup(path.trim_start_matches('/')),
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
        crate::core::testing::xorshift_fill(&self.seed, buf);
    }
}

/// A stored payout, its wake time and its UTC day.
type Row = (Payout, Option<u64>, String);

#[derive(Default)]
struct MemStore {
    rows: RefCell<BTreeMap<String, Row>>,
    lease: RefCell<Option<(String, u64)>>,
}

impl PayoutStore for MemStore {
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
            .find(|r| r.0.payment_hash == hash)
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
    fn try_lease(&self, holder: &str, now: u64, ttl: u64) -> Result<bool, StoreError> {
        let mut l = self.lease.borrow_mut();
        match &*l {
            Some((h, until)) if h != holder && *until > now => Ok(false),
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

fn config() -> PayoutConfig {
    PayoutConfig {
        api_keys: vec!["k".repeat(16)],
        provider: ProviderConfig {
            kind: ProviderKind::Lnbits,
            base_url: "http://lnbits.sim".into(),
            credential: "admin".into(),
        },
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
        },
        webhook_secret: None,
        url_policy: UrlPolicy {
            allow_http_hosts: vec!["lnurl.sim".into()],
        },
        lnurl_timeout_ms: 1_000,
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
    ]
}

fn lookup_behaviour() -> impl Strategy<Value = LookupBehaviour> {
    prop_oneof![4 => Just(LookupBehaviour::Truthful), 1 => Just(LookupBehaviour::Error), 1 => Just(LookupBehaviour::Slow)]
}

fn check(sim: &Sim, store: &MemStore) -> Result<(), TestCaseError> {
    let v = sim.violations.borrow();
    prop_assert!(v.is_empty(), "violations: {:?}", *v);
    let truth = sim.truth.borrow();
    let paid = truth.values().filter(|t| t.paid).count();
    prop_assert!(paid <= 1, "paid {} times", paid);
    for (p, _, _) in store.rows.borrow().values() {
        match &p.state {
            PayoutState::Succeeded { .. } => {
                prop_assert!(paid == 1, "succeeded without the backend paying")
            }
            PayoutState::Failed { reason, .. } => {
                let live = truth.values().any(|t| t.paid || t.in_flight);
                prop_assert!(
                    !live,
                    "failed ({}) although the backend paid or is paying",
                    reason
                );
            }
            _ => {}
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn no_interleaving_pays_twice_or_ends_without_the_backends_word(
        address in any::<bool>(),
        sends in proptest::collection::vec(send_behaviour(), 0..8),
        lookups in proptest::collection::vec(lookup_behaviour(), 0..8),
        ops in proptest::collection::vec(op(), 1..40),
        seed in 1u64..u64::MAX,
    ) {
        let sim = Sim::new(seed, sends, lookups);
        let store = MemStore::default();
        let cfg = config();
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
                Op::Cron => { block_on(engine::drain(&sim, &store, &cfg, "cron")).map_err(|e| TestCaseError::fail(e.0))?; }
                Op::Alarm => { block_on(engine::drain(&sim, &store, &cfg, "alarm")).map_err(|e| TestCaseError::fail(e.0))?; }
                Op::Overlap => {
                    let (a, b) = block_on(join(engine::drain(&sim, &store, &cfg, "cron"), engine::drain(&sim, &store, &cfg, "alarm")));
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
    let _ = block_on(engine::drain(&sim, &store, &cfg, "cron"));
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
    let cfg = config();
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
    for _ in 0..5 {
        sim.now.set(sim.now.get() + 5_000);
        let _ = block_on(engine::drain(&sim, &store, &cfg, "cron"));
    }
    let p = store
        .get(&id)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("stored"));
    assert_eq!(p.status(), "queued");
    assert!(
        p.last_error
            .as_deref()
            .unwrap_or("")
            .contains("already tried"),
        "{:?}",
        p.last_error
    );
    assert_eq!(sim.truth.borrow().values().map(|t| t.sends).sum::<u32>(), 1);
    assert!(sim.violations.borrow().is_empty());
}

#[test]
fn an_admin_retry_reserves_the_amount_on_the_day_of_the_retry() {
    let sim = Sim::new(3, vec![SendBehaviour::FailExplicit; 3], vec![]);
    let store = MemStore::default();
    let cfg = config();
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
    for _ in 0..20 {
        sim.now.set(sim.now.get() + 70_000);
        let _ = block_on(engine::drain(&sim, &store, &cfg, "cron"));
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
