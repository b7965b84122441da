//! The HTTP API surface: the route table, errors, CORS, authentication,
//! request bodies, the OpenAPI document, the rate-limit key, the
//! throttling of failed keys and the `Server-Timing` header.

pub mod auth;
pub mod body;
pub mod cors;
pub mod error;
pub mod key_throttle;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod server_timing;
