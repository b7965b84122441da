//! What an admin does to a payout: retry a dead letter, cancel one that
//! cannot pay, redeliver its webhook.

use crate::payout::config::PayoutConfig;
use crate::payout::machine;
use crate::payout::model::{Payout, PayoutState};
use crate::payout::webhook;
use backends::http::Runtime;

use super::advance::advance_state;
use super::{
    check_budget, claim_hash, deliver_webhook, live_holder, save, PayoutError, PayoutStore,
};

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
    // Without a secret no event can be signed: refuse before the new
    // schedule is stored, rather than record an attempt never made.
    if cfg.webhook_secret.is_none() {
        return Err(PayoutError::WebhookSecretMissing);
    }
    if !save(store, &mut p, cfg)? {
        return Err(PayoutError::NoWebhookEvent(
            "the payout changed meanwhile; look at it again".into(),
        ));
    }
    deliver_webhook(rt, store, cfg, id).await?;
    store.get(id)?.ok_or(PayoutError::NotFound)
}
