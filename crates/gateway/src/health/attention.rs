//! Why health is `degraded` although every backend answers: money the
//! queue could not move or settle, and paid-invoice events nobody received.
//! Each reason is a stable code; health and `/status` list them publicly
//! (the figures behind them need the admin key, see `STATUS_DETAILS_PUBLIC`).

use serde_json::Value;

use crate::receive::watch::engine::WatchStats;

/// Paid-invoice events undelivered for longer than this count.
pub const UNDELIVERED_MS: u64 = 3600 * 1000;

/// The reasons, from the queue's figures (as health shows them; `None`
/// without payouts) and the watch's (`None` when it could not answer);
/// empty when nothing needs a person.
pub fn reasons(
    queue: Option<&Value>,
    watch: Option<&WatchStats>,
    now_ms: u64,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    if let Some(q) = queue {
        if q.get("code").is_some() {
            out.push("payout_queue_unavailable");
        }
        if n(q, "failed_last_day") > 0 {
            out.push("payouts_failed_recently");
        }
        if n(q, "waiting_for_backend") > 0 {
            out.push("payouts_waiting_for_backend");
        }
        if n(q, "overpaid") > 0 {
            out.push("payouts_overpaid");
        }
    }
    match watch {
        None => out.push("invoice_watch_unavailable"),
        Some(w) => {
            if w.oldest_undelivered_at_ms
                .is_some_and(|at| now_ms.saturating_sub(at) > UNDELIVERED_MS)
            {
                out.push("invoice_events_undelivered");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn a_quiet_queue_and_watch_need_nobody() {
        let q = json!({"depth": 3, "unknown": 1, "dead_letter": 7, "failed_last_day": 0, "waiting_for_backend": 0, "overpaid": 0});
        let w = WatchStats {
            watched: 2,
            ..WatchStats::default()
        };
        assert!(reasons(Some(&q), Some(&w), NOW).is_empty());
        assert!(reasons(None, Some(&w), NOW).is_empty());
    }

    #[test]
    fn each_reason_has_its_code() {
        let q = json!({"failed_last_day": 1, "waiting_for_backend": 2, "overpaid": 1});
        let w = |at: u64| WatchStats {
            oldest_undelivered_at_ms: Some(at),
            ..WatchStats::default()
        };
        assert_eq!(
            reasons(Some(&q), Some(&w(NOW - UNDELIVERED_MS - 1)), NOW),
            vec![
                "payouts_failed_recently",
                "payouts_waiting_for_backend",
                "payouts_overpaid",
                "invoice_events_undelivered"
            ]
        );
        assert!(reasons(None, Some(&w(NOW - 1_000)), NOW).is_empty());
        let down = json!({"code": "storage_unavailable", "message": "x"});
        assert_eq!(
            reasons(Some(&down), None, NOW),
            vec!["payout_queue_unavailable", "invoice_watch_unavailable"]
        );
    }
}
