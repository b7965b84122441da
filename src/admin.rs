//! Admin payout actions behind `ADMIN_API_KEY`: cancel, webhook
//! redelivery and the list of payouts that need attention. Each action runs
//! in the queue shard that holds the payout, and is noted in its log.

use worker::{Env, Request};

use crate::payouts::{call_holder, every_shard};
use crate::queue::payout_config;
use crate::reply::Reply;
use crate::request::query;
use crate::request::require_admin;
use gateway::api::error::ApiError;
use gateway::config::Config;
use gateway::payout::attention::AttentionQuery;
use gateway::payout::queue_call::QueueCall;
use gateway::payout::shard;

/// `POST /api/payouts/{id}/cancel` and `.../redeliver-webhook` (admin).
pub async fn act(
    req: &Request,
    env: &Env,
    cfg: &Config,
    id: &str,
    action: &str,
) -> Result<Reply, ApiError> {
    require_admin(req, cfg)?;
    let pcfg = payout_config(env)?;
    let call = match action {
        "cancel" => QueueCall::Cancel { id: id.into() },
        "redeliver-webhook" => QueueCall::RedeliverWebhook { id: id.into() },
        _ => return Err(ApiError::RouteNotFound),
    };
    call_holder(env, pcfg.shards, call, id).await
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
    let (limit, threshold) = (q.page.limit, q.unknown_older_than_secs);
    let mut pages = Vec::new();
    for r in every_shard(env, pcfg.shards, &QueueCall::Attention(q)).await? {
        if r.status != 200 {
            return Ok(r);
        }
        pages.push(r.into_json());
    }
    let mut merged = shard::merge_pages(&pages, limit);
    merged["unknown_older_than_secs"] = threshold.into();
    Ok(Reply::json(200, merged))
}
