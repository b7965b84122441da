//! What an incoming request carries besides its body: query parameters, a
//! bearer key, and the public origin it came to.

use worker::Request;

use gateway::api::auth;
use gateway::api::error::ApiError;

/// The first value of query parameter `name`, decoded.
pub fn query(req: &Request, name: &str) -> Result<Option<String>, ApiError> {
    let url = req.url().map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned()))
}

/// The value of header `name`, if the request has it.
pub fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// Accepts the request if its `Authorization: Bearer` key is one of `keys`.
pub fn require_bearer(req: &Request, keys: &[&str]) -> Result<(), ApiError> {
    match auth::bearer(header(req, "authorization").as_deref()) {
        Some(token) if auth::matches_any(token, keys) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// The admin key, or 401/403.
pub fn require_admin(req: &Request, cfg: &gateway::config::Config) -> Result<(), ApiError> {
    if cfg.admin_keys.is_empty() {
        return Err(ApiError::AdminDisabled);
    }
    let keys: Vec<&str> = cfg.admin_keys.iter().map(String::as_str).collect();
    require_bearer(req, &keys)
}

/// The gateway's public origin and host (with its port, if any), for the
/// absolute URLs it hands out: `PUBLIC_BASE_URL`, else the request's own.
pub fn public_origin(
    req: &Request,
    cfg: &gateway::config::Config,
) -> Result<(String, String), ApiError> {
    let url = match &cfg.invoices.public_base_url {
        Some(u) => worker::Url::parse(u).map_err(|e| ApiError::Internal(e.to_string()))?,
        None => req.url().map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    let origin = url.origin().ascii_serialization();
    let host = url.host_str().unwrap_or_default().to_string();
    let host = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    Ok((origin, host))
}
