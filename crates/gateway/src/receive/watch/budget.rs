//! A cap on the watch's lookups per backend per minute, so that the watch
//! is never what trips a backend's rate limit (LNbits allows 200 requests a
//! minute from all of the Worker's traffic together). Each watch shard takes
//! an equal share of the cap; a shard forgets its count when it restarts,
//! which costs at most one extra minute's share.

use std::collections::BTreeMap;

const WINDOW_MS: u64 = 60_000;
/// What one page polling a young invoice needs: a lookup every 3 s.
pub const ONE_PAGE_PER_MINUTE: u32 =
    (WINDOW_MS / crate::receive::watch::schedule::DEMAND_GAP_EARLY_MS) as u32;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LookupBudget {
    per_minute: u32,
    window_start_ms: u64,
    used: BTreeMap<String, u32>,
    /// Lookups made on demand (check-invoice, pages), counted apart.
    on_demand: BTreeMap<String, u32>,
}

impl LookupBudget {
    /// `per_minute` across all shards, of which this shard gets its share
    /// (at least one lookup a minute per backend).
    pub fn new(per_minute: u32, shards: u32) -> LookupBudget {
        LookupBudget {
            per_minute: (per_minute / shards.max(1)).max(1),
            window_start_ms: 0,
            used: BTreeMap::new(),
            on_demand: BTreeMap::new(),
        }
    }

    fn roll(&mut self, now_ms: u64) {
        if now_ms >= self.window_start_ms + WINDOW_MS || now_ms < self.window_start_ms {
            self.window_start_ms = now_ms - now_ms % WINDOW_MS;
            self.used.clear();
            self.on_demand.clear();
        }
    }

    /// Takes one lookup of `backend` at `now_ms`, if the minute has any left.
    pub fn take(&mut self, backend: &str, now_ms: u64) -> bool {
        self.roll(now_ms);
        let used = self.used.entry(backend.to_string()).or_insert(0);
        if *used >= self.per_minute {
            return false;
        }
        *used += 1;
        true
    }

    /// Takes one lookup made on demand. Callers get an allowance of their
    /// own, as large as the scheduled one but never below one polling
    /// page's need: pages (anyone may create and poll invoices) never starve
    /// the scheduled lookups, and a busy schedule never slows a page.
    pub fn take_on_demand(&mut self, backend: &str, now_ms: u64) -> bool {
        self.roll(now_ms);
        let cap = self.per_minute.max(ONE_PAGE_PER_MINUTE);
        let used = self.on_demand.entry(backend.to_string()).or_insert(0);
        if *used >= cap {
            return false;
        }
        *used += 1;
        true
    }

    /// When the budget is next replenished.
    pub fn next_window_ms(&self) -> u64 {
        self.window_start_ms + WINDOW_MS
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_and_the_schedule_have_allowances_of_their_own() {
        let mut b = LookupBudget::new(120, 4); // 30 a minute for this shard
        let on_demand = (0..40)
            .filter(|_| b.take_on_demand("lnbits", 1_000))
            .count();
        assert_eq!(on_demand, 30);
        let scheduled = (0..40).filter(|_| b.take("lnbits", 1_000)).count();
        assert_eq!(scheduled, 30, "pages took nothing from the schedule");
        assert!(b.take_on_demand("lnbits", 61_000), "a new minute");
        // A small budget still lets one page poll at full speed.
        let mut small = LookupBudget::new(8, 4);
        let n = (0..40)
            .filter(|_| small.take_on_demand("lnbits", 1_000))
            .count();
        assert_eq!(n, ONE_PAGE_PER_MINUTE as usize);
    }

    #[test]
    fn a_backend_gets_its_share_a_minute_and_others_are_apart() {
        let mut b = LookupBudget::new(30, 4);
        assert_eq!(b.per_minute(), 7);
        let taken = (0..20).filter(|_| b.take("lnbits", 1_000)).count();
        assert_eq!(taken, 7);
        assert!(b.take("lnd", 1_000));
        assert!(!b.take("lnbits", 59_999));
        assert_eq!(b.next_window_ms(), 60_000);
        assert!(b.take("lnbits", 60_000));
        assert_eq!(LookupBudget::new(1, 8).per_minute(), 1);
    }
}
