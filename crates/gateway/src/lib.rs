//! The gateway's rules, free of the Workers runtime: it builds and is
//! tested on the host. The Worker feeds it requests and a
//! [`backends::http::Runtime`]; the backends it speaks to are the
//! `backends` crate's.
//!
//! By domain: `api` (routes, errors, CORS, auth, the contract), `receive`
//! (the invoice chain), `health` (the health book, breaker, probes, report
//! and status page) and `payout`; the rest is plumbing shared by all of them.

// Functions stay short enough to read whole (clippy.toml: 80 lines); tests
// may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]
// Request paths must not panic: errors are typed and answered as JSON.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod api;
mod api_keys;
pub mod backoff;
pub mod config;
pub mod health;
pub mod join;
pub mod log;
pub mod payout;
pub mod receive;
pub mod redact;
pub mod small_sort;
pub mod tagged;
pub mod time;
mod vars;
pub mod webhooks;

#[cfg(test)]
pub(crate) mod test_config;
