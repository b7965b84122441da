//! The invoice watch seen from outside: `GET /api/invoices/events` (invoice
//! key), the admin redelivery of an invoice's events, the watch figures for
//! health and `/status`, and the cron trigger's wake-up of every shard.

use worker::{Env, Request};

use crate::reply::Reply;
use crate::request::{header, query, require_admin};
use crate::watch_link::{self, every_shard, unexpected};
use gateway::api::error::ApiError;
use gateway::config::Config;
use gateway::receive::watch::call::{shard_of_hash, WatchCall, WatchReply, SHARDS};
use gateway::receive::watch::engine::WatchStats;
use gateway::receive::watch::history::{self, EventCursor};
use gateway::receive::{admit, notice};

/// `GET /api/invoices/events?cursor=&limit=`: oldest first, across shards.
pub async fn list(req: &Request, env: &Env, cfg: &Config) -> Result<Reply, ApiError> {
    let keys = cfg.invoices.keys();
    let auth = header(req, "authorization");
    admit::require_key(admit::keyed(auth.as_deref(), &keys)?, &keys)?;
    let cursor = EventCursor::parse(query(req, "cursor")?.as_deref(), SHARDS)?;
    let limit = history::parse_limit(query(req, "limit")?.as_deref())?;
    let calls = (0..SHARDS).map(|s| {
        let c = WatchCall::Events {
            after: cursor.0.get(s as usize).copied().unwrap_or(0),
            limit,
        };
        async move { watch_link::call(env, s, &c).await }
    });
    let mut per_shard = Vec::new();
    for reply in gateway::join::join_all(calls).await {
        match reply? {
            WatchReply::Events { events } => per_shard.push(events),
            other => return Err(unexpected(other)),
        }
    }
    let (page, next) = history::merge(&cursor, per_shard, limit);
    Ok(Reply::json(200, history::page_body(&page, &next)))
}

/// `POST /api/invoices/notify`: a backend says an invoice was paid. The
/// watch looks it up now; the answer is the same whether or not it is watched.
pub async fn notice(req: &mut Request, env: &Env) -> Result<Reply, ApiError> {
    let body = crate::body::read_json_body(req).await?;
    let hash = notice::payment_hash(&body)?;
    let c = WatchCall::Nudge {
        payment_hash: hash.clone(),
    };
    watch_link::call(env, shard_of_hash(&hash), &c).await?;
    Ok(Reply::json(202, serde_json::json!({"accepted": true})))
}

/// `POST /api/invoices/{payment_hash}/redeliver-webhook` (admin): every
/// delivery of the invoice's events is made due now, with a fresh schedule.
pub async fn redeliver(
    req: &Request,
    env: &Env,
    cfg: &Config,
    hash: &str,
) -> Result<Reply, ApiError> {
    require_admin(req, cfg)?;
    if watch_link::watched(env, hash).await?.is_none() {
        return Err(ApiError::InvoiceNotFound);
    }
    // Nothing can be signed without the secret: refuse before any
    // delivery is made due, rather than record attempts never made.
    if cfg.invoices.webhook_secret.is_none() {
        return Err(ApiError::WebhooksDisabled);
    }
    let c = WatchCall::Redeliver {
        payment_hash: hash.into(),
    };
    match watch_link::call(env, shard_of_hash(hash), &c).await? {
        WatchReply::Redelivered { deliveries: 0 } => Err(ApiError::NoWebhookEvent(
            "the invoice has no event with a webhook URL to deliver to yet".into(),
        )),
        WatchReply::Redelivered { deliveries } => Ok(Reply::json(
            202,
            serde_json::json!({"payment_hash": hash, "deliveries": deliveries}),
        )),
        other => Err(unexpected(other)),
    }
}

/// Every shard's figures, added up.
pub async fn stats(env: &Env) -> Result<WatchStats, ApiError> {
    let mut all = Vec::new();
    for reply in every_shard(env, &WatchCall::Stats).await {
        match reply? {
            WatchReply::Stats { stats } => all.push(stats),
            other => return Err(unexpected(other)),
        }
    }
    Ok(WatchStats::sum(&all))
}

/// The cron trigger's safety net: every shard does what is due (and
/// re-arms its alarm). How many shards answered with an error.
pub async fn wake_all(env: &Env) -> usize {
    every_shard(env, &WatchCall::Wake)
        .await
        .iter()
        .filter(|r| r.is_err())
        .count()
}
