//! Domain logic, free of the Workers runtime: it builds and is tested on the
//! host. The edge layer (`crate::edge`) feeds it requests and a [`http::Runtime`].

pub mod backoff;
pub mod bolt11;
pub mod breaker;
pub mod chain;
pub mod config;
pub mod cors;
pub mod error;
pub mod health;
pub mod http;
pub mod invoice;
pub mod providers;
pub mod routes;
pub mod time;

#[cfg(test)]
pub mod testing;
