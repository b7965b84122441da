//! The Lightning backends lightning-fallback speaks to, and what their
//! answers mean. Each backend is one module: pure mapping, it turns an
//! operation into an [`HttpRequest`] and the backend's [`HttpResponse`]
//! into a typed result ([`outcome`], [`InvoiceState`], [`BackendError`]).
//! Sending is the caller's job, through the [`http::Runtime`] seam. This
//! crate knows nothing of the gateway built on it.

// Request paths must not panic: errors are typed.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bolt11;
pub mod cln;
pub mod error;
pub mod http;
pub mod lnbits;
pub mod lnd;
pub mod mock;
pub mod nwc;
pub mod outcome;
pub mod payment;
pub mod phoenixd;
pub mod retired;
pub mod timestamp;

use serde::{Deserialize, Serialize};

pub use error::BackendError;

use crate::http::{HttpRequest, HttpResponse, ReadLimits};
use crate::outcome::{LookupOutcome, PayOutcome};

/// A backend kind. It is stored with every invoice record and payout, so a
/// kind is never removed from this enum: one whose API is gone stays as a
/// retired variant that old rows can still name (see [`retired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Retired: the Alby wallet API closed in January 2026. Only read back
    /// from stored rows; never configurable.
    Alby,
    Lnd,
    Lnbits,
    Mock,
    /// Core Lightning through its REST server (CLNRest).
    Cln,
    Phoenixd,
    /// Nostr Wallet Connect (NIP-47): Alby Hub and other NWC wallets.
    Nwc,
}

impl BackendKind {
    /// The kinds a deployment can configure (the retired ones are not here).
    pub const ALL: [BackendKind; 6] = [
        BackendKind::Nwc,
        BackendKind::Lnd,
        BackendKind::Cln,
        BackendKind::Phoenixd,
        BackendKind::Lnbits,
        BackendKind::Mock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Alby => "alby",
            BackendKind::Lnd => "lnd",
            BackendKind::Cln => "cln",
            BackendKind::Phoenixd => "phoenixd",
            BackendKind::Lnbits => "lnbits",
            BackendKind::Mock => "mock",
            BackendKind::Nwc => "nwc",
        }
    }

    /// A configurable kind by name; retired kinds are `None`.
    pub fn parse(s: &str) -> Option<BackendKind> {
        BackendKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// A kind whose API no longer exists: stored rows may name it, no
    /// configuration can.
    pub fn is_retired(self) -> bool {
        matches!(self, BackendKind::Alby)
    }
}

/// One configured provider: where it is and how to authenticate.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    pub kind: BackendKind,
    /// Base URL without a trailing slash; empty for the mock; for NWC the
    /// connection URI without its secret.
    pub base_url: String,
    /// LND macaroon (hex), CLN rune, phoenixd password, LNbits key or the
    /// NWC connection URI (its secret stays in the transport).
    pub credential: String,
}

impl BackendConfig {
    pub fn name(&self) -> &'static str {
        self.kind.as_str()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }
}

/// What the caller asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceParams {
    pub amount_sat: u64,
    pub description: Option<String>,
    /// Hex of a SHA-256 the invoice commits to instead of a description.
    pub description_hash: Option<String>,
    pub expiry_secs: u32,
}

impl InvoiceParams {
    pub fn amount_msat(&self) -> u64 {
        self.amount_sat.saturating_mul(1_000)
    }
}

/// An invoice as a provider returned it, before verification.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedInvoice {
    pub payment_request: String,
    /// Lower-case hex; `None` when the provider did not say (the BOLT11 does).
    pub payment_hash: Option<String>,
}

/// Settlement state of an invoice as the issuing provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceState {
    Pending,
    Paid {
        settled_at_secs: Option<u64>,
    },
    /// The provider cancelled or expired it.
    Cancelled,
}

/// What a backend's pay and lookup answers carry, as its source shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentFacts {
    /// A successful pay answer carries the preimage: one without it, or
    /// with one that does not hash to the payment hash, is not success.
    pub preimage_on_pay: bool,
    /// A lookup that finds the payment paid carries the preimage.
    pub preimage_on_lookup: bool,
    /// Its lookup may answer "not found" for a payment it made (a key or
    /// wallet that cannot see outgoing payments): "not found" counts only
    /// once the same backend shows a payment it is known to have made.
    pub lookup_may_be_blind: bool,
    /// The longest this backend is known to hold a pay request before
    /// running it, beyond which it drops it. The payout's late-execution
    /// bound is at least this unless `PAYOUT_LATE_EXECUTION_BOUND_SECS` is
    /// set. 0: nothing known beyond the default.
    pub late_execution_floor_ms: u64,
    /// Its "not found" may hide a payment still in flight (a wallet whose
    /// lookup lists only some of its payments): the known-paid hash that
    /// confirms a "not found" must have been paid before the hash was first
    /// sent, and "not found" proves a hash dead only once nothing sent for
    /// it can still be in flight.
    pub not_found_may_hide_in_flight: bool,
}

/// One Lightning backend's whole protocol: receiving, the health probe,
/// paying and looking up payments, and the classification of every answer
/// into the typed outcomes. Pure mapping: requests are built and answers
/// read here; the runtime sends them. A request builder answering `None`
/// means the backend answers without HTTP (the mock) or cannot do that
/// (no payouts).
pub trait Backend: Sync {
    fn create_request(&self, cfg: &BackendConfig, p: &InvoiceParams) -> Option<HttpRequest>;
    /// Like `create_request`, with `nonce`: fresh randomness for each
    /// attempt, for backends that need a value unique to it (CLN's invoice
    /// `label`). The chain calls this one.
    fn create_request_unique(
        &self,
        cfg: &BackendConfig,
        p: &InvoiceParams,
        _nonce: u64,
    ) -> Option<HttpRequest> {
        self.create_request(cfg, p)
    }
    /// Why this backend cannot make the invoice asked for (a feature its API
    /// lacks), decided before any request leaves. `None`: it can.
    fn unsupported(&self, _p: &InvoiceParams) -> Option<String> {
        None
    }
    fn parse_create(&self, r: &HttpResponse) -> Result<CreatedInvoice, BackendError>;
    fn check_request(&self, cfg: &BackendConfig, payment_hash: &str) -> Option<HttpRequest>;
    fn parse_check(&self, r: &HttpResponse) -> Result<InvoiceState, BackendError>;
    /// The cheap read used as a health probe.
    fn probe_request(&self, cfg: &BackendConfig) -> Option<HttpRequest>;
    fn parse_probe(&self, r: &HttpResponse) -> Result<(), BackendError>;

    /// `None`: the backend pays without HTTP (the mock).
    fn pay_request(
        &self,
        cfg: &BackendConfig,
        invoice: &str,
        amount_sat: u64,
    ) -> Option<HttpRequest>;
    /// A pay answer that got past the transport and the statuses every
    /// backend shares (`payout::backend::classify_pay`). Anything that could
    /// mean "paid" must be `Unknown`.
    fn classify_pay(&self, r: &HttpResponse) -> PayOutcome;
    fn lookup_request(&self, cfg: &BackendConfig, payment_hash: &str) -> Option<HttpRequest>;
    /// A lookup answer that arrived. `NotFound` needs the backend's own
    /// words: it lets a payout leave a hash.
    fn classify_lookup(&self, r: &HttpResponse) -> LookupOutcome;
    /// What this backend's payment answers carry and can prove, from its
    /// own source (README, Backends). Every backend states it.
    fn payment_facts(&self) -> PaymentFacts;
    /// How much of a lookup answer to read.
    fn lookup_read_limits(&self) -> ReadLimits {
        ReadLimits::default()
    }
    /// Who holds the hash, from a successful answer to `check_request`
    /// (check-invoice's fallback when the index misses a hash).
    fn lookup_invoice(&self, _v: &serde_json::Value) -> LookedUp {
        LookedUp::NoInvoice
    }
}

/// The registry: every backend kind's module.
pub fn of(kind: BackendKind) -> &'static dyn Backend {
    match kind {
        BackendKind::Alby => &retired::Retired,
        BackendKind::Lnd => &lnd::Lnd,
        BackendKind::Cln => &cln::Cln,
        BackendKind::Phoenixd => &phoenixd::Phoenixd,
        BackendKind::Lnbits => &lnbits::Lnbits,
        BackendKind::Mock => &mock::Mock,
        BackendKind::Nwc => &nwc::Nwc,
    }
}

/// Builds the request that creates an invoice.
pub fn create_request(cfg: &BackendConfig, p: &InvoiceParams) -> Option<HttpRequest> {
    of(cfg.kind).create_request(cfg, p)
}

/// Builds the request that creates an invoice, `nonce` being fresh for this attempt.
pub fn create_request_unique(
    cfg: &BackendConfig,
    p: &InvoiceParams,
    nonce: u64,
) -> Option<HttpRequest> {
    of(cfg.kind).create_request_unique(cfg, p, nonce)
}

/// Why `kind` cannot make this invoice, if it cannot.
pub fn unsupported(kind: BackendKind, p: &InvoiceParams) -> Option<String> {
    of(kind).unsupported(p)
}

pub fn parse_create(kind: BackendKind, r: &HttpResponse) -> Result<CreatedInvoice, BackendError> {
    of(kind).parse_create(r)
}

pub fn check_request(cfg: &BackendConfig, payment_hash: &str) -> Option<HttpRequest> {
    of(cfg.kind).check_request(cfg, payment_hash)
}

pub fn parse_check(kind: BackendKind, r: &HttpResponse) -> Result<InvoiceState, BackendError> {
    of(kind).parse_check(r)
}

/// What a successful lookup says about who holds the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookedUp {
    /// An invoice this wallet issued (incoming), with its BOLT11.
    Incoming(String),
    /// An outgoing payment of this wallet with that hash: not its invoice.
    Outgoing,
    /// The answer does not carry the invoice.
    NoInvoice,
}

/// The invoice in a successful lookup answer (`check_request`'s).
pub fn lookup_invoice(kind: BackendKind, r: &HttpResponse) -> LookedUp {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body) else {
        return LookedUp::NoInvoice;
    };
    of(kind).lookup_invoice(&v)
}

/// The cheap read used as a health probe.
pub fn probe_request(cfg: &BackendConfig) -> Option<HttpRequest> {
    of(cfg.kind).probe_request(cfg)
}

pub fn parse_probe(kind: BackendKind, r: &HttpResponse) -> Result<(), BackendError> {
    of(kind).parse_probe(r)
}

/// Parses a successful JSON body, or classifies the failure.
pub(crate) fn json_body(r: &HttpResponse) -> Result<serde_json::Value, BackendError> {
    if !r.is_success() {
        return Err(BackendError::from_status(r));
    }
    serde_json::from_str(&r.body).map_err(|e| {
        BackendError::InvalidResponse(format!(
            "HTTP {} body is not JSON ({e}): {}",
            r.status,
            error::snippet(&r.body)
        ))
    })
}

/// The first of `keys` holding a non-empty string.
pub(crate) fn str_of<'a>(v: &'a serde_json::Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_str))
        .filter(|s| !s.is_empty())
}

/// A number or numeric string, as an absolute value (LNbits reports fees negative).
pub(crate) fn u64_of(v: &serde_json::Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        serde_json::Value::Number(n) => n.as_i64().map(i64::unsigned_abs).or_else(|| n.as_u64()),
        serde_json::Value::String(s) => s.parse::<i64>().ok().map(i64::unsigned_abs),
        _ => None,
    }
}

pub(crate) fn str_field<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(|x| x.as_str())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn cfg(kind: BackendKind) -> BackendConfig {
        BackendConfig {
            kind,
            base_url: "https://example.test".into(),
            credential: "secret".into(),
        }
    }

    pub fn params() -> InvoiceParams {
        InvoiceParams {
            amount_sat: 1_000,
            description: Some("coffee".into()),
            description_hash: None,
            expiry_secs: 600,
        }
    }

    pub fn html_520() -> HttpResponse {
        HttpResponse {
            status: 520,
            content_type: Some("text/html; charset=UTF-8".into()),
            body: "<!DOCTYPE html><html><head><title>example.test | 520: Web server is returning an unknown error</title></head><body>Cloudflare</body></html>".into(),
        }
    }
}
