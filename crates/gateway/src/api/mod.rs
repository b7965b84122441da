//! The HTTP API surface: the route table, errors, CORS, authentication,
//! request bodies, the OpenAPI document and the rate-limit key.

pub mod auth;
pub mod body;
pub mod cors;
pub mod error;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
