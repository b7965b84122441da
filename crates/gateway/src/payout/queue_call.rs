//! The calls the Worker (and one queue shard to another) makes to the
//! payout queue's Durable Objects, as types both sides share. The caller
//! turns a [`QueueCall`] into a request with [`QueueCall::to_wire`]; the
//! object turns the request back with [`QueueCall::from_wire`]. The wire
//! format (paths, headers, JSON fields) is what earlier versions spoke, so
//! objects and Workers of two versions understand each other during a deploy.

use serde::{Deserialize, Serialize};
use url::form_urlencoded;

use crate::api::error::ApiError;
use crate::payout::attention::AttentionQuery;
use crate::payout::engine::Drain;
use crate::payout::invoice_claims::{Answer, Takeover};
use crate::payout::listing::{cursor_from, ListQuery};
use crate::payout::model::BackendId;
use crate::payout::shard::ShardSlot;
use crate::time::iso8601_ms;

/// Carries the idempotency key of a create.
pub const IDEMPOTENCY_HEADER: &str = "x-idempotency-key";
/// Set on the reply to a create that replayed a stored payout.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// `<shard>/<shards>`: which shard the call is for, and of how many.
pub const SHARD_HEADER: &str = "x-queue-shard";

/// One call to a queue object.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueCall {
    /// Store and start a payout; `body` is the client's JSON request.
    Create {
        slot: ShardSlot,
        idempotency_key: String,
        body: Vec<u8>,
    },
    Get {
        id: String,
    },
    Cancel {
        id: String,
    },
    RedeliverWebhook {
        id: String,
    },
    Retry {
        id: String,
        slot: ShardSlot,
    },
    /// A page of the single queue (with its `next_cursor`).
    List(ListQuery),
    /// A page of one shard, with each item's cursor, for the Worker to merge.
    ListShard(ListQuery),
    /// Shard 0 refuses a shard count other than the one payouts were placed with.
    CheckShards(ShardSlot),
    Stats,
    Drain,
    Attention(AttentionQuery),
    /// Claims-object role: give a payment hash to one payout.
    Claim(ClaimRequest),
    /// Claims-object role: give back a grant that came too late.
    Release(ReleaseRequest),
    /// The payment hashes this shard's live payouts hold.
    LiveHashes,
    /// The hashes this shard saw a backend pay (another shard's evidence
    /// that the backend's lookups see outgoing payments).
    KnownPaid(BackendId),
}

/// The HTTP method of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
}

/// A call as an internal HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub struct WireRequest {
    pub verb: Verb,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub hash: String,
    pub id: String,
    /// The holder to take over from, with `seen_at_ms` of its "held by" reading.
    #[serde(default)]
    pub replace: Option<String>,
    #[serde(default)]
    pub seen_at_ms: Option<u64>,
}

impl ClaimRequest {
    pub fn new(hash: &str, id: &str, takeover: Option<&Takeover>) -> ClaimRequest {
        ClaimRequest {
            hash: hash.into(),
            id: id.into(),
            replace: takeover.map(|t| t.owner.clone()),
            seen_at_ms: takeover.map(|t| t.seen_at_ms),
        }
    }

    /// A takeover needs both the holder and the time of its reading.
    pub fn takeover(&self) -> Option<Takeover> {
        Some(Takeover {
            owner: self.replace.clone()?,
            seen_at_ms: self.seen_at_ms?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub hash: String,
    pub id: String,
    pub claimed_at_ms: u64,
}

/// The claims object's answer: `{"granted": true, "claimed_at_ms"}` or
/// `{"owner", "seen_at_ms"}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClaimReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_at_ms: Option<u64>,
}

impl From<&Answer> for ClaimReply {
    fn from(a: &Answer) -> ClaimReply {
        match a {
            Answer::Granted { claimed_at_ms } => ClaimReply {
                granted: Some(true),
                claimed_at_ms: Some(*claimed_at_ms),
                ..ClaimReply::default()
            },
            Answer::HeldBy { owner, seen_at_ms } => ClaimReply {
                owner: Some(owner.clone()),
                seen_at_ms: Some(*seen_at_ms),
                ..ClaimReply::default()
            },
        }
    }
}

impl ClaimReply {
    /// The answer, or why the reply is not one (then nothing is decided).
    pub fn answer(self) -> Result<Answer, &'static str> {
        match self {
            ClaimReply {
                granted: Some(true),
                claimed_at_ms,
                ..
            } => Ok(Answer::Granted {
                claimed_at_ms: claimed_at_ms.ok_or("a grant without claimed_at_ms")?,
            }),
            ClaimReply {
                owner: Some(owner),
                seen_at_ms: Some(seen_at_ms),
                ..
            } => Ok(Answer::HeldBy { owner, seen_at_ms }),
            _ => Err("an answer without granted, or owner and seen_at_ms"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseReply {
    pub released: bool,
}

/// `(payment hash, payout id)` of every live payout of a shard.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LiveHashes {
    pub hashes: Vec<(String, String)>,
}

/// `(hash, when seen paid)` for one backend, from one shard's history.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct KnownPaid {
    pub hashes: Vec<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardsChecked {
    pub ok: bool,
}

/// What one wake-up did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrainReply {
    pub drained: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<usize>,
    #[serde(default)]
    pub next_wake: Option<String>,
}

impl From<&Drain> for DrainReply {
    fn from(d: &Drain) -> DrainReply {
        match d {
            Drain::Busy => DrainReply {
                drained: false,
                reason: Some("another wake-up holds the lease".into()),
                processed: None,
                errors: None,
                next_wake: None,
            },
            Drain::Done {
                processed,
                errors,
                next_wake_ms,
            } => DrainReply {
                drained: true,
                reason: None,
                processed: Some(*processed),
                errors: Some(*errors),
                next_wake: next_wake_ms.map(iso8601_ms),
            },
        }
    }
}

/// The part of a payout's view another shard reads to tell whether its
/// holder can still send a hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayoutSummary {
    pub status: String,
    pub payment_hash: Option<String>,
}

fn json_body<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    serde_json::to_vec(value).ok()
}

fn list_query(q: &ListQuery) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    if let Some(status) = q.status {
        s.append_pair("status", status);
    }
    s.append_pair("limit", &q.limit.to_string());
    if let Some((at, id)) = &q.after {
        s.append_pair("cursor", &cursor_from(*at, id));
    }
    s.finish()
}

fn attention_query(q: &AttentionQuery) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair(
        "unknown_older_than_secs",
        &q.unknown_older_than_secs.to_string(),
    );
    s.append_pair("limit", &q.page.limit.to_string());
    if let Some((at, id)) = &q.page.after {
        s.append_pair("cursor", &cursor_from(*at, id));
    }
    s.finish()
}

impl QueueCall {
    pub fn to_wire(&self) -> WireRequest {
        let (verb, path, body): (Verb, String, Option<Vec<u8>>) = match self {
            QueueCall::Create { body, .. } => (Verb::Post, "/create".into(), Some(body.clone())),
            QueueCall::Get { id } => (Verb::Get, format!("/payout/{id}"), None),
            QueueCall::Cancel { id } => (Verb::Post, format!("/cancel/{id}"), None),
            QueueCall::RedeliverWebhook { id } => {
                (Verb::Post, format!("/redeliver-webhook/{id}"), None)
            }
            QueueCall::Retry { id, .. } => (Verb::Post, format!("/retry/{id}"), None),
            QueueCall::List(q) => (Verb::Get, format!("/list?{}", list_query(q)), None),
            QueueCall::ListShard(q) => (Verb::Get, format!("/list-shard?{}", list_query(q)), None),
            QueueCall::CheckShards(_) => (Verb::Post, "/shards".into(), None),
            QueueCall::Stats => (Verb::Get, "/stats".into(), None),
            QueueCall::Drain => (Verb::Post, "/drain".into(), None),
            QueueCall::Attention(q) => (
                Verb::Get,
                format!("/attention?{}", attention_query(q)),
                None,
            ),
            QueueCall::Claim(c) => (Verb::Post, "/claim".into(), json_body(c)),
            QueueCall::Release(r) => (Verb::Post, "/release".into(), json_body(r)),
            QueueCall::LiveHashes => (Verb::Get, "/live-hashes".into(), None),
            QueueCall::KnownPaid(b) => (Verb::Post, "/known-paid".into(), json_body(b)),
        };
        let mut headers = Vec::new();
        match self {
            QueueCall::Create {
                slot,
                idempotency_key,
                ..
            } => {
                headers.push((SHARD_HEADER, slot.header()));
                headers.push((IDEMPOTENCY_HEADER, idempotency_key.clone()));
                headers.push(("content-type", "application/json".into()));
            }
            QueueCall::Retry { slot, .. } | QueueCall::CheckShards(slot) => {
                headers.push((SHARD_HEADER, slot.header()));
            }
            QueueCall::Claim(_) | QueueCall::Release(_) | QueueCall::KnownPaid(_) => {
                headers.push(("content-type", "application/json".into()));
            }
            _ => {}
        }
        WireRequest {
            verb,
            path,
            headers,
            body,
        }
    }

    /// The call an object received. `header` reads a request header.
    pub fn from_wire(
        verb: Verb,
        path: &str,
        query: Option<&str>,
        header: impl Fn(&str) -> Option<String>,
        body: Vec<u8>,
    ) -> Result<QueueCall, ApiError> {
        let slot = || ShardSlot::parse(header(SHARD_HEADER).as_deref());
        let param = |name: &str| -> Option<String> {
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let list = || {
            ListQuery::parse(
                param("status").as_deref(),
                param("limit").as_deref(),
                param("cursor").as_deref(),
            )
        };
        let id_after = |prefix: &str| path.strip_prefix(prefix).map(str::to_string);
        Ok(match (verb, path) {
            (Verb::Post, "/create") => QueueCall::Create {
                slot: slot(),
                idempotency_key: header(IDEMPOTENCY_HEADER).unwrap_or_default(),
                body,
            },
            (Verb::Get, "/list") => QueueCall::List(list()?),
            (Verb::Get, "/list-shard") => QueueCall::ListShard(list()?),
            (Verb::Post, "/shards") => QueueCall::CheckShards(slot()),
            (Verb::Get, "/stats") => QueueCall::Stats,
            (Verb::Post, "/drain") => QueueCall::Drain,
            (Verb::Get, "/attention") => QueueCall::Attention(AttentionQuery::parse(
                param("unknown_older_than_secs").as_deref(),
                param("limit").as_deref(),
                param("cursor").as_deref(),
            )?),
            (Verb::Post, "/claim") => QueueCall::Claim(parse_body(&body)?),
            (Verb::Post, "/release") => QueueCall::Release(parse_body(&body)?),
            (Verb::Get, "/live-hashes") => QueueCall::LiveHashes,
            (Verb::Post, "/known-paid") => QueueCall::KnownPaid(parse_body(&body)?),
            (Verb::Get, _) if path.starts_with("/payout/") => QueueCall::Get {
                id: id_after("/payout/").unwrap_or_default(),
            },
            (Verb::Post, _) if path.starts_with("/cancel/") => QueueCall::Cancel {
                id: id_after("/cancel/").unwrap_or_default(),
            },
            (Verb::Post, _) if path.starts_with("/redeliver-webhook/") => {
                QueueCall::RedeliverWebhook {
                    id: id_after("/redeliver-webhook/").unwrap_or_default(),
                }
            }
            (Verb::Post, _) if path.starts_with("/retry/") => QueueCall::Retry {
                id: id_after("/retry/").unwrap_or_default(),
                slot: slot(),
            },
            _ => return Err(ApiError::RouteNotFound),
        })
    }
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    crate::api::body::from_bytes(body).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(call: &QueueCall) -> QueueCall {
        let wire = call.to_wire();
        let (path, query) = match wire.path.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (wire.path.clone(), None),
        };
        let headers = wire.headers.clone();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        QueueCall::from_wire(
            wire.verb,
            &path,
            query.as_deref(),
            header,
            wire.body.unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{call:?} did not come back: {e:?}"))
    }

    fn page(status: Option<&'static str>, after: Option<(u64, &str)>) -> ListQuery {
        ListQuery {
            status,
            limit: 7,
            after: after.map(|(t, id)| (t, id.to_string())),
        }
    }

    #[test]
    fn every_call_comes_back_as_it_was_sent() {
        let slot = ShardSlot {
            shard: 2,
            shards: 4,
        };
        let calls = [
            QueueCall::Create {
                slot,
                idempotency_key: "order-1 é/?&".into(),
                body: br#"{"amount_sat":1}"#.to_vec(),
            },
            QueueCall::Get { id: "po_ab".into() },
            QueueCall::Cancel { id: "po_ab".into() },
            QueueCall::RedeliverWebhook { id: "po_ab".into() },
            QueueCall::Retry {
                id: "po_ab".into(),
                slot,
            },
            QueueCall::List(page(None, None)),
            QueueCall::List(page(Some("unknown"), Some((1_700_000_000_123, "po_x")))),
            QueueCall::ListShard(page(Some("failed"), Some((5, "po_y")))),
            QueueCall::CheckShards(ShardSlot {
                shard: 0,
                shards: 3,
            }),
            QueueCall::Stats,
            QueueCall::Drain,
            QueueCall::Attention(AttentionQuery {
                unknown_older_than_secs: 42,
                page: page(None, Some((9, "po_z"))),
            }),
            QueueCall::Claim(ClaimRequest::new("aa", "po_1", None)),
            QueueCall::Claim(ClaimRequest::new(
                "aa",
                "po_1",
                Some(&Takeover {
                    owner: "po_0".into(),
                    seen_at_ms: 77,
                }),
            )),
            QueueCall::Release(ReleaseRequest {
                hash: "aa".into(),
                id: "po_1".into(),
                claimed_at_ms: 5,
            }),
            QueueCall::LiveHashes,
            QueueCall::KnownPaid(BackendId {
                kind: backends::BackendKind::Lnbits,
                base_url: "http://127.0.0.1:5000".into(),
                credential_fp: "00ff".into(),
            }),
        ];
        for call in &calls {
            assert_eq!(&round_trip(call), call);
        }
    }

    #[test]
    fn a_create_without_a_shard_header_is_for_the_single_queue() {
        let call =
            QueueCall::from_wire(Verb::Post, "/create", None, |_| None, b"{}".to_vec()).unwrap();
        assert!(matches!(
            call,
            QueueCall::Create {
                slot: ShardSlot::SINGLE,
                ..
            }
        ));
    }

    #[test]
    fn unknown_paths_and_bad_bodies_are_refused() {
        let none = |_: &str| None;
        assert!(matches!(
            QueueCall::from_wire(Verb::Get, "/create", None, none, vec![]),
            Err(ApiError::RouteNotFound)
        ));
        assert!(matches!(
            QueueCall::from_wire(Verb::Post, "/claim", None, none, b"{\"hash\":1}".to_vec()),
            Err(ApiError::InvalidJson(_))
        ));
    }

    #[test]
    fn the_wire_json_is_what_earlier_versions_spoke() {
        let granted =
            serde_json::to_value(ClaimReply::from(&Answer::Granted { claimed_at_ms: 3 })).unwrap();
        assert_eq!(
            granted,
            serde_json::json!({"granted": true, "claimed_at_ms": 3})
        );
        let held: ClaimReply =
            serde_json::from_value(serde_json::json!({"owner": "po_a", "seen_at_ms": 9})).unwrap();
        assert_eq!(
            held.answer(),
            Ok(Answer::HeldBy {
                owner: "po_a".into(),
                seen_at_ms: 9
            })
        );
        let claim: ClaimRequest = serde_json::from_value(
            serde_json::json!({"hash": "h", "id": "po_b", "replace": null, "seen_at_ms": null}),
        )
        .unwrap();
        assert_eq!(claim.takeover(), None);
        let bad: ClaimReply =
            serde_json::from_value(serde_json::json!({"granted": false})).unwrap();
        assert!(bad.answer().is_err());
        let drained = serde_json::to_value(DrainReply::from(&Drain::Busy)).unwrap();
        assert_eq!(drained["drained"], false);
    }
}
