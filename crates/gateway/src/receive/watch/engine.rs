//! The watch's work, over a [`WatchStore`] and a runtime: take invoices in,
//! look the due ones up at their issuing backend (within the lookup budget,
//! only while its breaker is closed, never feeding the breaker), announce
//! what changed, and deliver the events.

use crate::join::join_all;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::payout::safe_url::UrlPolicy;
use crate::receive::address::zap::{self, ZapSecret};
use crate::receive::idempotency::KeyRecord;
use crate::receive::watch::budget::LookupBudget;
use crate::receive::watch::events::{self, InvoiceEvent};
use crate::receive::watch::record::{EventKind, Looked, WatchState, WatchedInvoice};
use crate::webhooks::delivery::retry_at;
use crate::webhooks::{self, signed_request, Delivery, WebhookSecret};
use backends::exchange;
use backends::http::{HttpRequest, HttpResponse, Method, Runtime, TransportError};
use backends::{BackendConfig, BackendError, BackendKind};

/// Lookups one wake-up makes at most (the rest wait for the next one).
pub const MAX_LOOKUPS_PER_WAKE: u32 = 60;
/// Lookups in flight at once within a wake-up.
pub const LOOKUPS_AT_ONCE: usize = 6;
/// Deliveries one wake-up makes at most.
pub const MAX_DELIVERIES_PER_WAKE: u32 = 20;
/// One relay's publish of a zap receipt, connection to `OK`.
pub const RELAY_TIMEOUT_MS: u64 = 5_000;
/// A backend whose breaker is open is asked again after this.
pub const BREAKER_RECHECK_MS: u64 = 30_000;

#[derive(Debug, Clone, PartialEq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invoice watch: {}", self.0)
    }
}

/// One event's delivery to one URL that is due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingDelivery {
    pub event_seq: u64,
    pub event_id: String,
    pub url: String,
    /// Failed attempts so far.
    pub attempts: u32,
    pub body: Value,
}

/// What the watch shows in health.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WatchStats {
    /// Invoices still looked up.
    pub watched: u64,
    pub paid_last_hour: u64,
    /// Deliveries not yet made (and not given up).
    pub events_waiting: u64,
    pub oldest_undelivered_at_ms: Option<u64>,
}

impl WatchStats {
    /// The figures of several shards as one.
    pub fn sum(all: &[WatchStats]) -> WatchStats {
        WatchStats {
            watched: all.iter().map(|s| s.watched).sum(),
            paid_last_hour: all.iter().map(|s| s.paid_last_hour).sum(),
            events_waiting: all.iter().map(|s| s.events_waiting).sum(),
            oldest_undelivered_at_ms: all.iter().filter_map(|s| s.oldest_undelivered_at_ms).min(),
        }
    }

    /// As health shows it: times as ISO 8601.
    pub fn view(&self) -> Value {
        serde_json::json!({
            "watched": self.watched,
            "paid_last_hour": self.paid_last_hour,
            "events_waiting": self.events_waiting,
            "oldest_undelivered_at": self.oldest_undelivered_at_ms.map(crate::time::iso8601_ms),
        })
    }
}

/// A watch shard's storage. Each call is atomic; no call awaits.
pub trait WatchStore {
    fn get(&self, hash: &str) -> Result<Option<WatchedInvoice>, StoreError>;
    fn put(&self, inv: &WatchedInvoice) -> Result<(), StoreError>;
    /// Open invoices whose lookup is due at `now_ms`: the youngest and the
    /// longest overdue alternately (fresh invoices first, none starved), at
    /// most `limit`.
    fn due(&self, now_ms: u64, limit: u32) -> Result<Vec<WatchedInvoice>, StoreError>;
    /// Commits `e` (numbered next; an id already there is kept, not added
    /// again) with a delivery due now to each of `targets`; its seq.
    fn append_event(
        &self,
        e: &InvoiceEvent,
        targets: &[String],
        now_ms: u64,
    ) -> Result<u64, StoreError>;
    /// Stops the deliveries of `hash`'s `kind` event not yet made.
    fn supersede(&self, hash: &str, kind: EventKind) -> Result<(), StoreError>;
    fn due_deliveries(&self, now_ms: u64, limit: u32) -> Result<Vec<PendingDelivery>, StoreError>;
    /// Whether a delivery is still to be made (not superseded or made meanwhile).
    fn delivery_pending(&self, d: &PendingDelivery) -> Result<bool, StoreError>;
    /// Records an attempt and the next one (`None`: no more). A delivery
    /// superseded while its attempt ran stays stopped.
    fn record_delivery(
        &self,
        d: &PendingDelivery,
        attempt: &Delivery,
        next_at_ms: Option<u64>,
    ) -> Result<(), StoreError>;
    /// Events after `seq`, in seq order.
    fn events_after(&self, seq: u64, limit: u32) -> Result<Vec<InvoiceEvent>, StoreError>;
    /// Makes every delivery of `hash`'s events due now with a fresh
    /// schedule; how many.
    fn rearm(&self, hash: &str, now_ms: u64) -> Result<u32, StoreError>;
    /// The earliest lookup or delivery due.
    fn next_wake(&self) -> Result<Option<u64>, StoreError>;
    fn stats(&self, now_ms: u64) -> Result<WatchStats, StoreError>;
    fn key(&self, key: &str) -> Result<Option<KeyRecord>, StoreError>;
    fn put_key(&self, key: &str, record: &KeyRecord) -> Result<(), StoreError>;
    fn drop_key(&self, key: &str) -> Result<(), StoreError>;
    /// Forgets what is over and older than [`RETAIN_MS`]: ended invoices,
    /// events (the history keeps this long), finished deliveries, and keys
    /// older than their keeping time.
    fn prune(&self, now_ms: u64) -> Result<(), StoreError>;
}

/// How long finished invoices, events and deliveries are kept.
pub const RETAIN_MS: u64 = 35 * 86_400_000;

/// `young` and `overdue` taken in turn, each invoice once, at most `limit`:
/// fresh invoices get their early lookups, and a flood of them cannot
/// starve older invoices (after-expiry lookups included).
pub fn alternate(
    young: Vec<WatchedInvoice>,
    overdue: Vec<WatchedInvoice>,
    limit: u32,
) -> Vec<WatchedInvoice> {
    let mut out: Vec<WatchedInvoice> = Vec::new();
    let mut a = young.into_iter();
    let mut b = overdue.into_iter();
    loop {
        let (x, y) = (a.next(), b.next());
        if x.is_none() && y.is_none() {
            break;
        }
        for inv in [x, y].into_iter().flatten() {
            if out.len() < limit as usize && !out.iter().any(|o| o.payment_hash == inv.payment_hash)
            {
                out.push(inv);
            }
        }
    }
    out
}

/// What deliveries need.
pub struct Delivering<'a> {
    pub secrets: Option<&'a [WebhookSecret]>,
    /// `INVOICE_WEBHOOK_URL`: every invoice's events.
    pub operator_url: Option<&'a str>,
    pub url_policy: &'a UrlPolicy,
    /// `NOSTR_ZAP_SECRET`: signs the zap receipts of paid zap invoices.
    pub zap_secret: Option<&'a ZapSecret>,
}

/// Takes an invoice in. An invoice already watched keeps its state.
pub fn register<S: WatchStore>(store: &S, inv: &WatchedInvoice) -> Result<(), StoreError> {
    if store.get(&inv.payment_hash)?.is_none() {
        store.put(inv)?;
    }
    Ok(())
}

/// Commits the events `kinds` of `inv`. A paid invoice's undelivered
/// "expired" is superseded: the receiver gets the paid one.
fn announce<S: WatchStore>(
    store: &S,
    inv: &WatchedInvoice,
    kinds: &[EventKind],
    d: &Delivering,
    now_ms: u64,
) -> Result<(), StoreError> {
    for kind in kinds {
        if *kind == EventKind::Paid {
            store.supersede(&inv.payment_hash, EventKind::Expired)?;
        }
        let e = events::new_event(inv, *kind, now_ms);
        store.append_event(&e, &events::targets(inv, d.operator_url), now_ms)?;
        if *kind == EventKind::Paid {
            announce_zap(store, inv, d, now_ms)?;
        }
    }
    Ok(())
}

/// A paid zap invoice: its receipt, committed with a delivery to each of
/// the zap request's relays.
fn announce_zap<S: WatchStore>(
    store: &S,
    inv: &WatchedInvoice,
    d: &Delivering,
    now_ms: u64,
) -> Result<(), StoreError> {
    let (Some(secret), Some(raw)) = (d.zap_secret, &inv.context.zap_request) else {
        return Ok(());
    };
    let WatchState::Paid {
        settled_at_ms,
        preimage,
    } = &inv.state
    else {
        return Ok(());
    };
    let Some(keys) = secret.keys() else {
        return Ok(());
    };
    let Some(receipt) = zap::receipt(
        &keys,
        raw,
        &inv.payment_request,
        preimage.as_deref(),
        settled_at_ms / 1000,
    ) else {
        return Ok(());
    };
    let e = InvoiceEvent {
        seq: 0,
        id: events::event_id(&inv.payment_hash, EventKind::ZapReceipt),
        kind: EventKind::ZapReceipt,
        payment_hash: inv.payment_hash.clone(),
        at_ms: *settled_at_ms,
        body: receipt.to_json(),
    };
    store.append_event(&e, &zap::relays_of(raw), now_ms)?;
    Ok(())
}

/// Whether a delivery goes to a Nostr relay (a zap receipt) rather than a
/// webhook receiver.
fn is_relay(url: &str) -> bool {
    url.starts_with("wss://") || url.starts_with("ws://")
}

/// Publishes a zap receipt to one relay: the runtime carries a `ws(s)://`
/// request over a WebSocket (`["EVENT", …]`, answered 200 on the relay's
/// `OK true`).
async fn publish<R: Runtime>(
    rt: &R,
    relay: &str,
    body: &Value,
    policy: &UrlPolicy,
) -> Result<HttpResponse, TransportError> {
    zap::check_relay(relay, policy)
        .map_err(|e| TransportError::Network(format!("URL refused: {e}")))?;
    let req = HttpRequest {
        method: Method::Post,
        url: relay.to_string(),
        headers: Vec::new(),
        body: Some(body.to_string()),
    };
    rt.send(req, RELAY_TIMEOUT_MS).await
}

/// A paid state seen outside the watch (by `check-invoice`, from the
/// issuing backend): the watch takes it and announces it.
pub fn seen_paid<S: WatchStore>(
    store: &S,
    hash: &str,
    settled_at_ms: u64,
    d: &Delivering,
    now_ms: u64,
) -> Result<Option<WatchedInvoice>, StoreError> {
    let Some(mut inv) = store.get(hash)? else {
        return Ok(None);
    };
    let kinds = inv.paid(settled_at_ms, None);
    if !kinds.is_empty() {
        store.put(&inv)?;
        announce(store, &inv, &kinds, d, now_ms)?;
    }
    Ok(Some(inv))
}

async fn look<R: Runtime>(rt: &R, b: &BackendConfig, hash: &str, timeout_ms: u64) -> Looked {
    let Some(req) = b.adapter().check_request(b, hash) else {
        return Looked::Failed(format!("{} cannot look invoices up", b.name()));
    };
    match exchange::send(rt, req, timeout_ms).await {
        Ok(resp) => match b.adapter().parse_check(&resp) {
            Ok(state) => Looked::Answer(state, b.adapter().check_preimage(&resp)),
            Err(e) => Looked::Failed(e.to_string()),
        },
        Err(e) => Looked::Failed(BackendError::from(e).to_string()),
    }
}

/// Where one wake-up's lookups stand.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LookupPass {
    pub looked: u32,
    /// Due but put off (budget or breaker) until this.
    pub deferred_until_ms: Option<u64>,
}

/// What a lookup wake-up may use.
pub struct Looking<'a> {
    /// The receive chain's backends: an invoice is looked up at the one it
    /// was issued by, if it is still configured.
    pub backends: &'a [BackendConfig],
    /// Whether the breaker of a backend kind lets a call through (closed, or
    /// open past its cooldown).
    pub breaker_closed: &'a dyn Fn(BackendKind) -> bool,
    pub timeout_ms: u64,
}

fn defer(pass: &mut LookupPass, until_ms: u64) {
    pass.deferred_until_ms = Some(pass.deferred_until_ms.map_or(until_ms, |t| t.min(until_ms)));
}

/// One due invoice and the backend to ask (`None`: no longer configured).
pub type Work<'a> = Vec<(String, Option<&'a BackendConfig>)>;

/// Picks the due invoices to look up now (youngest first), within the
/// budget and only where the breaker is closed; the rest are put off.
pub fn pick_due<'a, S: WatchStore>(
    store: &S,
    l: &Looking<'a>,
    budget: &mut LookupBudget,
    now_ms: u64,
) -> Result<(Work<'a>, LookupPass), StoreError> {
    let mut pass = LookupPass::default();
    let mut work: Work<'a> = Vec::new();
    for inv in store.due(now_ms, MAX_LOOKUPS_PER_WAKE)? {
        let backend = l.backends.iter().find(|b| inv.backend.matches(b));
        if let Some(b) = backend {
            if !(l.breaker_closed)(b.kind) {
                defer(&mut pass, now_ms + BREAKER_RECHECK_MS);
                continue;
            }
            if !budget.take(&inv.backend.key(), now_ms) {
                defer(&mut pass, budget.next_window_ms());
                continue;
            }
        }
        work.push((inv.payment_hash, backend));
    }
    Ok((work, pass))
}

/// Looks the picked invoices up and announces what changed; how many.
pub async fn look_up<R: Runtime, S: WatchStore>(
    rt: &R,
    store: &S,
    work: &Work<'_>,
    timeout_ms: u64,
    d: &Delivering<'_>,
) -> Result<u32, StoreError> {
    let mut looked = 0;
    for chunk in work.chunks(LOOKUPS_AT_ONCE) {
        let answers = join_all(chunk.iter().map(|(hash, b)| async move {
            match b {
                Some(b) => look(rt, b, hash, timeout_ms).await,
                None => Looked::Failed("its backend is no longer configured".into()),
            }
        }))
        .await;
        for ((hash, _), answer) in chunk.iter().zip(answers) {
            // Read again: a check-invoice may have handed over "paid" meanwhile.
            let Some(mut inv) = store.get(hash)? else {
                continue;
            };
            let at = rt.now_ms();
            let kinds = inv.apply_lookup(answer, at);
            store.put(&inv)?;
            announce(store, &inv, &kinds, d, at)?;
            looked += 1;
        }
    }
    Ok(looked)
}

/// A caller asks about `hash` (check-invoice, the checkout page, LUD-21
/// verify): looks it up at its issuing backend first when its last lookup
/// is older than the demand gap, the breaker is closed and the budget has
/// one left; else the state as the watch holds it. The lookup is claimed
/// before it is made, so callers polling at once share one.
pub async fn on_demand<R: Runtime, S: WatchStore>(
    rt: &R,
    store: &S,
    l: &Looking<'_>,
    budget: &std::cell::RefCell<LookupBudget>,
    d: &Delivering<'_>,
    hash: &str,
) -> Result<Option<WatchedInvoice>, StoreError> {
    let now = rt.now_ms();
    let Some(mut inv) = store.get(hash)? else {
        return Ok(None);
    };
    if !inv.wants_demand_lookup(now) {
        return Ok(Some(inv));
    }
    let Some(b) = l.backends.iter().find(|b| inv.backend.matches(b)) else {
        return Ok(Some(inv));
    };
    if !(l.breaker_closed)(b.kind) || !budget.borrow_mut().take_on_demand(&inv.backend.key(), now) {
        return Ok(Some(inv));
    }
    inv.last_lookup_at_ms = Some(now);
    store.put(&inv)?;
    look_up(
        rt,
        store,
        &vec![(hash.to_string(), Some(b))],
        l.timeout_ms,
        d,
    )
    .await?;
    store.get(hash)
}

/// Makes the deliveries that are due; how many were made.
pub async fn deliver_due<R: Runtime, S: WatchStore>(
    rt: &R,
    store: &S,
    d: &Delivering<'_>,
) -> Result<u32, StoreError> {
    let due = store.due_deliveries(rt.now_ms(), MAX_DELIVERIES_PER_WAKE)?;
    let mut relays = Vec::new();
    let mut hooks = Vec::new();
    for p in due {
        // A paid event may have superseded this one during an earlier send.
        if !store.delivery_pending(&p)? {
            continue;
        }
        if is_relay(&p.url) {
            relays.push(p);
        } else {
            hooks.push(p);
        }
    }
    // Zap receipts to all their relays at once: relays that never answer
    // cost one timeout per wake-up, not one each before the webhooks.
    let published = join_all(
        relays
            .iter()
            .map(|p| publish(rt, &p.url, &p.body, d.url_policy)),
    )
    .await;
    for (p, result) in relays.iter().zip(published) {
        record(rt, store, p, &result, true)?;
    }
    for p in &hooks {
        let now = rt.now_ms();
        let req = d
            .secrets
            .filter(|s| !s.is_empty())
            .map(|s| signed_request(&p.url, &p.event_id, p.body.to_string(), s, now));
        let result = webhooks::attempt(rt, req, d.url_policy).await;
        record(rt, store, p, &result, false)?;
    }
    Ok((relays.len() + hooks.len()) as u32)
}

/// Records one delivery attempt and when the next one is due: webhooks on
/// the whole retry schedule, relays at most [`zap::MAX_PUBLISH_ATTEMPTS`] times.
fn record<R: Runtime, S: WatchStore>(
    rt: &R,
    store: &S,
    p: &PendingDelivery,
    result: &Result<HttpResponse, TransportError>,
    relay: bool,
) -> Result<(), StoreError> {
    let done = rt.now_ms();
    let attempt = Delivery::of(result, done);
    let given_up = relay && p.attempts + 1 >= zap::MAX_PUBLISH_ATTEMPTS;
    let next = if attempt.delivered() || given_up {
        None
    } else {
        retry_at(p.attempts + 1, done)
    };
    store.record_delivery(p, &attempt, next)
}

/// When the shard must wake next: the store's earliest due work, but not
/// before the end of a deferral of work that is already due.
pub fn next_wake(store_next: Option<u64>, pass: &LookupPass, now_ms: u64) -> Option<u64> {
    match (store_next, pass.deferred_until_ms) {
        (Some(t), Some(d)) if t <= now_ms => Some(d),
        (Some(t), Some(d)) => Some(t.min(d)),
        (Some(t), None) => Some(t.max(now_ms + 1_000)),
        (None, d) => d,
    }
}
