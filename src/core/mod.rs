//! Domain logic, free of the Workers runtime: it builds and is tested on the
//! host. The edge layer (`crate::edge`) feeds it requests and a [`http::Runtime`].

pub mod auth;
pub mod backends;
pub mod backoff;
pub mod body;
pub mod bolt11;
pub mod breaker;
pub mod chain;
pub mod config;
#[cfg(test)]
mod config_props;
pub mod cors;
pub mod error;
pub mod health;
pub mod health_report;
pub mod http;
pub mod invoice;
pub mod invoice_lookup;
pub mod log;
pub mod openapi;
pub mod payout;
pub mod probe;
pub mod rate_limit;
pub mod redact;
pub mod routes;
pub mod status_page;
pub mod time;
#[cfg(test)]
mod webhook_props;

#[cfg(test)]
pub mod testing;
