//! Provider adapters. Each adapter is pure mapping: it turns an operation
//! into an [`HttpRequest`] and a provider's [`HttpResponse`] into a typed
//! result. Sending is the chain's job, through the runtime seam.

pub mod alby;
pub mod error;
pub mod lnbits;
pub mod lnd;
pub mod mock;

use serde::{Deserialize, Serialize};

pub use error::ProviderError;

use crate::core::http::{HttpRequest, HttpResponse};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Alby,
    Lnd,
    Lnbits,
    Mock,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Alby,
        ProviderKind::Lnd,
        ProviderKind::Lnbits,
        ProviderKind::Mock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Alby => "alby",
            ProviderKind::Lnd => "lnd",
            ProviderKind::Lnbits => "lnbits",
            ProviderKind::Mock => "mock",
        }
    }

    pub fn parse(s: &str) -> Option<ProviderKind> {
        ProviderKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// One configured provider: where it is and how to authenticate.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// Base URL without a trailing slash; empty for the mock.
    pub base_url: String,
    /// Alby token, LND macaroon (hex) or LNbits invoice key.
    pub credential: String,
}

impl ProviderConfig {
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

/// Builds the request that creates an invoice.
pub fn create_request(cfg: &ProviderConfig, p: &InvoiceParams) -> Option<HttpRequest> {
    match cfg.kind {
        ProviderKind::Alby => Some(alby::create_request(cfg, p)),
        ProviderKind::Lnd => Some(lnd::create_request(cfg, p)),
        ProviderKind::Lnbits => Some(lnbits::create_request(cfg, p)),
        ProviderKind::Mock => None,
    }
}

pub fn parse_create(kind: ProviderKind, r: &HttpResponse) -> Result<CreatedInvoice, ProviderError> {
    match kind {
        ProviderKind::Alby => alby::parse_create(r),
        ProviderKind::Lnd => lnd::parse_create(r),
        ProviderKind::Lnbits => lnbits::parse_create(r),
        ProviderKind::Mock => Err(ProviderError::InvalidResponse("mock is not HTTP".into())),
    }
}

pub fn check_request(cfg: &ProviderConfig, payment_hash: &str) -> Option<HttpRequest> {
    match cfg.kind {
        ProviderKind::Alby => Some(alby::check_request(cfg, payment_hash)),
        ProviderKind::Lnd => Some(lnd::check_request(cfg, payment_hash)),
        ProviderKind::Lnbits => Some(lnbits::check_request(cfg, payment_hash)),
        ProviderKind::Mock => None,
    }
}

pub fn parse_check(kind: ProviderKind, r: &HttpResponse) -> Result<InvoiceState, ProviderError> {
    match kind {
        ProviderKind::Alby => alby::parse_check(r),
        ProviderKind::Lnd => lnd::parse_check(r),
        ProviderKind::Lnbits => lnbits::parse_check(r),
        ProviderKind::Mock => Ok(InvoiceState::Pending),
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
pub fn lookup_invoice(kind: ProviderKind, r: &HttpResponse) -> LookedUp {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body) else {
        return LookedUp::NoInvoice;
    };
    match kind {
        ProviderKind::Alby => alby::lookup_invoice(&v),
        ProviderKind::Lnd => lnd::lookup_invoice(&v),
        ProviderKind::Lnbits => lnbits::lookup_invoice(&v),
        ProviderKind::Mock => LookedUp::NoInvoice,
    }
}

/// The cheap read used as a health probe.
pub fn probe_request(cfg: &ProviderConfig) -> Option<HttpRequest> {
    match cfg.kind {
        ProviderKind::Alby => Some(alby::probe_request(cfg)),
        ProviderKind::Lnd => Some(lnd::probe_request(cfg)),
        ProviderKind::Lnbits => Some(lnbits::probe_request(cfg)),
        ProviderKind::Mock => None,
    }
}

pub fn parse_probe(kind: ProviderKind, r: &HttpResponse) -> Result<(), ProviderError> {
    match kind {
        ProviderKind::Alby => alby::parse_probe(r),
        ProviderKind::Lnd => lnd::parse_probe(r),
        ProviderKind::Lnbits => lnbits::parse_probe(r),
        ProviderKind::Mock => Ok(()),
    }
}

/// Parses a successful JSON body, or classifies the failure.
pub(crate) fn json_body(r: &HttpResponse) -> Result<serde_json::Value, ProviderError> {
    if !r.is_success() {
        return Err(ProviderError::from_status(r));
    }
    serde_json::from_str(&r.body).map_err(|e| {
        ProviderError::InvalidResponse(format!(
            "HTTP {} body is not JSON ({e}): {}",
            r.status,
            error::snippet(&r.body)
        ))
    })
}

pub(crate) fn str_field<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(|x| x.as_str())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn cfg(kind: ProviderKind) -> ProviderConfig {
        ProviderConfig {
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
