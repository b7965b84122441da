//! Circuit breaker per provider: closed → open (after N consecutive
//! failures) → half-open (after a cooldown, one probe) → closed or open.
//! Transitions are pure functions so the state can live in KV and be shared
//! by every isolate.

use serde::{Deserialize, Serialize};

/// Read through one flat struct ([`crate::tagged`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerState {
    #[default]
    Closed,
    /// Requests are refused until `until_ms`.
    Open { until_ms: u64 },
    /// One probe is in flight since `since_ms`; others are refused.
    HalfOpen { since_ms: u64 },
}

impl<'de> Deserialize<'de> for BreakerState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Tag {
            Closed,
            Open,
            HalfOpen,
        }
        #[derive(Deserialize)]
        struct Flat {
            state: Tag,
            until_ms: Option<u64>,
            since_ms: Option<u64>,
        }
        let f = Flat::deserialize(d)?;
        Ok(match f.state {
            Tag::Closed => BreakerState::Closed,
            Tag::Open => BreakerState::Open {
                until_ms: crate::tagged::need(f.until_ms, "until_ms")?,
            },
            Tag::HalfOpen => BreakerState::HalfOpen {
                since_ms: crate::tagged::need(f.since_ms, "since_ms")?,
            },
        })
    }
}

impl BreakerState {
    pub fn name(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen { .. } => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    pub failure_threshold: u32,
    pub cooldown_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failure_threshold: 3,
            cooldown_ms: 30_000,
        }
    }
}

/// What the breaker lets a caller do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: full retries allowed.
    Allow,
    /// Half-open: exactly one attempt, no retries.
    Probe,
    /// Open: skip without calling; retry after this instant.
    Reject { retry_at_ms: u64 },
}

/// Decides whether a call may go through, and the state after that decision.
pub fn admit(
    state: BreakerState,
    now_ms: u64,
    policy: &BreakerPolicy,
) -> (Admission, BreakerState) {
    match state {
        BreakerState::Closed => (Admission::Allow, state),
        BreakerState::Open { until_ms } if now_ms < until_ms => (
            Admission::Reject {
                retry_at_ms: until_ms,
            },
            state,
        ),
        BreakerState::Open { .. } => (
            Admission::Probe,
            BreakerState::HalfOpen { since_ms: now_ms },
        ),
        // A probe that never reported back (isolate died) frees the slot after a cooldown.
        BreakerState::HalfOpen { since_ms }
            if now_ms < since_ms.saturating_add(policy.cooldown_ms) =>
        {
            (
                Admission::Reject {
                    retry_at_ms: since_ms.saturating_add(policy.cooldown_ms),
                },
                state,
            )
        }
        BreakerState::HalfOpen { .. } => (
            Admission::Probe,
            BreakerState::HalfOpen { since_ms: now_ms },
        ),
    }
}

/// A call succeeded: the breaker closes.
pub fn on_success(_state: BreakerState) -> BreakerState {
    BreakerState::Closed
}

/// A call failed; `consecutive_failures` already counts this failure.
pub fn on_failure(
    state: BreakerState,
    consecutive_failures: u32,
    now_ms: u64,
    policy: &BreakerPolicy,
) -> BreakerState {
    let reopen = BreakerState::Open {
        until_ms: now_ms.saturating_add(policy.cooldown_ms),
    };
    match state {
        BreakerState::HalfOpen { .. } => reopen,
        BreakerState::Open { .. } => reopen,
        BreakerState::Closed if consecutive_failures >= policy.failure_threshold.max(1) => reopen,
        BreakerState::Closed => BreakerState::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each state reads back as itself (read through a flat struct).
    #[test]
    fn every_breaker_state_round_trips() {
        crate::tagged::assert_reads_back([
            BreakerState::Closed,
            BreakerState::Open { until_ms: 5 },
            BreakerState::HalfOpen { since_ms: 6 },
        ]);
        assert!(serde_json::from_str::<BreakerState>(r#"{"state":"open"}"#).is_err());
    }

    const P: BreakerPolicy = BreakerPolicy {
        failure_threshold: 3,
        cooldown_ms: 1_000,
    };

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let mut s = BreakerState::Closed;
        s = on_failure(s, 1, 0, &P);
        s = on_failure(s, 2, 0, &P);
        assert_eq!(s, BreakerState::Closed);
        s = on_failure(s, 3, 10, &P);
        assert_eq!(s, BreakerState::Open { until_ms: 1_010 });
    }

    #[test]
    fn open_rejects_until_cooldown_then_admits_one_probe() {
        let s = BreakerState::Open { until_ms: 1_000 };
        assert_eq!(
            admit(s, 999, &P),
            (Admission::Reject { retry_at_ms: 1_000 }, s)
        );
        let (a, s2) = admit(s, 1_000, &P);
        assert_eq!(a, Admission::Probe);
        assert_eq!(s2, BreakerState::HalfOpen { since_ms: 1_000 });
        // A second caller while the probe is in flight is refused.
        let (a2, _) = admit(s2, 1_001, &P);
        assert!(matches!(a2, Admission::Reject { .. }));
    }

    #[test]
    fn half_open_probe_success_closes_and_failure_reopens() {
        let s = BreakerState::HalfOpen { since_ms: 5 };
        assert_eq!(on_success(s), BreakerState::Closed);
        assert_eq!(
            on_failure(s, 4, 100, &P),
            BreakerState::Open { until_ms: 1_100 }
        );
    }

    #[test]
    fn a_lost_probe_frees_the_slot_after_cooldown() {
        let s = BreakerState::HalfOpen { since_ms: 0 };
        assert_eq!(admit(s, 1_000, &P).0, Admission::Probe);
    }

    #[test]
    fn closed_always_allows() {
        assert_eq!(admit(BreakerState::Closed, 0, &P).0, Admission::Allow);
    }

    #[test]
    fn serializes_with_a_state_tag() {
        let v = serde_json::to_value(BreakerState::Open { until_ms: 7 }).unwrap_or_default();
        assert_eq!(v["state"], "open");
        assert_eq!(v["until_ms"], 7);
    }
}
