//! The calls the Worker makes to its invoice watch objects, as one JSON
//! body each (`POST /call`), typed on both sides, and the shard each one
//! goes to.

use serde::Serialize;
use serde_json::Value;

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
    u32::from(backends::sha256::digest(key.as_bytes())[0]) % SHARDS
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

impl WatchReply {
    /// Its kind, as the wire names it (`reply`).
    pub fn kind(&self) -> &'static str {
        match self {
            WatchReply::Done => "done",
            WatchReply::Invoice { .. } => "invoice",
            WatchReply::Events { .. } => "events",
            WatchReply::Redelivered { .. } => "redelivered",
            WatchReply::Stats { .. } => "stats",
            WatchReply::Woke { .. } => "woke",
            WatchReply::Key { .. } => "key",
        }
    }
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

    fn invoice() -> Box<WatchedInvoice> {
        let mut inv = crate::receive::watch::record::test_invoice();
        inv.state = crate::receive::watch::record::WatchState::Paid {
            settled_at_ms: 5,
            preimage: Some("cd".repeat(32)),
        };
        Box::new(inv)
    }

    /// Every call, reply and decision reads back as itself (they are read
    /// through flat structs, `call_reader`).
    #[test]
    fn calls_and_replies_round_trip_as_json() {
        let hash = || "ab".repeat(32);
        let calls = [
            WatchCall::Register { invoice: invoice() },
            WatchCall::Get {
                payment_hash: hash(),
            },
            WatchCall::Check {
                payment_hash: hash(),
            },
            WatchCall::SeenPaid {
                payment_hash: hash(),
                settled_at_ms: 9,
            },
            WatchCall::Abandon {
                payment_hash: hash(),
            },
            WatchCall::Nudge {
                payment_hash: hash(),
            },
            WatchCall::Events {
                after: 3,
                limit: 50,
            },
            WatchCall::Redeliver {
                payment_hash: hash(),
            },
            WatchCall::Stats,
            WatchCall::Wake,
            WatchCall::BeginKey {
                key: "k".into(),
                fingerprint: "f".into(),
            },
            WatchCall::DropKey {
                key: "k".into(),
                fingerprint: "f".into(),
            },
            WatchCall::FinishKey {
                key: "k".into(),
                fingerprint: "f".into(),
                answer: json!({"a": 1}),
            },
            WatchCall::FinishKey {
                key: "k".into(),
                fingerprint: "f".into(),
                answer: Value::Null,
            },
        ];
        crate::tagged::assert_reads_back(calls);
        let event = InvoiceEvent {
            seq: 1,
            id: "evt_1".into(),
            kind: crate::receive::watch::record::EventKind::Paid,
            payment_hash: hash(),
            at_ms: 2,
            body: json!({"type": "invoice.paid"}),
        };
        let begins = [
            KeyBegin::Proceed,
            KeyBegin::Replay {
                answer: json!({"payment_hash": "ab"}),
            },
            KeyBegin::Replay {
                answer: Value::Null,
            },
            KeyBegin::Conflict,
            KeyBegin::InProgress,
        ];
        let replies = [
            WatchReply::Done,
            WatchReply::Invoice { invoice: None },
            WatchReply::Invoice {
                invoice: Some(invoice()),
            },
            WatchReply::Events {
                events: vec![event],
            },
            WatchReply::Redelivered { deliveries: 2 },
            WatchReply::Stats {
                stats: WatchStats {
                    watched: 1,
                    paid_last_hour: 2,
                    events_waiting: 3,
                    oldest_undelivered_at_ms: Some(4),
                },
            },
            WatchReply::Woke {
                looked: 1,
                delivered: 2,
            },
        ]
        .into_iter()
        .chain(begins.into_iter().map(|begin| WatchReply::Key { begin }))
        .collect::<Vec<_>>();
        for r in &replies {
            let text = serde_json::to_string(r).unwrap_or_default();
            assert!(
                text.contains(&format!(r#""reply":"{}""#, r.kind())),
                "{text}"
            );
        }
        crate::tagged::assert_reads_back(replies);
    }

    #[test]
    fn a_call_missing_what_its_kind_needs_is_refused() {
        let err = |v: Value| {
            serde_json::from_value::<WatchCall>(v)
                .unwrap_err()
                .to_string()
        };
        assert!(err(json!({"call": "get"})).contains("missing field `payment_hash`"));
        assert!(
            err(json!({"call": "finish_key", "key": "k", "fingerprint": "f"}))
                .contains("missing field `answer`")
        );
        assert!(err(json!({"call": "fly"})).contains("unknown variant `fly`"));
        assert!(err(json!({"payment_hash": "ab"})).contains("missing field `call`"));
    }

    #[test]
    fn hashes_and_keys_spread_over_every_shard() {
        let mut seen = [false; SHARDS as usize];
        for i in 0..64u32 {
            seen[shard_of_hash(&format!("{:02x}{}", i, "0".repeat(62))) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert!((0..100).all(|i| shard_of_key(&format!("order-{i}")) < SHARDS));
        // The shard of a key is where its record is stored: pinned, so a
        // change of hashing fails here and not as keys that vanish.
        let pinned = ["order-1", "order-2", "abc", "key-0123456789"].map(shard_of_key);
        assert_eq!(pinned, [3, 1, 2, 3]);
    }
}
