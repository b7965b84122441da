//! Retry timing: exponential backoff with full jitter
//! (`sleep = random(0, min(cap, base * 2^n))`), bounded by a total deadline.

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
    fn attempt_timeout_never_exceeds_remaining_budget() {
        let p = RetryPolicy::default();
        assert_eq!(p.attempt_timeout(100_000), p.attempt_timeout_ms);
        assert_eq!(p.attempt_timeout(42), 42);
    }
}
