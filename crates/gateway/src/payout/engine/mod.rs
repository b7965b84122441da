//! Drives payouts through the state machine against a store and a backend.
//! The store is the Durable Object's SQLite in production and a map in the
//! host simulations. Every write after an `await` is a compare-and-swap on
//! the payout's version, so interleaved wake-ups (cron, alarm, requests)
//! can never both act on the same state; and `Sending` is written before a
//! pay request leaves, so a hash is never sent twice.

mod admin;
mod advance;
mod create;
mod drain;
mod refresh;
mod route;

use std::fmt;

pub use admin::{cancel, redeliver_webhook, retry};
pub use advance::{advance, advance_state};
pub use create::create;
pub use drain::{drain, Drain, STUCK_DELAY_MS};

use crate::payout::breaker::PayoutBreaker;
use crate::payout::config::PayoutConfig;
use crate::payout::lnurl::{self, ResolveError};
use crate::payout::model::{BackendId, Payout, PayoutState};
use crate::payout::webhook;
use crate::time::iso8601_ms;
use backends::http::Runtime;
use backends::{self};

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

/// What the other queue shards know a backend paid
/// ([`PayoutStore::known_paid_on_other_shards`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OtherShards {
    /// Shards asked, and how many answered.
    pub asked: usize,
    pub answered: usize,
    /// `(hash, when seen paid)`, each on its own shard's clock.
    pub hashes: Vec<(String, u64)>,
}

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
    /// What the other queue shards' [`PayoutStore::known_paid`] hold for
    /// `backend`: a shard whose own history of a blind backend is empty can
    /// still check that its lookups see outgoing payments. `own` is a payout
    /// of this store, naming the shard to leave out. A shard that cannot be
    /// reached is left out too (less evidence, never more). One shard has
    /// no others, hence the default.
    async fn known_paid_on_other_shards(
        &self,
        _backend: &BackendId,
        _own: &str,
    ) -> Result<OtherShards, StoreError> {
        Ok(OtherShards::default())
    }
    /// Up to `limit` payouts waiting for their backend to be configured
    /// again (a row that cannot be read is left out).
    fn blocked(&self, limit: usize) -> Result<Vec<Payout>, StoreError>;
    /// Moves a payout's wake time without touching the payout (a payout
    /// whose processing errored is retried later, not in a hot loop).
    fn defer(&self, id: &str, wake_at_ms: u64) -> Result<(), StoreError>;
    /// This shard's payout breaker of `backend` (a closed one if none was
    /// written yet).
    fn payout_breaker(&self, backend: &BackendId) -> Result<PayoutBreaker, StoreError>;
    fn save_payout_breaker(
        &self,
        backend: &BackendId,
        breaker: &PayoutBreaker,
    ) -> Result<(), StoreError>;
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
/// errors, so `api::error` need not know the payout engine).
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
            P::WebhookSecretMissing => ApiError::WebhooksDisabled,
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

/// An invoice with less life left cannot be sent, verified and retried
/// safely: refuse it when an LNURL server hands it out.
pub fn min_invoice_lifetime_secs(cfg: &PayoutConfig) -> u64 {
    (cfg.policy.expiry_margin_secs + cfg.policy.pay_timeout_ms / 1000)
        .max(lnurl::MIN_INVOICE_LIFETIME_SECS)
}

/// Delivers the payout's webhook event to each of its webhooks where an
/// attempt is due.
pub(super) async fn deliver_webhook<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    id: &str,
) -> Result<(), StoreError> {
    for which in webhook::HOOKS {
        deliver_to(rt, store, cfg, id, which).await?;
    }
    Ok(())
}

async fn deliver_to<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    id: &str,
    which: webhook::Hook,
) -> Result<(), StoreError> {
    let Some(p) = store.get(id)? else {
        return Ok(());
    };
    if !webhook::due(&p, which, rt.now_ms()) {
        return Ok(());
    }
    // A due delivery that cannot be made (the secret was removed) is
    // recorded as a failed attempt, so it backs off instead of staying due.
    let req = cfg
        .webhook_secret
        .as_deref()
        .and_then(|secret| webhook::request(&p, which, secret, rt.now_ms()));
    let result = crate::webhooks::attempt(rt, req, &cfg.url_policy).await;
    let Some(mut cur) = store.get(id)? else {
        return Ok(());
    };
    if cur.version != p.version {
        return Ok(());
    }
    webhook::record(&mut cur, which, &result, rt.now_ms());
    save(store, &mut cur, cfg)?;
    Ok(())
}
