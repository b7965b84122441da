//! Which backend of the payout chain a payout goes to. Only a payout that
//! nothing has reached yet may choose ([`machine::movable`]): it goes to
//! the first backend of the chain that has not refused its invoice and
//! whose payout breaker lets it through. Everything else stays where it
//! was sent.

use crate::health::breaker::Admission;
use crate::payout::breaker::{Counted, PayHealth};
use crate::payout::config::PayoutConfig;
use crate::payout::machine::{self, PayOutcome};
use crate::payout::model::{BackendId, Payout};
use backends::BackendConfig;

use super::{save, PayoutStore, StoreError};

/// Where routing left a payout about to send.
pub(super) enum Routed {
    /// It sends through the backend it is pinned to.
    Stay,
    /// It moved, or waits for a breaker; saved.
    Saved,
}

/// How long a half-open probe holds its slot when it never reports back:
/// past its pay timeout and the recheck of a cut-off send.
fn probe_timeout_ms(cfg: &PayoutConfig) -> u64 {
    cfg.policy
        .pay_timeout_ms
        .saturating_mul(2)
        .saturating_add(super::SENDING_RECHECK_MS)
}

/// Routes a movable payout about to send. Synchronous: the breaker reads
/// and writes and the payout's save happen with nothing in between.
pub(super) fn route<S: PayoutStore>(
    store: &S,
    cfg: &PayoutConfig,
    p: &mut Payout,
    now: u64,
) -> Result<Routed, StoreError> {
    let failed = |b: &BackendConfig| p.failed_at.contains(&BackendId::of(b));
    let mut candidates: Vec<&BackendConfig> = cfg.chain.iter().filter(|b| !failed(b)).collect();
    if candidates.is_empty() {
        // Every backend failed this payout: the backoff has run, so each
        // may be asked again, in order.
        p.failed_at.clear();
        candidates = cfg.chain.iter().collect();
    }
    let mut open: Vec<BackendId> = Vec::new();
    let mut earliest: Option<u64> = None;
    for b in candidates {
        let id = BackendId::of(b);
        let mut breaker = store.payout_breaker(&id)?;
        let before = breaker.clone();
        let admission = breaker.admit(&p.id, now, &cfg.breaker, probe_timeout_ms(cfg));
        if breaker != before {
            store.save_payout_breaker(&id, &breaker)?;
        }
        match admission {
            Admission::Allow | Admission::Probe => {
                return go(store, cfg, p, b, &open, admission, now);
            }
            Admission::Reject { retry_at_ms } => {
                earliest = Some(earliest.map_or(retry_at_ms, |e: u64| e.min(retry_at_ms)));
                open.push(id);
            }
        }
    }
    let until = earliest.unwrap_or(now + cfg.breaker.cooldown_ms);
    let why = "the payout breaker of every backend that may take it is open; nothing was sent"
        .to_string();
    if machine::wait_for_backends(p, until, why, now).is_ok() {
        save(store, p, cfg)?;
    }
    Ok(Routed::Saved)
}

/// The payout goes through `b`: where it is pinned already, or moved there.
fn go<S: PayoutStore>(
    store: &S,
    cfg: &PayoutConfig,
    p: &mut Payout,
    b: &BackendConfig,
    open: &[BackendId],
    admission: Admission,
    now: u64,
) -> Result<Routed, StoreError> {
    let to = BackendId::of(b);
    let from = p.backend.clone();
    if from.as_ref() == Some(&to) {
        return Ok(Routed::Stay);
    }
    let probe = if admission == Admission::Probe {
        " (the probe of its half-open payout breaker)"
    } else {
        ""
    };
    let why = match &from {
        Some(f) if p.failed_at.contains(f) && p.hash_refusals > 0 => format!(
            "{} refused it before acting ({}){probe}",
            f.label(),
            p.last_error.as_deref().unwrap_or("refused")
        ),
        Some(f) if p.failed_at.contains(f) => format!(
            "an earlier invoice of this payout died unpaid at {}{probe}",
            f.label()
        ),
        Some(f) if open.contains(f) => {
            format!("the payout breaker of {} is open{probe}", f.label())
        }
        Some(f) if !cfg.chain.iter().any(|c| f.matches(c)) => {
            format!("{} is no longer in the payout chain{probe}", f.label())
        }
        _ => format!("the first backend of the payout chain that may take it{probe}"),
    };
    let Ok(moved) = machine::move_to(p, to, why, now) else {
        return Ok(Routed::Stay);
    };
    if !save(store, p, cfg)? {
        return Ok(Routed::Saved);
    }
    if moved {
        if let Some(f) = &from {
            count(store, f, Counted::HandedOn, now)?;
        }
    } else {
        for o in open {
            count(store, o, Counted::StraightPast, now)?;
        }
    }
    Ok(Routed::Saved)
}

fn count<S: PayoutStore>(
    store: &S,
    id: &BackendId,
    what: Counted,
    now: u64,
) -> Result<(), StoreError> {
    let mut b = store.payout_breaker(id)?;
    b.count(what, now);
    store.save_payout_breaker(id, &b)
}

/// Feeds a pay answer to the payout breaker of the backend it came from.
pub(super) fn record_pay<S: PayoutStore>(
    store: &S,
    cfg: &PayoutConfig,
    backend: &BackendId,
    outcome: &PayOutcome,
    now: u64,
) -> Result<(), StoreError> {
    let (health, error) = match outcome {
        PayOutcome::Succeeded { .. } | PayOutcome::AlreadyPaid(_) => (PayHealth::Worked, None),
        PayOutcome::Failed(e) | PayOutcome::NotSent(e) | PayOutcome::Unknown(e) => {
            (PayHealth::Failed, Some(e.as_str()))
        }
    };
    let paid = matches!(outcome, PayOutcome::Succeeded { .. });
    record(store, cfg, backend, health, error, paid, now)
}

/// A lookup found a payment made: the backend pays (a wallet that pays and
/// then answers 520 is working), so its breaker closes; and the payout is
/// counted as paid there.
pub(super) fn record_paid<S: PayoutStore>(
    store: &S,
    cfg: &PayoutConfig,
    backend: &BackendId,
    now: u64,
) -> Result<(), StoreError> {
    record(store, cfg, backend, PayHealth::Worked, None, true, now)
}

fn record<S: PayoutStore>(
    store: &S,
    cfg: &PayoutConfig,
    backend: &BackendId,
    health: PayHealth,
    error: Option<&str>,
    paid: bool,
    now: u64,
) -> Result<(), StoreError> {
    let mut b = store.payout_breaker(backend)?;
    b.on_pay(health, error, now, &cfg.breaker);
    if paid {
        b.count(Counted::Paid, now);
    }
    store.save_payout_breaker(backend, &b)
}

/// Whether a backend of the chain other than the payout's own has not
/// failed this payout yet.
pub(crate) fn untried_backend(cfg: &PayoutConfig, p: &Payout) -> bool {
    cfg.chain.iter().any(|b| {
        let id = BackendId::of(b);
        p.backend.as_ref() != Some(&id) && !p.failed_at.contains(&id)
    })
}

/// Whether a payout its backend just refused can go to another backend of
/// the chain right now: one that has not failed it and whose payout
/// breaker would let it through. Otherwise it waits out its backoff
/// (never a hot loop of refusals).
pub(super) fn alternative_now<S: PayoutStore>(
    store: &S,
    cfg: &PayoutConfig,
    p: &Payout,
    now: u64,
) -> Result<bool, StoreError> {
    for b in &cfg.chain {
        let id = BackendId::of(b);
        if p.backend.as_ref() == Some(&id) || p.failed_at.contains(&id) {
            continue;
        }
        let mut breaker = store.payout_breaker(&id)?;
        if !matches!(
            breaker.admit(&p.id, now, &cfg.breaker, probe_timeout_ms(cfg)),
            Admission::Reject { .. }
        ) {
            return Ok(true);
        }
    }
    Ok(false)
}
