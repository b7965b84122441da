//! The LUD-06 pay flow of a served address: the payRequest, the callback
//! that makes the invoice (committing to the metadata's SHA-256), LUD-21
//! verify, and the errors, in LUD-06's `{"status":"ERROR","reason"}` form
//! with the gateway's usual `error.code` beside it.

use serde_json::{json, Value};

use crate::receive::address::settings::Address;
use crate::receive::context::InvoiceContext;
use crate::receive::watch::record::{WatchState, WatchedInvoice};
use backends::bolt11::Network;
use backends::InvoiceParams;

/// Address invoices live 10 minutes: a wallet pays at once, and a short
/// life keeps the watch's lookups low (28 over its life).
pub const INVOICE_EXPIRY_SECS: u32 = 600;

#[derive(Debug, Clone, PartialEq)]
pub enum LnurlError {
    UnknownName,
    MissingAmount,
    /// Not a whole number of millisatoshis, or not whole sats.
    InvalidAmount(String),
    AmountOutOfRange {
        min_msat: u64,
        max_msat: u64,
    },
    CommentTooLong {
        max: u32,
    },
    InvoiceNotFound,
    /// Every backend failed; nothing was made.
    Unavailable(String),
    /// A NIP-57 zap request that fails a check (the reason says which).
    InvalidZapRequest(String),
    /// A zap request naming a relay the outbound URL rules refuse, or too many.
    ZapRelayRefused(String),
}

impl LnurlError {
    pub fn code(&self) -> &'static str {
        match self {
            LnurlError::UnknownName => "unknown_address",
            LnurlError::MissingAmount | LnurlError::InvalidAmount(_) => "invalid_amount",
            LnurlError::AmountOutOfRange { .. } => "amount_out_of_range",
            LnurlError::CommentTooLong { .. } => "comment_too_long",
            LnurlError::InvoiceNotFound => "invoice_not_found",
            LnurlError::Unavailable(_) => "all_providers_failed",
            LnurlError::InvalidZapRequest(_) => "invalid_zap_request",
            LnurlError::ZapRelayRefused(_) => "zap_relay_not_allowed",
        }
    }

    /// A 4xx in every case: a wallet reads `status` and `reason`; a backend
    /// outage is 424 (the invoice depends on a backend that failed).
    pub fn status(&self) -> u16 {
        match self {
            LnurlError::UnknownName | LnurlError::InvoiceNotFound => 404,
            LnurlError::Unavailable(_) => 424,
            _ => 400,
        }
    }

    pub fn reason(&self) -> String {
        match self {
            LnurlError::UnknownName => "No such Lightning Address here.".into(),
            LnurlError::MissingAmount => "The amount (in millisatoshis) is missing.".into(),
            LnurlError::InvalidAmount(m)
            | LnurlError::InvalidZapRequest(m)
            | LnurlError::ZapRelayRefused(m) => m.clone(),
            LnurlError::AmountOutOfRange { min_msat, max_msat } => {
                format!("The amount must be from {min_msat} to {max_msat} millisatoshis.")
            }
            LnurlError::CommentTooLong { max } => {
                format!("The comment is longer than {max} characters.")
            }
            LnurlError::InvoiceNotFound => "No invoice with this payment hash.".into(),
            LnurlError::Unavailable(m) => format!("No invoice could be made right now: {m}"),
        }
    }

    /// LUD-06's error, with the gateway's `error` envelope beside it.
    pub fn to_json(&self) -> Value {
        json!({
            "status": "ERROR",
            "reason": self.reason(),
            "error": {"code": self.code(), "message": self.reason()},
        })
    }
}

/// `name@host`.
pub fn identifier(a: &Address, host: &str) -> String {
    format!("{}@{}", a.name, host)
}

/// The metadata string (LUD-06): the invoice commits to its SHA-256, so
/// the payRequest and the callback must build it the same.
pub fn metadata(a: &Address, host: &str) -> String {
    json!([
        ["text/plain", a.description],
        ["text/identifier", identifier(a, host)]
    ])
    .to_string()
}

/// `GET /.well-known/lnurlp/{name}`.
pub fn pay_request(a: &Address, base_url: &str, host: &str) -> Value {
    let mut v = json!({
        "tag": "payRequest",
        "callback": format!("{base_url}/lnurlp/{}/callback", a.name),
        "minSendable": a.min_sat * 1000,
        "maxSendable": a.max_sat * 1000,
        "metadata": metadata(a, host),
    });
    if a.comment_allowed > 0 {
        v["commentAllowed"] = Value::from(a.comment_allowed);
    }
    v
}

/// What the callback asks for, checked against the address's terms.
pub fn callback(
    a: &Address,
    host: &str,
    amount: Option<&str>,
    comment: Option<&str>,
    network: Network,
) -> Result<(InvoiceParams, InvoiceContext), LnurlError> {
    let raw = amount
        .filter(|s| !s.is_empty())
        .ok_or(LnurlError::MissingAmount)?;
    let msat: u64 = raw
        .parse()
        .ok()
        .filter(|_| raw.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            LnurlError::InvalidAmount("The amount must be a whole number of millisatoshis.".into())
        })?;
    let range = LnurlError::AmountOutOfRange {
        min_msat: a.min_sat * 1000,
        max_msat: a.max_sat * 1000,
    };
    if msat < a.min_sat * 1000 || msat > a.max_sat * 1000 {
        return Err(range);
    }
    if !msat.is_multiple_of(1000) {
        return Err(LnurlError::InvalidAmount(
            "The amount must be whole satoshis (a multiple of 1000 millisatoshis).".into(),
        ));
    }
    let comment = comment.filter(|c| !c.is_empty());
    if let Some(c) = comment {
        if c.chars().count() > a.comment_allowed as usize || c.chars().any(char::is_control) {
            return Err(LnurlError::CommentTooLong {
                max: a.comment_allowed,
            });
        }
    }
    let params = InvoiceParams {
        amount_sat: msat / 1000,
        description: None,
        description_hash: Some(backends::sha256::hex_digest(metadata(a, host).as_bytes())),
        expiry_secs: INVOICE_EXPIRY_SECS,
        network,
        notify_url: None,
    };
    let context = InvoiceContext {
        lightning_address: Some(identifier(a, host)),
        comment: comment.map(str::to_string),
        ..InvoiceContext::default()
    };
    Ok((params, context))
}

/// `{"pr", "routes": [], "verify"}`.
pub fn callback_answer(payment_request: &str, payment_hash: &str, base_url: &str) -> Value {
    json!({
        "pr": payment_request,
        "routes": [],
        "verify": format!("{base_url}/lnurlp/verify/{payment_hash}"),
    })
}

/// LUD-21, from the watch.
pub fn verify_answer(w: &WatchedInvoice) -> Value {
    let preimage = match &w.state {
        WatchState::Paid { preimage, .. } => preimage.clone(),
        _ => None,
    };
    json!({
        "status": "OK",
        "settled": w.is_paid(),
        "preimage": preimage,
        "pr": w.payment_request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Address {
        Address {
            name: "shop".into(),
            min_sat: 1,
            max_sat: 1000,
            description: "Pay the shop".into(),
            comment_allowed: 10,
        }
    }

    #[test]
    fn the_invoice_commits_to_the_metadata_the_pay_request_shows() {
        let pr = pay_request(&shop(), "https://pay.example.com", "pay.example.com");
        assert_eq!(pr["tag"], "payRequest");
        assert_eq!(
            pr["callback"],
            "https://pay.example.com/lnurlp/shop/callback"
        );
        assert_eq!(
            (pr["minSendable"].as_u64(), pr["maxSendable"].as_u64()),
            (Some(1000), Some(1_000_000))
        );
        assert_eq!(pr["commentAllowed"], 10);
        let meta = pr["metadata"].as_str().unwrap_or_default();
        let parsed: Value = serde_json::from_str(meta).unwrap_or_default();
        assert_eq!(
            parsed[1],
            json!(["text/identifier", "shop@pay.example.com"])
        );
        let (p, ctx) = callback(
            &shop(),
            "pay.example.com",
            Some("21000"),
            Some("hi"),
            Network::Bitcoin,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(p.amount_sat, 21);
        assert_eq!(
            p.description_hash,
            Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                meta.as_bytes()
            )))
        );
        assert_eq!(
            ctx.lightning_address.as_deref(),
            Some("shop@pay.example.com")
        );
        assert_eq!(ctx.comment.as_deref(), Some("hi"));
    }

    #[test]
    fn bad_callbacks_are_refused_with_a_code() {
        let code = |amount: Option<&str>, comment: Option<&str>| {
            callback(&shop(), "h.example", amount, comment, Network::Bitcoin)
                .err()
                .map(|e| (e.status(), e.code()))
        };
        assert_eq!(code(None, None), Some((400, "invalid_amount")));
        assert_eq!(code(Some("21"), None), Some((400, "amount_out_of_range")));
        assert_eq!(
            code(Some("1000001000"), None),
            Some((400, "amount_out_of_range"))
        );
        assert_eq!(code(Some("21500"), None), Some((400, "invalid_amount")));
        assert_eq!(code(Some("-1000"), None), Some((400, "invalid_amount")));
        assert_eq!(code(Some("1e6"), None), Some((400, "invalid_amount")));
        assert_eq!(code(Some("+1000"), None), Some((400, "invalid_amount")));
        assert_eq!(
            code(Some("99999999999999999999999"), None),
            Some((400, "invalid_amount"))
        );
        assert_eq!(
            code(Some("1000"), Some("far too long a comment")),
            Some((400, "comment_too_long"))
        );
        assert_eq!(
            code(Some("1000"), Some("a\u{0}b")),
            Some((400, "comment_too_long"))
        );
        let e = LnurlError::UnknownName.to_json();
        assert_eq!(
            (e["status"].as_str(), e["error"]["code"].as_str()),
            (Some("ERROR"), Some("unknown_address"))
        );
    }
}
