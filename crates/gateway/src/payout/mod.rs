//! Payouts: exactly-once payments to a Lightning Address, LNURL-pay or
//! BOLT11 invoice, with a durable queue for the ones a backend could not
//! settle at once.

pub mod attention;
pub mod breaker;
pub mod config;
pub mod destination;
pub mod engine;
pub mod invoice_claims;
pub mod listing;
pub mod lnurl;
pub mod machine;
pub mod model;
pub mod queue_call;
pub mod request;
pub mod safe_url;
pub mod shard;
pub mod state_reader;
pub mod webhook;
