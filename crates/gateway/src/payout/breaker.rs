//! The payout breaker of one backend in one queue shard, fed by pay
//! outcomes only. A health call proves nothing about payments: in the
//! payout seed's outage the wallet answered every GET while every payment
//! POST failed. Its half-open probe is one real new payout, pinned like any
//! other. It also counts, for health, the payouts the backend paid and
//! handed on in the last hour.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::health::breaker::{self, Admission, BreakerPolicy, BreakerState};
use crate::payout::model::BackendId;
use crate::time::iso8601_ms;

/// Minutes of counts kept: the last hour.
const WINDOW_MINUTES: u64 = 60;

/// One minute's counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Minute {
    pub minute: u64,
    #[serde(default)]
    pub paid: u32,
    #[serde(default)]
    pub handed_on: u32,
    #[serde(default)]
    pub straight_past: u32,
}

/// What a pay answer says about the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayHealth {
    /// It paid, or said the invoice was already paid: it works.
    Worked,
    /// An error, a timeout, a refusal or an ambiguous answer.
    Failed,
}

/// What is counted per backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// A payout succeeded through it.
    Paid,
    /// A payout that had tried it moved to the next backend.
    HandedOn,
    /// A new payout went past it (its breaker open) without touching it.
    StraightPast,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PayoutBreaker {
    #[serde(default)]
    pub state: BreakerState,
    /// Consecutive failed pay answers.
    #[serde(default)]
    pub failures: u32,
    /// The payout that holds the half-open probe.
    #[serde(default)]
    pub probe: Option<String>,
    #[serde(default)]
    pub since_ms: u64,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub minutes: Vec<Minute>,
}

impl PayoutBreaker {
    /// Whether payout `id` may be sent through this backend now. Open: no,
    /// until the cooldown ends; then the first payout asking becomes the
    /// probe, and no other gets through until its outcome (or, if it never
    /// reports, until `probe_timeout_ms` after it began).
    pub fn admit(
        &mut self,
        id: &str,
        now_ms: u64,
        policy: &BreakerPolicy,
        probe_timeout_ms: u64,
    ) -> Admission {
        if let BreakerState::HalfOpen { .. } = self.state {
            if self.probe.as_deref() == Some(id) {
                return Admission::Probe;
            }
        }
        let policy = BreakerPolicy {
            cooldown_ms: match self.state {
                BreakerState::HalfOpen { .. } => probe_timeout_ms.max(policy.cooldown_ms),
                _ => policy.cooldown_ms,
            },
            ..*policy
        };
        let (admission, next) = breaker::admit(self.state, now_ms, &policy);
        if next != self.state {
            self.state = next;
            self.since_ms = now_ms;
        }
        if admission == Admission::Probe {
            self.probe = Some(id.to_string());
        }
        admission
    }

    /// A pay answer through this backend.
    pub fn on_pay(
        &mut self,
        health: PayHealth,
        error: Option<&str>,
        now_ms: u64,
        policy: &BreakerPolicy,
    ) {
        let before = self.state;
        match health {
            PayHealth::Worked => {
                self.failures = 0;
                self.state = breaker::on_success(self.state);
                self.probe = None;
            }
            PayHealth::Failed => {
                self.failures = self.failures.saturating_add(1);
                self.last_error = error.map(|e| e.chars().take(200).collect());
                self.state = breaker::on_failure(self.state, self.failures, now_ms, policy);
                if !matches!(self.state, BreakerState::HalfOpen { .. }) {
                    self.probe = None;
                }
            }
        }
        if self.state != before {
            self.since_ms = now_ms;
        }
    }

    pub fn count(&mut self, what: Counted, now_ms: u64) {
        let minute = now_ms / 60_000;
        self.minutes
            .retain(|m| m.minute + WINDOW_MINUTES > minute && m.minute <= minute);
        if self.minutes.last().is_none_or(|m| m.minute != minute) {
            self.minutes.push(Minute {
                minute,
                ..Minute::default()
            });
        }
        if let Some(m) = self.minutes.last_mut() {
            match what {
                Counted::Paid => m.paid += 1,
                Counted::HandedOn => m.handed_on += 1,
                Counted::StraightPast => m.straight_past += 1,
            }
        }
    }

    /// Counts in the last hour: paid, handed on, went straight past.
    pub fn last_hour(&self, now_ms: u64) -> (u64, u64, u64) {
        let minute = now_ms / 60_000;
        self.minutes
            .iter()
            .filter(|m| m.minute + WINDOW_MINUTES > minute)
            .fold((0, 0, 0), |(p, h, s), m| {
                (
                    p + u64::from(m.paid),
                    h + u64::from(m.handed_on),
                    s + u64::from(m.straight_past),
                )
            })
    }

    /// Whether it admits new payouts without a probe.
    pub fn closed(&self) -> bool {
        self.state == BreakerState::Closed
    }

    /// What health and `/status` show for this backend in one shard.
    pub fn view(&self, label: &str, now_ms: u64) -> Value {
        let (paid, handed_on, straight_past) = self.last_hour(now_ms);
        let mut v = json!({
            "backend": label,
            "breaker": self.state.name(),
            "consecutive_failures": self.failures,
            "paid_last_hour": paid,
            "handed_on_last_hour": handed_on,
            "went_past_last_hour": straight_past,
        });
        if let BreakerState::Open { until_ms } = self.state {
            v["open_until"] = json!(iso8601_ms(until_ms));
        }
        if self.since_ms > 0 {
            v["since"] = json!(iso8601_ms(self.since_ms));
        }
        if let Some(e) = &self.last_error {
            v["last_error"] = json!(e);
        }
        v
    }
}

/// One shard's view of the payout chain: each backend, in order, with its
/// payout breaker here (closed if it never wrote one).
pub fn chain_view(
    chain: &[backends::BackendConfig],
    breakers: &[(BackendId, PayoutBreaker)],
    now_ms: u64,
) -> Value {
    Value::Array(
        chain
            .iter()
            .map(|b| {
                let id = BackendId::of(b);
                let breaker = breakers
                    .iter()
                    .find(|(k, _)| *k == id)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                breaker.view(&id.label(), now_ms)
            })
            .collect(),
    )
}

/// How cautious a breaker state name is (the most cautious shard wins).
fn caution(name: &str) -> u8 {
    match name {
        "open" => 2,
        "half_open" => 1,
        _ => 0,
    }
}

/// Adds up the shards' views of the payout chain: counts add up, and a
/// backend shows the most cautious breaker of any shard, with how many
/// shards have it open.
pub fn merge_chain_views(shards: &[Value]) -> Value {
    const COUNTS: [&str; 3] = [
        "paid_last_hour",
        "handed_on_last_hour",
        "went_past_last_hour",
    ];
    let lists: Vec<&Vec<Value>> = shards.iter().filter_map(Value::as_array).collect();
    let backends = lists.iter().map(|l| l.len()).max().unwrap_or(0);
    let merged = (0..backends).filter_map(|i| {
        let views: Vec<&Value> = lists.iter().filter_map(|l| l.get(i)).collect();
        // The first of the most cautious: `max_by_key` keeps the last of equals.
        let most = views
            .iter()
            .rev()
            .max_by_key(|v| caution(v["breaker"].as_str().unwrap_or("")))?;
        let mut out = (*most).clone();
        for k in COUNTS {
            out[k] = json!(views.iter().filter_map(|v| v[k].as_u64()).sum::<u64>());
        }
        out["open_in_shards"] = json!(views.iter().filter(|v| v["breaker"] == "open").count());
        Some(out)
    });
    Value::Array(merged.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: BreakerPolicy = BreakerPolicy {
        failure_threshold: 2,
        cooldown_ms: 1_000,
    };

    #[test]
    fn failures_open_it_and_one_new_payout_probes_after_the_cooldown() {
        let mut b = PayoutBreaker::default();
        assert_eq!(b.admit("a", 0, &P, 5_000), Admission::Allow);
        b.on_pay(PayHealth::Failed, Some("520"), 10, &P);
        assert!(b.closed());
        b.on_pay(PayHealth::Failed, Some("520"), 20, &P);
        assert_eq!(b.state, BreakerState::Open { until_ms: 1_020 });
        assert!(matches!(
            b.admit("b", 500, &P, 5_000),
            Admission::Reject { retry_at_ms: 1_020 }
        ));
        assert_eq!(b.admit("c", 1_020, &P, 5_000), Admission::Probe);
        assert_eq!(
            b.admit("c", 1_030, &P, 5_000),
            Admission::Probe,
            "the probe itself again"
        );
        assert!(matches!(
            b.admit("d", 1_030, &P, 5_000),
            Admission::Reject { .. }
        ));
        // A probe that never reports frees the slot after the pay timeout.
        assert_eq!(b.admit("d", 6_020, &P, 5_000), Admission::Probe);
        b.on_pay(PayHealth::Worked, None, 6_100, &P);
        assert!(b.closed());
        assert_eq!(b.probe, None);
        assert_eq!(b.admit("e", 6_200, &P, 5_000), Admission::Allow);
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let mut b = PayoutBreaker {
            state: BreakerState::Open { until_ms: 0 },
            ..PayoutBreaker::default()
        };
        assert_eq!(b.admit("p", 5, &P, 5_000), Admission::Probe);
        b.on_pay(PayHealth::Failed, Some("timeout"), 50, &P);
        assert_eq!(b.state, BreakerState::Open { until_ms: 1_050 });
        assert_eq!(b.probe, None);
    }

    #[test]
    fn counts_cover_the_last_hour_only() {
        let mut b = PayoutBreaker::default();
        b.count(Counted::Paid, 0);
        b.count(Counted::HandedOn, 30_000);
        b.count(Counted::StraightPast, 61_000);
        assert_eq!(b.last_hour(61_000), (1, 1, 1));
        assert_eq!(b.last_hour(3_600_000), (0, 0, 1));
        b.count(Counted::Paid, 3_700_000);
        assert_eq!(b.minutes.len(), 1, "old minutes are dropped on write");
        assert_eq!(b.view("x", 3_700_000)["paid_last_hour"], 1);
    }

    #[test]
    fn shards_merge_to_the_most_cautious_breaker_and_summed_counts() {
        let a = json!([{"backend": "a", "breaker": "closed", "paid_last_hour": 2, "handed_on_last_hour": 0, "went_past_last_hour": 0},
                       {"backend": "b", "breaker": "closed", "paid_last_hour": 1, "handed_on_last_hour": 0, "went_past_last_hour": 0}]);
        let b = json!([{"backend": "a", "breaker": "open", "paid_last_hour": 0, "handed_on_last_hour": 3, "went_past_last_hour": 4, "last_error": "520"},
                       {"backend": "b", "breaker": "closed", "paid_last_hour": 5, "handed_on_last_hour": 0, "went_past_last_hour": 0}]);
        let m = merge_chain_views(&[a, b]);
        assert_eq!(m[0]["breaker"], "open");
        assert_eq!(m[0]["open_in_shards"], 1);
        assert_eq!(m[0]["paid_last_hour"], 2);
        assert_eq!(m[0]["handed_on_last_hour"], 3);
        assert_eq!(m[0]["last_error"], "520");
        assert_eq!(m[1]["paid_last_hour"], 6);
        assert_eq!(m[1]["open_in_shards"], 0);
    }
}
