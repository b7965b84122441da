//! Domain logic, free of the Workers runtime: it builds and is tested on the
//! host. The edge layer (`crate::edge`) feeds it requests and a [`http::Runtime`].
//!
//! By domain: `api` (routes, errors, CORS, auth, the contract), `receive`
//! (the invoice chain), `health` (the health book, breaker, probes, report
//! and status page), `backends` (one module per Lightning backend) and
//! `payout`; the rest is plumbing shared by all of them.

pub mod api;
pub mod backends;
pub mod backoff;
pub mod config;
#[cfg(test)]
mod config_props;
pub mod health;
pub mod http;
pub mod log;
pub mod payout;
pub mod receive;
pub mod redact;
pub mod time;

#[cfg(test)]
pub mod testing;
