//! The cross-shard invoice registry as a queue shard reaches it over
//! Durable Object calls (the rules are in `core::payout::registry`).

use serde_json::json;
use worker::{Env, Headers, Method};

use crate::core::payout::engine::{Claim, PayoutStore, StoreError};
use crate::core::payout::model::PayoutState;
use crate::core::payout::registry::{Holder, RegistryLink};
use crate::core::payout::shard;
use crate::edge::payouts::call_object;
use crate::edge::sql_store::SqlStore;

pub struct Registry {
    pub env: Env,
    pub shards: u32,
}

/// One shard's view: the registry object, other shards, and its own store.
pub struct Link<'a> {
    pub registry: &'a Registry,
    pub local: &'a SqlStore,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("invoice registry: {what}: {e}"))
}

impl RegistryLink for Link<'_> {
    async fn claim(
        &self,
        hash: &str,
        id: &str,
        replace: Option<&str>,
    ) -> Result<Claim, StoreError> {
        let body = json!({"hash": hash, "id": id, "replace": replace});
        let reply = call_object(
            &self.registry.env,
            shard::REGISTRY_OBJECT,
            Method::Post,
            "/claim",
            Headers::new(),
            Some(body.to_string().into_bytes()),
        )
        .await
        .map_err(|e| unavailable("claim", e.message()))?;
        if reply.status != 200 {
            return Err(unavailable("claim", format!("HTTP {}", reply.status)));
        }
        let answer = reply.into_json();
        match (answer["granted"].as_bool(), answer["owner"].as_str()) {
            (Some(true), _) => Ok(Claim::Granted),
            (_, Some(owner)) => Ok(Claim::HeldBy(owner.to_string())),
            _ => Err(unavailable("claim", "an answer without granted or owner")),
        }
    }

    async fn holder(&self, owner: &str) -> Result<Holder, StoreError> {
        if let Some(p) = self.local.get(owner)? {
            return Ok(Holder::Found {
                failed: matches!(p.state, PayoutState::Failed { .. }),
                payment_hash: p.payment_hash,
            });
        }
        let reply = call_object(
            &self.registry.env,
            &shard::object_name(shard::shard_of(owner, self.registry.shards)),
            Method::Get,
            &format!("/payout/{owner}"),
            Headers::new(),
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
