//! The invoice watch: every invoice created through the gateway is looked
//! up at its issuing backend until it is paid, or for a day after it
//! expired, and its events (`invoice.paid`, `invoice.expired`) are signed
//! and delivered, with a history to catch up from. A Durable Object per
//! shard holds the watch; everything it decides is here.

pub mod budget;
pub mod call;
mod call_reader;
pub mod engine;
pub mod events;
pub mod history;
pub mod record;
pub mod schedule;
pub mod serve;
