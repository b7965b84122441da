//! lightning-fallback: a Cloudflare Worker that keeps Lightning payments
//! flowing when a payment backend fails.
//!
//! `core` is plain Rust (host-tested); `edge` binds it to the Workers runtime
//! and is compiled for wasm32 only.

// Request paths must not panic: errors are typed and answered as JSON.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod core;

#[cfg(target_arch = "wasm32")]
mod edge;
