//! `/api/payouts` routes: authenticate and validate at the edge, then hand
//! the payout to the queue's Durable Object, which owns every payout.

use worker::{Env, Headers, Method, Request};

use crate::body::read_json_body;
use crate::objects::call_object;
use crate::queue::{self, payout_config, IDEMPOTENCY_HEADER};
use crate::reply::Reply;
use crate::request::{require_admin, require_bearer};
use gateway::api::error::ApiError;
use gateway::config::Config;
use gateway::payout::listing::ListQuery;
use gateway::payout::{request, shard};

fn require_client(req: &Request, env: &Env) -> Result<(), ApiError> {
    let cfg = payout_config(env)?;
    let keys: Vec<&str> = cfg.api_keys.iter().map(String::as_str).collect();
    require_bearer(req, &keys)
}

fn internal(e: worker::Error) -> ApiError {
    ApiError::StorageUnavailable(format!("payout queue: {e}"))
}

/// Calls the queue object (shard 0); its answer is already in the API's shape.
pub async fn call_queue(
    env: &Env,
    method: Method,
    path: &str,
    headers: Headers,
    body: Option<Vec<u8>>,
) -> Result<Reply, ApiError> {
    call_object(env, &shard::object_name(0), method, path, headers, body).await
}

/// Headers that tell a shard which one it is (for its share of the daily limit).
fn shard_headers(shard: u32, shards: u32) -> Result<Headers, ApiError> {
    let h = Headers::new();
    h.set(queue::SHARD_HEADER, &format!("{shard}/{shards}"))
        .map_err(internal)?;
    Ok(h)
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
    let shard = shard::shard_of(&id, cfg.shards);
    if cfg.shards > 1 && shard != 0 {
        // Shard 0 holds the count payouts were placed with: refuse a change.
        let check = call_object(
            env,
            &shard::object_name(0),
            Method::Post,
            "/shards",
            shard_headers(0, cfg.shards)?,
            None,
        )
        .await?;
        if check.status != 200 {
            return Ok(check);
        }
    }
    let headers = shard_headers(shard, cfg.shards)?;
    headers.set(IDEMPOTENCY_HEADER, &key).map_err(internal)?;
    headers
        .set("content-type", "application/json")
        .map_err(internal)?;
    // The shard may have stored (and sent) the payout before the call
    // failed in transit: say so, never "nothing was stored".
    call_object(
        env,
        &shard::object_name(shard),
        Method::Post,
        "/create",
        headers,
        Some(body),
    )
    .await
    .map_err(|e| match e {
        ApiError::StorageUnavailable(m) | ApiError::Internal(m) => ApiError::PayoutMayExist(m),
        other => other,
    })
}

pub async fn get(req: &Request, env: &Env, id: &str) -> Result<Reply, ApiError> {
    require_client(req, env)?;
    let cfg = payout_config(env)?;
    call_object(
        env,
        &shard::object_name(shard::shard_of(id, cfg.shards)),
        Method::Get,
        &format!("/payout/{id}"),
        Headers::new(),
        None,
    )
    .await
}

pub async fn list(req: &Request, env: &Env) -> Result<Reply, ApiError> {
    require_client(req, env)?;
    let cfg = payout_config(env)?;
    let url = req.url().map_err(|e| ApiError::Internal(e.to_string()))?;
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    if cfg.shards <= 1 {
        return call_queue(
            env,
            Method::Get,
            &format!("/list{query}"),
            Headers::new(),
            None,
        )
        .await;
    }
    // Validate once here, then merge every shard's newest items.
    let q = ListQuery::parse(
        crate::request::query(req, "status")?.as_deref(),
        crate::request::query(req, "limit")?.as_deref(),
        crate::request::query(req, "cursor")?.as_deref(),
    )?;
    let mut pages = Vec::new();
    for r in every_shard(env, cfg.shards, Method::Get, &format!("/list-shard{query}")).await? {
        if r.status != 200 {
            return Ok(r);
        }
        pages.push(r.into_json());
    }
    Ok(Reply::json(200, shard::merge_pages(&pages, q.limit)))
}

/// Calls `path` on every shard at once; the answers in shard order.
pub(crate) async fn every_shard(
    env: &Env,
    shards: u32,
    method: Method,
    path: &str,
) -> Result<Vec<Reply>, ApiError> {
    let calls = (0..shards).map(|s| {
        let method = method.clone();
        async move {
            call_object(
                env,
                &shard::object_name(s),
                method,
                path,
                Headers::new(),
                None,
            )
            .await
        }
    });
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .collect()
}

/// Queue figures of every shard, added up.
pub async fn stats(env: &Env) -> Result<serde_json::Value, ApiError> {
    let cfg = payout_config(env)?;
    let mut all: Vec<serde_json::Value> = every_shard(env, cfg.shards, Method::Get, "/stats")
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
    Ok(every_shard(env, cfg.shards, Method::Post, "/drain")
        .await?
        .iter()
        .map(|r| r.status)
        .collect())
}

pub async fn retry(req: &Request, env: &Env, cfg: &Config, id: &str) -> Result<Reply, ApiError> {
    require_admin(req, cfg)?;
    let pcfg = payout_config(env)?;
    let shard = shard::shard_of(id, pcfg.shards);
    let name = shard::object_name(shard);
    call_object(
        env,
        &name,
        Method::Post,
        &format!("/retry/{id}"),
        shard_headers(shard, pcfg.shards)?,
        None,
    )
    .await
}
