//! Listing payouts with a cursor, and the queue figures shown in health.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::api::error::ApiError;
use crate::payout::model::Payout;
use crate::time::iso8601_ms;

pub const STATUSES: [&str; 5] = ["queued", "sending", "unknown", "succeeded", "failed"];
pub const MAX_LIMIT: u32 = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub status: Option<&'static str>,
    pub limit: u32,
    /// `(created_at_ms, id)` of the last item of the previous page.
    pub after: Option<(u64, String)>,
}

fn bad(param: &'static str, message: &str) -> ApiError {
    ApiError::InvalidQuery {
        param,
        message: message.into(),
    }
}

pub fn cursor_of(p: &Payout) -> String {
    cursor_from(p.created_at_ms, &p.id)
}

/// The cursor of the item created at `created_at_ms` with id `id`.
pub fn cursor_from(created_at_ms: u64, id: &str) -> String {
    format!("{created_at_ms}.{id}")
}

/// A cursor: `<created_at_ms>.<id>` (`^[0-9]{1,15}\.[A-Za-z0-9_]{1,64}$`, as
/// openapi.json says, so any value of that shape is a position to list
/// after), or the base64 form of earlier versions.
fn parse_cursor(c: &str) -> Result<(u64, String), ApiError> {
    let not_ours = || bad("cursor", "is not a cursor from a previous page");
    let plain = c.split_once('.').filter(|(t, id)| {
        // At most 15 digits: below 2^53, exact in SQLite's and JS's numbers.
        (1..=15).contains(&t.len())
            && t.bytes().all(|b| b.is_ascii_digit())
            && (1..=64).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    if let Some((t, id)) = plain {
        return Ok((t.parse().map_err(|_| not_ours())?, id.to_string()));
    }
    let raw = B64
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(not_ours)?;
    let (t, id) = raw.split_once(':').ok_or_else(not_ours)?;
    let t: u64 = t.parse().map_err(|_| not_ours())?;
    if t > 1 << 53 {
        return Err(not_ours());
    }
    Ok((t, id.to_string()))
}

impl ListQuery {
    /// An empty `status` or `limit` is refused (it is no value of the
    /// documented ones); an empty `cursor` is the first page.
    pub fn parse(
        status: Option<&str>,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<ListQuery, ApiError> {
        let status = match status {
            None => None,
            Some(s) => Some(*STATUSES.iter().find(|x| **x == s).ok_or_else(|| {
                bad(
                    "status",
                    "must be one of queued, sending, unknown, succeeded, failed",
                )
            })?),
        };
        let limit = match limit {
            None => 20,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| bad("limit", "must be a whole number from 1 to 100"))?,
        };
        let after = match cursor.filter(|s| !s.is_empty()) {
            None => None,
            Some(c) => Some(parse_cursor(c)?),
        };
        Ok(ListQuery {
            status,
            limit,
            after,
        })
    }
}

/// One shard's items for a merged listing: up to `limit + 1` payouts and
/// the cursor of each, so the merge can cut anywhere.
pub fn shard_page(items: &[Payout]) -> Value {
    json!({
        "payouts": items.iter().map(Payout::view).collect::<Vec<_>>(),
        "cursors": items.iter().map(cursor_of).collect::<Vec<_>>(),
    })
}

/// `items` holds up to `limit + 1` payouts; the extra one only says there is a next page.
pub fn page(mut items: Vec<Payout>, limit: u32) -> Value {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = if more {
        items.last().map(cursor_of)
    } else {
        None
    };
    json!({
        "payouts": items.iter().map(Payout::view).collect::<Vec<_>>(),
        "next_cursor": next,
    })
}

/// Queue depth (payouts not yet ended), its oldest item, and counts by status.
/// Failed payouts created this recently keep health `degraded`.
pub const RECENT_FAILURES_MS: u64 = 24 * 3600 * 1000;

pub fn stats<'a>(rows: impl Iterator<Item = (&'a str, u64, Option<u64>)>) -> Value {
    let mut by_status = serde_json::Map::new();
    let mut depth = 0;
    let mut oldest: Option<u64> = None;
    for (status, n, first) in rows {
        by_status.insert(status.to_string(), json!(n));
        if !matches!(status, "succeeded" | "failed") {
            depth += n;
            oldest = match (oldest, first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    json!({
        "depth": depth,
        "oldest_created_at": oldest.map(iso8601_ms),
        "unknown": by_status.get("unknown").cloned().unwrap_or(json!(0)),
        "dead_letter": by_status.get("failed").cloned().unwrap_or(json!(0)),
        "by_status": by_status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_validation() {
        assert_eq!(ListQuery::parse(None, None, None).map(|q| q.limit), Ok(20));
        assert!(ListQuery::parse(Some("paid"), None, None).is_err());
        assert!(ListQuery::parse(None, Some("0"), None).is_err());
        assert!(ListQuery::parse(None, Some("1000"), None).is_err());
        assert!(ListQuery::parse(None, None, Some("!!")).is_err());
        assert!(
            ListQuery::parse(Some(""), None, None).is_err(),
            "an empty status is no status"
        );
        assert!(ListQuery::parse(None, Some(""), None).is_err());
        assert_eq!(
            ListQuery::parse(None, None, Some("")).map(|q| q.after),
            Ok(None)
        );
        // Any value of the documented shape is a position.
        assert_eq!(
            ListQuery::parse(None, None, Some("0.x")).map(|q| q.after),
            Ok(Some((0, "x".into())))
        );
        assert_eq!(
            ListQuery::parse(None, None, Some(&cursor_from(123, "po_ab"))).map(|q| q.after),
            Ok(Some((123, "po_ab".into())))
        );
        let c = B64.encode("123:po_x");
        assert_eq!(
            ListQuery::parse(Some("failed"), Some("5"), Some(&c)).map(|q| (q.status, q.after)),
            Ok((Some("failed"), Some((123, "po_x".into()))))
        );
    }

    #[test]
    fn stats_count_only_open_payouts_as_depth() {
        let v = stats(
            [
                ("queued", 2, Some(5_000)),
                ("unknown", 1, Some(1_000)),
                ("failed", 3, Some(1)),
                ("succeeded", 9, Some(1)),
            ]
            .into_iter(),
        );
        assert_eq!(v["depth"], 3);
        assert_eq!(v["dead_letter"], 3);
        assert_eq!(v["oldest_created_at"], "1970-01-01T00:00:01Z");
    }
}
