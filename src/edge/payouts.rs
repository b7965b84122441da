//! `/api/payouts` routes: authenticate and validate at the edge, then hand
//! the payout to the queue's Durable Object, which owns every payout.

use worker::{Env, Headers, Method, Request, RequestInit};

use crate::core::config::Config;
use crate::core::error::ApiError;
use crate::core::payout::request;
use crate::edge::body::read_json_body;
use crate::edge::health::require_admin;
use crate::edge::queue::{self, payout_config, IDEMPOTENCY_HEADER, REPLAYED_HEADER};
use crate::edge::reply::Reply;
use crate::edge::request::require_bearer;

fn require_client(req: &Request, env: &Env) -> Result<(), ApiError> {
    let cfg = payout_config(env)?;
    let keys: Vec<&str> = cfg.api_keys.iter().map(String::as_str).collect();
    require_bearer(req, &keys)
}

fn internal(e: worker::Error) -> ApiError {
    ApiError::StorageUnavailable(format!("payout queue: {e}"))
}

/// Calls the queue object; its answer is already in the API's shape.
pub async fn call_queue(
    env: &Env,
    method: Method,
    path: &str,
    headers: Headers,
    body: Option<Vec<u8>>,
) -> Result<Reply, ApiError> {
    let ns = env
        .durable_object(queue::BINDING)
        .map_err(|_| ApiError::Configuration {
            variable: queue::BINDING.into(),
            message: "the Durable Object binding is missing from wrangler.toml".into(),
        })?;
    let stub = ns
        .id_from_name("payouts")
        .and_then(|id| id.get_stub())
        .map_err(internal)?;
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if let Some(b) = body {
        init.with_body(Some(js_sys::Uint8Array::from(b.as_slice()).into()));
    }
    let req =
        Request::new_with_init(&format!("https://payout-queue{path}"), &init).map_err(internal)?;
    let mut resp = stub.fetch_with_request(req).await.map_err(internal)?;
    let status = resp.status_code();
    let replayed = resp.headers().get(REPLAYED_HEADER).ok().flatten();
    let text = resp.text().await.map_err(internal)?;
    let value = serde_json::from_str(&text).map_err(|e| {
        ApiError::Internal(format!("payout queue answered {status} with non-JSON: {e}"))
    })?;
    let mut reply = Reply::json(status, value);
    if let Some(r) = replayed {
        reply = reply.header(REPLAYED_HEADER, r);
    }
    Ok(reply)
}

pub async fn create(req: &mut Request, env: &Env) -> Result<Reply, ApiError> {
    require_client(req, env)?;
    let key = request::parse_idempotency_key(
        req.headers()
            .get("idempotency-key")
            .ok()
            .flatten()
            .as_deref(),
    )?;
    let body = read_json_body(req).await?;
    request::parse(&body)?; // bad input is answered here, before the queue
    let headers = Headers::new();
    headers.set(IDEMPOTENCY_HEADER, &key).map_err(internal)?;
    headers
        .set("content-type", "application/json")
        .map_err(internal)?;
    call_queue(env, Method::Post, "/create", headers, Some(body)).await
}

pub async fn get(req: &Request, env: &Env, id: &str) -> Result<Reply, ApiError> {
    require_client(req, env)?;
    call_queue(
        env,
        Method::Get,
        &format!("/payout/{id}"),
        Headers::new(),
        None,
    )
    .await
}

pub async fn list(req: &Request, env: &Env) -> Result<Reply, ApiError> {
    require_client(req, env)?;
    let url = req.url().map_err(|e| ApiError::Internal(e.to_string()))?;
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    call_queue(
        env,
        Method::Get,
        &format!("/list{query}"),
        Headers::new(),
        None,
    )
    .await
}

pub async fn retry(req: &Request, env: &Env, cfg: &Config, id: &str) -> Result<Reply, ApiError> {
    require_admin(req, cfg)?;
    call_queue(
        env,
        Method::Post,
        &format!("/retry/{id}"),
        Headers::new(),
        None,
    )
    .await
}
