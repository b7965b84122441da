//! Receiving: the provider chain that creates invoices (retries, breaker,
//! hedging), BOLT11 verification, the invoice index record, and the lookup
//! that repairs a missing index entry.

pub mod chain;
pub mod invoice;
pub mod invoice_lookup;
