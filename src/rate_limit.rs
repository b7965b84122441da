//! Applies Cloudflare's rate-limiting binding (`INVOICE_RATE_LIMITER` in
//! wrangler.toml) to the public invoice routes. Without the binding the
//! routes are not limited: there is no honest per-client count without it
//! (an isolate's memory is one of many, and short-lived).

use worker::{Env, Request};

use crate::{env, log};
use gateway::api::error::ApiError;
use gateway::api::rate_limit::{self, Limited};
use gateway::log::Level;

/// Refuses the request with 429 when this client is over the route's limit.
/// A binding that fails lets the request through (and says so in the log):
/// the limit protects the providers, it must not take the gateway down.
pub async fn check(req: &Request, env: &Env, route: Limited) -> Result<(), ApiError> {
    if !rate_limit::enabled(env::lookup(env, rate_limit::ENABLED_VAR).as_deref())? {
        return Ok(());
    }
    let bound = js_sys::Reflect::get(env, &rate_limit::BINDING.into())
        .map(|b| !b.is_undefined())
        .unwrap_or(false);
    if !bound {
        return Ok(());
    }
    let ip = req.headers().get("cf-connecting-ip").ok().flatten();
    let key = rate_limit::key(route, ip.as_deref());
    let outcome = match env.rate_limiter(rate_limit::BINDING) {
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
