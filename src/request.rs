//! What an incoming request carries besides its body: query parameters and
//! a bearer key.

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
    let key = cfg.admin_key.as_deref().ok_or(ApiError::AdminDisabled)?;
    require_bearer(req, &[key])
}
