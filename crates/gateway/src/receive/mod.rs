//! Receiving: the provider chain that creates invoices (retries, breaker,
//! hedging), BOLT11 verification, the invoice index record, and the lookup
//! that repairs a missing index entry.

pub mod address;
pub mod admit;
pub mod chain;
pub mod checkout;
pub mod context;
pub mod idempotency;
pub mod invoice;
pub mod invoice_lookup;
pub mod notice;
pub mod settings;
pub mod watch;
