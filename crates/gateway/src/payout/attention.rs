//! The admin list of payouts that need a person: dead letters, payouts
//! whose outcome has been unknown for too long, queued payouts whose sent
//! hash cannot be verified (every lookup failing) for as long, payouts
//! waiting for a backend that is no longer configured, and overpaid ones.

use serde_json::{json, Value};

use crate::api::error::ApiError;
use crate::payout::listing::{cursor_of, ListQuery};
use crate::payout::model::{Payout, PayoutState};

/// A payout that moved to another backend is listed for this long after
/// the move, so the operator sees what an outage moved.
pub const MOVED_SHOWN_MS: u64 = 24 * 3600 * 1000;

/// An unknown outcome older than this (seconds) needs attention by default.
pub const DEFAULT_UNKNOWN_OLDER_THAN_SECS: u64 = 3600;
/// At most a year (365 days, as openapi.json says): a larger threshold is
/// a typo, not a choice.
pub const MAX_UNKNOWN_OLDER_THAN_SECS: u64 = 365 * 24 * 3600;

#[derive(Debug, Clone, PartialEq)]
pub struct AttentionQuery {
    pub unknown_older_than_secs: u64,
    /// Page size and cursor, as for `GET /api/payouts` (no status filter).
    pub page: ListQuery,
}

impl AttentionQuery {
    pub fn parse(
        unknown_older_than_secs: Option<&str>,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<AttentionQuery, ApiError> {
        let threshold = match unknown_older_than_secs {
            None => DEFAULT_UNKNOWN_OLDER_THAN_SECS,
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= MAX_UNKNOWN_OLDER_THAN_SECS)
                .ok_or_else(|| ApiError::InvalidQuery {
                    param: "unknown_older_than_secs",
                    message: format!(
                        "must be a whole number of seconds from 0 to {MAX_UNKNOWN_OLDER_THAN_SECS}"
                    ),
                })?,
        };
        Ok(AttentionQuery {
            unknown_older_than_secs: threshold,
            page: ListQuery::parse(None, limit, cursor)?,
        })
    }

    /// Unknown since at or before this time (ms) counts as "unknown too long".
    pub fn unknown_since_cutoff_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.unknown_older_than_secs.saturating_mul(1000))
    }
}

/// Why `p` needs attention; empty when it does not. `moved_since_ms`: a
/// move to another backend at or after it is listed. The store's query
/// selects the same payouts (`SqlStore::attention_list`).
pub fn reasons(p: &Payout, unknown_cutoff_ms: u64, moved_since_ms: u64) -> Vec<&'static str> {
    let mut why = Vec::new();
    match p.state {
        PayoutState::Failed { .. } => why.push("failed"),
        PayoutState::Unknown { since_ms, .. } if since_ms <= unknown_cutoff_ms => {
            why.push("unknown_too_long")
        }
        // Waiting to verify a sent hash whose lookups keep proving nothing
        // (failing, or a backend whose lookups may not see its payments).
        PayoutState::Queued {
            verify_first: true, ..
        } if p
            .lookups_failing_since_ms
            .is_some_and(|t| t <= unknown_cutoff_ms) =>
        {
            why.push("unverified_too_long")
        }
        _ => {}
    }
    if p.blocked.is_some() {
        why.push("waiting_for_backend");
    }
    if p.overpaid {
        why.push("overpaid");
    }
    if p.moved_at_ms.is_some_and(|t| t >= moved_since_ms) {
        why.push("changed_backend");
    }
    why
}

/// One shard's page: each payout's view with an `attention` list, and the
/// cursors `shard::merge_pages` needs to merge shards.
pub fn shard_page(items: &[Payout], unknown_cutoff_ms: u64, moved_since_ms: u64) -> Value {
    let flagged: Vec<(&Payout, Vec<&str>)> = items
        .iter()
        .map(|p| (p, reasons(p, unknown_cutoff_ms, moved_since_ms)))
        .filter(|(_, r)| !r.is_empty())
        .collect();
    json!({
        "payouts": flagged.iter().map(|(p, r)| {
            let mut v = p.view();
            v["attention"] = json!(r);
            v
        }).collect::<Vec<_>>(),
        "cursors": flagged.iter().map(|(p, _)| cursor_of(p)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payout::model::Blocked;

    fn payout(state: Value) -> Payout {
        serde_json::from_value(json!({
            "id": "po_00", "idempotency_key": "k", "fingerprint": "f",
            "created_at_ms": 1, "age_from_ms": 1, "destination": "a@b.c",
            "destination_kind": "lightning_address", "lnurl": null, "amount_sat": 1,
            "comment": null, "external_id": null, "provider": "lnbits", "invoice": "lnbc1",
            "payment_hash": "00", "invoice_expires_at_secs": 0, "previous_hashes": [],
            "state": state, "send_attempts": 0, "last_sent_at_ms": null, "lookups": 0,
            "last_error": null, "fee_msat": null, "preimage": null, "webhook": null,
            "log": [], "version": 1,
        }))
        .unwrap_or_else(|e| panic!("test payout no longer matches the model: {e}"))
    }

    #[test]
    fn the_threshold_defaults_to_an_hour_and_is_validated() {
        let q = AttentionQuery::parse(None, None, None).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(q.unknown_older_than_secs, 3600);
        assert_eq!(q.unknown_since_cutoff_ms(10_000_000), 6_400_000);
        assert_eq!(
            AttentionQuery::parse(Some("0"), Some("5"), None)
                .map(|q| (q.unknown_older_than_secs, q.page.limit)),
            Ok((0, 5))
        );
        for bad in ["-1", "1.5", "x", "99999999999"] {
            let e = AttentionQuery::parse(Some(bad), None, None).err();
            assert_eq!(
                e.map(|e| e.to_json()["error"]["param"].clone()),
                Some(json!("unknown_older_than_secs")),
                "{bad}"
            );
        }
        assert!(AttentionQuery::parse(None, Some("0"), None).is_err());
    }

    #[test]
    fn reasons_cover_failed_old_unknown_blocked_and_overpaid() {
        let failed = payout(json!({"status": "failed", "at_ms": 1, "reason": "x"}));
        assert_eq!(reasons(&failed, 0, u64::MAX), vec!["failed"]);
        let unknown =
            payout(json!({"status": "unknown", "since_ms": 1_000, "next_check_ms": 2_000}));
        assert_eq!(
            reasons(&unknown, 999, u64::MAX),
            Vec::<&str>::new(),
            "recent unknown"
        );
        assert_eq!(reasons(&unknown, 1_000, u64::MAX), vec!["unknown_too_long"]);
        let mut queued =
            payout(json!({"status": "queued", "next_at_ms": 0, "verify_first": false}));
        assert!(reasons(&queued, u64::MAX, u64::MAX).is_empty());
        queued.blocked = Some(Blocked {
            since_ms: 0,
            reason: "gone".into(),
            checks: 1,
        });
        assert_eq!(reasons(&queued, 0, u64::MAX), vec!["waiting_for_backend"]);
        let mut unverified =
            payout(json!({"status": "queued", "next_at_ms": 0, "verify_first": true}));
        assert!(
            reasons(&unverified, u64::MAX, u64::MAX).is_empty(),
            "lookups fine"
        );
        unverified.lookups_failing_since_ms = Some(500);
        assert!(
            reasons(&unverified, 499, u64::MAX).is_empty(),
            "not for long yet"
        );
        assert_eq!(
            reasons(&unverified, 500, u64::MAX),
            vec!["unverified_too_long"]
        );
        let mut paid = payout(json!({"status": "succeeded", "at_ms": 1}));
        assert!(reasons(&paid, u64::MAX, u64::MAX).is_empty());
        paid.overpaid = true;
        assert_eq!(reasons(&paid, 0, u64::MAX), vec!["overpaid"]);
        let page = shard_page(&[failed, paid, queued.clone(), unknown], 0, u64::MAX);
        assert_eq!(
            page["payouts"].as_array().map(Vec::len),
            Some(3),
            "the recent unknown is left out"
        );
        assert_eq!(page["cursors"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            page["payouts"][2]["attention"],
            json!(["waiting_for_backend"])
        );
    }

    #[test]
    fn a_payout_that_changed_backend_is_listed_for_a_day() {
        let mut p = payout(json!({"status": "succeeded", "at_ms": 1}));
        assert!(reasons(&p, 0, 0).is_empty());
        p.moved_at_ms = Some(5_000);
        assert_eq!(reasons(&p, 0, 5_000), vec!["changed_backend"]);
        assert!(reasons(&p, 0, 5_001).is_empty(), "a day later");
    }
}
