//! Merging two copies of the health book. KV is last-writer-wins and
//! eventually consistent, so isolates overwrite each other's copies; an
//! isolate that reads the stored book merges it into its own instead of
//! taking it as it is, and keeps what each side knows: the newer breaker
//! state, and the failures counted since the last success either side saw.

use std::collections::BTreeMap;

use crate::health::breaker::BreakerState;
use crate::health::{BackendHealth, HealthBook, Journal, Sample, HISTORY, WINDOW};

/// `local` and `remote` as one book (`local`'s journal is dropped: merge
/// copies, not requests).
pub fn merge(local: &HealthBook, remote: &HealthBook) -> HealthBook {
    let mut providers = BTreeMap::new();
    for name in local.providers.keys().chain(remote.providers.keys()) {
        if providers.contains_key(name) {
            continue;
        }
        let merged = match (local.providers.get(name), remote.providers.get(name)) {
            (Some(l), Some(r)) => merge_provider(l, r),
            (Some(one), None) | (None, Some(one)) => one.clone(),
            (None, None) => continue,
        };
        providers.insert(name.clone(), merged);
    }
    HealthBook {
        providers,
        written_at_ms: local.written_at_ms.max(remote.written_at_ms),
        journal: Journal::default(),
    }
}

/// How cautious a breaker state is: of two set at the same moment, the
/// more cautious wins.
fn caution(b: &BreakerState) -> u8 {
    match b {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen { .. } => 1,
        BreakerState::Open { .. } => 2,
    }
}

fn merge_provider(l: &BackendHealth, r: &BackendHealth) -> BackendHealth {
    let newer = if r.last_check_ms > l.last_check_ms {
        r
    } else {
        l
    };
    let mut m = newer.clone();
    // A success that came after every outcome the other side saw resets
    // the other side's failures; otherwise both counted failures since the
    // last success they know of, and the larger count stands.
    m.consecutive_failures = if r.last_success_ms > l.last_check_ms {
        r.consecutive_failures
    } else if l.last_success_ms > r.last_check_ms {
        l.consecutive_failures
    } else {
        l.consecutive_failures.max(r.consecutive_failures)
    };
    let breaker_from = match l.breaker_since_ms.cmp(&r.breaker_since_ms) {
        std::cmp::Ordering::Greater => l,
        std::cmp::Ordering::Less => r,
        std::cmp::Ordering::Equal if caution(&r.breaker) > caution(&l.breaker) => r,
        std::cmp::Ordering::Equal => l,
    };
    m.breaker = breaker_from.breaker;
    m.breaker_since_ms = breaker_from.breaker_since_ms;
    m.last_success_ms = l.last_success_ms.max(r.last_success_ms);
    m.window = union(&l.window, &r.window, WINDOW);
    m.history = union(&l.history, &r.history, HISTORY);
    m
}

/// Both sides' samples, each once, oldest first, the newest `cap` kept.
fn union(a: &[Sample], b: &[Sample], cap: usize) -> Vec<Sample> {
    let mut all: Vec<Sample> = a.iter().chain(b.iter()).copied().collect();
    crate::small_sort::sort_by_key(&mut all, |s| (s.at_ms, s.ok, s.latency_ms));
    all.dedup();
    let excess = all.len().saturating_sub(cap);
    all.drain(..excess);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::breaker::BreakerPolicy;
    use crate::health::Source;

    const P: BreakerPolicy = BreakerPolicy {
        failure_threshold: 3,
        cooldown_ms: 30_000,
    };

    #[test]
    fn failures_counted_on_both_sides_since_a_shared_success_keep_the_larger_count() {
        let mut base = HealthBook::default();
        base.record_success("lnd", 10, 100, Source::Request);
        let mut a = base.clone();
        a.record_failure("lnd", "x", 1, 200, Source::Request, &P);
        a.record_failure("lnd", "x", 1, 210, Source::Request, &P);
        let mut b = base.clone();
        b.record_failure("lnd", "x", 1, 205, Source::Request, &P);
        let m = merge(&a, &b);
        assert_eq!(m.get("lnd").consecutive_failures, 2);
        assert_eq!(m.get("lnd").window.len(), 4, "every sample once");
        assert_eq!(merge(&b, &a).get("lnd").consecutive_failures, 2);
    }

    #[test]
    fn a_success_after_the_other_sides_failures_resets_them() {
        let mut a = HealthBook::default();
        a.record_failure("lnd", "x", 1, 100, Source::Request, &P);
        a.record_failure("lnd", "x", 1, 110, Source::Request, &P);
        let mut b = HealthBook::default();
        b.record_success("lnd", 5, 200, Source::Probe);
        let m = merge(&a, &b);
        assert_eq!(m.get("lnd").consecutive_failures, 0);
        assert!(m.get("lnd").online());
    }

    #[test]
    fn the_newer_breaker_wins_and_an_open_one_is_not_overwritten_by_a_stale_closed_copy() {
        let mut a = HealthBook::default();
        for t in [100, 110, 120] {
            a.record_failure("lnd", "x", 1, t, Source::Request, &P);
        }
        assert!(matches!(a.get("lnd").breaker, BreakerState::Open { .. }));
        let stale = HealthBook::default();
        let m = merge(&stale, &a);
        assert!(matches!(m.get("lnd").breaker, BreakerState::Open { .. }));
        assert_eq!(m.get("lnd").consecutive_failures, 3);
        // Closed again later (a probe succeeded): the newer state wins.
        let mut c = a.clone();
        c.record_success("lnd", 5, 60_000, Source::Probe);
        let m = merge(&a, &c);
        assert_eq!(m.get("lnd").breaker, BreakerState::Closed);
        assert_eq!(m.get("lnd").consecutive_failures, 0);
    }

    #[test]
    fn providers_only_one_side_knows_are_kept() {
        let mut a = HealthBook::default();
        a.record_success("lnd", 1, 1, Source::Request);
        let mut b = HealthBook::default();
        b.record_success("cln", 1, 2, Source::Request);
        b.written_at_ms = 7;
        let m = merge(&a, &b);
        assert_eq!(m.providers.len(), 2);
        assert_eq!(m.written_at_ms, 7);
    }
}
