//! Admin payout actions behind `ADMIN_API_KEY`: cancel, webhook
//! redelivery and the list of payouts that need attention. Each action runs
//! in the queue shard that holds the payout, and is noted in its log.

use worker::{Env, Headers, Method, Request};

use crate::objects::call_object;
use crate::payouts::every_shard;
use crate::queue::payout_config;
use crate::reply::Reply;
use crate::request::query;
use crate::request::require_admin;
use gateway::api::error::ApiError;
use gateway::config::Config;
use gateway::payout::attention::AttentionQuery;
use gateway::payout::shard;

/// `POST /api/payouts/{id}/cancel` and `POST /api/payouts/{id}/redeliver-webhook`.
pub async fn act(
    req: &Request,
    env: &Env,
    cfg: &Config,
    id: &str,
    action: &str,
) -> Result<Reply, ApiError> {
    require_admin(req, cfg)?;
    let pcfg = payout_config(env)?;
    call_object(
        env,
        &shard::object_name(shard::shard_of(id, pcfg.shards)),
        Method::Post,
        &format!("/{action}/{id}"),
        Headers::new(),
        None,
    )
    .await
}

/// `GET /api/payouts/attention`: every shard's flagged payouts, merged
/// newest first.
pub async fn attention(req: &Request, env: &Env, cfg: &Config) -> Result<Reply, ApiError> {
    require_admin(req, cfg)?;
    let pcfg = payout_config(env)?;
    // Validated once here, so a bad parameter is one 400, not one per shard.
    let q = AttentionQuery::parse(
        query(req, "unknown_older_than_secs")?.as_deref(),
        query(req, "limit")?.as_deref(),
        query(req, "cursor")?.as_deref(),
    )?;
    let url = req.url().map_err(|e| ApiError::Internal(e.to_string()))?;
    let qs = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut pages = Vec::new();
    for r in every_shard(env, pcfg.shards, Method::Get, &format!("/attention{qs}")).await? {
        if r.status != 200 {
            return Ok(r);
        }
        pages.push(r.into_json());
    }
    let mut merged = shard::merge_pages(&pages, q.page.limit);
    merged["unknown_older_than_secs"] = q.unknown_older_than_secs.into();
    Ok(Reply::json(200, merged))
}
