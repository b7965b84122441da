//! `/api/payouts` routes: authenticate and validate at the edge, then hand
//! the payout to the queue shard that owns it.

use worker::{Env, Request};

use crate::body::read_json_body;
use crate::objects::call_object;
use crate::queue::payout_config;
use crate::reply::{Body, Reply};
use crate::request::{query, require_admin, require_bearer};
use gateway::api::error::ApiError;
use gateway::config::Config;
use gateway::payout::listing::ListQuery;
use gateway::payout::model;
use gateway::payout::queue_call::QueueCall;
use gateway::payout::request;
use gateway::payout::shard::{self, ShardSlot};

fn require_client(req: &Request, env: &Env) -> Result<(), ApiError> {
    let cfg = payout_config(env)?;
    let keys: Vec<&str> = cfg.api_keys.iter().map(String::as_str).collect();
    require_bearer(req, &keys)
}

/// A payout key, or the admin key: `true` for the admin, who also sees
/// each payout's backend and internal log.
fn require_client_or_admin(req: &Request, env: &Env, cfg: &Config) -> Result<bool, ApiError> {
    let pcfg = payout_config(env)?;
    let clients: Vec<&str> = pcfg.api_keys.iter().map(String::as_str).collect();
    if require_bearer(req, &clients).is_ok() {
        return Ok(false);
    }
    let admins: Vec<&str> = cfg.admin_keys.iter().map(String::as_str).collect();
    require_bearer(req, &admins)?;
    Ok(true)
}

/// The reply as a client sees it (see `model::ADMIN_ONLY_FIELDS`).
fn for_client(mut r: Reply) -> Reply {
    if let Body::Json(v) = r.body {
        r.body = Body::Json(model::client_view(v));
    }
    r
}

/// Calls the shard that holds payout `id`.
pub(crate) async fn call_holder(
    env: &Env,
    shards: u32,
    call: QueueCall,
    id: &str,
) -> Result<Reply, ApiError> {
    call_object(env, &shard::object_name(shard::shard_of(id, shards)), &call).await
}

thread_local! {
    /// The shard count shard 0 has accepted, asked once per isolate: shard 0
    /// records the count once and never changes it (`SqlStore::check_shards`),
    /// so an accepted count stays accepted, and a different one is asked.
    static SHARDS_CONFIRMED: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

pub async fn create(req: &mut Request, env: &Env) -> Result<Reply, ApiError> {
    require_client(req, env)?;
    let cfg = payout_config(env)?;
    let key = request::parse_idempotency_key(
        req.headers()
            .get("idempotency-key")
            .ok()
            .flatten()
            .as_deref(),
    )?;
    let body = read_json_body(req).await?;
    request::parse(&body)?; // bad input is answered here, before the queue
    let id = request::payout_id(&key);
    let slot = ShardSlot {
        shard: shard::shard_of(&id, cfg.shards),
        shards: cfg.shards,
    };
    if cfg.shards > 1 && slot.shard != 0 && SHARDS_CONFIRMED.get() != Some(cfg.shards) {
        // Shard 0 holds the count payouts were placed with: refuse a change.
        let first = ShardSlot { shard: 0, ..slot };
        let check =
            call_object(env, &shard::object_name(0), &QueueCall::CheckShards(first)).await?;
        if check.status != 200 {
            return Ok(check);
        }
        SHARDS_CONFIRMED.set(Some(cfg.shards));
    }
    let call = QueueCall::Create {
        slot,
        idempotency_key: key,
        body,
    };
    // The shard may have stored (and sent) the payout before the call
    // failed in transit: say so, never "nothing was stored".
    call_object(env, &shard::object_name(slot.shard), &call)
        .await
        .map(for_client)
        .map_err(|e| match e {
            ApiError::StorageUnavailable(m) | ApiError::Internal(m) => ApiError::PayoutMayExist(m),
            other => other,
        })
}

pub async fn get(req: &Request, env: &Env, cfg: &Config, id: &str) -> Result<Reply, ApiError> {
    let admin = require_client_or_admin(req, env, cfg)?;
    let pcfg = payout_config(env)?;
    let r = call_holder(env, pcfg.shards, QueueCall::Get { id: id.into() }, id).await?;
    Ok(if admin { r } else { for_client(r) })
}

pub async fn list(req: &Request, env: &Env, cfg: &Config) -> Result<Reply, ApiError> {
    let admin = require_client_or_admin(req, env, cfg)?;
    let r = list_all(req, env).await?;
    Ok(if admin { r } else { for_client(r) })
}

async fn list_all(req: &Request, env: &Env) -> Result<Reply, ApiError> {
    let cfg = payout_config(env)?;
    // Validated once here, so a bad parameter is one 400, not one per shard.
    let q = ListQuery::parse(
        query(req, "status")?.as_deref(),
        query(req, "limit")?.as_deref(),
        query(req, "cursor")?.as_deref(),
    )?;
    if cfg.shards <= 1 {
        return call_object(env, &shard::object_name(0), &QueueCall::List(q)).await;
    }
    let limit = q.limit;
    let mut pages = Vec::new();
    for r in every_shard(env, cfg.shards, &QueueCall::ListShard(q)).await? {
        if r.status != 200 {
            return Ok(r);
        }
        pages.push(r.into_json());
    }
    Ok(Reply::json(200, shard::merge_pages(&pages, limit)))
}

/// Makes `call` to every shard at once; the answers in shard order.
pub(crate) async fn every_shard(
    env: &Env,
    shards: u32,
    call: &QueueCall,
) -> Result<Vec<Reply>, ApiError> {
    let names: Vec<String> = (0..shards).map(shard::object_name).collect();
    let calls = names.iter().map(|name| call_object(env, name, call));
    gateway::join::join_all(calls).await.into_iter().collect()
}

/// Queue figures of every shard, added up.
pub async fn stats(env: &Env) -> Result<serde_json::Value, ApiError> {
    let cfg = payout_config(env)?;
    let mut all: Vec<serde_json::Value> = every_shard(env, cfg.shards, &QueueCall::Stats)
        .await?
        .into_iter()
        .map(Reply::into_json)
        .collect();
    Ok(if all.len() == 1 {
        all.remove(0)
    } else {
        shard::merge_stats(&all)
    })
}

/// Wakes every shard (the cron trigger).
pub async fn drain_all(env: &Env) -> Result<Vec<u16>, ApiError> {
    let cfg = payout_config(env)?;
    Ok(every_shard(env, cfg.shards, &QueueCall::Drain)
        .await?
        .iter()
        .map(|r| r.status)
        .collect())
}

pub async fn retry(req: &Request, env: &Env, cfg: &Config, id: &str) -> Result<Reply, ApiError> {
    require_admin(req, cfg)?;
    let pcfg = payout_config(env)?;
    let slot = ShardSlot {
        shard: shard::shard_of(id, pcfg.shards),
        shards: pcfg.shards,
    };
    let call = QueueCall::Retry {
        id: id.into(),
        slot,
    };
    call_holder(env, pcfg.shards, call, id).await
}
