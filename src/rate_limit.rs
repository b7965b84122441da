//! Applies Cloudflare's rate-limiting binding (`INVOICE_RATE_LIMITER` in
//! wrangler.toml) to the public invoice routes. Without the binding the
//! routes are not limited: there is no honest per-client count without it
//! (an isolate's memory is one of many, and short-lived).

use worker::{Env, Request};

use crate::log;
use crate::request::header;
use gateway::api::error::ApiError;
use gateway::api::key_throttle;
use gateway::api::rate_limit::{self, Limited};
use gateway::config::Config;
use gateway::log::Level;

fn bound(env: &Env, name: &str) -> bool {
    js_sys::Reflect::get(env, &name.into())
        .map(|b| !b.is_undefined())
        .unwrap_or(false)
}

/// Refuses the request with 429 when this client is over the route's limit.
/// A binding that fails lets the request through (and says so in the log):
/// the limit protects the providers, it must not take the gateway down.
pub async fn check(req: &Request, env: &Env, cfg: &Config, route: Limited) -> Result<(), ApiError> {
    if !cfg.rate_limits.enabled || !bound(env, route.binding()) {
        return Ok(());
    }
    let Some(key) = rate_limit::key(
        route,
        header(req, "cf-connecting-ip").as_deref(),
        header(req, "cf-worker").as_deref(),
        cfg.rate_limits.clients,
    ) else {
        return Ok(());
    };
    let outcome = match env.rate_limiter(route.binding()) {
        Ok(limiter) => limiter.limit(key).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(o) if o.success => Ok(()),
        Ok(_) => Err(ApiError::RateLimited {
            retry_after_secs: rate_limit::RETRY_AFTER_SECS,
        }),
        Err(e) => {
            log::notice(
                env,
                Level::Error,
                "rate_limit",
                format!("binding failed, request let through: {e}"),
            );
            Ok(())
        }
    }
}

thread_local! {
    static BLOCKED: std::cell::RefCell<key_throttle::Blocked> = Default::default();
}

fn client(req: &Request, cfg: &Config) -> Option<String> {
    rate_limit::client(
        header(req, "cf-connecting-ip").as_deref(),
        header(req, "cf-worker").as_deref(),
        cfg.rate_limits.clients,
    )
}

/// Before a request that shows a key is handled: a client this isolate saw
/// over the failed-key limit is refused, right key or not.
pub fn key_blocked(req: &Request, cfg: &Config, now_ms: u64) -> Result<(), ApiError> {
    if !cfg.rate_limits.enabled || header(req, "authorization").is_none() {
        return Ok(());
    }
    let Some(client) = client(req, cfg) else {
        return Ok(());
    };
    match BLOCKED.with(|b| b.borrow().retry_after_secs(&client, now_ms)) {
        Some(retry_after_secs) => Err(ApiError::RateLimited { retry_after_secs }),
        None => Ok(()),
    }
}

/// After a 401 to a request that showed a key: counts the failure. Over the
/// limit, the answer becomes 429 and this isolate refuses the client for
/// the window. A failing binding changes nothing (it is logged).
pub async fn key_failed(req: &Request, env: &Env, cfg: &Config, now_ms: u64) -> Option<ApiError> {
    if !cfg.rate_limits.enabled
        || header(req, "authorization").is_none()
        || !bound(env, key_throttle::BINDING)
    {
        return None;
    }
    let client = client(req, cfg)?;
    let outcome = match env.rate_limiter(key_throttle::BINDING) {
        Ok(limiter) => limiter.limit(format!("auth:{client}")).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(o) if o.success => None,
        Ok(_) => {
            BLOCKED.with(|b| b.borrow_mut().block(&client, now_ms));
            Some(ApiError::RateLimited {
                retry_after_secs: key_throttle::BLOCK_MS / 1_000,
            })
        }
        Err(e) => {
            log::notice(
                env,
                Level::Error,
                "rate_limit",
                format!("failed-key binding failed: {e}"),
            );
            None
        }
    }
}
