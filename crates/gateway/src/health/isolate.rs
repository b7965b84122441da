//! One isolate's health book. Requests in an isolate start from its
//! current copy and, when they end, their journaled changes are applied to
//! that copy, so the isolate counts every failure whatever the request
//! rate. The stored copy (KV) is read at most once a second and merged in,
//! never taken as it is; this isolate's copy is written back when a
//! breaker opens or closes or a provider goes offline or comes back (at
//! once), or when only counters changed and the stored copy is older than
//! [`FLUSH_INTERVAL_MS`](crate::health::FLUSH_INTERVAL_MS); never
//! twice within a second (KV's limit per key).
//!
//! The bound this gives: within one isolate, a breaker opens on the
//! threshold-th consecutive failure. Across isolates, each counts its own
//! failures and merges the others' when it reads (the larger count since
//! the last success wins), so every isolate opens after at most the
//! threshold of its own failures, sooner when others' counts reach it; an
//! open breaker written by one isolate reaches the others when they next
//! read, within [`READ_EVERY_MS`] of this isolate's clock plus KV's own
//! propagation (up to 60 s between locations).

use crate::health::merge::merge;
use crate::health::{Flush, HealthBook, Journal};
use crate::log::{breaker_transitions, BreakerLog};

/// An isolate re-reads the stored copy at most this often.
pub const READ_EVERY_MS: u64 = 1_000;
/// KV refuses a second write to one key within a second.
pub const WRITE_SPACING_MS: u64 = 1_000;

/// What a commit did: what to write, and the breakers it moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub write: Option<Write>,
    pub transitions: Vec<BreakerLog>,
}

/// What to write to KV after a commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub book: HealthBook,
    /// Before the response (other isolates act on it), or after it.
    pub urgent: bool,
    /// Wait this long first: this isolate wrote less than a second ago.
    pub wait_ms: u64,
}

#[derive(Debug, Clone, Default)]
pub struct IsolateHealth {
    /// This isolate's current copy, every committed change applied.
    book: HealthBook,
    /// The stored copy as this isolate last read or wrote it.
    stored: HealthBook,
    read_at_ms: Option<u64>,
    wrote_at_ms: Option<u64>,
}

impl IsolateHealth {
    /// Whether the stored copy should be read (and merged) before the next view.
    pub fn needs_read(&self, now_ms: u64) -> bool {
        match self.read_at_ms {
            None => true,
            Some(at) => now_ms < at || now_ms - at >= READ_EVERY_MS,
        }
    }

    /// Merges a freshly read stored copy into this isolate's.
    pub fn absorb(&mut self, stored: HealthBook, now_ms: u64) {
        self.book = merge(&self.book, &stored);
        self.stored = stored;
        self.read_at_ms = Some(now_ms);
    }

    /// A copy for one request, with an empty journal.
    pub fn view(&self) -> HealthBook {
        let mut b = self.book.clone();
        b.journal = Journal::default();
        b
    }

    /// Applies a request's changes to this isolate's copy, and says what,
    /// if anything, to write. The cron's probes follow the same rule, so a
    /// steady deployment writes health at most once per flush interval.
    pub fn commit(&mut self, journal: &Journal, now_ms: u64) -> Option<Write> {
        self.commit_from(journal, now_ms, "request").write
    }

    /// [`IsolateHealth::commit`], with the breaker transitions it caused in
    /// this isolate's copy (`source`: `request` or `probe`).
    pub fn commit_from(&mut self, journal: &Journal, now_ms: u64, source: &str) -> Committed {
        let before = self.view();
        self.book.replay(journal);
        let transitions = breaker_transitions(&before, &self.book, source);
        Committed {
            write: self.decide_write(now_ms),
            transitions,
        }
    }

    fn decide_write(&mut self, now_ms: u64) -> Option<Write> {
        let flush = self.book.flush_needed(&self.stored, now_ms);
        let wait_ms = self.wrote_at_ms.map_or(0, |t| {
            t.saturating_add(WRITE_SPACING_MS).saturating_sub(now_ms)
        });
        match flush {
            Flush::No => None,
            // A counter-only write may wait for a later request.
            Flush::Background if wait_ms > 0 => None,
            Flush::Now | Flush::Background => {
                let at = now_ms + wait_ms;
                self.book.written_at_ms = at;
                self.stored = self.view();
                self.wrote_at_ms = Some(at);
                Some(Write {
                    book: self.view(),
                    urgent: flush == Flush::Now,
                    wait_ms,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::breaker::{Admission, BreakerPolicy};
    use crate::health::{Source, FLUSH_INTERVAL_MS};
    use proptest::prelude::*;

    const P: BreakerPolicy = BreakerPolicy {
        failure_threshold: 3,
        cooldown_ms: 30_000,
    };

    fn fail(book: &mut HealthBook, t: u64) {
        book.record_failure("phoenixd", "refused", 1, t, Source::Request, &P);
    }

    fn open(b: &HealthBook) -> bool {
        !b.get("phoenixd").breaker_closed()
    }

    /// The bug of issue 15: requests a few hundred ms apart, each starting
    /// from the stored copy, never got past one failure.
    #[test]
    fn back_to_back_requests_open_the_breaker_on_the_threshold_th_failure() {
        let mut iso = IsolateHealth::default();
        let mut kv = HealthBook::default();
        let mut writes = 0;
        for i in 0..3u64 {
            let t = 10_000 + i * 300;
            if iso.needs_read(t) {
                iso.absorb(kv.clone(), t);
            }
            let mut req = iso.view();
            assert!(!open(&req), "open before failure {}", i + 1);
            fail(&mut req, t);
            if let Some(w) = iso.commit(&req.take_journal(), t) {
                kv = w.book;
                writes += 1;
            }
        }
        assert!(open(&iso.view()));
        assert!(open(&kv), "the open breaker is written at once");
        assert_eq!(writes, 2, "offline (first failure), then open");
    }

    #[test]
    fn concurrent_requests_of_one_isolate_all_count() {
        let mut iso = IsolateHealth::default();
        iso.absorb(HealthBook::default(), 0);
        let mut a = iso.view();
        let mut b = iso.view();
        let mut c = iso.view();
        fail(&mut a, 1);
        fail(&mut b, 2);
        fail(&mut c, 3);
        for r in [&mut a, &mut b, &mut c] {
            let j = r.take_journal();
            let _ = iso.commit(&j, 5);
        }
        assert_eq!(iso.view().get("phoenixd").consecutive_failures, 3);
        assert!(open(&iso.view()));
    }

    #[test]
    fn a_steady_outage_writes_once_per_change_that_matters() {
        let mut iso = IsolateHealth::default();
        iso.absorb(HealthBook::default(), 0);
        let mut writes = 0;
        // One failing request every 100 ms for an hour.
        for i in 0..36_000u64 {
            let t = i * 100;
            let mut req = iso.view();
            if !matches!(req.admit("phoenixd", t, &P), Admission::Reject { .. }) {
                fail(&mut req, t);
            }
            if iso.commit(&req.take_journal(), t).is_some() {
                writes += 1;
            }
        }
        // Offline, then open; probes every cooldown fail without a write;
        // counters flush every 15 minutes at most.
        assert!(writes <= 2 + 4, "{writes} writes in an hour");
    }

    /// The cron probes every provider every 5 minutes. A healthy provider's
    /// probes only add samples, so a day costs 96 writes (one per flush
    /// interval), not 288; a provider going offline is written at once.
    #[test]
    fn a_steady_cron_writes_once_per_flush_interval() {
        let mut iso = IsolateHealth::default();
        iso.absorb(HealthBook::default(), 0);
        let mut writes = Vec::new();
        for i in 0..288u64 {
            let t = 1 + i * 5 * 60_000;
            let mut probe = iso.view();
            probe.record_success("phoenixd", 12, t, Source::Probe);
            if iso.commit(&probe.take_journal(), t).is_some() {
                writes.push(t);
            }
        }
        assert!(writes.len() <= 96, "{} writes in a day", writes.len());
        assert!(writes.windows(2).all(|w| w[1] - w[0] >= FLUSH_INTERVAL_MS));
        let t = 1 + 288 * 5 * 60_000;
        let mut probe = iso.view();
        fail(&mut probe, t);
        let w = iso.commit(&probe.take_journal(), t);
        assert!(w.is_some_and(|w| w.urgent), "offline is written at once");
    }

    proptest! {
        /// However requests interleave (loads, cache hits, commits in any
        /// order) and however the stored copy lags or drops writes, an
        /// isolate that sees `threshold` consecutive failures has an open
        /// breaker once they are committed.
        #[test]
        fn failures_open_the_breaker_within_the_bound(
            steps in proptest::collection::vec((0u8..4, 0u64..1_500), 3..60),
            drop_writes in any::<bool>(),
        ) {
            let mut iso = IsolateHealth::default();
            let mut kv = HealthBook::default();
            let mut in_flight: Vec<HealthBook> = Vec::new();
            let mut committed_failures = 0u32;
            let mut t = 1_000u64;
            for (op, dt) in steps {
                t += dt;
                match op {
                    // A request starts (reading the stored copy when due).
                    0 | 1 => {
                        if iso.needs_read(t) {
                            iso.absorb(kv.clone(), t);
                        }
                        let mut r = iso.view();
                        fail(&mut r, t);
                        in_flight.push(r);
                    }
                    // A request ends.
                    2 if !in_flight.is_empty() => {
                        let mut r = in_flight.remove(0);
                        committed_failures += 1;
                        if let Some(w) = iso.commit(&r.take_journal(), t) {
                            if !drop_writes {
                                kv = w.book;
                            }
                        }
                        if committed_failures >= P.failure_threshold {
                            prop_assert!(open(&iso.view()), "closed after {} failures", committed_failures);
                        }
                    }
                    // Another isolate's stale copy is written over KV.
                    _ => kv = HealthBook::default(),
                }
            }
        }

        /// Two isolates failing in turn: each opens after at most the
        /// threshold of its own failures.
        #[test]
        fn every_isolate_opens_within_its_own_threshold(
            order in proptest::collection::vec(any::<bool>(), 1..20),
        ) {
            let mut isos = [IsolateHealth::default(), IsolateHealth::default()];
            let mut kv = HealthBook::default();
            let mut own = [0u32; 2];
            for (k, first) in order.into_iter().enumerate() {
                let i = usize::from(!first);
                let t = 1_000 + k as u64 * 400;
                if isos[i].needs_read(t) {
                    isos[i].absorb(kv.clone(), t);
                }
                let mut r = isos[i].view();
                fail(&mut r, t);
                own[i] += 1;
                if let Some(w) = isos[i].commit(&r.take_journal(), t) {
                    kv = w.book;
                }
                if own[i] >= P.failure_threshold {
                    prop_assert!(open(&isos[i].view()));
                }
            }
        }
    }
}
