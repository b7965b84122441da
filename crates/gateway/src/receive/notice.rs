//! Paid notices pushed by backends to `POST /api/invoices/notify`: LNbits'
//! per-invoice `webhook` and phoenixd's `webhook` setting. Anyone can post
//! here, so a notice only names a payment hash for the watch to look up
//! now; the lookup at the issuing backend decides.

use serde_json::Value;

use crate::api::error::ApiError;
use crate::receive::invoice::parse_payment_hash;
pub use crate::receive::settings::NoticeMode;

/// The path backends are told to post to.
pub const PATH: &str = "/api/invoices/notify";

/// The notice URL for a gateway reached at `origin`, if backends should get one.
pub fn notify_url(origin: &str, mode: NoticeMode) -> Option<String> {
    let host = url::Url::parse(origin)
        .ok()?
        .host_str()?
        .to_ascii_lowercase();
    let named = host.contains('.')
        && host
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
    match mode {
        NoticeMode::Off => None,
        NoticeMode::Auto if !named => None,
        _ => Some(format!("{}{PATH}", origin.trim_end_matches('/'))),
    }
}

/// The payment hash a notice names. LNbits posts the payment as a JSON
/// string holding JSON (`json=payment.json()` in its
/// `core/services/notifications.py`), with `payment_hash`; phoenixd posts
/// `{"type": "payment_received", "paymentHash": …}`.
pub fn payment_hash(body: &[u8]) -> Result<String, ApiError> {
    let bad = |m: &str| ApiError::invalid_field("payment_hash", m);
    let mut v: Value =
        crate::api::body::from_bytes(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    if let Value::String(inner) = &v {
        v = serde_json::from_str(inner).map_err(|_| bad("the notice names no payment hash"))?;
    }
    let hash = v
        .get("payment_hash")
        .or_else(|| v.get("paymentHash"))
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the notice names no payment hash"))?;
    parse_payment_hash(Some(hash)).map_err(|_| bad("must be 64 hex digits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_told_where_to_push_only_when_they_would_accept_it() {
        let auto = NoticeMode::Auto;
        assert_eq!(
            notify_url("https://pay.example.com", auto).as_deref(),
            Some("https://pay.example.com/api/invoices/notify")
        );
        assert_eq!(notify_url("http://127.0.0.1:8787", auto), None);
        assert_eq!(notify_url("http://localhost:8787", auto), None);
        assert_eq!(notify_url("https://[::1]", auto), None);
        assert_eq!(
            notify_url("http://127.0.0.1:8787", NoticeMode::On).as_deref(),
            Some("http://127.0.0.1:8787/api/invoices/notify")
        );
        assert_eq!(notify_url("https://pay.example.com", NoticeMode::Off), None);
        assert_eq!(NoticeMode::parse(Some("sometimes")).ok(), None);
    }

    #[test]
    fn reads_lnbits_and_phoenixd_notices() {
        let h = "ab".repeat(32);
        let lnbits = serde_json::to_string(&format!(
            r#"{{"checking_id":"x","payment_hash":"{h}","amount":1000,"status":"success"}}"#
        ))
        .unwrap_or_default();
        assert_eq!(payment_hash(lnbits.as_bytes()), Ok(h.clone()));
        let direct = format!(r#"{{"payment_hash":"{}"}}"#, h.to_uppercase());
        assert_eq!(payment_hash(direct.as_bytes()), Ok(h.clone()));
        let phoenixd =
            format!(r#"{{"type":"payment_received","amountSat":5,"paymentHash":"{h}"}}"#);
        assert_eq!(payment_hash(phoenixd.as_bytes()), Ok(h));
        for bad in [
            r#"{}"#,
            r#"{"payment_hash":"zz"}"#,
            r#""not json""#,
            r#"[1]"#,
        ] {
            let e = payment_hash(bad.as_bytes()).err();
            assert_eq!(e.map(|e| e.code()), Some("invalid_payment_hash"), "{bad}");
        }
        assert_eq!(
            payment_hash(b"{").err().map(|e| e.code()),
            Some("invalid_json")
        );
    }
}
