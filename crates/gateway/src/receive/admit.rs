//! Who may ask for what on `create-invoice`. Browsers call it without a
//! key; the invoice key (`INVOICE_API_KEY`) unlocks what a page must not
//! choose: a per-invoice `webhook_url`, `Idempotency-Key`, and a
//! `success_url` off the operator's list of hosts. Nothing is
//! created for a request refused here.

use crate::api::auth::{bearer, matches_any};
use crate::api::error::ApiError;
use crate::config::Config;
use crate::payout::request::parse_idempotency_key;
use crate::receive::checkout::success_url;
use crate::receive::context::InvoiceContext;
use crate::receive::idempotency::fingerprint;
use crate::receive::invoice::parse_create_request;
use backends::InvoiceParams;

/// A create-invoice request that may go ahead.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateInvoice {
    pub params: InvoiceParams,
    pub context: InvoiceContext,
    /// The caller showed the invoice key.
    pub keyed: bool,
    /// `Idempotency-Key` and the fingerprint of the body it came with.
    pub idempotency: Option<(String, String)>,
}

/// Whether the caller showed the invoice key: a wrong key is refused
/// outright; a key sent to a gateway that has none is ignored here and
/// refused only where it would be needed.
pub fn keyed(authorization: Option<&str>, keys: &[&str]) -> Result<bool, ApiError> {
    match bearer(authorization) {
        Some(_) if keys.is_empty() => Ok(false),
        Some(token) if matches_any(token, keys) => Ok(true),
        Some(_) => Err(ApiError::Unauthorized),
        None => Ok(false),
    }
}

/// Refused unless keyed: 403 when no key is configured, else 401.
pub fn require_key(keyed: bool, keys: &[&str]) -> Result<(), ApiError> {
    match (keyed, keys.is_empty()) {
        (true, _) => Ok(()),
        (false, true) => Err(ApiError::InvoiceKeyDisabled),
        (false, false) => Err(ApiError::Unauthorized),
    }
}

/// Checks a create-invoice request: key, body, context and key-only parts.
pub fn admit(
    body: &[u8],
    authorization: Option<&str>,
    idempotency_key: Option<&str>,
    cfg: &Config,
) -> Result<CreateInvoice, ApiError> {
    let keys = cfg.invoices.keys();
    let keyed = keyed(authorization, &keys)?;
    let params = parse_create_request(body, &cfg.limits, cfg.network)?;
    let m = crate::api::body::parse_object(body)?;
    let mut context = InvoiceContext::parse(&m)?;
    if let Some(raw) = context.success_url.take() {
        context.success_url = Some(success_url::check(
            &raw,
            keyed,
            &cfg.invoices.checkout.redirect_hosts,
        )?);
    }
    let idempotency = match idempotency_key {
        None => None,
        Some(raw) => Some((parse_idempotency_key(Some(raw))?, fingerprint(body))),
    };
    if context.needs_invoice_key() || idempotency.is_some() {
        require_key(keyed, &keys)?;
    }
    if let Some(url) = &context.webhook_url {
        cfg.invoices
            .url_policy
            .check(url)
            .map_err(|e| ApiError::invalid_field("webhook_url", e))?;
        if cfg.invoices.webhook_secret.is_none() {
            return Err(ApiError::WebhooksDisabled);
        }
    }
    Ok(CreateInvoice {
        params,
        context,
        keyed,
        idempotency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_config::config as config_with;

    const KEY: &str = "invoice-key-0123456789";

    fn cfg(vars: &[(&str, &str)]) -> Config {
        let base = [("LIGHTNING_PROVIDERS", "mock")];
        config_with(&[&base[..], vars].concat())
    }

    fn code(r: Result<CreateInvoice, ApiError>) -> String {
        match r {
            Ok(_) => "ok".into(),
            Err(e) => format!("{} {}", e.status(), e.code()),
        }
    }

    #[test]
    fn key_only_fields_need_the_key() {
        let with_key = cfg(&[
            ("INVOICE_API_KEY", KEY),
            ("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ]);
        let hook = br#"{"amount":5,"webhook_url":"https://shop.example/h"}"#;
        let bearer = format!("Bearer {KEY}");
        assert_eq!(code(admit(hook, Some(&bearer), None, &with_key)), "ok");
        assert_eq!(code(admit(hook, None, None, &with_key)), "401 unauthorized");
        assert_eq!(
            code(admit(
                br#"{"amount":5}"#,
                Some("Bearer wrong-key-0000000000"),
                None,
                &with_key
            )),
            "401 unauthorized"
        );
        assert_eq!(
            code(admit(br#"{"amount":5}"#, None, Some("order-1"), &with_key)),
            "401 unauthorized"
        );
        let without = cfg(&[]);
        assert_eq!(
            code(admit(hook, None, None, &without)),
            "403 invoice_key_disabled"
        );
        assert_eq!(
            code(admit(br#"{"amount":5}"#, None, Some("order-1"), &without)),
            "403 invoice_key_disabled"
        );
        // Public fields need no key.
        let public = br#"{"amount":5,"external_id":"order-7","metadata":{"a":1}}"#;
        assert_eq!(code(admit(public, None, None, &without)), "ok");
        assert_eq!(
            code(admit(public, Some("Bearer anything"), None, &without)),
            "ok"
        );
    }

    #[test]
    fn bad_context_is_refused_with_its_code() {
        let c = cfg(&[]);
        for (body, want) in [
            (r#"{"amount":5,"metadata":[1]}"#, "400 invalid_metadata"),
            (r#"{"amount":5,"metadata":"x"}"#, "400 invalid_metadata"),
            (
                r#"{"amount":5,"metadata":{"a":{"b":{"c":{"d":{"e":{}}}}}}}"#,
                "400 invalid_metadata",
            ),
            (
                r#"{"amount":5,"external_id":""}"#,
                "400 invalid_external_id",
            ),
            (
                r#"{"amount":5,"external_id":"a\u0007b"}"#,
                "400 invalid_external_id",
            ),
            (r#"{"amount":5,"external_id":7}"#, "400 invalid_external_id"),
        ] {
            assert_eq!(code(admit(body.as_bytes(), None, None, &c)), want, "{body}");
        }
        let big = format!(
            r#"{{"amount":5,"metadata":{{"a":"{}"}}}}"#,
            "x".repeat(2100)
        );
        assert_eq!(
            code(admit(big.as_bytes(), None, None, &c)),
            "400 invalid_metadata"
        );
        let long = format!(r#"{{"amount":5,"external_id":"{}"}}"#, "x".repeat(256));
        assert_eq!(
            code(admit(long.as_bytes(), None, None, &c)),
            "400 invalid_external_id"
        );
    }

    #[test]
    fn a_webhook_url_follows_the_payout_rules_and_needs_a_secret() {
        let bearer = format!("Bearer {KEY}");
        let no_secret = cfg(&[("INVOICE_API_KEY", KEY)]);
        let hook = br#"{"amount":5,"webhook_url":"https://shop.example/h"}"#;
        assert_eq!(
            code(admit(hook, Some(&bearer), None, &no_secret)),
            "403 webhooks_disabled"
        );
        let c = cfg(&[
            ("INVOICE_API_KEY", KEY),
            ("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ]);
        for url in [
            "http://shop.example/h",
            "https://127.0.0.1/h",
            "https://localhost/h",
        ] {
            let body = format!(r#"{{"amount":5,"webhook_url":"{url}"}}"#);
            assert_eq!(
                code(admit(body.as_bytes(), Some(&bearer), None, &c)),
                "400 invalid_webhook_url",
                "{url}"
            );
        }
    }
}
