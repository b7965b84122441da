//! Reads the watch objects' calls and replies through one flat struct each
//! ([`crate::tagged`]): the Worker and its objects exchange them on every
//! invoice created and checked.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::receive::watch::call::{KeyBegin, WatchCall, WatchReply};
use crate::receive::watch::engine::WatchStats;
use crate::receive::watch::events::InvoiceEvent;
use crate::receive::watch::record::WatchedInvoice;
use crate::tagged::{need, present};

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum CallTag {
    Register,
    Get,
    Check,
    SeenPaid,
    Abandon,
    Nudge,
    Events,
    Redeliver,
    Stats,
    Wake,
    BeginKey,
    DropKey,
    FinishKey,
}

#[derive(Deserialize)]
struct FlatCall {
    call: CallTag,
    invoice: Option<Box<WatchedInvoice>>,
    payment_hash: Option<String>,
    settled_at_ms: Option<u64>,
    after: Option<u64>,
    limit: Option<u32>,
    key: Option<String>,
    fingerprint: Option<String>,
    #[serde(default, deserialize_with = "present")]
    answer: Option<Value>,
}

impl<'de> Deserialize<'de> for WatchCall {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = FlatCall::deserialize(d)?;
        Ok(match f.call {
            CallTag::Register => WatchCall::Register {
                invoice: need(f.invoice, "invoice")?,
            },
            CallTag::Get => WatchCall::Get {
                payment_hash: need(f.payment_hash, "payment_hash")?,
            },
            CallTag::Check => WatchCall::Check {
                payment_hash: need(f.payment_hash, "payment_hash")?,
            },
            CallTag::SeenPaid => WatchCall::SeenPaid {
                payment_hash: need(f.payment_hash, "payment_hash")?,
                settled_at_ms: need(f.settled_at_ms, "settled_at_ms")?,
            },
            CallTag::Abandon => WatchCall::Abandon {
                payment_hash: need(f.payment_hash, "payment_hash")?,
            },
            CallTag::Nudge => WatchCall::Nudge {
                payment_hash: need(f.payment_hash, "payment_hash")?,
            },
            CallTag::Events => WatchCall::Events {
                after: need(f.after, "after")?,
                limit: need(f.limit, "limit")?,
            },
            CallTag::Redeliver => WatchCall::Redeliver {
                payment_hash: need(f.payment_hash, "payment_hash")?,
            },
            CallTag::Stats => WatchCall::Stats,
            CallTag::Wake => WatchCall::Wake,
            CallTag::BeginKey => WatchCall::BeginKey {
                key: need(f.key, "key")?,
                fingerprint: need(f.fingerprint, "fingerprint")?,
            },
            CallTag::DropKey => WatchCall::DropKey {
                key: need(f.key, "key")?,
                fingerprint: need(f.fingerprint, "fingerprint")?,
            },
            CallTag::FinishKey => WatchCall::FinishKey {
                key: need(f.key, "key")?,
                fingerprint: need(f.fingerprint, "fingerprint")?,
                answer: need(f.answer, "answer")?,
            },
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ReplyTag {
    Done,
    Invoice,
    Events,
    Redelivered,
    Stats,
    Woke,
    Key,
}

#[derive(Deserialize)]
struct FlatReply {
    reply: ReplyTag,
    invoice: Option<Box<WatchedInvoice>>,
    events: Option<Vec<InvoiceEvent>>,
    deliveries: Option<u32>,
    stats: Option<WatchStats>,
    looked: Option<u32>,
    delivered: Option<u32>,
    begin: Option<KeyBegin>,
}

impl<'de> Deserialize<'de> for WatchReply {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = FlatReply::deserialize(d)?;
        Ok(match f.reply {
            ReplyTag::Done => WatchReply::Done,
            ReplyTag::Invoice => WatchReply::Invoice { invoice: f.invoice },
            ReplyTag::Events => WatchReply::Events {
                events: need(f.events, "events")?,
            },
            ReplyTag::Redelivered => WatchReply::Redelivered {
                deliveries: need(f.deliveries, "deliveries")?,
            },
            ReplyTag::Stats => WatchReply::Stats {
                stats: need(f.stats, "stats")?,
            },
            ReplyTag::Woke => WatchReply::Woke {
                looked: need(f.looked, "looked")?,
                delivered: need(f.delivered, "delivered")?,
            },
            ReplyTag::Key => WatchReply::Key {
                begin: need(f.begin, "begin")?,
            },
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum DecisionTag {
    Proceed,
    Replay,
    Conflict,
    InProgress,
}

#[derive(Deserialize)]
struct FlatDecision {
    decision: DecisionTag,
    #[serde(default, deserialize_with = "present")]
    answer: Option<Value>,
}

impl<'de> Deserialize<'de> for KeyBegin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = FlatDecision::deserialize(d)?;
        Ok(match f.decision {
            DecisionTag::Proceed => KeyBegin::Proceed,
            DecisionTag::Replay => KeyBegin::Replay {
                answer: need(f.answer, "answer")?,
            },
            DecisionTag::Conflict => KeyBegin::Conflict,
            DecisionTag::InProgress => KeyBegin::InProgress,
        })
    }
}
