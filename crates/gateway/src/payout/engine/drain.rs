//! One pass over the due payouts of a store, under a lease, several
//! backends at once; blocked payouts whose backend is back first.

use futures_util::StreamExt;

use crate::payout::config::PayoutConfig;
use crate::payout::machine;
use crate::payout::model::{BackendId, Payout};
use backends::http::Runtime;

use super::advance::advance;
use super::{save, wake_of, PayoutStore, StoreError, DRAIN_BATCH, LEASE_TTL_MS};

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
    crate::join::join_all(runs).await;
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
