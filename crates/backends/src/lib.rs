//! The Lightning backends lightning-fallback speaks to, and what their
//! answers mean. Each backend is one module: pure mapping, it turns an
//! operation into an [`HttpRequest`] and the backend's [`HttpResponse`]
//! into a typed result ([`outcome`], [`InvoiceState`], [`BackendError`]).
//! Sending is the caller's job, through the [`http::Runtime`] seam. This
//! crate knows nothing of the gateway built on it.

// Functions stay short enough to read whole (clippy.toml: 80 lines); tests
// may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]
// Request paths must not panic: errors are typed.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bolt11;
pub mod cln;
pub mod descriptor;
pub mod detail;
pub mod error;
pub mod exchange;
pub mod http;
pub mod identity;
pub mod lnbits;
pub mod lnd;
pub mod mock;
pub mod nwc;
pub mod outcome;
pub mod payment;
pub mod phoenixd;
pub mod retired;
pub mod sha256;
pub mod timestamp;

use serde::{Deserialize, Serialize};

pub use descriptor::{Descriptor, PaymentFacts, Setting, SettingError, Values};
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
    /// The chain the gateway expects the invoice on (only the mock, which
    /// signs invoices itself, needs to be told).
    pub network: bolt11::Network,
    /// Where a backend that can push a paid notice (LNbits' `webhook`)
    /// should send it. A hint that makes the gateway look sooner, never proof.
    pub notify_url: Option<String>,
}

/// `s` if it is a preimage: 64 hex digits (lower-cased).
pub(crate) fn hex_preimage(s: Option<&str>) -> Option<String> {
    s.filter(|p| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
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

/// One Lightning backend's whole protocol: receiving, the health probe,
/// paying and looking up payments, and the classification of every answer
/// into the typed outcomes. Pure mapping: requests are built and answers
/// read here; `exchange` carries them out. A request builder answering
/// `None` means the backend cannot do that (a retired backend).
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
    /// The preimage a lookup answer shows (64 hex digits), where the backend
    /// gives one. Read only from an answer that says paid.
    fn check_preimage(&self, _r: &HttpResponse) -> Option<String> {
        None
    }
    /// The cheap read used as a health probe.
    fn probe_request(&self, cfg: &BackendConfig) -> Option<HttpRequest>;
    fn parse_probe(&self, r: &HttpResponse) -> Result<(), BackendError>;

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
    /// Its name, label, settings and what its payment answers carry (from
    /// its own source: docs/backends.md). Every backend states it.
    fn descriptor(&self) -> &'static Descriptor;
    /// Its configuration from its settings. The usual one: a base URL and a
    /// credential, both required.
    fn configure(&self, v: &Values) -> Result<BackendConfig, SettingError> {
        descriptor::url_and_credential(self.descriptor().kind, v)
    }
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

impl BackendKind {
    /// This kind's module: the one place a backend is registered.
    pub fn adapter(self) -> &'static dyn Backend {
        match self {
            BackendKind::Alby => &retired::Retired,
            BackendKind::Lnd => &lnd::Lnd,
            BackendKind::Cln => &cln::Cln,
            BackendKind::Phoenixd => &phoenixd::Phoenixd,
            BackendKind::Lnbits => &lnbits::Lnbits,
            BackendKind::Mock => &mock::Mock,
            BackendKind::Nwc => &nwc::Nwc,
        }
    }

    /// This kind's descriptor.
    pub fn descriptor(self) -> &'static Descriptor {
        self.adapter().descriptor()
    }
}

impl BackendConfig {
    /// The module that speaks to this backend.
    pub fn adapter(&self) -> &'static dyn Backend {
        self.kind.adapter()
    }
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
    kind.adapter().lookup_invoice(&v)
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
            network: crate::bolt11::Network::Bitcoin,
            notify_url: None,
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
