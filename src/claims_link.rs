//! The invoice claims object (one invoice, one live payout across the
//! queue's shards) as a queue shard reaches it over Durable Object calls;
//! the rules are in `gateway::payout::invoice_claims`.

use serde_json::json;
use worker::{Env, Method};

use crate::objects::call_peer;
use gateway::payout::engine::{PayoutStore, StoreError};
use gateway::payout::invoice_claims::{Answer, ClaimsLink, Holder, Takeover};
use gateway::payout::model::PayoutState;
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
        let body = json!({
            "hash": hash,
            "id": id,
            "replace": takeover.map(|t| t.owner.as_str()),
            "seen_at_ms": takeover.map(|t| t.seen_at_ms),
        });
        let reply = call_peer(
            &self.claims.env,
            shard::CLAIMS_OBJECT,
            Method::Post,
            "/claim",
            Some(body.to_string().into_bytes()),
        )
        .await
        .map_err(|e| unavailable("claim", e.message()))?;
        if reply.status != 200 {
            return Err(unavailable("claim", format!("HTTP {}", reply.status)));
        }
        let answer = reply.into_json();
        match (
            answer["granted"].as_bool(),
            answer["owner"].as_str(),
            answer["seen_at_ms"].as_u64(),
        ) {
            (Some(true), _, _) => Ok(Answer::Granted {
                claimed_at_ms: answer["claimed_at_ms"]
                    .as_u64()
                    .ok_or_else(|| unavailable("claim", "a grant without claimed_at_ms"))?,
            }),
            (_, Some(owner), Some(seen_at_ms)) => Ok(Answer::HeldBy {
                owner: owner.to_string(),
                seen_at_ms,
            }),
            _ => Err(unavailable(
                "claim",
                "an answer without granted, or owner and seen_at_ms",
            )),
        }
    }

    async fn release(&self, hash: &str, id: &str, claimed_at_ms: u64) -> Result<(), StoreError> {
        let body = json!({"hash": hash, "id": id, "claimed_at_ms": claimed_at_ms});
        let reply = call_peer(
            &self.claims.env,
            shard::CLAIMS_OBJECT,
            Method::Post,
            "/release",
            Some(body.to_string().into_bytes()),
        )
        .await
        .map_err(|e| unavailable("release", e.message()))?;
        match reply.status {
            200 => Ok(()),
            s => Err(unavailable("release", format!("HTTP {s}"))),
        }
    }

    async fn holder(&self, owner: &str) -> Result<Holder, StoreError> {
        if let Some(p) = self.local.get(owner)? {
            return Ok(Holder::Found {
                failed: matches!(p.state, PayoutState::Failed { .. }),
                payment_hash: p.payment_hash,
            });
        }
        let reply = call_peer(
            &self.claims.env,
            &shard::object_name(shard::shard_of(owner, self.claims.shards)),
            Method::Get,
            &format!("/payout/{owner}"),
            None,
        )
        .await
        .map_err(|e| unavailable("holder", e.message()))?;
        let status = reply.status;
        let body = reply.into_json();
        match (status, body["payment_hash"].as_str()) {
            (200, Some(h)) => Ok(Holder::Found {
                failed: body["status"].as_str() == Some("failed"),
                payment_hash: h.to_string(),
            }),
            (404, _) if body["error"]["code"].as_str() == Some("payout_not_found") => {
                Ok(Holder::Absent)
            }
            _ => Err(unavailable("holder", format!("HTTP {status}"))),
        }
    }
}
