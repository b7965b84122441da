//! Queue shards: payouts spread over several Durable Objects by id. The id
//! is derived from the idempotency key, so a key always lands on the same
//! shard and idempotency stays exact. Each shard gets a fixed share of the
//! daily limit (the shares add up to the limit), so the limit is never
//! exceeded without a cross-shard round trip on every payout.

use serde_json::{json, Map, Value};

use crate::api::error::ApiError;
use crate::payout::listing::ListQuery;

/// The shard that holds payout `id` (`po_<hex>`).
pub fn shard_of(id: &str, shards: u32) -> u32 {
    if shards <= 1 {
        return 0;
    }
    let hex = id.strip_prefix("po_").unwrap_or(id);
    let n = u64::from_str_radix(hex.get(..12).unwrap_or("0"), 16).unwrap_or(0);
    (n % u64::from(shards)) as u32
}

/// The Durable Object name of a shard. Shard 0 keeps the single queue's
/// name, so a deployment that adds shards keeps its existing payouts there.
pub fn object_name(shard: u32) -> String {
    if shard == 0 {
        "payouts".to_string()
    } else {
        format!("payouts-{shard}")
    }
}

/// The object that records which payout holds which payment hash across
/// shards (rules in `invoice_claims.rs`).
pub const CLAIMS_OBJECT: &str = "invoice-registry";

/// A shard and the count of shards the Worker placed the call with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSlot {
    pub shard: u32,
    pub shards: u32,
}

impl ShardSlot {
    pub const SINGLE: ShardSlot = ShardSlot {
        shard: 0,
        shards: 1,
    };

    pub fn header(self) -> String {
        format!("{}/{}", self.shard, self.shards)
    }

    /// A missing or unreadable header is the single queue (as before shards).
    pub fn parse(header: Option<&str>) -> ShardSlot {
        header
            .and_then(|h| h.split_once('/'))
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .map_or(ShardSlot::SINGLE, |(shard, shards)| ShardSlot {
                shard,
                shards,
            })
    }
}

/// Shard 0's refusal of a shard count other than the one payouts were placed with.
pub fn count_changed(shards: u32, was: u32) -> ApiError {
    ApiError::Configuration {
        variable: "PAYOUT_QUEUE_SHARDS".into(),
        message: format!(
            "is {shards}, but payouts were placed with {was}: a changed count would send retries of existing idempotency keys to another shard; set it back to {was}"
        ),
    }
}

/// This shard's share of the daily limit: the shares add up to `limit`.
pub fn daily_share(limit: u64, shards: u32, shard: u32) -> u64 {
    let shards = u64::from(shards.max(1));
    let base = limit / shards;
    base + u64::from(u64::from(shard) < limit % shards)
}

/// Merges the pages of every shard (each newest first, at most `limit + 1`
/// items after the same cursor, with their cursors in `cursors`) into one
/// page of the whole queue.
pub fn merge_pages(pages: &[Value], limit: u32) -> Value {
    let mut all: Vec<(&Value, &Value)> = pages
        .iter()
        .filter_map(|p| {
            let items = p.get("payouts").and_then(Value::as_array)?;
            let cursors = p.get("cursors").and_then(Value::as_array)?;
            Some(items.iter().zip(cursors.iter()))
        })
        .flatten()
        .collect();
    // Order by the cursor's own (created_at_ms, id), as each shard does.
    let key = |c: &Value| {
        c.as_str()
            .and_then(|c| ListQuery::parse(None, None, Some(c)).ok())
            .and_then(|q| q.after)
            .unwrap_or((0, String::new()))
    };
    all.sort_by_key(|(_, c)| std::cmp::Reverse(key(c)));
    let more = all.len() > limit as usize;
    all.truncate(limit as usize);
    let next = if more {
        all.last().map(|(_, c)| (*c).clone())
    } else {
        None
    };
    json!({
        "payouts": all.iter().map(|(v, _)| (*v).clone()).collect::<Vec<_>>(),
        "next_cursor": next,
    })
}

/// Adds up the queue figures of every shard.
pub fn merge_stats(stats: &[Value]) -> Value {
    let mut by_status = Map::new();
    let mut oldest: Option<String> = None;
    let sum = |k: &str| -> u64 { stats.iter().filter_map(|s| s[k].as_u64()).sum() };
    let (depth, unknown, dead, waiting, overpaid) = (
        sum("depth"),
        sum("unknown"),
        sum("dead_letter"),
        sum("waiting_for_backend"),
        sum("overpaid"),
    );
    for s in stats {
        if let Some(m) = s["by_status"].as_object() {
            for (k, v) in m {
                let cur = by_status.get(k).and_then(Value::as_u64).unwrap_or(0);
                by_status.insert(k.clone(), json!(cur + v.as_u64().unwrap_or(0)));
            }
        }
        if let Some(o) = s["oldest_created_at"].as_str() {
            if oldest.as_deref().is_none_or(|cur| o < cur) {
                oldest = Some(o.to_string());
            }
        }
    }
    json!({
        "depth": depth,
        "oldest_created_at": oldest,
        "unknown": unknown,
        "dead_letter": dead,
        "waiting_for_backend": waiting,
        "overpaid": overpaid,
        "failed_last_day": sum("failed_last_day"),
        "by_status": by_status,
        "shards": stats.len(),
        "payout_backends": crate::payout::breaker::merge_chain_views(
            &stats.iter().map(|s| s["payout_backends"].clone()).collect::<Vec<_>>()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_always_maps_to_one_shard_and_ids_spread() {
        let ids: Vec<String> = (0..400)
            .map(|i| crate::payout::request::payout_id(&format!("k{i}")))
            .collect();
        let mut counts = [0u32; 4];
        for id in &ids {
            let s = shard_of(id, 4);
            assert_eq!(s, shard_of(id, 4));
            counts[s as usize] += 1;
        }
        assert!(counts.iter().all(|c| *c > 60), "{counts:?}");
        assert_eq!(shard_of(&ids[0], 1), 0);
    }

    #[test]
    fn daily_shares_add_up_to_the_limit() {
        for (limit, shards) in [(1_000_000, 4), (7, 3), (5, 8), (0, 2)] {
            let total: u64 = (0..shards).map(|s| daily_share(limit, shards, s)).sum();
            assert_eq!(total, limit);
        }
    }

    #[test]
    fn stats_add_up() {
        let a = json!({"depth": 2, "unknown": 1, "dead_letter": 0, "oldest_created_at": "2026-01-02T00:00:00Z", "by_status": {"queued": 1, "unknown": 1}});
        let b = json!({"depth": 1, "unknown": 0, "dead_letter": 3, "waiting_for_backend": 1, "oldest_created_at": "2026-01-01T00:00:00Z", "by_status": {"queued": 1, "failed": 3}});
        let m = merge_stats(&[a, b]);
        assert_eq!(m["depth"], 3);
        assert_eq!(m["dead_letter"], 3);
        assert_eq!(m["waiting_for_backend"], 1);
        assert_eq!(m["by_status"]["queued"], 2);
        assert_eq!(m["oldest_created_at"], "2026-01-01T00:00:00Z");
    }
}

#[cfg(test)]
mod paging {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;

    /// Four shards of four payouts each, some created in the same millisecond,
    /// paged five at a time: every payout once, newest first.
    #[test]
    fn merged_pages_cover_every_shard_once() {
        let items: Vec<(u64, String, u32)> = (0..16u64)
            .map(|i| {
                (
                    1000 + i / 3,
                    format!("po_{:02}", (i * 7) % 16),
                    (i % 4) as u32,
                )
            })
            .collect();
        let shard_page = |shard: u32, after: Option<(u64, String)>, limit: usize| {
            let mut mine: Vec<&(u64, String, u32)> = items
                .iter()
                .filter(|(t, id, s)| {
                    *s == shard
                        && after
                            .as_ref()
                            .is_none_or(|(at, aid)| t < at || (t == at && id < aid))
                })
                .collect();
            mine.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
            mine.truncate(limit + 1);
            json!({
                "payouts": mine.iter().map(|(t, id, _)| json!({"id": id, "created_at": t.to_string()})).collect::<Vec<_>>(),
                "cursors": mine.iter().map(|(t, id, _)| B64.encode(format!("{t}:{id}"))).collect::<Vec<_>>(),
            })
        };
        let mut seen = Vec::new();
        let mut after = None;
        for _ in 0..10 {
            let pages: Vec<Value> = (0..4).map(|s| shard_page(s, after.clone(), 5)).collect();
            let page = merge_pages(&pages, 5);
            for p in page["payouts"].as_array().into_iter().flatten() {
                seen.push(p["id"].as_str().unwrap_or("").to_string());
            }
            match page["next_cursor"].as_str() {
                Some(c) => {
                    after = ListQuery::parse(None, None, Some(c))
                        .ok()
                        .and_then(|q| q.after)
                }
                None => break,
            }
        }
        assert_eq!(seen.len(), 16, "{seen:?}");
        let unique: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), 16);
    }
}
