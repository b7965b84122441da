//! Retry timing: exponential backoff with full jitter
//! (`sleep = random(0, min(cap, base * 2^n))`), bounded by a total deadline;
//! and the hedge timing that keeps one slow provider from holding up the
//! rest of the chain.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt, per provider.
    pub max_retries: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    pub attempt_timeout_ms: u64,
    /// Budget for the whole request across every provider.
    pub total_timeout_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            base_delay_ms: 250,
            max_delay_ms: 2_000,
            attempt_timeout_ms: 5_000,
            total_timeout_ms: 15_000,
        }
    }
}

impl RetryPolicy {
    /// The upper bound of the sleep before retry number `retry` (0-based).
    pub fn ceiling_ms(&self, retry: u32) -> u64 {
        let factor = 1u64.checked_shl(retry.min(32)).unwrap_or(u64::MAX);
        self.base_delay_ms
            .saturating_mul(factor)
            .min(self.max_delay_ms)
    }

    /// Full jitter: uniform in `[0, ceiling]`, drawn from `random`.
    pub fn delay_ms(&self, retry: u32, random: u64) -> u64 {
        let ceiling = self.ceiling_ms(retry);
        random % (ceiling + 1)
    }

    /// Equal jitter: uniform in `[ceiling/2, ceiling]`. For status lookups,
    /// where asking again at once tells nothing new.
    pub fn equal_jitter_ms(&self, retry: u32, random: u64) -> u64 {
        let ceiling = self.ceiling_ms(retry);
        let half = ceiling / 2;
        half + random % (ceiling - half + 1)
    }

    /// Timeout for an attempt that starts with `remaining_ms` of the budget left.
    pub fn attempt_timeout(&self, remaining_ms: u64) -> u64 {
        self.attempt_timeout_ms.min(remaining_ms)
    }

    /// The seed's schedule, kept for the sequential baseline: retry number
    /// `retry` (0-based) waits `base * (retry + 1)`, without jitter or cap.
    pub fn linear_delay_ms(&self, retry: u32) -> u64 {
        self.base_delay_ms
            .saturating_mul(u64::from(retry).saturating_add(1))
    }
}

/// How long a provider may keep the chain waiting. A provider that has not
/// produced an invoice within its hedge delay gets the next provider started
/// alongside it; the first valid invoice wins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgePolicy {
    /// Lower bound of the hedge delay: ordinary jitter on a fast provider
    /// must not double the load on the next one.
    pub min_delay_ms: u64,
    /// Upper bound, and the delay while a provider has no recent success:
    /// samples: the most a hanging provider can cost before the next starts.
    pub max_delay_ms: u64,
    /// How long one provider may keep trying, retries included, counted
    /// from its first attempt (and never past the request's deadline).
    pub provider_budget_ms: u64,
}

impl Default for HedgePolicy {
    fn default() -> Self {
        HedgePolicy {
            min_delay_ms: 250,
            max_delay_ms: 2_000,
            provider_budget_ms: 5_000,
        }
    }
}

impl HedgePolicy {
    /// The hedge delay for a provider whose recent p95 latency is `p95_ms`
    /// (`None`: no success yet, so the cap), never beyond the attempt
    /// timeout: by then the attempt has failed anyway.
    pub fn delay_ms(&self, p95_ms: Option<u64>, attempt_timeout_ms: u64) -> u64 {
        let floor = self.min_delay_ms.min(self.max_delay_ms);
        p95_ms
            .map_or(self.max_delay_ms, |p| p.clamp(floor, self.max_delay_ms))
            .min(attempt_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_grows_exponentially_then_caps() {
        let p = RetryPolicy {
            base_delay_ms: 100,
            max_delay_ms: 1_000,
            ..RetryPolicy::default()
        };
        assert_eq!(p.ceiling_ms(0), 100);
        assert_eq!(p.ceiling_ms(1), 200);
        assert_eq!(p.ceiling_ms(3), 800);
        assert_eq!(p.ceiling_ms(4), 1_000);
        assert_eq!(p.ceiling_ms(200), 1_000);
    }

    #[test]
    fn jitter_stays_within_ceiling() {
        let p = RetryPolicy::default();
        for retry in 0..10 {
            for r in [0u64, 1, 7, 12345, u64::MAX - 1, u64::MAX] {
                assert!(p.delay_ms(retry, r) <= p.ceiling_ms(retry));
            }
        }
        // The full range is reachable, including zero.
        assert_eq!(p.delay_ms(0, 0), 0);
        assert_eq!(p.delay_ms(0, 250), 250);
    }

    #[test]
    fn equal_jitter_keeps_at_least_half_the_ceiling() {
        let p = RetryPolicy::default();
        for retry in 0..10 {
            for r in [0u64, 1, 99, u64::MAX] {
                let d = p.equal_jitter_ms(retry, r);
                assert!(
                    d >= p.ceiling_ms(retry) / 2 && d <= p.ceiling_ms(retry),
                    "{retry} {r} {d}"
                );
            }
        }
    }

    #[test]
    fn linear_delay_grows_by_the_base() {
        let p = RetryPolicy {
            base_delay_ms: 2_000,
            ..RetryPolicy::default()
        };
        assert_eq!(p.linear_delay_ms(0), 2_000);
        assert_eq!(p.linear_delay_ms(1), 4_000);
        assert_eq!(
            p.linear_delay_ms(u32::MAX),
            2_000 * (u64::from(u32::MAX) + 1)
        );
    }

    #[test]
    fn hedge_delay_follows_p95_within_floor_and_cap() {
        let h = HedgePolicy::default();
        assert_eq!(h.delay_ms(None, 5_000), 2_000, "unknown latency: the cap");
        assert_eq!(h.delay_ms(Some(10), 5_000), 250, "fast provider: the floor");
        assert_eq!(h.delay_ms(Some(700), 5_000), 700);
        assert_eq!(h.delay_ms(Some(60_000), 5_000), 2_000);
        assert_eq!(
            h.delay_ms(Some(700), 500),
            500,
            "never past the attempt timeout"
        );
    }

    #[test]
    fn attempt_timeout_never_exceeds_remaining_budget() {
        let p = RetryPolicy::default();
        assert_eq!(p.attempt_timeout(100_000), p.attempt_timeout_ms);
        assert_eq!(p.attempt_timeout(42), 42);
    }
}
