//! Drives payouts through the state machine against a store and a backend.
//! The store is the Durable Object's SQLite in production and a map in the
//! host simulations. Every write after an `await` is a compare-and-swap on
//! the payout's version, so interleaved wake-ups (cron, alarm, requests)
//! can never both act on the same state; and `Sending` is written before a
//! pay request leaves, so a hash is never sent twice.

use std::fmt;

use futures_util::StreamExt;

use crate::payout::config::PayoutConfig;
use crate::payout::destination::{self, Destination};
use crate::payout::lnurl::{self, ResolveError, ResolveParams};
use crate::payout::machine::{self, Action, LookupOutcome, PayOutcome};
use crate::payout::model::{BackendId, Payout, PayoutState, Webhook};
use crate::payout::request::{payout_id, PayoutRequest};
use crate::payout::webhook;
use crate::time::iso8601_ms;
use backends::bolt11::{self, Expectation};
use backends::http::Runtime;
use backends::payment;
use backends::{self, BackendConfig};

#[derive(Debug, Clone, PartialEq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payout store: {}", self.0)
    }
}

/// What the invoice claims object says about a payment hash.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The hash is this payout's. `at_ms`: when the claims object granted it, on
    /// its clock (0 with one shard); a release names it.
    Granted { at_ms: u64 },
    /// Another live payout (its id) holds the hash.
    HeldBy(String),
}

/// A claim is committed (the payout stored or switched to the hash) within
/// this long of the claim's request, or given up. The claims object never hands a
/// claim younger than [`CLAIM_SETTLE_MS`] to another payout, so a claim whose
/// payout is still on its way cannot be taken over.
pub const CLAIM_COMMIT_MS: u64 = 30_000;
/// See [`CLAIM_COMMIT_MS`]. Both are durations, each on one clock (the
/// shard's, the claims object's), so clock offsets between objects do not matter;
/// four times the commit bound leaves room for the claimant's own checks and
/// for clock-rate drift.
pub const CLAIM_SETTLE_MS: u64 = 4 * CLAIM_COMMIT_MS;

/// Durable payout storage. Calls are synchronous: in a Durable Object, code
/// between two `await`s runs without interleaving, so a read followed by a
/// write here is atomic.
#[allow(async_fn_in_trait)] // Wasm is single-threaded: no `Send` bound is wanted.
pub trait PayoutStore {
    /// Across queue shards, one invoice belongs to one live payout: claims
    /// `hash` for `payout_id` in the shared claims object before any payout of
    /// this store may send it. One shard has no claims object (its own table is
    /// the whole truth), hence the default.
    async fn claim_across_shards(
        &self,
        _hash: &str,
        _payout_id: &str,
    ) -> Result<Claim, StoreError> {
        Ok(Claim::Granted { at_ms: 0 })
    }

    /// Gives up `payout_id`'s cross-shard claim on `hash` granted at
    /// `at_ms` (its grant came too late, so nothing was stored). A claim
    /// the same payout made again since is kept.
    async fn release_across_shards(
        &self,
        _hash: &str,
        _payout_id: &str,
        _at_ms: u64,
    ) -> Result<(), StoreError> {
        Ok(())
    }

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
    /// Takes or renews the drain lease. A lease taken by another instance
    /// of the queue (one that has since died) is void at once.
    fn try_lease(&self, holder: &str, now_ms: u64, ttl_ms: u64) -> Result<bool, StoreError>;
    fn release_lease(&self, holder: &str) -> Result<(), StoreError>;
    /// Names the running instance of the queue. A `Sending` written by
    /// another instance was cut off when that instance died.
    fn instance(&self) -> String;
    /// Hashes this store saw paid through `backend`, with when, newest
    /// first: the latest few, and the earliest.
    fn known_paid(&self, backend: &BackendId) -> Result<Vec<(String, u64)>, StoreError>;
    /// Records that `backend` paid `hash` (its answer, with its proof).
    fn remember_paid(&self, backend: &BackendId, hash: &str, now_ms: u64)
        -> Result<(), StoreError>;
    /// Up to `limit` payouts waiting for their backend to be configured
    /// again (a row that cannot be read is left out).
    fn blocked(&self, limit: usize) -> Result<Vec<Payout>, StoreError>;
    /// Moves a payout's wake time without touching the payout (a payout
    /// whose processing errored is retried later, not in a hot loop).
    fn defer(&self, id: &str, wake_at_ms: u64) -> Result<(), StoreError>;
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
    CancelNotAllowed(String),
    /// The payout was created without a `webhook_url`.
    NoWebhook,
    /// The payout has no event to announce yet (it has not ended).
    NoWebhookEvent(String),
    Store(StoreError),
    /// The store failed after the payout was stored (it may have been sent).
    StoredThen(StoreError),
}

/// The API's answer to a payout error (the payout domain maps its own
/// errors, so `core::api::error` need not know the payout engine).
impl From<PayoutError> for crate::api::error::ApiError {
    fn from(e: PayoutError) -> Self {
        use crate::api::error::ApiError;
        use crate::payout::lnurl::ResolveError as R;
        use PayoutError as P;
        match e {
            P::IdempotencyConflict => ApiError::IdempotencyConflict,
            P::InvoiceAlreadyUsed(payout_id) => ApiError::InvoiceAlreadyUsed { payout_id },
            P::LimitExceeded(m) => ApiError::LimitExceeded(m),
            P::InvalidDestination(m) => ApiError::invalid_field("destination", m),
            P::DestinationNotAllowed(m) | P::Lnurl(R::Refused(m)) => {
                ApiError::DestinationNotAllowed(m)
            }
            P::InvalidInvoice(m) => ApiError::InvalidInvoice(m),
            P::Lnurl(R::Protocol(m)) => ApiError::LnurlError(m),
            P::Lnurl(R::Unreachable(m)) => ApiError::LnurlUnreachable(m),
            P::WebhookNotAllowed(m) => ApiError::invalid_field("webhook_url", m),
            P::WebhookSecretMissing => ApiError::Configuration {
                variable: "WEBHOOK_SECRET".into(),
                message: "is required to send webhooks".into(),
            },
            P::NotFound => ApiError::PayoutNotFound,
            P::RetryNotAllowed(m) => ApiError::RetryNotAllowed(m),
            P::CancelNotAllowed(m) => ApiError::CancelNotAllowed(m),
            P::NoWebhook => ApiError::NoWebhook,
            P::NoWebhookEvent(m) => ApiError::NoWebhookEvent(m),
            P::Store(e) => ApiError::StorageUnavailable(e.to_string()),
            P::StoredThen(e) => ApiError::PayoutMayExist(e.to_string()),
        }
    }
}

impl From<StoreError> for PayoutError {
    fn from(e: StoreError) -> Self {
        PayoutError::Store(e)
    }
}

/// Short, and renewed after each payout: a restart costs seconds.
pub const LEASE_TTL_MS: u64 = 60_000;
/// Payouts taken per wake-up; more due ones re-arm the alarm at once.
pub const DRAIN_BATCH: usize = 100;

pub fn day_of(ms: u64) -> String {
    iso8601_ms(ms)[..10].to_string()
}

/// When the queue must look at `p` again. A `Sending` is looked at soon
/// after its request must have ended: if the instance that sent it died, the
/// next one recovers it then (one that is still alive is left alone).
fn wake_of(p: &Payout, cfg: &PayoutConfig) -> Option<u64> {
    p.wake_at_ms(cfg.policy.pay_timeout_ms + SENDING_RECHECK_MS)
}

/// After a send's timeout, how long before its payout is looked at again.
pub const SENDING_RECHECK_MS: u64 = 2_000;

/// Saves with a version check; on success `p.version` is the new version.
fn save<S: PayoutStore>(store: &S, p: &mut Payout, cfg: &PayoutConfig) -> Result<bool, StoreError> {
    let expected = p.version;
    p.version += 1;
    let ok = store.update(p, expected, wake_of(p, cfg))?;
    if !ok {
        p.version = expected;
    }
    Ok(ok)
}

/// Claims `hash` for `id` across shards. The caller commits with no
/// `await` in between, and re-checks what may have changed during this one.
async fn claim_hash<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    hash: &str,
    id: &str,
) -> Result<(), PayoutError> {
    let start = rt.now_ms();
    match store.claim_across_shards(hash, id).await? {
        Claim::HeldBy(owner) => Err(PayoutError::InvoiceAlreadyUsed(owner)),
        Claim::Granted { at_ms } if rt.now_ms().saturating_sub(start) > CLAIM_COMMIT_MS => {
            // Best effort, and only this grant's row (a retry of the same
            // request may have claimed it again and stored the payout): a
            // row left behind settles and is taken over later.
            if store.get(id)?.is_none() {
                let _ = store.release_across_shards(hash, id, at_ms).await;
            }
            Err(PayoutError::Store(StoreError(
                "the invoice claims object answered too late; try again".into(),
            )))
        }
        Claim::Granted { .. } => Ok(()),
    }
}

/// The live (not failed) payout other than `me` whose current invoice has
/// `hash`, if any: within a shard, one invoice belongs to one live payout.
fn live_holder<S: PayoutStore>(
    store: &S,
    hash: &str,
    me: &str,
) -> Result<Option<String>, StoreError> {
    Ok(store
        .by_payment_hash(hash)?
        .filter(|o| o.id != me && !matches!(o.state, PayoutState::Failed { .. }))
        .map(|o| o.id))
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
                min_lifetime_secs: min_invoice_lifetime_secs(cfg),
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
    // A payout waits for its invoice to expire before it may end; an invoice
    // that lives longer than a payout may would hold it open for that long.
    if expires_at.saturating_mul(1000) > now.saturating_add(cfg.policy.max_age_ms) {
        let why = format!(
            "the invoice expires in more than {} s (PAYOUT_MAX_AGE_SECS)",
            cfg.policy.max_age_ms / 1000
        );
        return Err(match lnurl_url {
            Some(_) => PayoutError::Lnurl(ResolveError::Protocol(why)),
            None => PayoutError::InvalidInvoice(why),
        });
    }
    // The resolution awaited: another request with this key may have won meanwhile.
    if let Some(existing) = store.by_idempotency_key(idempotency_key)? {
        return replay(existing, &fingerprint);
    }
    check_budget(store, cfg, amount_sat, now)?;
    let id = payout_id(idempotency_key);
    let taken = || match live_holder(store, &payment_hash, &id)? {
        Some(other) => Err(PayoutError::InvoiceAlreadyUsed(other)),
        None => Ok(()),
    };
    taken()?;
    if let Err(e) = claim_hash(rt, store, &payment_hash, &id).await {
        // A retry of this same request may have stored the payout meanwhile.
        if let Some(existing) = store.by_idempotency_key(idempotency_key)? {
            return replay(existing, &fingerprint);
        }
        return Err(e);
    }
    // The claim awaited: check again what another request may have changed.
    if let Some(existing) = store.by_idempotency_key(idempotency_key)? {
        return replay(existing, &fingerprint);
    }
    let now = rt.now_ms();
    check_budget(store, cfg, amount_sat, now)?;
    taken()?;
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
        provider: cfg.default_backend.kind,
        backend: Some(BackendId::of(&cfg.default_backend)),
        blocked: None,
        invoice,
        payment_hash,
        invoice_expires_at_secs: expires_at,
        previous_hashes: Vec::new(),
        watched: Vec::new(),
        paid_hashes: Vec::new(),
        overpaid: false,
        invoice_refreshes: 0,
        state: PayoutState::Queued {
            next_at_ms: now,
            verify_first: false,
        },
        send_attempts: 0,
        hash_spent: false,
        hash_dead: false,
        ever_sent: false,
        reopened: 0,
        hash_sends: 0,
        hash_first_sent_at_ms: None,
        hash_said_paid: false,
        no_resend: false,
        lookups_failing_since_ms: None,
        last_sent_at_ms: None,
        lookups: 0,
        lookups_since_send: 0,
        last_error: None,
        fee_msat: None,
        preimage: None,
        webhook: req.webhook_url.clone().map(|url| Webhook {
            url,
            event_id: None,
            next_at_ms: None,
            delivered_at_ms: None,
            attempts: Vec::new(),
            event_attempts: 0,
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
    if !store.insert(&p, wake_of(&p, cfg), &day_of(now))? {
        // Another request stored it: it exists, whatever happens next.
        let existing = store
            .get(&id)
            .map_err(PayoutError::StoredThen)?
            .ok_or_else(|| {
                PayoutError::StoredThen(StoreError("the payout could not be read".into()))
            })?;
        return replay(existing, &fingerprint);
    }
    // Webhooks go out from the queue's alarm: the caller does not wait on its own endpoint.
    // From here on the payout exists: a failure must not read as "nothing stored".
    advance_state(rt, store, cfg, &id)
        .await
        .map_err(PayoutError::StoredThen)?;
    let stored = store.get(&id).map_err(PayoutError::StoredThen)?;
    Ok(Created::New(stored.ok_or_else(|| {
        PayoutError::StoredThen(StoreError(
            "the stored payout could not be read back".into(),
        ))
    })?))
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

/// Finds the backend `p` is pinned to. A payout none of whose hashes
/// ever reached a backend may move to the current one; rows stored before
/// pinning are pinned to the configured backend of their kind. `Err` names
/// what is missing.
fn pinned_backend(
    p: &mut Payout,
    cfg: &PayoutConfig,
    now_ms: u64,
) -> Result<(backends::BackendConfig, bool), String> {
    let sending = matches!(p.state, PayoutState::Sending { .. });
    match p.backend.clone() {
        Some(id) => {
            if let Some(b) = cfg.backends.iter().find(|b| id.matches(b)) {
                return Ok((b.clone(), false));
            }
            if !p.ever_sent && !p.hash_spent && !sending {
                let to = BackendId::of(&cfg.default_backend);
                p.note(
                    now_ms,
                    format!(
                        "moved to {} (never sent; {} is no longer configured)",
                        to.label(),
                        id.label()
                    ),
                );
                p.backend = Some(to);
                p.provider = cfg.default_backend.kind;
                return Ok((cfg.default_backend.clone(), true));
            }
            Err(format!(
                "its payout backend {} is no longer configured; configure it again to finish this payout",
                id.label()
            ))
        }
        None => match cfg.backends.iter().find(|b| b.kind == p.provider) {
            Some(b) => {
                // Stored before pinning: an earlier rule left hashes after a
                // "not found". Treat every earlier hash as possibly paid.
                let id = BackendId::of(b);
                p.ever_sent |= p.hash_spent || p.send_attempts > 0 || !p.previous_hashes.is_empty();
                for h in p.previous_hashes.clone() {
                    if !p.watched.iter().any(|w| w.hash == h) {
                        p.watched.push(crate::payout::model::WatchedHash {
                            hash: h,
                            since_ms: now_ms,
                            next_check_ms: Some(now_ms),
                            checks: 0,
                        });
                    }
                }
                p.note(
                    now_ms,
                    format!(
                        "pinned to {} (stored before pinning; assumed to be the backend it was sent through)",
                        id.label()
                    ),
                );
                p.backend = Some(id);
                Ok((b.clone(), true))
            }
            None => Err(format!(
                "no {} payout backend is configured; configure it again to finish this payout",
                p.provider.as_str()
            )),
        },
    }
}

/// The payout policy for `p`'s backend (see [`machine::PayoutPolicy::for_backend`]).
fn policy_for(cfg: &PayoutConfig, p: &Payout) -> machine::PayoutPolicy {
    let kind = p.backend.as_ref().map_or(p.provider, |b| b.kind);
    cfg.policy.for_backend(&kind.descriptor().facts)
}

/// Moves one payout through the state machine as far as it can go now.
pub async fn advance_state<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    id: &str,
) -> Result<(), StoreError> {
    let instance = store.instance();
    for _ in 0..8 {
        let Some(mut p) = store.get(id)? else {
            return Ok(());
        };
        let now = rt.now_ms();
        let policy = policy_for(cfg, &p);
        let action = machine::next_action(&p, now, &policy, &instance);
        if matches!(action, Action::Nothing) {
            return Ok(());
        }
        let backend_cfg = if action == Action::RecoverSending {
            None
        } else {
            match pinned_backend(&mut p, cfg, now) {
                Ok((b, changed)) => {
                    if changed || p.blocked.is_some() {
                        machine::unblock(&mut p, now);
                        save(store, &mut p, cfg)?;
                        continue;
                    }
                    Some(b)
                }
                Err(reason) => {
                    machine::block(&mut p, reason, now, &policy, rt.random_u64());
                    save(store, &mut p, cfg)?;
                    return Ok(());
                }
            }
        };
        let backend_cfg = backend_cfg.as_ref().unwrap_or(&cfg.default_backend);
        match action {
            Action::Nothing => return Ok(()),
            Action::Send => {
                if machine::begin_send(&mut p, now, &instance).is_err()
                    || !save(store, &mut p, cfg)?
                {
                    continue;
                }
                // `Sending` is stored: from here on, this hash is never sent again without a lookup.
                let outcome = payment::pay(
                    rt,
                    backend_cfg,
                    &p.invoice,
                    &p.payment_hash,
                    p.amount_sat,
                    cfg.policy.pay_timeout_ms,
                )
                .await;
                if matches!(outcome, PayOutcome::Succeeded { .. }) {
                    store.remember_paid(
                        &BackendId::of(backend_cfg),
                        &p.payment_hash,
                        rt.now_ms(),
                    )?;
                }
                apply_with_retry(store, cfg, id, &p.payment_hash, rt.now_ms(), |cur| {
                    machine::apply_pay(cur, outcome.clone(), rt.now_ms(), &policy, rt.random_u64())
                        .is_ok()
                })?;
            }
            Action::Lookup | Action::Watch(_) => {
                let seen = p.version;
                let hash = match &action {
                    Action::Watch(h) => h.clone(),
                    _ => p.payment_hash.clone(),
                };
                let outcome = payment::lookup(rt, backend_cfg, &hash).await;
                let outcome = match (&action, outcome) {
                    (Action::Lookup, LookupOutcome::NotFound) => {
                        let first_sent = p.hash_first_sent_at_ms.unwrap_or(p.created_at_ms);
                        confirm_not_found(rt, store, backend_cfg, &hash, first_sent).await?
                    }
                    (_, o) => o,
                };
                if matches!(outcome, LookupOutcome::Paid { .. }) {
                    store.remember_paid(&BackendId::of(backend_cfg), &hash, rt.now_ms())?;
                }
                let Some(mut cur) = store.get(id)? else {
                    return Ok(());
                };
                if cur.version != seen {
                    continue; // someone else moved it meanwhile
                }
                let (now, random) = (rt.now_ms(), rt.random_u64());
                let applied = match action {
                    Action::Watch(_) => {
                        machine::apply_watch(&mut cur, &hash, outcome, now, &policy, random)
                    }
                    _ => machine::apply_lookup(&mut cur, outcome, now, &policy, random),
                };
                if applied.is_ok() {
                    webhook::arm(&mut cur, now);
                    save(store, &mut cur, cfg)?;
                }
            }
            Action::AwaitExpiry => {
                if machine::await_expiry(&mut p, now, &policy).is_ok() {
                    save(store, &mut p, cfg)?;
                }
            }
            Action::NewInvoice => {
                let seen = p.version;
                let Some(url) = p.lnurl.clone() else {
                    // Not reachable for a stored LNURL payout; end the loop rather than spin.
                    return Ok(());
                };
                let params = ResolveParams {
                    amount_msat: p.amount_sat.saturating_mul(1000),
                    comment: p.comment.as_deref(),
                    network: cfg.network,
                    policy: &cfg.url_policy,
                    timeout_ms: cfg.lnurl_timeout_ms,
                    min_lifetime_secs: min_invoice_lifetime_secs(cfg),
                };
                let result = lnurl::resolve(rt, &url, &params).await;
                let Some(cur) = store.get(id)? else {
                    return Ok(());
                };
                if cur.version != seen {
                    continue;
                }
                let now = rt.now_ms();
                // A server that hands back an invoice already tried gives
                // nothing new; one another payout pays is not ours to pay.
                let held = match &result {
                    Ok(r) => live_holder(store, &r.payment_hash, &cur.id)?,
                    Err(_) => None,
                };
                let result = result.and_then(|r| {
                    if r.payment_hash == cur.payment_hash
                        || cur.previous_hashes.contains(&r.payment_hash)
                    {
                        Err(ResolveError::Protocol(
                            "the recipient returned an invoice that was already tried".into(),
                        ))
                    } else if held.is_some() {
                        Err(ResolveError::Protocol(
                            "the recipient returned an invoice another payout pays".into(),
                        ))
                    } else if r.expires_at_secs.saturating_mul(1000) > now + cfg.policy.max_age_ms {
                        Err(ResolveError::Protocol(
                            "the recipient's invoice lives longer than PAYOUT_MAX_AGE_SECS".into(),
                        ))
                    } else {
                        Ok(r)
                    }
                });
                // Across shards, the new hash is claimed before it is taken:
                // re-read after the claim, which awaited.
                let result = match result {
                    Ok(r) => match claim_hash(rt, store, &r.payment_hash, &cur.id).await {
                        Ok(()) => Ok(r),
                        Err(PayoutError::InvoiceAlreadyUsed(_)) => Err(ResolveError::Protocol(
                            "the recipient returned an invoice another payout pays".into(),
                        )),
                        Err(PayoutError::Store(e)) => return Err(e),
                        Err(other) => return Err(StoreError(format!("{other:?}"))),
                    },
                    Err(e) => Err(e),
                };
                let Some(mut cur) = store.get(id)? else {
                    return Ok(());
                };
                if cur.version != seen {
                    continue;
                }
                let (now, random) = (rt.now_ms(), rt.random_u64());
                let result = match result {
                    Ok(r) if live_holder(store, &r.payment_hash, &cur.id)?.is_some() => {
                        Err(ResolveError::Protocol(
                            "the recipient returned an invoice another payout pays".into(),
                        ))
                    }
                    other => other,
                };
                let moved = match result {
                    Ok(r) => machine::replace_invoice(
                        &mut cur,
                        r.invoice,
                        r.payment_hash,
                        r.expires_at_secs,
                        now,
                        &policy,
                        random,
                    ),
                    Err(e) => {
                        let why = format!("could not fetch a new invoice: {}", e.message());
                        machine::refresh_failed(&mut cur, why, now, &policy, random)
                    }
                };
                if moved.is_err() {
                    return Ok(());
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

/// A "not found" from a backend whose lookups may not see outgoing
/// payments counts only if, right now, the same backend shows as paid a
/// hash it is known to have paid (this store's own history of it). Where a
/// "not found" may also hide a payment in flight, that hash must have been
/// paid before `first_sent_ms` (the looked-up hash's first send): a wallet
/// that shows an older payment shows a newer one. Otherwise it proves
/// nothing: a lookup error, naming the backend.
async fn confirm_not_found<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    backend_cfg: &BackendConfig,
    hash: &str,
    first_sent_ms: u64,
) -> Result<LookupOutcome, StoreError> {
    let facts = backend_cfg.kind.descriptor().facts;
    if !facts.lookup_may_be_blind {
        return Ok(LookupOutcome::NotFound);
    }
    let id = BackendId::of(backend_cfg);
    let blind = |why: String| {
        LookupOutcome::Error(format!(
            "{} answered \"not found\", but its lookups may not see outgoing payments: {why}",
            id.label()
        ))
    };
    let known = store
        .known_paid(&id)?
        .into_iter()
        .find(|(k, at)| k != hash && (!facts.not_found_may_hide_in_flight || *at <= first_sent_ms));
    let Some((known, _)) = known else {
        return Ok(blind(if facts.not_found_may_hide_in_flight {
            "no payment it made before this one was first sent is known, to check that they do"
                .into()
        } else {
            "no payment it made is known yet to check that they do".into()
        }));
    };
    Ok(match payment::lookup(rt, backend_cfg, &known).await {
        LookupOutcome::Paid { .. } => LookupOutcome::NotFound,
        other => blind(format!(
            "it did not show {known}, a payment it made, as paid ({})",
            lookup_summary(&other)
        )),
    })
}

fn lookup_summary(o: &LookupOutcome) -> String {
    match o {
        LookupOutcome::Paid { .. } => "paid".into(),
        LookupOutcome::Failed(r) => format!("failed: {}", r.reason),
        LookupOutcome::Pending => "pending".into(),
        LookupOutcome::NotFound => "not found".into(),
        LookupOutcome::Error(e) => format!("error: {e}"),
    }
}

/// An invoice with less life left cannot be sent, verified and retried
/// safely: refuse it when an LNURL server hands it out.
pub fn min_invoice_lifetime_secs(cfg: &PayoutConfig) -> u64 {
    (cfg.policy.expiry_margin_secs + cfg.policy.pay_timeout_ms / 1000)
        .max(lnurl::MIN_INVOICE_LIFETIME_SECS)
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
    if !due {
        return Ok(());
    }
    // A due delivery that cannot be made (the secret was removed) is
    // recorded as a failed attempt, so it backs off instead of staying due.
    let req = cfg
        .webhook_secret
        .as_deref()
        .and_then(|secret| webhook::request(&p, secret, rt.now_ms()));
    let Some(req) = req else {
        let mut cur = p;
        let why =
            backends::http::TransportError::Network("not sent: WEBHOOK_SECRET is not set".into());
        webhook::record(&mut cur, &Err(why), rt.now_ms());
        save(store, &mut cur, cfg)?;
        return Ok(());
    };
    let allowed = cfg.url_policy.check(&req.url);
    let result = match allowed {
        Ok(_) => rt.send(req, webhook::DELIVERY_TIMEOUT_MS).await,
        Err(e) => Err(backends::http::TransportError::Network(format!(
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
        /// Payouts whose processing errored; each was put off and the
        /// drain went on with the others.
        errors: usize,
        next_wake_ms: Option<u64>,
    },
}

/// How long a payout that errored, or did not move although due, is put off.
pub const STUCK_DELAY_MS: u64 = 5_000;

/// One pass over the due payouts, under a lease so overlapping wake-ups
/// (cron and alarm) do not work the queue at the same time. Payouts progress
/// concurrently, at most `cfg.max_in_flight_per_backend` at once on each
/// backend; each one is worked by one task only, and every write is a
/// version compare-and-swap, so one payout is never acted on twice at once.
/// One payout never stops the others: an error puts that payout off and is
/// counted.
pub async fn drain<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    holder: &str,
) -> Result<Drain, StoreError> {
    if !store.try_lease(holder, rt.now_ms(), LEASE_TTL_MS)? {
        return Ok(Drain::Busy);
    }
    wake_unblocked(store, cfg, rt.now_ms())?;
    let ids = store.due(rt.now_ms(), DRAIN_BATCH)?;
    // Group by backend: the bound is per backend, so a slow one does not
    // hold up payouts on another.
    let mut groups: Vec<(Option<BackendId>, Vec<String>)> = Vec::new();
    for id in &ids {
        let key = store.get(id).ok().flatten().and_then(|p| p.backend);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(id.clone()),
            None => groups.push((key, vec![id.clone()])),
        }
    }
    let errors = std::cell::Cell::new(0usize);
    let lease_lost = std::cell::Cell::new(false);
    let one = |id: String| {
        let errors = &errors;
        let lease_lost = &lease_lost;
        async move {
            if lease_lost.get() {
                return;
            }
            let before = store.get(&id).ok().flatten().map(|p| p.version);
            let result = advance(rt, store, cfg, &id).await;
            let now = rt.now_ms();
            let stuck = match &result {
                Err(_) => true,
                // A payout that did not move in its turn and is still due
                // would wake the alarm again at once: a hot loop. (One that
                // moved may be due again soon, by its own backoff.)
                Ok(()) => store.get(&id).ok().flatten().is_some_and(|p| {
                    Some(p.version) == before && wake_of(&p, cfg).is_some_and(|w| w <= now)
                }),
            };
            if stuck {
                errors.set(errors.get() + usize::from(result.is_err()));
                // Best effort: if even this fails, the next wake-up tries again.
                let _ = store.defer(&id, now + STUCK_DELAY_MS);
            }
            // Renew: the lease lasts while this instance keeps working.
            if !matches!(store.try_lease(holder, now, LEASE_TTL_MS), Ok(true)) {
                lease_lost.set(true);
            }
        }
    };
    let limit = cfg.max_in_flight_per_backend.max(1);
    let runs = groups
        .into_iter()
        .map(|(_, group)| futures_util::stream::iter(group).for_each_concurrent(limit, &one));
    futures_util::future::join_all(runs).await;
    store.release_lease(holder)?;
    Ok(Drain::Done {
        processed: ids.len(),
        errors: errors.get(),
        next_wake_ms: store.next_wake()?,
    })
}

/// Blocked payouts looked at per wake-up.
const BLOCKED_PER_WAKE: usize = 100;

/// Whether the backend `p` is pinned to is configured in `cfg`.
fn backend_configured(p: &Payout, cfg: &PayoutConfig) -> bool {
    match &p.backend {
        Some(id) => cfg.backends.iter().any(|b| id.matches(b)),
        None => cfg.backends.iter().any(|b| b.kind == p.provider),
    }
}

/// A blocked payout whose backend is configured again is due now, not at
/// the end of its backoff: an operator who puts the backend back sees its
/// payouts resume at the next wake-up (cron, or the alarm).
fn wake_unblocked<S: PayoutStore>(
    store: &S,
    cfg: &PayoutConfig,
    now_ms: u64,
) -> Result<(), StoreError> {
    // Best effort: a store error here must not stop the drain; the next
    // wake-up tries again.
    let Ok(blocked) = store.blocked(BLOCKED_PER_WAKE) else {
        return Ok(());
    };
    for mut p in blocked {
        if backend_configured(&p, cfg) && machine::resume(&mut p, now_ms) {
            let _ = save(store, &mut p, cfg);
        }
    }
    Ok(())
}

/// Admin retry of a dead-lettered payout. A payout fails only when none of
/// its hashes can pay; a sent hash is still looked up once more before any
/// send, and an invoice another live payout now pays is refused.
pub async fn retry<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    id: &str,
) -> Result<Payout, PayoutError> {
    let p = store.get(id)?.ok_or(PayoutError::NotFound)?;
    let now = rt.now_ms();
    if !matches!(p.state, PayoutState::Failed { .. }) {
        return Err(PayoutError::RetryNotAllowed(format!(
            "payout is {}, only failed payouts can be retried",
            p.status()
        )));
    }
    // The invoice may have been taken by another payout since this one failed.
    let taken = |p: &Payout| match live_holder(store, &p.payment_hash, &p.id)? {
        Some(other) => Err(PayoutError::InvoiceAlreadyUsed(other)),
        None => Ok(()),
    };
    taken(&p)?;
    check_budget(store, cfg, p.amount_sat, now)?;
    // Across shards too; the claim awaited, so read the payout again.
    let seen = p.version;
    claim_hash(rt, store, &p.payment_hash, id).await?;
    let mut p = store.get(id)?.ok_or(PayoutError::NotFound)?;
    let now = rt.now_ms();
    if p.version != seen {
        return Err(PayoutError::RetryNotAllowed(
            "the payout changed meanwhile; try again".into(),
        ));
    }
    taken(&p)?;
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

/// Admin cancel: ends a queued payout none of whose hashes can still pay
/// (see [`machine::cancel`]), announces it and frees its share of the daily
/// limit. The save is a version compare-and-swap, so a send that started
/// meanwhile wins and the cancel is refused.
pub async fn cancel<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    id: &str,
) -> Result<Payout, PayoutError> {
    let mut p = store.get(id)?.ok_or(PayoutError::NotFound)?;
    let now = rt.now_ms();
    let status = p.status();
    machine::cancel(&mut p, now)
        .map_err(|e| PayoutError::CancelNotAllowed(format!("payout is {status}: {}", e.0)))?;
    webhook::arm(&mut p, now);
    if !save(store, &mut p, cfg)? {
        return Err(PayoutError::CancelNotAllowed(
            "the payout changed meanwhile; look at it again".into(),
        ));
    }
    deliver_webhook(rt, store, cfg, id).await?;
    store.get(id)?.ok_or(PayoutError::NotFound)
}

/// Admin redelivery: sends the payout's current webhook event now, under
/// its usual id (receivers deduplicate on it), and gives it the whole
/// retry schedule again should this attempt fail.
pub async fn redeliver_webhook<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    id: &str,
) -> Result<Payout, PayoutError> {
    let mut p = store.get(id)?.ok_or(PayoutError::NotFound)?;
    let now = rt.now_ms();
    webhook::rearm_now(&mut p, now).map_err(|e| match e {
        webhook::Redeliver::NoWebhook => PayoutError::NoWebhook,
        webhook::Redeliver::NoEvent => PayoutError::NoWebhookEvent(format!(
            "payout is {}: a webhook is sent once it succeeds or fails",
            p.status()
        )),
    })?;
    if !save(store, &mut p, cfg)? {
        return Err(PayoutError::NoWebhookEvent(
            "the payout changed meanwhile; look at it again".into(),
        ));
    }
    deliver_webhook(rt, store, cfg, id).await?;
    store.get(id)?.ok_or(PayoutError::NotFound)
}
