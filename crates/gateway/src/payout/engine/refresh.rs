//! Fetching a new invoice for an address or LNURL payout whose current
//! invoice can no longer be paid (never sent and expiring, or proven dead).

use crate::payout::lnurl::{self, ResolveError, ResolveParams, ResolvedInvoice};
use crate::payout::machine;
use crate::payout::model::Payout;
use backends::http::Runtime;

use super::advance::{Next, Step};
use super::{
    claim_hash, live_holder, min_invoice_lifetime_secs, save, PayoutError, PayoutStore, StoreError,
};

const ANOTHER_PAYOUT: &str = "the recipient returned an invoice another payout pays";

/// Asks the recipient for a new invoice and swaps it in, or notes why it
/// could not (then backs off).
pub(super) async fn new_invoice<R: Runtime, S: PayoutStore>(
    step: &Step<'_, R, S>,
    p: Payout,
) -> Result<Next, StoreError> {
    let (rt, store, cfg) = (step.rt, step.store, step.cfg);
    let Some(url) = p.lnurl.clone() else {
        // Not reachable for a stored LNURL payout; end the loop rather than spin.
        return Ok(Next::Stop);
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
    let Some(cur) = store.get(&p.id)?.filter(|c| c.version == p.version) else {
        return Ok(Next::Again);
    };
    let result = match result {
        Ok(r) => usable(step, &cur, r)?,
        Err(e) => Err(e),
    };
    // Across shards, the new hash is claimed before it is taken.
    let result = match result {
        Ok(r) => match claim_hash(rt, store, &r.payment_hash, &cur.id).await {
            Ok(()) => Ok(r),
            Err(PayoutError::InvoiceAlreadyUsed(_)) => {
                Err(ResolveError::Protocol(ANOTHER_PAYOUT.into()))
            }
            Err(PayoutError::Store(e)) => return Err(e),
            Err(other) => return Err(StoreError(format!("{other:?}"))),
        },
        Err(e) => Err(e),
    };
    // The claim awaited: read the payout again.
    let Some(mut cur) = store.get(&p.id)?.filter(|c| c.version == p.version) else {
        return Ok(Next::Again);
    };
    let result = match result {
        Ok(r) if live_holder(store, &r.payment_hash, &cur.id)?.is_some() => {
            Err(ResolveError::Protocol(ANOTHER_PAYOUT.into()))
        }
        other => other,
    };
    let (now, random) = (rt.now_ms(), rt.random_u64());
    let moved = match result {
        Ok(r) => machine::replace_invoice(
            &mut cur,
            r.invoice,
            r.payment_hash,
            r.expires_at_secs,
            now,
            step.policy,
            random,
        ),
        Err(e) => {
            let why = format!("could not fetch a new invoice: {}", e.message());
            machine::refresh_failed(&mut cur, why, now, step.policy, random)
        }
    };
    if moved.is_err() {
        return Ok(Next::Stop);
    }
    save(store, &mut cur, cfg)?;
    Ok(Next::Again)
}

/// A new invoice is refused when the recipient hands back one already
/// tried (nothing new), one another payout pays (not ours to pay), or one
/// that lives longer than a payout may.
fn usable<R: Runtime, S: PayoutStore>(
    step: &Step<'_, R, S>,
    cur: &Payout,
    r: ResolvedInvoice,
) -> Result<Result<ResolvedInvoice, ResolveError>, StoreError> {
    let protocol = |m: &str| Ok(Err(ResolveError::Protocol(m.into())));
    if r.payment_hash == cur.payment_hash || cur.previous_hashes.contains(&r.payment_hash) {
        return protocol("the recipient returned an invoice that was already tried");
    }
    if live_holder(step.store, &r.payment_hash, &cur.id)?.is_some() {
        return protocol(ANOTHER_PAYOUT);
    }
    let now = step.rt.now_ms();
    if r.expires_at_secs.saturating_mul(1000) > now + step.cfg.policy.max_age_ms {
        return protocol("the recipient's invoice lives longer than PAYOUT_MAX_AGE_SECS");
    }
    Ok(Ok(r))
}
