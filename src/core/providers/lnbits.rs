//! LNbits-compatible wallets (LNbits itself, Voltz), `X-Api-Key` auth.

use serde_json::{json, Value};

use super::{
    json_body, str_field, CreatedInvoice, InvoiceParams, InvoiceState, ProviderConfig,
    ProviderError,
};
use crate::core::http::{HttpRequest, HttpResponse};

fn auth(cfg: &ProviderConfig, r: HttpRequest) -> HttpRequest {
    r.header("x-api-key", &cfg.credential)
}

pub fn create_request(cfg: &ProviderConfig, p: &InvoiceParams) -> HttpRequest {
    // `out` must always be sent: LNbits defaults it to true (a payment).
    let mut body = json!({
        "out": false,
        "amount": p.amount_sat,
        "memo": p.description.clone().unwrap_or_default(),
        "expiry": p.expiry_secs,
    });
    if let Some(h) = &p.description_hash {
        body["description_hash"] = Value::from(h.as_str());
    }
    auth(
        cfg,
        HttpRequest::post_json(cfg.url("/api/v1/payments"), &body),
    )
}

pub fn parse_create(r: &HttpResponse) -> Result<CreatedInvoice, ProviderError> {
    let v = json_body(r)?;
    // Older servers say `payment_request`, newer `bolt11`.
    let payment_request = str_field(&v, "bolt11")
        .or_else(|| str_field(&v, "payment_request"))
        .ok_or_else(|| ProviderError::InvalidResponse("missing `bolt11`".into()))?;
    Ok(CreatedInvoice {
        payment_request: payment_request.to_string(),
        payment_hash: str_field(&v, "payment_hash").map(str::to_ascii_lowercase),
    })
}

pub fn check_request(cfg: &ProviderConfig, payment_hash: &str) -> HttpRequest {
    auth(
        cfg,
        HttpRequest::get(cfg.url(&format!("/api/v1/payments/{payment_hash}"))),
    )
}

pub fn parse_check(r: &HttpResponse) -> Result<InvoiceState, ProviderError> {
    let v = json_body(r)?;
    let paid = v.get("paid").and_then(Value::as_bool);
    match (paid, str_field(&v, "status")) {
        (Some(true), _) | (_, Some("success")) => Ok(InvoiceState::Paid {
            settled_at_secs: None,
        }),
        (_, Some("failed")) => Ok(InvoiceState::Cancelled),
        (Some(false), _) | (_, Some("pending")) => Ok(InvoiceState::Pending),
        _ => Err(ProviderError::InvalidResponse("missing `paid`".into())),
    }
}

/// `GET /api/v1/payments/{hash}` with the wallet's key answers its payments
/// of either direction; `details.amount` (msat) is negative for outgoing ones.
pub fn lookup_invoice(v: &Value) -> super::LookedUp {
    let details = v.get("details").unwrap_or(&Value::Null);
    if details
        .get("amount")
        .and_then(Value::as_i64)
        .is_some_and(|a| a < 0)
    {
        return super::LookedUp::Outgoing;
    }
    str_field(details, "bolt11")
        .or_else(|| str_field(details, "payment_request"))
        .map_or(super::LookedUp::NoInvoice, |s| {
            super::LookedUp::Incoming(s.into())
        })
}

pub fn probe_request(cfg: &ProviderConfig) -> HttpRequest {
    auth(cfg, HttpRequest::get(cfg.url("/api/v1/wallet")))
}

pub fn parse_probe(r: &HttpResponse) -> Result<(), ProviderError> {
    let v = json_body(r)?;
    if v.get("balance").is_some() {
        Ok(())
    } else {
        Err(ProviderError::InvalidResponse("missing `balance`".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::providers::test_support::{cfg, html_520, params};
    use crate::core::providers::ProviderKind;

    #[test]
    fn create_request_always_sends_out_false() {
        let r = create_request(&cfg(ProviderKind::Lnbits), &params());
        assert_eq!(r.url, "https://example.test/api/v1/payments");
        assert!(r.headers.contains(&("x-api-key".into(), "secret".into())));
        let body: Value = serde_json::from_str(r.body.as_deref().unwrap_or("")).unwrap_or_default();
        assert_eq!(body["out"], false);
        assert_eq!(body["amount"], 1000);
        assert_eq!(body["memo"], "coffee");
    }

    #[test]
    fn accepts_bolt11_or_legacy_payment_request() {
        let new = HttpResponse::json(
            201,
            &json!({"payment_hash": "ab", "bolt11": "lnbc1new", "status": "pending"}),
        );
        assert_eq!(
            parse_create(&new).map(|c| c.payment_request),
            Ok("lnbc1new".into())
        );
        let old = HttpResponse::json(
            201,
            &json!({"payment_hash": "ab", "payment_request": "lnbc1old"}),
        );
        assert_eq!(
            parse_create(&old).map(|c| c.payment_request),
            Ok("lnbc1old".into())
        );
    }

    #[test]
    fn json_520_differs_from_html_520() {
        let json520 = HttpResponse::json(
            520,
            &json!({"detail": "Wallet not found.", "status": "failed"}),
        );
        match parse_create(&json520) {
            Err(ProviderError::Upstream {
                html: false,
                detail,
                payment_status,
                ..
            }) => {
                assert_eq!(detail, "Wallet not found.");
                assert_eq!(payment_status.as_deref(), Some("failed"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_create(&html_520()),
            Err(ProviderError::Upstream { html: true, .. })
        ));
    }

    #[test]
    fn check_states() {
        let c = |v: Value| parse_check(&HttpResponse::json(200, &v));
        assert_eq!(
            c(json!({"paid": true})),
            Ok(InvoiceState::Paid {
                settled_at_secs: None
            })
        );
        assert_eq!(
            c(json!({"paid": false, "status": "pending"})),
            Ok(InvoiceState::Pending)
        );
        assert_eq!(
            c(json!({"paid": false, "status": "failed"})),
            Ok(InvoiceState::Cancelled)
        );
        assert!(c(json!({"nope": 1})).is_err());
    }
}
