//! Accepting a payout: validate, resolve the destination once, claim its
//! invoice, store it (before anything is paid), then try to pay it at once.

use crate::payout::config::PayoutConfig;
use crate::payout::destination::{self, Destination};
use crate::payout::lnurl::{self, ResolveError, ResolveParams};
use crate::payout::model::{Accepted, Payout};
use crate::payout::request::{payout_id, PayoutRequest};
use backends::bolt11::{self, Expectation};
use backends::http::Runtime;

use super::advance::advance_state;
use super::{
    check_budget, claim_hash, day_of, live_holder, min_invoice_lifetime_secs, replay, wake_of,
    Created, PayoutError, PayoutStore, StoreError,
};

/// The invoice a new payout pays, resolved once.
struct Resolved {
    invoice: String,
    payment_hash: String,
    expires_at_secs: u64,
    amount_sat: u64,
    /// The payRequest URL of an address or LNURL destination.
    lnurl: Option<String>,
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
    let dest = validate(rt, store, cfg, &req)?;
    // Resolve once. Nothing is stored yet, so a failure here leaves nothing behind.
    let resolved = resolve(rt, cfg, &req, &dest).await?;
    check_lifetime(cfg, &resolved, rt.now_ms())?;
    let id = payout_id(idempotency_key);
    let replayed = || -> Result<Option<Created>, PayoutError> {
        match store.by_idempotency_key(idempotency_key)? {
            Some(existing) => replay(existing, &fingerprint).map(Some),
            None => Ok(None),
        }
    };
    // The resolution awaited: another request with this key may have won meanwhile.
    if let Some(done) = replayed()? {
        return Ok(done);
    }
    let taken = || -> Result<(), PayoutError> {
        check_budget(store, cfg, resolved.amount_sat, rt.now_ms())?;
        match live_holder(store, &resolved.payment_hash, &id)? {
            Some(other) => Err(PayoutError::InvoiceAlreadyUsed(other)),
            None => Ok(()),
        }
    };
    taken()?;
    if let Err(e) = claim_hash(rt, store, &resolved.payment_hash, &id).await {
        // A retry of this same request may have stored the payout meanwhile.
        return replayed()?.ok_or(e);
    }
    // The claim awaited: check again what another request may have changed.
    if let Some(done) = replayed()? {
        return Ok(done);
    }
    taken()?;
    let p = Payout::accepted(Accepted {
        id,
        idempotency_key: idempotency_key.to_string(),
        fingerprint: fingerprint.clone(),
        now_ms: rt.now_ms(),
        destination: req.destination.clone(),
        destination_kind: dest.kind(),
        lnurl: resolved.lnurl,
        amount_sat: resolved.amount_sat,
        comment: req.comment.clone(),
        external_id: req.external_id.clone(),
        backend: &cfg.default_backend,
        invoice: resolved.invoice,
        payment_hash: resolved.payment_hash,
        invoice_expires_at_secs: resolved.expires_at_secs,
        webhook_url: req.webhook_url.clone(),
        operator_webhook_url: cfg.operator_webhook_url.clone(),
    });
    store_and_send(rt, store, cfg, p, &fingerprint).await
}

/// What can be refused before anything is resolved: the destination's
/// syntax, the webhook URL, the amount against the limits.
fn validate<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    req: &PayoutRequest,
) -> Result<Destination, PayoutError> {
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
    Ok(dest)
}

async fn resolve<R: Runtime>(
    rt: &R,
    cfg: &PayoutConfig,
    req: &PayoutRequest,
    dest: &Destination,
) -> Result<Resolved, PayoutError> {
    match dest {
        Destination::Bolt11(s) => resolve_bolt11(cfg, s, req.amount_sat, rt.now_ms() / 1000),
        Destination::Lnurl { url, .. } => {
            let url = cfg.url_policy.local_scheme(url);
            let amount_sat = req.amount_sat.ok_or_else(|| {
                PayoutError::InvalidDestination(
                    "amount_sat is required for Lightning Addresses and LNURLs".into(),
                )
            })?;
            cfg.url_policy
                .check(&url)
                .map_err(PayoutError::DestinationNotAllowed)?;
            let params = ResolveParams {
                amount_msat: amount_sat.saturating_mul(1000),
                comment: req.comment.as_deref(),
                network: cfg.network,
                policy: &cfg.url_policy,
                timeout_ms: cfg.lnurl_timeout_ms,
                min_lifetime_secs: min_invoice_lifetime_secs(cfg),
            };
            let r = lnurl::resolve(rt, &url, &params)
                .await
                .map_err(PayoutError::Lnurl)?;
            Ok(Resolved {
                invoice: r.invoice,
                payment_hash: r.payment_hash,
                expires_at_secs: r.expires_at_secs,
                amount_sat,
                lnurl: Some(url),
            })
        }
    }
}

/// A BOLT11 destination: an amount in whole sats (the request's, if it
/// gives one, must match), on this network, not expired.
fn resolve_bolt11(
    cfg: &PayoutConfig,
    s: &str,
    amount_sat: Option<u64>,
    now_secs: u64,
) -> Result<Resolved, PayoutError> {
    let bad = |m: String| PayoutError::InvalidInvoice(m);
    let inv = bolt11::parse(s).map_err(|e| bad(e.to_string()))?;
    let amount_msat = match (inv.amount_msat, amount_sat) {
        (None, _) => return Err(bad("invoices without an amount are not supported".into())),
        (Some(m), Some(a)) if m != a.saturating_mul(1000) => {
            return Err(bad(format!("the invoice is for {m} msat, not {a} sat")))
        }
        (Some(m), _) if m % 1000 != 0 => {
            return Err(bad("invoice amount is not a whole number of sats".into()))
        }
        (Some(m), _) => m,
    };
    let want = Expectation {
        network: cfg.network,
        amount_msat,
        payment_hash: None,
        now_secs,
    };
    let inv = bolt11::check(inv, &want).map_err(|e| bad(e.to_string()))?;
    Ok(Resolved {
        invoice: s.to_string(),
        payment_hash: inv.payment_hash.clone(),
        expires_at_secs: inv.expires_at_secs(),
        amount_sat: amount_msat / 1000,
        lnurl: None,
    })
}

/// A payout waits for its invoice to expire before it may end; an invoice
/// that lives longer than a payout may would hold it open for that long.
fn check_lifetime(cfg: &PayoutConfig, r: &Resolved, now_ms: u64) -> Result<(), PayoutError> {
    if r.expires_at_secs.saturating_mul(1000) <= now_ms.saturating_add(cfg.policy.max_age_ms) {
        return Ok(());
    }
    let why = format!(
        "the invoice expires in more than {} s (PAYOUT_MAX_AGE_SECS)",
        cfg.policy.max_age_ms / 1000
    );
    Err(match r.lnurl {
        Some(_) => PayoutError::Lnurl(ResolveError::Protocol(why)),
        None => PayoutError::InvalidInvoice(why),
    })
}

/// Stores the payout, then tries to pay it. From the insert on, the payout
/// exists: a failure after it never reads as "nothing stored".
async fn store_and_send<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    p: Payout,
    fingerprint: &str,
) -> Result<Created, PayoutError> {
    let stored_then = |e: StoreError| PayoutError::StoredThen(e);
    let unreadable = || PayoutError::StoredThen(StoreError("the payout could not be read".into()));
    if !store.insert(&p, wake_of(&p, cfg), &day_of(p.created_at_ms))? {
        // Another request stored it: it exists, whatever happens next.
        let existing = store
            .get(&p.id)
            .map_err(stored_then)?
            .ok_or_else(unreadable)?;
        return replay(existing, fingerprint);
    }
    // Webhooks go out from the queue's alarm: the caller does not wait on its own endpoint.
    advance_state(rt, store, cfg, &p.id)
        .await
        .map_err(stored_then)?;
    let stored = store.get(&p.id).map_err(stored_then)?;
    Ok(Created::New(stored.ok_or_else(unreadable)?))
}
