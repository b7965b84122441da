//! The health model: one record per provider, kept together in one KV
//! document so a request reads it once. Real requests (passive) and cron
//! probes (active) both feed it. KV allows about one write per key per
//! second, so outcomes are aggregated and only flushed when something a
//! reader would act on changed, or the record is getting stale. Each
//! change a request makes is also journaled, so an isolate can apply it to
//! its own current copy (see [`isolate`]) and count exactly.

pub mod attention;
pub mod breaker;
pub mod isolate;
pub mod merge;
pub mod probe;
pub mod report;
pub mod status_page;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::health::breaker::{Admission, BreakerPolicy, BreakerState};

/// How many recent outcomes feed the success rate.
pub const WINDOW: usize = 20;
/// How many cron probe results the status page charts.
pub const HISTORY: usize = 48;
/// Changes only to counters (latency samples, failure counts below the
/// threshold) are written at most this often per isolate: a breaker that
/// opens or closes, or a provider going offline or back, is written at once.
pub const FLUSH_INTERVAL_MS: u64 = 15 * 60_000;
/// Fewer successful samples than this give no latency estimate: a single
/// lucky answer must not set a tight hedge delay.
pub const LATENCY_MIN_SAMPLES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub at_ms: u64,
    pub ok: bool,
    pub latency_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BackendHealth {
    #[serde(default)]
    pub breaker: BreakerState,
    /// When the breaker last changed state: of two copies, the newer
    /// breaker wins a merge.
    #[serde(default)]
    pub breaker_since_ms: u64,
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(default)]
    pub last_check_ms: Option<u64>,
    #[serde(default)]
    pub last_latency_ms: Option<u64>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_success_ms: Option<u64>,
    /// Recent outcomes of real requests and probes, newest last.
    #[serde(default)]
    pub window: Vec<Sample>,
    /// Cron probe results, newest last.
    #[serde(default)]
    pub history: Vec<Sample>,
}

impl BackendHealth {
    /// Online while the breaker lets calls through and the last outcome was good.
    pub fn online(&self) -> bool {
        matches!(self.breaker, BreakerState::Closed) && self.consecutive_failures == 0
    }

    /// The breaker still lets calls through (it has not opened).
    pub fn breaker_closed(&self) -> bool {
        matches!(self.breaker, BreakerState::Closed)
    }

    /// Share of successes in the recent window, if there is one.
    pub fn success_rate(&self) -> Option<f64> {
        if self.window.is_empty() {
            return None;
        }
        let ok = self.window.iter().filter(|s| s.ok).count();
        Some(ok as f64 / self.window.len() as f64)
    }

    /// The 95th percentile (nearest rank) of the latencies of recent
    /// successful calls, requests and probes alike, or `None` with fewer than
    /// [`LATENCY_MIN_SAMPLES`]. Failures are left out: how long a refusal or a
    /// timeout took says nothing about when a good answer is due.
    pub fn latency_p95_ms(&self) -> Option<u64> {
        let mut ok: Vec<u64> = self
            .window
            .iter()
            .filter(|s| s.ok)
            .map(|s| s.latency_ms)
            .collect();
        if ok.len() < LATENCY_MIN_SAMPLES {
            return None;
        }
        crate::small_sort::sort_by_key(&mut ok, |l| *l);
        let rank = (ok.len() * 95).div_ceil(100);
        ok.get(rank.saturating_sub(1)).copied()
    }

    /// What the hedge delay follows: the p95 once there are enough samples;
    /// before that, the slowest of the few successes seen (a provider that
    /// answered fast is expected to again); nothing without any success.
    pub fn hedge_basis_ms(&self) -> Option<u64> {
        self.latency_p95_ms().or_else(|| {
            self.window
                .iter()
                .filter(|s| s.ok)
                .map(|s| s.latency_ms)
                .max()
        })
    }
}

/// When a request's health changes must reach KV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    No,
    /// Before the response: a breaker or online state changed.
    Now,
    /// After the response: only counters changed, and the copy is stale.
    Background,
}

/// Where an outcome came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Request,
    Probe,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HealthBook {
    #[serde(default)]
    pub providers: BTreeMap<String, BackendHealth>,
    #[serde(default)]
    pub written_at_ms: u64,
    /// What was recorded in this copy since it was handed out: how a
    /// request changed it. Not part of its state (never stored, equal in
    /// every comparison).
    #[serde(skip)]
    pub journal: Journal,
}

/// One change recorded in a health book.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Admit {
        name: String,
        now_ms: u64,
        policy: BreakerPolicy,
    },
    Success {
        name: String,
        latency_ms: u64,
        now_ms: u64,
        source: Source,
    },
    Failure {
        name: String,
        error: String,
        latency_ms: u64,
        now_ms: u64,
        source: Source,
        policy: BreakerPolicy,
    },
}

/// The changes recorded in a copy of the book, in order.
#[derive(Debug, Clone, Default)]
pub struct Journal(pub Vec<Entry>);

impl PartialEq for Journal {
    /// A journal says how a copy was reached, not what it holds.
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

/// Moves a breaker, noting when it changed state.
fn set_breaker(h: &mut BackendHealth, next: BreakerState, now_ms: u64) {
    if next != h.breaker {
        h.breaker = next;
        h.breaker_since_ms = now_ms;
    }
}

fn push_capped(v: &mut Vec<Sample>, s: Sample, cap: usize) {
    v.push(s);
    if v.len() > cap {
        let excess = v.len() - cap;
        v.drain(..excess);
    }
}

impl HealthBook {
    pub fn get(&self, name: &str) -> BackendHealth {
        self.providers.get(name).cloned().unwrap_or_default()
    }

    fn entry(&mut self, name: &str) -> &mut BackendHealth {
        self.providers.entry(name.to_string()).or_default()
    }

    /// What [`HealthBook::admit`] would answer now, changing nothing (for a
    /// caller that only looks, such as check-invoice's index-miss search).
    pub fn peek_admit(&self, name: &str, now_ms: u64, policy: &BreakerPolicy) -> Admission {
        self.providers.get(name).map_or(Admission::Allow, |h| {
            breaker::admit(h.breaker, now_ms, policy).0
        })
    }

    /// Asks the breaker of `name` whether a call may go out now.
    pub fn admit(&mut self, name: &str, now_ms: u64, policy: &BreakerPolicy) -> Admission {
        self.journal.0.push(Entry::Admit {
            name: name.to_string(),
            now_ms,
            policy: *policy,
        });
        self.apply_admit(name, now_ms, policy)
    }

    fn apply_admit(&mut self, name: &str, now_ms: u64, policy: &BreakerPolicy) -> Admission {
        let h = self.entry(name);
        let (admission, next) = breaker::admit(h.breaker, now_ms, policy);
        set_breaker(h, next, now_ms);
        admission
    }

    pub fn record_success(&mut self, name: &str, latency_ms: u64, now_ms: u64, source: Source) {
        self.journal.0.push(Entry::Success {
            name: name.to_string(),
            latency_ms,
            now_ms,
            source,
        });
        self.apply_success(name, latency_ms, now_ms, source);
    }

    fn apply_success(&mut self, name: &str, latency_ms: u64, now_ms: u64, source: Source) {
        let h = self.entry(name);
        set_breaker(h, breaker::on_success(h.breaker), now_ms);
        h.consecutive_failures = 0;
        h.last_check_ms = Some(now_ms);
        h.last_latency_ms = Some(latency_ms);
        h.last_success_ms = Some(now_ms);
        h.last_error = None;
        let s = Sample {
            at_ms: now_ms,
            ok: true,
            latency_ms,
        };
        push_capped(&mut h.window, s, WINDOW);
        if source == Source::Probe {
            push_capped(&mut h.history, s, HISTORY);
        }
    }

    pub fn record_failure(
        &mut self,
        name: &str,
        error: &str,
        latency_ms: u64,
        now_ms: u64,
        source: Source,
        policy: &BreakerPolicy,
    ) {
        self.journal.0.push(Entry::Failure {
            name: name.to_string(),
            error: error.to_string(),
            latency_ms,
            now_ms,
            source,
            policy: *policy,
        });
        self.apply_failure(name, error, latency_ms, now_ms, source, policy);
    }

    /// Applies `journal` (another copy's changes) to this book, as if they
    /// had been recorded here: exact counting when several requests of one
    /// isolate change their own copies at once.
    pub fn replay(&mut self, journal: &Journal) {
        for e in &journal.0 {
            match e {
                Entry::Admit {
                    name,
                    now_ms,
                    policy,
                } => {
                    self.apply_admit(name, *now_ms, policy);
                }
                Entry::Success {
                    name,
                    latency_ms,
                    now_ms,
                    source,
                } => self.apply_success(name, *latency_ms, *now_ms, *source),
                Entry::Failure {
                    name,
                    error,
                    latency_ms,
                    now_ms,
                    source,
                    policy,
                } => self.apply_failure(name, error, *latency_ms, *now_ms, *source, policy),
            }
        }
    }

    /// This copy's changes, leaving it with none.
    pub fn take_journal(&mut self) -> Journal {
        std::mem::take(&mut self.journal)
    }

    fn apply_failure(
        &mut self,
        name: &str,
        error: &str,
        latency_ms: u64,
        now_ms: u64,
        source: Source,
        policy: &BreakerPolicy,
    ) {
        let h = self.entry(name);
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        let next = breaker::on_failure(h.breaker, h.consecutive_failures, now_ms, policy);
        set_breaker(h, next, now_ms);
        h.last_check_ms = Some(now_ms);
        h.last_latency_ms = Some(latency_ms);
        h.last_error = Some(error.chars().take(300).collect());
        let s = Sample {
            at_ms: now_ms,
            ok: false,
            latency_ms,
        };
        push_capped(&mut h.window, s, WINDOW);
        if source == Source::Probe {
            push_capped(&mut h.history, s, HISTORY);
        }
    }

    /// Whether and how urgently `self` must be written over `before` (the
    /// stored copy): at once when a breaker opened or closed, or a provider
    /// went offline or came back (other isolates act on it); in the
    /// background when only counters changed and the stored copy is older
    /// than the flush interval; otherwise not at all. A breaker moving
    /// between open and half-open (a probe, a failed probe) stays local:
    /// each isolate probes on its own, and a steady outage costs no writes.
    pub fn flush_needed(&self, before: &HealthBook, now_ms: u64) -> Flush {
        if self == before {
            return Flush::No;
        }
        let visible_change = self.providers.iter().any(|(name, h)| {
            let old = before.get(name);
            old.breaker_closed() != h.breaker_closed() || old.online() != h.online()
        });
        if visible_change {
            Flush::Now
        } else if now_ms.saturating_sub(before.written_at_ms) >= FLUSH_INTERVAL_MS {
            Flush::Background
        } else {
            Flush::No
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: BreakerPolicy = BreakerPolicy {
        failure_threshold: 2,
        cooldown_ms: 1_000,
    };

    #[test]
    fn failures_open_the_breaker_and_success_closes_it() {
        let mut b = HealthBook::default();
        b.record_failure("lnd", "timeout", 5, 10, Source::Request, &P);
        assert!(!b.get("lnd").online());
        assert_eq!(b.get("lnd").breaker, BreakerState::Closed);
        b.record_failure("lnd", "timeout", 5, 20, Source::Request, &P);
        assert_eq!(b.get("lnd").breaker, BreakerState::Open { until_ms: 1_020 });
        assert!(matches!(b.admit("lnd", 500, &P), Admission::Reject { .. }));
        assert_eq!(b.admit("lnd", 1_020, &P), Admission::Probe);
        b.record_success("lnd", 3, 1_030, Source::Request);
        assert!(b.get("lnd").online());
        assert_eq!(b.get("lnd").success_rate(), Some(1.0 / 3.0));
    }

    #[test]
    fn window_and_history_are_capped() {
        let mut b = HealthBook::default();
        for i in 0..100 {
            b.record_success("phoenixd", i, i, Source::Probe);
        }
        let h = b.get("phoenixd");
        assert_eq!(h.window.len(), WINDOW);
        assert_eq!(h.history.len(), HISTORY);
        assert_eq!(h.history.last().map(|s| s.at_ms), Some(99));
    }

    #[test]
    fn flush_only_on_visible_change_or_when_stale() {
        let mut before = HealthBook::default();
        before.record_success("phoenixd", 1, 0, Source::Request);
        before.written_at_ms = 1_000;
        let mut after = before.clone();
        after.record_success("phoenixd", 2, 2_000, Source::Request);
        assert_eq!(
            after.flush_needed(&before, 2_000),
            Flush::No,
            "only counters changed"
        );
        assert_eq!(
            after.flush_needed(&before, 1_000 + FLUSH_INTERVAL_MS),
            Flush::Background
        );
        let mut failed = before.clone();
        failed.record_failure("phoenixd", "boom", 1, 2_000, Source::Request, &P);
        assert_eq!(
            failed.flush_needed(&before, 2_000),
            Flush::Now,
            "went offline"
        );
        assert_eq!(before.flush_needed(&before.clone(), u64::MAX), Flush::No);
    }

    #[test]
    fn p95_uses_recent_successes_only_and_needs_a_few() {
        let mut b = HealthBook::default();
        b.record_success("lnd", 40, 1, Source::Request);
        b.record_success("lnd", 50, 2, Source::Probe);
        assert_eq!(
            b.get("lnd").latency_p95_ms(),
            None,
            "two samples are too few"
        );
        b.record_failure("lnd", "timeout", 5_000, 3, Source::Request, &P);
        assert_eq!(b.get("lnd").latency_p95_ms(), None, "failures do not count");
        // Too few for a p95: the hedge follows the slowest success seen.
        assert_eq!(b.get("lnd").hedge_basis_ms(), Some(50));
        assert_eq!(b.get("phoenixd").hedge_basis_ms(), None, "no success yet");
        b.record_success("lnd", 30, 4, Source::Request);
        assert_eq!(b.get("lnd").latency_p95_ms(), Some(50));
        for i in 0..19 {
            b.record_success("lnd", 10 + i, 10 + i, Source::Request);
        }
        b.record_success("lnd", 900, 100, Source::Request);
        // 20 samples: 10..=28 and 900; the 19th smallest is 28.
        assert_eq!(b.get("lnd").latency_p95_ms(), Some(28));
    }

    #[test]
    fn old_documents_without_fields_still_parse() {
        let b: HealthBook = serde_json::from_str(r#"{"providers":{"lnd":{}}}"#).unwrap_or_default();
        assert!(b.get("lnd").online());
    }
}
