//! The events history across watch shards: `GET /api/invoices/events`.
//! The cursor holds one position per shard (the last event taken from it),
//! so an event committed late on one shard is never skipped: each shard is
//! read on from its own position. Pages are oldest first: the shards' next
//! events merged by time, each shard's in its own commit order.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::api::error::ApiError;
use crate::receive::watch::events::InvoiceEvent;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// The last event seq taken from each shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor(pub Vec<u64>);

fn bad(message: &str) -> ApiError {
    ApiError::InvalidQuery {
        param: "cursor",
        message: message.into(),
    }
}

impl EventCursor {
    pub fn start(shards: u32) -> EventCursor {
        EventCursor(vec![0; shards as usize])
    }

    /// Reads a cursor given back by a client (`None` or empty: the start).
    pub fn parse(raw: Option<&str>, shards: u32) -> Result<EventCursor, ApiError> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(EventCursor::start(shards));
        };
        // `e1.<position>.<position>...`, one per shard (openapi.json's pattern):
        // at most 15 digits each, below 2^53, exact as a JS and SQLite number.
        if let Some(rest) = raw.strip_prefix("e1.") {
            let positions = rest
                .split('.')
                .map(|p| {
                    (1..=15)
                        .contains(&p.len())
                        .then(|| p.parse::<u64>().ok())
                        .flatten()
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("is not a cursor from a previous page"))?;
            if positions.len() != shards as usize {
                return Err(bad("was made for another number of watch shards"));
            }
            return Ok(EventCursor(positions));
        }
        // The base64 form of earlier versions.
        let text = B64
            .decode(raw)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad("is not a cursor from a previous page"))?;
        let positions = text
            .strip_prefix("e1:")
            .ok_or_else(|| bad("is not a cursor from a previous page"))?
            .split(',')
            .map(|p| p.parse::<u64>().ok().filter(|n| *n <= 1 << 53))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("is not a cursor from a previous page"))?;
        if positions.len() != shards as usize {
            return Err(bad("was made for another number of watch shards"));
        }
        Ok(EventCursor(positions))
    }

    pub fn encode(&self) -> String {
        let list: Vec<String> = self.0.iter().map(u64::to_string).collect();
        format!("e1.{}", list.join("."))
    }
}

/// Reads `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn parse_limit(raw: Option<&str>) -> Result<u32, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::InvalidQuery {
                param: "limit",
                message: format!("must be a whole number from 1 to {MAX_LIMIT}"),
            }),
    }
}

/// One page from each shard's events after the cursor (each in seq
/// order): at most `limit` of them, and the cursor after them.
pub fn merge(
    cursor: &EventCursor,
    per_shard: Vec<Vec<InvoiceEvent>>,
    limit: u32,
) -> (Vec<InvoiceEvent>, EventCursor) {
    let mut next = cursor.clone();
    let mut queues: Vec<std::collections::VecDeque<InvoiceEvent>> =
        per_shard.into_iter().map(Into::into).collect();
    let mut page = Vec::new();
    while page.len() < limit as usize {
        // The shard whose next event is the oldest (then the lower shard).
        let Some(shard) = (0..queues.len())
            .filter(|s| !queues[*s].is_empty())
            .min_by_key(|s| (queues[*s].front().map_or(u64::MAX, |e| e.at_ms), *s))
        else {
            break;
        };
        let Some(e) = queues[shard].pop_front() else {
            break;
        };
        if let Some(pos) = next.0.get_mut(shard) {
            *pos = e.seq;
        }
        page.push(e);
    }
    (page, next)
}

/// The answer's body: the events' bodies, and where to go on from.
pub fn page_body(page: &[InvoiceEvent], next: &EventCursor) -> Value {
    json!({
        "events": page.iter().map(|e| e.body.clone()).collect::<Vec<_>>(),
        "next_cursor": next.encode(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receive::watch::record::EventKind;
    use proptest::prelude::*;

    fn ev(seq: u64, at_ms: u64, shard: usize) -> InvoiceEvent {
        InvoiceEvent {
            seq,
            id: format!("evt_{shard}_{seq}"),
            kind: EventKind::Paid,
            payment_hash: String::new(),
            at_ms,
            body: json!({"id": format!("evt_{shard}_{seq}")}),
        }
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c = EventCursor(vec![3, 0, 17, 2]);
        assert_eq!(EventCursor::parse(Some(&c.encode()), 4), Ok(c.clone()));
        assert!(EventCursor::parse(Some(&c.encode()), 3).is_err());
        assert!(EventCursor::parse(Some("!!"), 4).is_err());
        assert!(EventCursor::parse(Some(&B64.encode("e1:1,x")), 2).is_err());
        assert_eq!(EventCursor::parse(None, 2), Ok(EventCursor(vec![0, 0])));
        assert_eq!(
            parse_limit(Some("0")).map_err(|e| e.code()),
            Err("invalid_limit")
        );
    }

    proptest! {
        /// Paging through every shard's history, with events committed
        /// between pages and out of time order, yields each event once.
        #[test]
        fn no_event_is_skipped_or_repeated(
            commits in proptest::collection::vec((0usize..4, 0u64..1_000), 0..120),
            limit in 1u32..10,
            batch in 1usize..20,
        ) {
            let mut shards: Vec<Vec<InvoiceEvent>> = vec![Vec::new(); 4];
            let mut cursor = EventCursor::start(4);
            let mut seen = Vec::new();
            let mut pending = commits.iter();
            loop {
                let mut added = 0;
                for &(s, at) in pending.by_ref().take(batch) {
                    let seq = shards[s].len() as u64 + 1;
                    shards[s].push(ev(seq, at, s));
                    added += 1;
                }
                let per_shard: Vec<Vec<InvoiceEvent>> = shards
                    .iter()
                    .enumerate()
                    .map(|(i, es)| {
                        es.iter()
                            .filter(|e| e.seq > cursor.0[i])
                            .take(limit as usize)
                            .cloned()
                            .collect()
                    })
                    .collect();
                let (page, next) = merge(&cursor, per_shard, limit);
                prop_assert!(page.len() <= limit as usize);
                seen.extend(page.iter().map(|e| e.id.clone()));
                let done = page.is_empty() && added == 0;
                cursor = next;
                if done {
                    break;
                }
            }
            let mut all: Vec<String> = shards.iter().flatten().map(|e| e.id.clone()).collect();
            all.sort();
            let mut got = seen.clone();
            got.sort();
            prop_assert_eq!(got, all);
        }
    }
}
