//! The calls the Worker makes to its invoice watch objects, as one JSON
//! body each (`POST /call`), typed on both sides, and the shard each one
//! goes to.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::receive::watch::engine::WatchStats;
use crate::receive::watch::events::InvoiceEvent;
use crate::receive::watch::record::WatchedInvoice;

/// Watch shards: invoices spread over them by payment hash. Fixed: a
/// hash's shard must never change while its invoice is watched.
pub const SHARDS: u32 = 4;

/// The Durable Object name of shard `n`.
pub fn object_name(shard: u32) -> String {
    format!("invoice-watch-{shard}")
}

/// The shard that watches `payment_hash` (64 hex digits).
pub fn shard_of_hash(payment_hash: &str) -> u32 {
    let first = u32::from_str_radix(payment_hash.get(..2).unwrap_or("00"), 16).unwrap_or(0);
    first % SHARDS
}

/// The shard that holds an `Idempotency-Key`.
pub fn shard_of_key(key: &str) -> u32 {
    u32::from(Sha256::digest(key.as_bytes())[0]) % SHARDS
}

/// Read through one flat struct (`call_reader`, [`crate::tagged`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum WatchCall {
    /// Take an invoice in (a no-op when it is already watched).
    Register {
        invoice: Box<WatchedInvoice>,
    },
    /// The invoice's watch state, if watched here.
    Get {
        payment_hash: String,
    },
    /// A caller asks about it: the watch state, after a lookup on demand
    /// when one is due (see `engine::on_demand`).
    Check {
        payment_hash: String,
    },
    /// `check-invoice` saw it paid at its issuing backend.
    SeenPaid {
        payment_hash: String,
        settled_at_ms: u64,
    },
    /// create-invoice failed after taking the invoice in: never handed out,
    /// it is dropped from the watch without an event.
    Abandon {
        payment_hash: String,
    },
    /// A backend pushed a paid notice for it: look it up now.
    Nudge {
        payment_hash: String,
    },
    /// Events committed after `after` (this shard's seq), oldest first.
    Events {
        after: u64,
        limit: u32,
    },
    /// Every delivery of the invoice's events made due again.
    Redeliver {
        payment_hash: String,
    },
    Stats,
    /// The cron trigger's safety net: do what is due.
    Wake,
    /// Take an `Idempotency-Key` for a request with this body.
    BeginKey {
        key: String,
        fingerprint: String,
    },
    /// Free a key whose request failed before it made an invoice, so a
    /// retry need not wait for the lease.
    DropKey {
        key: String,
        fingerprint: String,
    },
    /// Keep the answer of the request that took the key.
    FinishKey {
        key: String,
        fingerprint: String,
        answer: Value,
    },
}

/// Read through one flat struct (`call_reader`, [`crate::tagged`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum WatchReply {
    Done,
    Invoice {
        invoice: Option<Box<WatchedInvoice>>,
    },
    Events {
        events: Vec<InvoiceEvent>,
    },
    Redelivered {
        deliveries: u32,
    },
    Stats {
        stats: WatchStats,
    },
    Woke {
        looked: u32,
        delivered: u32,
    },
    Key {
        begin: KeyBegin,
    },
}

/// What a request with an `Idempotency-Key` may do.
/// Read through one flat struct (`call_reader`, [`crate::tagged`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum KeyBegin {
    Proceed,
    Replay { answer: Value },
    Conflict,
    InProgress,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn calls_and_replies_round_trip_as_json() {
        let calls = [
            WatchCall::Get {
                payment_hash: "ab".repeat(32),
            },
            WatchCall::SeenPaid {
                payment_hash: "ab".repeat(32),
                settled_at_ms: 9,
            },
            WatchCall::Events {
                after: 3,
                limit: 50,
            },
            WatchCall::Stats,
            WatchCall::Wake,
            WatchCall::BeginKey {
                key: "k".into(),
                fingerprint: "f".into(),
            },
            WatchCall::FinishKey {
                key: "k".into(),
                fingerprint: "f".into(),
                answer: json!({"a": 1}),
            },
        ];
        for c in calls {
            let text = serde_json::to_string(&c).unwrap_or_default();
            assert_eq!(serde_json::from_str::<WatchCall>(&text).ok(), Some(c));
        }
        let r = WatchReply::Key {
            begin: KeyBegin::Replay {
                answer: json!({"payment_hash": "ab"}),
            },
        };
        let text = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(serde_json::from_str::<WatchReply>(&text).ok(), Some(r));
    }

    #[test]
    fn hashes_and_keys_spread_over_every_shard() {
        let mut seen = [false; SHARDS as usize];
        for i in 0..64u32 {
            seen[shard_of_hash(&format!("{:02x}{}", i, "0".repeat(62))) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert!((0..100).all(|i| shard_of_key(&format!("order-{i}")) < SHARDS));
    }
}
