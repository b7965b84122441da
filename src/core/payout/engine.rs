//! Drives payouts through the state machine against a store and a backend.
//! The store is the Durable Object's SQLite in production and a map in the
//! host simulations. Every write after an `await` is a compare-and-swap on
//! the payout's version, so interleaved wake-ups (cron, alarm, requests)
//! can never both act on the same state; and `Sending` is written before a
//! pay request leaves, so a hash is never sent twice.

use std::fmt;

use crate::core::bolt11::{self, Expectation};
use crate::core::http::Runtime;
use crate::core::payout::backend;
use crate::core::payout::config::PayoutConfig;
use crate::core::payout::destination::{self, Destination};
use crate::core::payout::lnurl::{self, ResolveError, ResolveParams};
use crate::core::payout::machine::{self, Action};
use crate::core::payout::model::{Payout, PayoutState, Webhook};
use crate::core::payout::request::{payout_id, PayoutRequest};
use crate::core::payout::webhook;
use crate::core::time::iso8601_ms;

#[derive(Debug, Clone, PartialEq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payout store: {}", self.0)
    }
}

/// Durable payout storage. Calls are synchronous: in a Durable Object, code
/// between two `await`s runs without interleaving, so a read followed by a
/// write here is atomic.
pub trait PayoutStore {
    fn get(&self, id: &str) -> Result<Option<Payout>, StoreError>;
    fn by_idempotency_key(&self, key: &str) -> Result<Option<Payout>, StoreError>;
    /// The payout (if any) whose current invoice has this payment hash.
    fn by_payment_hash(&self, hash: &str) -> Result<Option<Payout>, StoreError>;
    /// Inserts unless a payout with this id exists; true if inserted.
    fn insert(&self, p: &Payout, wake_at_ms: Option<u64>, day: &str) -> Result<bool, StoreError>;
    /// Writes `p` only if the stored version is `expected_version`. The
    /// payout's budget day follows `p.age_from_ms` (creation, or admin retry).
    fn update(
        &self,
        p: &Payout,
        expected_version: u64,
        wake_at_ms: Option<u64>,
    ) -> Result<bool, StoreError>;
    /// Ids whose wake time has come, oldest first.
    fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError>;
    fn next_wake(&self) -> Result<Option<u64>, StoreError>;
    /// Sats of payouts created on `day` (UTC, YYYY-MM-DD) that did not end failed.
    fn reserved_on(&self, day: &str) -> Result<u64, StoreError>;
    fn try_lease(&self, holder: &str, now_ms: u64, ttl_ms: u64) -> Result<bool, StoreError>;
    fn release_lease(&self, holder: &str) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, PartialEq)]
pub enum PayoutError {
    IdempotencyConflict,
    /// Another payout already pays this invoice (its id).
    InvoiceAlreadyUsed(String),
    LimitExceeded(String),
    InvalidDestination(String),
    DestinationNotAllowed(String),
    InvalidInvoice(String),
    Lnurl(ResolveError),
    WebhookNotAllowed(String),
    WebhookSecretMissing,
    NotFound,
    RetryNotAllowed(String),
    Store(StoreError),
}

impl From<StoreError> for PayoutError {
    fn from(e: StoreError) -> Self {
        PayoutError::Store(e)
    }
}

pub const LEASE_TTL_MS: u64 = 5 * 60_000;
pub const DRAIN_BATCH: usize = 10;

pub fn day_of(ms: u64) -> String {
    iso8601_ms(ms)[..10].to_string()
}

/// Saves with a version check; on success `p.version` is the new version.
fn save<S: PayoutStore>(store: &S, p: &mut Payout, cfg: &PayoutConfig) -> Result<bool, StoreError> {
    let expected = p.version;
    p.version += 1;
    let ok = store.update(p, expected, p.wake_at_ms(cfg.policy.sending_timeout_ms))?;
    if !ok {
        p.version = expected;
    }
    Ok(ok)
}

pub enum Created {
    New(Payout),
    Replayed(Payout),
}

fn replay(existing: Payout, fingerprint: &str) -> Result<Created, PayoutError> {
    if existing.fingerprint == fingerprint {
        Ok(Created::Replayed(existing))
    } else {
        Err(PayoutError::IdempotencyConflict)
    }
}

fn check_budget<S: PayoutStore>(
    store: &S,
    cfg: &PayoutConfig,
    amount_sat: u64,
    now_ms: u64,
) -> Result<(), PayoutError> {
    if amount_sat > cfg.max_sat {
        return Err(PayoutError::LimitExceeded(format!(
            "amount is above the per-payout maximum of {} sats",
            cfg.max_sat
        )));
    }
    let used = store.reserved_on(&day_of(now_ms))?;
    if used.saturating_add(amount_sat) > cfg.daily_limit_sat {
        return Err(PayoutError::LimitExceeded(format!(
            "the daily payout limit of {} sats would be exceeded ({} sats already used today)",
            cfg.daily_limit_sat, used
        )));
    }
    Ok(())
}

/// Accepts a payout: validates, resolves the destination once, stores it
/// (before anything is paid), then tries to pay it at once.
pub async fn create<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    req: PayoutRequest,
    idempotency_key: &str,
) -> Result<Created, PayoutError> {
    let fingerprint = req.fingerprint();
    if let Some(existing) = store.by_idempotency_key(idempotency_key)? {
        return replay(existing, &fingerprint);
    }
    let dest = destination::parse(&req.destination).map_err(PayoutError::InvalidDestination)?;
    if let Some(url) = &req.webhook_url {
        cfg.url_policy
            .check(url)
            .map_err(PayoutError::WebhookNotAllowed)?;
        if cfg.webhook_secret.is_none() {
            return Err(PayoutError::WebhookSecretMissing);
        }
    }
    if let Some(a) = req.amount_sat {
        check_budget(store, cfg, a, rt.now_ms())?;
    }

    // Resolve once. Nothing is stored yet, so a failure here leaves nothing behind.
    let (invoice, payment_hash, expires_at, amount_sat, lnurl_url) = match &dest {
        Destination::Bolt11(s) => {
            let inv = bolt11::parse(s).map_err(|e| PayoutError::InvalidInvoice(e.to_string()))?;
            let amount_msat = match (inv.amount_msat, req.amount_sat) {
                (None, _) => {
                    return Err(PayoutError::InvalidInvoice(
                        "invoices without an amount are not supported".into(),
                    ))
                }
                (Some(m), Some(a)) if m != a.saturating_mul(1000) => {
                    return Err(PayoutError::InvalidInvoice(format!(
                        "the invoice is for {m} msat, not {a} sat"
                    )))
                }
                (Some(m), _) if m % 1000 != 0 => {
                    return Err(PayoutError::InvalidInvoice(
                        "invoice amount is not a whole number of sats".into(),
                    ))
                }
                (Some(m), _) => m,
            };
            let want = Expectation {
                network: cfg.network,
                amount_msat,
                payment_hash: None,
                now_secs: rt.now_ms() / 1000,
            };
            let inv =
                bolt11::verify(s, &want).map_err(|e| PayoutError::InvalidInvoice(e.to_string()))?;
            (
                s.clone(),
                inv.payment_hash.clone(),
                inv.expires_at_secs(),
                amount_msat / 1000,
                None,
            )
        }
        Destination::Lnurl { url, .. } => {
            let url = &cfg.url_policy.local_scheme(url);
            let amount_sat = req.amount_sat.ok_or_else(|| {
                PayoutError::InvalidDestination(
                    "amount_sat is required for Lightning Addresses and LNURLs".into(),
                )
            })?;
            cfg.url_policy
                .check(url)
                .map_err(PayoutError::DestinationNotAllowed)?;
            let params = ResolveParams {
                amount_msat: amount_sat.saturating_mul(1000),
                comment: req.comment.as_deref(),
                network: cfg.network,
                policy: &cfg.url_policy,
                timeout_ms: cfg.lnurl_timeout_ms,
            };
            let r = lnurl::resolve(rt, url, &params)
                .await
                .map_err(PayoutError::Lnurl)?;
            (
                r.invoice,
                r.payment_hash,
                r.expires_at_secs,
                amount_sat,
                Some(url.clone()),
            )
        }
    };

    let now = rt.now_ms();
    // The resolution awaited: another request with this key may have won meanwhile.
    if let Some(existing) = store.by_idempotency_key(idempotency_key)? {
        return replay(existing, &fingerprint);
    }
    check_budget(store, cfg, amount_sat, now)?;
    if let Some(other) = store.by_payment_hash(&payment_hash)? {
        if !matches!(other.state, PayoutState::Failed { .. }) {
            return Err(PayoutError::InvoiceAlreadyUsed(other.id));
        }
    }
    let id = payout_id(idempotency_key);
    let mut p = Payout {
        id: id.clone(),
        idempotency_key: idempotency_key.to_string(),
        fingerprint: fingerprint.clone(),
        created_at_ms: now,
        age_from_ms: now,
        destination: req.destination.clone(),
        destination_kind: dest.kind(),
        lnurl: lnurl_url,
        amount_sat,
        comment: req.comment.clone(),
        external_id: req.external_id.clone(),
        provider: cfg.provider.kind,
        invoice,
        payment_hash,
        invoice_expires_at_secs: expires_at,
        previous_hashes: Vec::new(),
        state: PayoutState::Queued {
            next_at_ms: now,
            verify_first: false,
        },
        send_attempts: 0,
        hash_spent: false,
        last_sent_at_ms: None,
        lookups: 0,
        last_error: None,
        fee_msat: None,
        preimage: None,
        webhook: req.webhook_url.clone().map(|url| Webhook {
            url,
            event_id: None,
            next_at_ms: None,
            delivered_at_ms: None,
            attempts: Vec::new(),
        }),
        log: Vec::new(),
        version: 1,
    };
    p.note(
        now,
        format!(
            "accepted; invoice {} for {} sat",
            p.payment_hash, p.amount_sat
        ),
    );
    if !store.insert(
        &p,
        p.wake_at_ms(cfg.policy.sending_timeout_ms),
        &day_of(now),
    )? {
        let existing = store.get(&id)?.ok_or(PayoutError::NotFound)?;
        return replay(existing, &fingerprint);
    }
    // Webhooks go out from the queue's alarm: the caller does not wait on its own endpoint.
    advance_state(rt, store, cfg, &id).await?;
    Ok(Created::New(store.get(&id)?.ok_or(PayoutError::NotFound)?))
}

/// Moves one payout as far as it can go now, then delivers its webhook if
/// one is due. Safe to call at any time from any wake-up: it acts only on
/// what is due, and only through version-checked writes.
pub async fn advance<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    id: &str,
) -> Result<(), StoreError> {
    advance_state(rt, store, cfg, id).await?;
    deliver_webhook(rt, store, cfg, id).await
}

/// Moves one payout through the state machine as far as it can go now.
pub async fn advance_state<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    id: &str,
) -> Result<(), StoreError> {
    for _ in 0..8 {
        let Some(mut p) = store.get(id)? else {
            return Ok(());
        };
        let now = rt.now_ms();
        match machine::next_action(&p, now, &cfg.policy) {
            Action::Nothing => return Ok(()),
            Action::Send => {
                if machine::begin_send(&mut p, now).is_err() || !save(store, &mut p, cfg)? {
                    continue;
                }
                // `Sending` is stored: from here on, this hash is never sent again without a lookup.
                let outcome = backend::pay(rt, &cfg.provider, &p.invoice, p.amount_sat).await;
                apply_with_retry(store, cfg, id, &p.payment_hash, rt.now_ms(), |cur| {
                    machine::apply_pay(
                        cur,
                        outcome.clone(),
                        rt.now_ms(),
                        &cfg.policy,
                        rt.random_u64(),
                    )
                    .is_ok()
                })?;
            }
            Action::Lookup => {
                let seen = p.version;
                let outcome = backend::lookup(rt, &cfg.provider, &p.payment_hash).await;
                let Some(mut cur) = store.get(id)? else {
                    return Ok(());
                };
                if cur.version != seen {
                    continue; // someone else moved it meanwhile
                }
                if machine::apply_lookup(
                    &mut cur,
                    outcome,
                    rt.now_ms(),
                    &cfg.policy,
                    rt.random_u64(),
                )
                .is_ok()
                {
                    webhook::arm(&mut cur, rt.now_ms());
                    save(store, &mut cur, cfg)?;
                }
            }
            Action::NewInvoice => {
                let seen = p.version;
                let Some(url) = p.lnurl.clone() else { continue };
                let params = ResolveParams {
                    amount_msat: p.amount_sat.saturating_mul(1000),
                    comment: p.comment.as_deref(),
                    network: cfg.network,
                    policy: &cfg.url_policy,
                    timeout_ms: cfg.lnurl_timeout_ms,
                };
                let result = lnurl::resolve(rt, &url, &params).await;
                let Some(mut cur) = store.get(id)? else {
                    return Ok(());
                };
                if cur.version != seen {
                    continue;
                }
                let now = rt.now_ms();
                // A server that hands back an invoice already tried gives nothing new.
                let result = result.and_then(|r| {
                    if r.payment_hash == cur.payment_hash
                        || cur.previous_hashes.contains(&r.payment_hash)
                    {
                        Err(ResolveError::Protocol(
                            "the recipient returned an invoice that was already tried".into(),
                        ))
                    } else {
                        Ok(r)
                    }
                });
                match result {
                    Ok(r) => {
                        if machine::replace_invoice(
                            &mut cur,
                            r.invoice,
                            r.payment_hash,
                            r.expires_at_secs,
                            now,
                        )
                        .is_err()
                        {
                            continue;
                        }
                    }
                    Err(e) => {
                        let why = format!("could not fetch a new invoice: {}", e.message());
                        if machine::refresh_failed(&mut cur, why, now, &cfg.policy, rt.random_u64())
                            .is_err()
                        {
                            continue;
                        }
                    }
                }
                save(store, &mut cur, cfg)?;
            }
            Action::GiveUp(reason) => {
                if machine::give_up(&mut p, reason, now).is_ok() {
                    webhook::arm(&mut p, now);
                    save(store, &mut p, cfg)?;
                }
            }
            Action::RecoverSending => {
                if machine::recover_sending(&mut p, now).is_ok() {
                    save(store, &mut p, cfg)?;
                }
            }
        }
    }
    Ok(())
}

/// Applies a pay outcome to the freshest copy, retrying on version conflicts.
fn apply_with_retry<S: PayoutStore>(
    store: &S,
    cfg: &PayoutConfig,
    id: &str,
    hash: &str,
    now_ms: u64,
    apply: impl Fn(&mut Payout) -> bool,
) -> Result<(), StoreError> {
    for _ in 0..3 {
        let Some(mut cur) = store.get(id)? else {
            return Ok(());
        };
        if cur.payment_hash != hash || !apply(&mut cur) {
            return Ok(()); // already resolved by another path
        }
        webhook::arm(&mut cur, now_ms);
        if save(store, &mut cur, cfg)? {
            return Ok(());
        }
    }
    Ok(())
}

async fn deliver_webhook<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    id: &str,
) -> Result<(), StoreError> {
    let Some(p) = store.get(id)? else {
        return Ok(());
    };
    let due = p
        .webhook
        .as_ref()
        .and_then(|w| w.next_at_ms)
        .is_some_and(|t| t <= rt.now_ms());
    let (Some(secret), true) = (cfg.webhook_secret.as_deref(), due) else {
        return Ok(());
    };
    let Some(req) = webhook::request(&p, secret, rt.now_ms()) else {
        return Ok(());
    };
    let allowed = cfg.url_policy.check(&req.url);
    let result = match allowed {
        Ok(_) => rt.send(req, webhook::DELIVERY_TIMEOUT_MS).await,
        Err(e) => Err(crate::core::http::TransportError::Network(format!(
            "URL refused: {e}"
        ))),
    };
    let Some(mut cur) = store.get(id)? else {
        return Ok(());
    };
    if cur.version != p.version {
        return Ok(());
    }
    webhook::record(&mut cur, &result, rt.now_ms());
    save(store, &mut cur, cfg)?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub enum Drain {
    /// Another wake-up holds the lease.
    Busy,
    Done {
        processed: usize,
        next_wake_ms: Option<u64>,
    },
}

/// One pass over the due payouts, under a lease so overlapping wake-ups
/// (cron and alarm) do not work the queue at the same time.
pub async fn drain<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    holder: &str,
) -> Result<Drain, StoreError> {
    if !store.try_lease(holder, rt.now_ms(), LEASE_TTL_MS)? {
        return Ok(Drain::Busy);
    }
    let ids = store.due(rt.now_ms(), DRAIN_BATCH)?;
    let mut result = Ok(());
    for id in &ids {
        result = advance(rt, store, cfg, id).await;
        if result.is_err() {
            break;
        }
    }
    store.release_lease(holder)?;
    result?;
    Ok(Drain::Done {
        processed: ids.len(),
        next_wake_ms: store.next_wake()?,
    })
}

/// Admin retry of a dead-lettered payout. Its hash is confirmed unpaid
/// (a payout only fails with the backend's word); it is verified once more
/// before any send.
pub async fn retry<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    id: &str,
) -> Result<Payout, PayoutError> {
    let mut p = store.get(id)?.ok_or(PayoutError::NotFound)?;
    let now = rt.now_ms();
    if !matches!(p.state, PayoutState::Failed { .. }) {
        return Err(PayoutError::RetryNotAllowed(format!(
            "payout is {}, only failed payouts can be retried",
            p.status()
        )));
    }
    check_budget(store, cfg, p.amount_sat, now)?;
    machine::reopen(&mut p, now).map_err(|e| PayoutError::RetryNotAllowed(e.0.into()))?;
    if let Some(w) = p.webhook.as_mut() {
        w.event_id = None;
        w.next_at_ms = None;
    }
    if !save(store, &mut p, cfg)? {
        return Err(PayoutError::RetryNotAllowed(
            "the payout changed meanwhile; try again".into(),
        ));
    }
    advance_state(rt, store, cfg, id).await?;
    store.get(id)?.ok_or(PayoutError::NotFound)
}
