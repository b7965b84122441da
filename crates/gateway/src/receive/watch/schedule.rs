//! When the watch looks an invoice up: a function of the invoice's age
//! alone, so that failed lookups, restarts and a deferral by the lookup
//! budget never add lookups, and an outage is tried through at the same
//! cadence. Most invoices are never paid; their cost is what this bounds.
//!
//! - Before expiry: the first lookup 5 s after creation, then every 5 s
//!   until the invoice is 25 s old, then each gap a fifth of the invoice's
//!   age (20 % longer each time), at most an hour.
//! - After expiry: at 1 min, 10 min, 1 h, 4 h, 12 h and 24 h past it. Some
//!   wallets settle an invoice after its expiry (LNbits pays its own
//!   wallets' expired internal invoices; a payment in flight at expiry may
//!   settle later), so expiry does not end the watch.
//! - The watch ends [`WATCH_AFTER_EXPIRY_MS`] after expiry, or when paid.
//! - On demand: `check-invoice` (and the checkout page polling it, and
//!   LUD-21 verify) answers from the watch, which looks the invoice up for
//!   it only when its last lookup is older than [`demand_gap_ms`]: 3 s in
//!   the invoice's first ten minutes (a page turns "paid" within 5 s), 15 s
//!   later before expiry, a minute after. However many pages and callers
//!   poll, an invoice costs at most one lookup per gap, within the budget.

/// The shortest gap between two lookups of one invoice.
pub const MIN_GAP_MS: u64 = 5_000;
/// The longest gap before expiry.
pub const MAX_GAP_MS: u64 = 3_600_000;
/// The gap is the invoice's age divided by this.
pub const AGE_DIVISOR: u64 = 5;
/// Lookups after expiry, counted from it.
pub const AFTER_EXPIRY_MS: [u64; 6] = [
    60_000,
    600_000,
    3_600_000,
    4 * 3_600_000,
    12 * 3_600_000,
    24 * 3_600_000,
];
/// How long after expiry an unpaid invoice stays watched.
pub const WATCH_AFTER_EXPIRY_MS: u64 = 24 * 3_600_000;

/// The shortest gap between lookups made on demand, early in a life.
pub const DEMAND_GAP_EARLY_MS: u64 = 3_000;
/// How long "early" lasts: the checkout page's promise of "paid" within 5 s.
pub const DEMAND_EARLY_MS: u64 = 600_000;
pub const DEMAND_GAP_LATER_MS: u64 = 15_000;
pub const DEMAND_GAP_EXPIRED_MS: u64 = 60_000;

/// How old the last lookup of an invoice must be before a caller's demand
/// (check-invoice) makes another one, at `now_ms`.
pub fn demand_gap_ms(created_ms: u64, expires_ms: u64, now_ms: u64) -> u64 {
    if now_ms >= expires_ms {
        DEMAND_GAP_EXPIRED_MS
    } else if now_ms < created_ms + DEMAND_EARLY_MS {
        DEMAND_GAP_EARLY_MS
    } else {
        DEMAND_GAP_LATER_MS
    }
}

/// The gap after a lookup at `age_ms`.
pub fn gap_ms(age_ms: u64) -> u64 {
    (age_ms / AGE_DIVISOR).clamp(MIN_GAP_MS, MAX_GAP_MS)
}

/// The next lookup after one at `at_ms` (or, for `None`, the first one) of
/// an invoice created at `created_ms` that expires at `expires_ms`; `None`
/// once the watch is over.
pub fn next_lookup_ms(created_ms: u64, expires_ms: u64, at_ms: Option<u64>) -> Option<u64> {
    let Some(at) = at_ms else {
        return Some(created_ms + MIN_GAP_MS);
    };
    if at < expires_ms {
        let next = at + gap_ms(at.saturating_sub(created_ms));
        // The first lookup after expiry is the first one of the tail.
        return Some(if next >= expires_ms {
            expires_ms + AFTER_EXPIRY_MS[0]
        } else {
            next
        });
    }
    AFTER_EXPIRY_MS
        .iter()
        .map(|d| expires_ms + d)
        .find(|t| *t > at)
}

/// When the watch of an unpaid invoice ends.
pub fn watch_ends_ms(expires_ms: u64) -> u64 {
    expires_ms + WATCH_AFTER_EXPIRY_MS
}

/// How many lookups an invoice that is never paid costs over its whole
/// watch, by its lifetime (creation to expiry).
pub fn lookups_for_lifetime(lifetime_ms: u64) -> u32 {
    let mut n = 0;
    let mut at = None;
    while let Some(t) = next_lookup_ms(0, lifetime_ms, at) {
        n += 1;
        at = Some(t);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn typical_invoices_cost_a_few_dozen_lookups() {
        let n = [600_000, 3_600_000, 86_400_000].map(lookups_for_lifetime);
        assert_eq!(n, [28, 38, 66]);
    }

    #[test]
    fn demand_lookups_are_frequent_only_early() {
        let (c, e) = (1_000_000, 1_000_000 + 3_600_000);
        assert_eq!(demand_gap_ms(c, e, c + 1), DEMAND_GAP_EARLY_MS);
        assert_eq!(
            demand_gap_ms(c, e, c + DEMAND_EARLY_MS - 1),
            DEMAND_GAP_EARLY_MS
        );
        assert_eq!(
            demand_gap_ms(c, e, c + DEMAND_EARLY_MS),
            DEMAND_GAP_LATER_MS
        );
        assert_eq!(demand_gap_ms(c, e, e), DEMAND_GAP_EXPIRED_MS);
        // A short invoice is "expired", not "early", once past its expiry.
        assert_eq!(
            demand_gap_ms(c, c + 60_000, c + 61_000),
            DEMAND_GAP_EXPIRED_MS
        );
    }

    proptest! {
        /// Before expiry the next lookup is always set and at most an hour
        /// away; the last lookup before expiry is followed by one soon after
        /// it; after expiry the watch goes on for 24 h, then ends.
        #[test]
        fn no_invoice_goes_unwatched_before_it_expires(
            created in 0u64..1_000_000_000_000,
            lifetime in 60_000u64..7 * 86_400_000,
        ) {
            let expires = created + lifetime;
            let mut at = None;
            let mut n = 0u32;
            let mut last = created;
            while let Some(t) = next_lookup_ms(created, expires, at) {
                prop_assert!(t > last || at.is_none());
                if last < expires {
                    prop_assert!(t - last <= MAX_GAP_MS + AFTER_EXPIRY_MS[0]);
                }
                prop_assert!(t <= watch_ends_ms(expires));
                last = t;
                at = Some(t);
                n += 1;
            }
            prop_assert_eq!(last, watch_ends_ms(expires));
            prop_assert!(n <= lookups_for_lifetime(lifetime));
        }

        /// Lookups that fail, or are deferred by the budget, never add any:
        /// a lookup made late still leads to the next point by age.
        #[test]
        fn late_lookups_never_add_lookups(
            lifetime in 60_000u64..2 * 86_400_000,
            delays in proptest::collection::vec(0u64..600_000, 1..200),
        ) {
            let mut at = None;
            let mut n = 0u32;
            let mut i = 0;
            while let Some(t) = next_lookup_ms(0, lifetime, at) {
                let late = delays[i % delays.len()];
                i += 1;
                at = Some(t + late);
                n += 1;
            }
            prop_assert!(n <= lookups_for_lifetime(lifetime));
        }
    }
}
