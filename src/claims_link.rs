//! The invoice claims object (one invoice, one live payout across the
//! queue's shards) as a queue shard reaches it over Durable Object calls,
//! and the shards as the claims object reaches them; the rules are in
//! `gateway::payout::invoice_claims`, the messages in `queue_call`.

use worker::Env;

use gateway::join::join_all;

use crate::objects::{call_peer, call_peer_within, decode};
use gateway::payout::engine::{OtherShards, PayoutStore, StoreError};
use gateway::payout::invoice_claims::{Answer, ClaimsLink, Holder, ShardPeers, Takeover};
use gateway::payout::model::{BackendId, PayoutState};
use gateway::payout::queue_call::{
    ClaimReply, ClaimRequest, KnownPaid, LiveHashes, PayoutSummary, QueueCall, ReleaseReply,
    ReleaseRequest,
};
use gateway::payout::shard;

pub struct ClaimsObject {
    pub env: Env,
    pub shards: u32,
}

/// One shard's view: the claims object, the other shards, and its own store.
pub struct ShardLink<'a, S: PayoutStore> {
    pub claims: &'a ClaimsObject,
    pub local: &'a S,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("invoice claims: {what}: {e}"))
}

impl<S: PayoutStore> ClaimsLink for ShardLink<'_, S> {
    async fn claim(
        &self,
        hash: &str,
        id: &str,
        takeover: Option<&Takeover>,
    ) -> Result<Answer, StoreError> {
        let call = QueueCall::Claim(ClaimRequest::new(hash, id, takeover));
        let reply = call_peer(&self.claims.env, shard::CLAIMS_OBJECT, &call)
            .await
            .map_err(|e| unavailable("claim", e.message()))?;
        decode::<ClaimReply>(reply, "claim")
            .map_err(|e| unavailable("claim", e))?
            .answer()
            .map_err(|e| unavailable("claim", e))
    }

    async fn release(&self, hash: &str, id: &str, claimed_at_ms: u64) -> Result<(), StoreError> {
        let call = QueueCall::Release(ReleaseRequest {
            hash: hash.into(),
            id: id.into(),
            claimed_at_ms,
        });
        let reply = call_peer(&self.claims.env, shard::CLAIMS_OBJECT, &call)
            .await
            .map_err(|e| unavailable("release", e.message()))?;
        decode::<ReleaseReply>(reply, "release").map_err(|e| unavailable("release", e))?;
        Ok(())
    }

    async fn holder(&self, owner: &str) -> Result<Holder, StoreError> {
        if let Some(p) = self.local.get(owner)? {
            return Ok(Holder::Found {
                failed: matches!(p.state, PayoutState::Failed { .. }),
                payment_hash: p.payment_hash,
            });
        }
        let call = QueueCall::Get { id: owner.into() };
        let name = shard::object_name(shard::shard_of(owner, self.claims.shards));
        let reply = call_peer(&self.claims.env, &name, &call)
            .await
            .map_err(|e| unavailable("holder", e.message()))?;
        let status = reply.status;
        if status == 404 {
            let body: serde_json::Value = serde_json::from_str(&reply.text).unwrap_or_default();
            // Only the queue's own "no such payout" is an answer; a 404 of
            // anything else (a route, a proxy) is not.
            return match body["error"]["code"].as_str() {
                Some("payout_not_found") => Ok(Holder::Absent),
                _ => Err(unavailable("holder", "HTTP 404")),
            };
        }
        match decode::<PayoutSummary>(reply, "holder").map_err(|e| unavailable("holder", e))? {
            PayoutSummary {
                status,
                payment_hash: Some(h),
            } => Ok(Holder::Found {
                failed: status == "failed",
                payment_hash: h,
            }),
            _ => Err(unavailable(
                "holder",
                format!("HTTP {status} without a payment hash"),
            )),
        }
    }
}

/// The other shards are asked together, each within this: their answers
/// come from their own tables, with no outbound I/O.
const KNOWN_PAID_CALL_TIMEOUT_MS: u64 = 5_000;

impl ClaimsObject {
    /// Every other shard's history of `backend`'s payments (the shard of
    /// payout `own` is this one), asked at once. A shard that does not
    /// answer is left out (less evidence: a blind "not found" then stays
    /// unproven) and counted.
    pub async fn known_paid_elsewhere(&self, backend: &BackendId, own: &str) -> OtherShards {
        let own = shard::shard_of(own, self.shards);
        let call = QueueCall::KnownPaid(backend.clone());
        let names: Vec<String> = (0..self.shards)
            .filter(|s| *s != own)
            .map(shard::object_name)
            .collect();
        let replies = join_all(
            names
                .iter()
                .map(|name| call_peer_within(&self.env, name, &call, KNOWN_PAID_CALL_TIMEOUT_MS)),
        )
        .await;
        let mut out = OtherShards {
            asked: names.len(),
            ..OtherShards::default()
        };
        for reply in replies {
            if let Ok(known) = reply
                .map_err(|e| e.message())
                .and_then(|r| decode::<KnownPaid>(r, "known paid"))
            {
                out.answered += 1;
                out.hashes.extend(known.hashes);
            }
        }
        out
    }
}

impl ShardPeers for ClaimsObject {
    async fn live_hashes(&self, shard: u32) -> Result<Vec<(String, String)>, StoreError> {
        let what = format!("shard {shard} could not list its invoices");
        let reply = call_peer(
            &self.env,
            &shard::object_name(shard),
            &QueueCall::LiveHashes,
        )
        .await
        .map_err(|e| unavailable(&what, e.message()))?;
        Ok(decode::<LiveHashes>(reply, "live hashes")
            .map_err(|e| unavailable(&what, e))?
            .hashes)
    }
}
