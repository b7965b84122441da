//! The invoice watch over an in-memory store and a scripted LNbits and
//! receiver, on a virtual clock: paid events without any check-invoice,
//! through a backend outage and a receiver outage, expiry, payment after
//! expiry, the breaker, the lookup budget and the hand-over from check-invoice.

#[path = "invoice_watch/mem_store.rs"]
mod mem_store;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_executor::block_on;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use lightning_fallback_gateway as gateway;

use backends::http::{HttpRequest, HttpResponse, Runtime};
use backends::identity::BackendId;
use backends::{BackendConfig, BackendKind};
use gateway::payout::safe_url::UrlPolicy;
use gateway::receive::context::InvoiceContext;
use gateway::receive::watch::budget::LookupBudget;
use gateway::receive::watch::engine::{self, Delivering, Looking, WatchStore};
use gateway::receive::watch::record::{EventKind, WatchState, WatchedInvoice};
use gateway::receive::watch::schedule;
use gateway::receive::watch::serve::{self, Shard};
use gateway::webhooks::{WebhookSecret, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use mem_store::MemWatchStore;
use testkit::{FakeRuntime, Reply};

const T0: u64 = 1_700_000_000_000;
const MIN: u64 = 60_000;
const HOUR: u64 = 3_600_000;
const LNBITS: &str = "http://lnbits.sim";
const HOOK: &str = "https://ops.example.com/hook";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn lnbits() -> BackendConfig {
    BackendConfig {
        kind: BackendKind::Lnbits,
        base_url: LNBITS.into(),
        credential: "invoice-key".into(),
    }
}

fn hash(n: u32) -> String {
    format!("{n:08x}{}", "ab".repeat(28))
}

fn invoice(n: u32, created_ms: u64, lifetime_ms: u64) -> WatchedInvoice {
    WatchedInvoice::new(
        hash(n),
        format!("lnbc{n}"),
        BackendId::of(&lnbits()),
        21,
        created_ms,
        created_ms + lifetime_ms,
        InvoiceContext {
            external_id: Some(format!("order-{n}")),
            metadata: None,
            webhook_url: None,
            ..InvoiceContext::default()
        },
    )
}

/// When each invoice is paid at the backend, and when the backend or the
/// receiver are down: what the scripted servers answer.
#[derive(Default)]
struct Script {
    paid_at: RefCell<Vec<(String, u64)>>,
    backend_down: RefCell<Vec<(u64, u64)>>,
    receiver_down: RefCell<Vec<(u64, u64)>>,
    received: RefCell<Vec<(u64, HttpRequest)>>,
    lookups: Cell<u32>,
}

fn within(spans: &[(u64, u64)], t: u64) -> bool {
    spans.iter().any(|(a, b)| (*a..*b).contains(&t))
}

struct World {
    rt: FakeRuntime,
    store: MemWatchStore,
    budget: RefCell<LookupBudget>,
    secrets: Vec<WebhookSecret>,
    policy: UrlPolicy,
    backends: Vec<BackendConfig>,
    breaker_open: Rc<Cell<bool>>,
    script: Rc<Script>,
}

impl World {
    fn new(per_minute: u32) -> World {
        let rt = FakeRuntime::new(T0);
        let script = Rc::new(Script::default());
        let s = script.clone();
        rt.on(
            &format!("{LNBITS}/api/v1/payments/"),
            vec![Reply::Func(
                Rc::new(move |req: &HttpRequest, now: u64| {
                    s.lookups.set(s.lookups.get() + 1);
                    if within(&s.backend_down.borrow(), now) {
                        return testkit::html_520();
                    }
                    let h = req.url.rsplit('/').next().unwrap_or("");
                    let paid = s
                        .paid_at
                        .borrow()
                        .iter()
                        .any(|(x, at)| x == h && *at <= now);
                    // LNbits shows the preimage beside `paid`.
                    HttpResponse::json(200, &json!({"paid": paid, "preimage": "5e".repeat(32)}))
                }),
                20,
            )],
        );
        let s = script.clone();
        rt.on(
            HOOK,
            vec![Reply::Func(
                Rc::new(move |req: &HttpRequest, now: u64| {
                    s.received.borrow_mut().push((now, req.clone()));
                    if within(&s.receiver_down.borrow(), now) {
                        HttpResponse::json(503, &json!({}))
                    } else {
                        HttpResponse::json(200, &json!({}))
                    }
                }),
                10,
            )],
        );
        World {
            rt,
            store: MemWatchStore::default(),
            budget: RefCell::new(LookupBudget::new(per_minute, 4)),
            secrets: vec![WebhookSecret::parse(SECRET).unwrap_or_else(|e| panic!("{e:?}"))],
            policy: UrlPolicy {
                allow_http_hosts: vec![],
                ..UrlPolicy::default()
            },
            backends: vec![lnbits()],
            breaker_open: Rc::new(Cell::new(false)),
            script,
        }
    }

    fn delivering(&self) -> Delivering<'_> {
        Delivering {
            secrets: Some(&self.secrets),
            operator_url: Some(HOOK),
            url_policy: &self.policy,
            zap_secret: None,
        }
    }

    /// A caller's check (check-invoice, the checkout page): the state,
    /// after a lookup on demand when one is due.
    fn check(&self, n: u32) -> Option<WatchedInvoice> {
        let open = self.breaker_open.clone();
        let closed = move |_: BackendKind| !open.get();
        let l = Looking {
            backends: &self.backends,
            breaker_closed: &closed,
            timeout_ms: 5_000,
        };
        let d = self.delivering();
        block_on(engine::on_demand(
            &self.rt,
            &self.store,
            &l,
            &self.budget,
            &d,
            &hash(n),
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn register(&self, inv: &WatchedInvoice) {
        engine::register(&self.store, inv).unwrap_or_else(|e| panic!("{e}"));
    }

    fn wake(&self) -> serve::Woke {
        let open = self.breaker_open.clone();
        let closed = move |_: BackendKind| !open.get();
        let shard = Shard {
            looking: Looking {
                backends: &self.backends,
                breaker_closed: &closed,
                timeout_ms: 5_000,
            },
            delivering: self.delivering(),
            budget: &self.budget,
        };
        block_on(serve::wake(&self.rt, &self.store, &shard)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Wakes whenever the shard asks to (as its alarm would), until `end_ms`.
    fn run_until(&self, end_ms: u64) {
        let mut next = self.store.next_wake().unwrap_or_else(|e| panic!("{e}"));
        while let Some(t) = next.filter(|t| *t <= end_ms) {
            let now = self.rt.now_ms();
            if t > now {
                self.rt.advance(t - now);
            }
            next = self.wake().next_wake_ms;
        }
        let now = self.rt.now_ms();
        if end_ms > now {
            self.rt.advance(end_ms - now);
        }
    }

    fn events(&self) -> Vec<(EventKind, String)> {
        self.store
            .events
            .borrow()
            .iter()
            .map(|e| (e.kind, e.payment_hash.clone()))
            .collect()
    }

    /// What the receiver got: (time, webhook-id, status it answered 2xx?).
    fn received_ids(&self) -> Vec<String> {
        self.script
            .received
            .borrow()
            .iter()
            .map(|(_, r)| header(r, HEADER_ID))
            .collect()
    }

    fn delivered_ids(&self) -> Vec<String> {
        let s = &self.script;
        s.received
            .borrow()
            .iter()
            .filter(|(t, _)| !within(&s.receiver_down.borrow(), *t))
            .map(|(_, r)| header(r, HEADER_ID))
            .collect()
    }
}

fn header(r: &HttpRequest, name: &str) -> String {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// An independent Standard Webhooks verifier.
fn verifies(r: &HttpRequest) -> bool {
    let key = B64
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap_or_else(|e| panic!("{e}"));
    let signed = format!(
        "{}.{}.{}",
        header(r, HEADER_ID),
        header(r, HEADER_TIMESTAMP),
        r.body.as_deref().unwrap_or("")
    );
    mac.update(signed.as_bytes());
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    header(r, HEADER_SIGNATURE)
        .split(' ')
        .any(|s| s == expected)
}

fn body(r: &HttpRequest) -> Value {
    serde_json::from_str(r.body.as_deref().unwrap_or("")).unwrap_or_default()
}

#[test]
fn a_paid_invoice_is_announced_once_without_any_check() {
    let w = World::new(40);
    w.register(&invoice(1, T0, 10 * MIN));
    w.script.paid_at.borrow_mut().push((hash(1), T0 + 42_000));
    w.run_until(T0 + 30 * HOUR);
    assert_eq!(w.events(), vec![(EventKind::Paid, hash(1))]);
    let got = w.script.received.borrow();
    assert_eq!(got.len(), 1, "one delivery");
    let (at, req) = &got[0];
    assert!(
        *at < T0 + 60_000,
        "within seconds of the payment: {}",
        at - T0
    );
    assert!(verifies(req), "signed with Standard Webhooks");
    let b = body(req);
    assert_eq!(header(req, HEADER_ID), format!("evt_{}_paid", hash(1)));
    assert_eq!(b["id"], header(req, HEADER_ID));
    assert_eq!(b["type"], "invoice.paid");
    assert_eq!(b["data"]["payment_hash"], hash(1));
    assert_eq!(b["data"]["external_id"], "order-1");
    assert_eq!(b["data"]["provider"], "lnbits");
    assert!(b["data"]["settled_at"].is_string());
    assert_eq!(
        b["data"]["preimage"],
        "5e".repeat(32),
        "the preimage LNbits showed"
    );
    // The watch is over: no lookup after the one that saw it paid.
    let inv = w.store.get(&hash(1)).ok().flatten();
    assert!(matches!(
        inv.map(|i| i.state),
        Some(WatchState::Paid { .. })
    ));
    assert!(w.script.lookups.get() <= 8, "{}", w.script.lookups.get());
}

#[test]
fn paid_while_the_backend_was_down_is_announced_once_it_answers() {
    let w = World::new(40);
    w.register(&invoice(2, T0, 10 * MIN));
    w.script.paid_at.borrow_mut().push((hash(2), T0 + 60_000));
    w.script
        .backend_down
        .borrow_mut()
        .push((T0 + 30_000, T0 + 3 * HOUR));
    w.run_until(T0 + 30 * HOUR);
    assert_eq!(
        w.events(),
        vec![(EventKind::Paid, hash(2))],
        "no expired in between"
    );
    let got = w.script.received.borrow();
    assert_eq!(got.len(), 1);
    assert!(got[0].0 >= T0 + 3 * HOUR);
    // Found at the schedule's first point after the recovery.
    let mut point = None;
    while let Some(t) = schedule::next_lookup_ms(T0, T0 + 10 * MIN, point) {
        point = Some(t);
        if t >= T0 + 3 * HOUR {
            break;
        }
    }
    let first_after = point.unwrap_or(0);
    assert!(
        (first_after..first_after + MIN).contains(&got[0].0),
        "found at the first lookup after the recovery ({} min)",
        (got[0].0 - T0) / MIN
    );
}

#[test]
fn a_failing_receiver_gets_the_same_webhook_id_until_it_answers() {
    let w = World::new(40);
    w.register(&invoice(3, T0, 10 * MIN));
    w.script.paid_at.borrow_mut().push((hash(3), T0 + 20_000));
    w.script.receiver_down.borrow_mut().push((0, T0 + 5 * HOUR));
    w.run_until(T0 + 30 * HOUR);
    let ids = w.received_ids();
    assert!(ids.len() >= 5, "retried: {}", ids.len());
    assert!(ids.iter().all(|i| *i == format!("evt_{}_paid", hash(3))));
    assert_eq!(
        w.delivered_ids().len(),
        1,
        "no delivery after the first 2xx"
    );
    let d = w.store.deliveries.borrow();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].attempts.len().min(10), d[0].attempts.len());
    assert!(d[0].delivered_at.is_some());
    assert_eq!(d[0].next_at, None);
    // The history lists it once.
    let h = w.store.events_after(0, 50).unwrap_or_default();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].body["type"], "invoice.paid");
}

#[test]
fn an_unpaid_invoice_yields_one_expired_and_the_watch_ends() {
    let w = World::new(40);
    w.register(&invoice(4, T0, 10 * MIN));
    w.run_until(T0 + 40 * HOUR);
    assert_eq!(w.events(), vec![(EventKind::Expired, hash(4))]);
    assert_eq!(w.delivered_ids(), vec![format!("evt_{}_expired", hash(4))]);
    assert_eq!(
        w.script.lookups.get(),
        schedule::lookups_for_lifetime(10 * MIN),
        "the stated number of lookups"
    );
    let stats = w.store.stats(w.rt.now_ms()).unwrap_or_default();
    assert_eq!((stats.watched, stats.events_waiting), (0, 0));
}

#[test]
fn paid_after_expiry_is_announced_after_expired() {
    let w = World::new(40);
    w.register(&invoice(5, T0, 10 * MIN));
    w.script.paid_at.borrow_mut().push((hash(5), T0 + 2 * HOUR));
    w.run_until(T0 + 40 * HOUR);
    assert_eq!(
        w.events(),
        vec![(EventKind::Expired, hash(5)), (EventKind::Paid, hash(5))]
    );
    assert_eq!(
        w.delivered_ids(),
        vec![
            format!("evt_{}_expired", hash(5)),
            format!("evt_{}_paid", hash(5))
        ]
    );
}

#[test]
fn a_paid_event_supersedes_an_expired_one_not_yet_delivered() {
    let w = World::new(40);
    w.register(&invoice(6, T0, 10 * MIN));
    w.script.paid_at.borrow_mut().push((hash(6), T0 + 2 * HOUR));
    w.script.receiver_down.borrow_mut().push((0, T0 + 4 * HOUR));
    w.run_until(T0 + 40 * HOUR);
    let delivered = w.delivered_ids();
    assert_eq!(delivered, vec![format!("evt_{}_paid", hash(6))]);
    let expired_tries_after_paid = w
        .script
        .received
        .borrow()
        .iter()
        .filter(|(t, r)| *t > T0 + 2 * HOUR + HOUR && header(r, HEADER_ID).ends_with("_expired"))
        .count();
    assert_eq!(expired_tries_after_paid, 0, "the expired event stopped");
}

#[test]
fn an_open_breaker_keeps_the_watch_off_the_backend() {
    let w = World::new(40);
    w.register(&invoice(7, T0, 10 * MIN));
    w.script.paid_at.borrow_mut().push((hash(7), T0 + 10_000));
    w.breaker_open.set(true);
    w.run_until(T0 + 20 * MIN);
    assert_eq!(
        w.script.lookups.get(),
        0,
        "no call while the breaker is open"
    );
    assert!(
        w.events().is_empty(),
        "and no expired either: nothing is known"
    );
    w.breaker_open.set(false);
    w.run_until(T0 + 30 * HOUR);
    assert_eq!(w.events(), vec![(EventKind::Paid, hash(7))]);
}

#[test]
fn the_budget_caps_lookups_per_minute_fresh_invoices_first() {
    // 40 a minute across 4 shards: this shard may make 10 a minute.
    let w = World::new(40);
    for n in 0..200 {
        w.register(&invoice(100 + n, T0, 10 * MIN));
    }
    let per_minute = Rc::new(RefCell::new(std::collections::BTreeMap::<u64, u32>::new()));
    let mut last = 0;
    let mut next = w.store.next_wake().ok().flatten();
    while let Some(t) = next.filter(|t| *t <= T0 + 2 * HOUR) {
        let now = w.rt.now_ms();
        if t > now {
            w.rt.advance(t - now);
        }
        next = w.wake().next_wake_ms;
        let done = w.script.lookups.get();
        *per_minute
            .borrow_mut()
            .entry(w.rt.now_ms() / MIN)
            .or_default() += done - last;
        last = done;
    }
    let most = per_minute.borrow().values().copied().max().unwrap_or(0);
    assert!(most <= 10, "at most the shard's share a minute: {most}");
    assert!(last > 0);
}

#[test]
fn a_paid_state_seen_by_check_invoice_is_announced_once() {
    let w = World::new(40);
    w.register(&invoice(8, T0, 10 * MIN));
    w.rt.advance(7_000);
    let d = w.delivering();
    let got = engine::seen_paid(&w.store, &hash(8), T0 + 6_000, &d, w.rt.now_ms());
    assert!(got.ok().flatten().is_some_and(|i| i.is_paid()));
    // A second hand-over, and the watch's own lookups, add nothing.
    let _ = engine::seen_paid(&w.store, &hash(8), T0 + 6_500, &d, w.rt.now_ms());
    w.script.paid_at.borrow_mut().push((hash(8), T0 + 6_000));
    w.run_until(T0 + 30 * HOUR);
    assert_eq!(w.events(), vec![(EventKind::Paid, hash(8))]);
    assert_eq!(w.delivered_ids().len(), 1);
    assert_eq!(w.script.lookups.get(), 0, "the watch needed no lookup");
}

#[test]
fn an_invoice_whose_backend_is_gone_ends_with_one_expired() {
    let w = World::new(40);
    let mut inv = invoice(9, T0, 10 * MIN);
    inv.backend.base_url = "http://another.sim".into();
    w.register(&inv);
    w.run_until(T0 + 40 * HOUR);
    assert_eq!(w.events(), vec![(EventKind::Expired, hash(9))]);
    assert_eq!(w.script.lookups.get(), 0);
}

#[test]
fn a_flood_of_fresh_invoices_does_not_starve_an_older_one() {
    let w = World::new(40);
    let old = invoice(500, T0 - HOUR, 2 * HOUR);
    w.register(&old);
    w.script
        .paid_at
        .borrow_mut()
        .push((hash(500), T0 - HOUR + MIN));
    for n in 0..300 {
        w.register(&invoice(1_000 + n, T0, 10 * MIN));
    }
    w.run_until(T0 + 2 * MIN);
    assert!(
        w.events().contains(&(EventKind::Paid, hash(500))),
        "the older invoice was looked up within two minutes"
    );
}

#[test]
fn finished_invoices_and_events_are_forgotten_after_the_retention() {
    use gateway::receive::watch::engine::RETAIN_MS;
    let w = World::new(40);
    w.register(&invoice(600, T0, 10 * MIN));
    w.script.paid_at.borrow_mut().push((hash(600), T0 + 10_000));
    w.run_until(T0 + HOUR);
    assert_eq!(w.store.events_after(0, 10).unwrap_or_default().len(), 1);
    w.run_until(T0 + RETAIN_MS - HOUR);
    w.store
        .prune(w.rt.now_ms())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        w.store.get(&hash(600)).ok().flatten().is_some(),
        "kept within the retention"
    );
    w.rt.advance(2 * HOUR);
    w.store
        .prune(w.rt.now_ms())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(w.store.get(&hash(600)).ok().flatten().is_none());
    assert!(w.store.events_after(0, 10).unwrap_or_default().is_empty());
    assert!(w.store.deliveries.borrow().is_empty());
}

#[test]
fn a_polled_invoice_is_seen_paid_within_the_demand_gap_and_costs_one_lookup_per_gap() {
    let w = World::new(1_000);
    w.register(&invoice(1, T0, HOUR));
    // Ten pages poll every 250 ms for two minutes; it is paid at 61.3 s.
    let paid_at = T0 + 61_300;
    w.script.paid_at.borrow_mut().push((hash(1), paid_at));
    let mut seen_paid_at = None;
    let mut t = T0;
    while t < T0 + 2 * MIN {
        w.rt.advance(250);
        t += 250;
        for _ in 0..10 {
            let inv = w.check(1).unwrap_or_else(|| panic!("watched"));
            if inv.is_paid() && seen_paid_at.is_none() {
                seen_paid_at = Some(t);
            }
        }
    }
    let seen = seen_paid_at.unwrap_or_else(|| panic!("never seen paid"));
    assert!(
        seen - paid_at <= schedule::DEMAND_GAP_EARLY_MS,
        "seen {} ms late",
        seen - paid_at
    );
    // 4,800 checks, and lookups only every 3 s until paid (about 21 of them).
    let lookups = w.script.lookups.get();
    assert!(lookups <= 62_000 / 3_000 + 2, "{lookups} lookups");
    assert_eq!(w.events(), vec![(EventKind::Paid, hash(1))]);
}

#[test]
fn demand_lookups_keep_the_gap_and_respect_the_breaker() {
    // Scheduled: one a minute for this shard; on demand: one page's 20.
    let w = World::new(4);
    w.register(&invoice(1, T0, HOUR));
    w.rt.advance(10_000);
    w.check(1);
    w.rt.advance(1_000);
    w.check(1);
    assert_eq!(w.script.lookups.get(), 1, "one lookup per demand gap");
    w.rt.advance(5_000);
    w.breaker_open.set(true);
    w.check(1);
    assert_eq!(w.script.lookups.get(), 1, "never past an open breaker");
    w.breaker_open.set(false);
    w.check(1);
    assert_eq!(w.script.lookups.get(), 2);
    assert!(w.check(99).is_none(), "an invoice the watch does not hold");
}

#[test]
fn a_failed_demand_lookup_is_kept_as_the_last_error_until_one_succeeds() {
    let w = World::new(1_000);
    w.register(&invoice(1, T0, HOUR));
    w.script.backend_down.borrow_mut().push((T0, T0 + 30_000));
    w.rt.advance(5_000);
    let inv = w.check(1).unwrap_or_else(|| panic!("watched"));
    assert!(inv.last_error.is_some() && inv.is_open());
    w.rt.advance(30_000);
    let inv = w.check(1).unwrap_or_else(|| panic!("watched"));
    assert!(inv.last_error.is_none());
}

#[test]
fn a_paid_zap_invoice_yields_one_signed_receipt_per_relay_and_no_invoice_event() {
    use backends::nwc::crypto::Keys;
    use backends::nwc::event::Event;
    use gateway::receive::address::zap::{self, ZapSecret};
    let w = World::new(1_000);
    let sender = Keys::from_secret_hex(&"03".repeat(32)).unwrap_or_else(|e| panic!("{e:?}"));
    let tags = vec![
        vec!["p".to_string(), "ab".repeat(32)],
        vec![
            "relays".to_string(),
            "wss://relay.example.com".to_string(),
            "wss://nos.example.org".to_string(),
        ],
    ];
    let raw = Event::signed(&sender, 1_700_000_000, 9734, tags, String::new(), &[2; 32])
        .to_json()
        .to_string();
    let secret = ZapSecret::parse(&"07".repeat(32)).unwrap_or_else(|e| panic!("{e}"));
    let published: Rc<RefCell<Vec<(String, String)>>> = Rc::default();
    for relay in ["wss://relay.example.com", "wss://nos.example.org"] {
        let p = published.clone();
        let fails = Rc::new(Cell::new(relay.contains("nos") as u32));
        w.rt.on(
            relay,
            vec![Reply::Func(
                Rc::new(move |req: &HttpRequest, _| {
                    p.borrow_mut()
                        .push((req.url.clone(), req.body.clone().unwrap_or_default()));
                    // The second relay refuses once, then takes it.
                    if fails.get() > 0 {
                        fails.set(fails.get() - 1);
                        return HttpResponse::json(502, &json!({"accepted": false}));
                    }
                    HttpResponse::json(200, &json!({"accepted": true}))
                }),
                10,
            )],
        );
    }
    let mut inv = invoice(1, T0, 10 * MIN);
    inv.context.zap_request = Some(raw.clone());
    w.register(&inv);
    w.script.paid_at.borrow_mut().push((hash(1), T0 + 7_000));
    let open = w.breaker_open.clone();
    let closed = move |_: BackendKind| !open.get();
    let d = Delivering {
        zap_secret: Some(&secret),
        ..w.delivering()
    };
    let shard = Shard {
        looking: Looking {
            backends: &w.backends,
            breaker_closed: &closed,
            timeout_ms: 5_000,
        },
        delivering: d,
        budget: &w.budget,
    };
    for _ in 0..6 {
        let next = w.store.next_wake().unwrap_or_else(|e| panic!("{e}"));
        if let Some(t) = next {
            let now = w.rt.now_ms();
            if t > now {
                w.rt.advance(t - now);
            }
        }
        block_on(serve::wake(&w.rt, &w.store, &shard)).unwrap_or_else(|e| panic!("{e}"));
    }
    let sent = published.borrow();
    let receipts: Vec<Event> = sent
        .iter()
        .filter_map(|(_, b)| Event::from_json(&serde_json::from_str(b).ok()?))
        .collect();
    assert_eq!(sent.len(), 3, "one per relay, and one retry: {sent:?}");
    assert!(
        receipts.windows(2).all(|p| p[0] == p[1]),
        "the same event every time"
    );
    let r = &receipts[0];
    assert!(r.is_authentic());
    assert_eq!(r.kind, zap::KIND_ZAP_RECEIPT);
    assert_eq!(r.tag("description"), Some(raw.as_str()));
    assert_eq!(r.tag("preimage"), Some("5e".repeat(32).as_str()));
    // Dated at the settlement: LNbits gives no time, so the lookup that saw it.
    assert!((T0 + 7_000) / 1000 <= r.created_at && r.created_at <= (T0 + 15_000) / 1000);
    // The history and the webhook see invoice.paid only.
    let history = w
        .store
        .events_after(0, 100)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].kind, EventKind::Paid);
    assert_eq!(w.received_ids().len(), 1);
}
