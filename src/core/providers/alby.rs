//! Alby wallet API (`https://api.getalby.com`), bearer-token auth.

use serde_json::{json, Value};

use super::{
    json_body, str_field, CreatedInvoice, InvoiceParams, InvoiceState, ProviderConfig,
    ProviderError,
};
use crate::core::http::{HttpRequest, HttpResponse};

fn auth(cfg: &ProviderConfig, r: HttpRequest) -> HttpRequest {
    r.header("authorization", &format!("Bearer {}", cfg.credential))
}

pub fn create_request(cfg: &ProviderConfig, p: &InvoiceParams) -> HttpRequest {
    let mut body = json!({ "amount": p.amount_sat, "expiry": p.expiry_secs });
    if let Some(d) = &p.description {
        body["description"] = Value::from(d.as_str());
    }
    if let Some(h) = &p.description_hash {
        body["description_hash"] = Value::from(h.as_str());
    }
    auth(cfg, HttpRequest::post_json(cfg.url("/invoices"), &body))
}

pub fn parse_create(r: &HttpResponse) -> Result<CreatedInvoice, ProviderError> {
    let v = json_body(r)?;
    let payment_request = str_field(&v, "payment_request")
        .ok_or_else(|| ProviderError::InvalidResponse("missing `payment_request`".into()))?;
    Ok(CreatedInvoice {
        payment_request: payment_request.to_string(),
        payment_hash: str_field(&v, "payment_hash").map(str::to_ascii_lowercase),
    })
}

pub fn check_request(cfg: &ProviderConfig, payment_hash: &str) -> HttpRequest {
    auth(
        cfg,
        HttpRequest::get(cfg.url(&format!("/invoices/{payment_hash}"))),
    )
}

pub fn parse_check(r: &HttpResponse) -> Result<InvoiceState, ProviderError> {
    let v = json_body(r)?;
    let settled = v.get("settled").and_then(Value::as_bool).unwrap_or(false);
    match str_field(&v, "state")
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("SETTLED") => Ok(InvoiceState::Paid {
            settled_at_secs: settled_at(&v),
        }),
        _ if settled => Ok(InvoiceState::Paid {
            settled_at_secs: settled_at(&v),
        }),
        Some("CREATED") | Some("PENDING") | Some("OPEN") => Ok(InvoiceState::Pending),
        Some("EXPIRED") | Some("CANCELED") | Some("CANCELLED") | Some("FAILED") => {
            Ok(InvoiceState::Cancelled)
        }
        Some(other) => Err(ProviderError::InvalidResponse(format!(
            "unknown invoice state `{other}`"
        ))),
        None => Err(ProviderError::InvalidResponse("missing `state`".into())),
    }
}

fn settled_at(v: &Value) -> Option<u64> {
    let s = str_field(v, "settled_at")?;
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

/// `GET /invoices/{hash}` answers incoming and outgoing ones (`type`).
pub fn lookup_invoice(v: &Value) -> super::LookedUp {
    if str_field(v, "type") == Some("outgoing") {
        return super::LookedUp::Outgoing;
    }
    str_field(v, "payment_request").map_or(super::LookedUp::NoInvoice, |s| {
        super::LookedUp::Incoming(s.into())
    })
}

pub fn probe_request(cfg: &ProviderConfig) -> HttpRequest {
    auth(cfg, HttpRequest::get(cfg.url("/balance")))
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
    use crate::core::http::Method;
    use crate::core::providers::test_support::{cfg, html_520, params};
    use crate::core::providers::ProviderKind;

    #[test]
    fn create_request_shape() {
        let r = create_request(&cfg(ProviderKind::Alby), &params());
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.url, "https://example.test/invoices");
        assert!(r
            .headers
            .contains(&("authorization".into(), "Bearer secret".into())));
        let body: Value = serde_json::from_str(r.body.as_deref().unwrap_or("")).unwrap_or_default();
        assert_eq!(
            body,
            json!({"amount": 1000, "expiry": 600, "description": "coffee"})
        );
    }

    #[test]
    fn parses_create_and_check() {
        let r = HttpResponse::json(
            201,
            &json!({"payment_hash": "AB", "payment_request": "lnbc1x", "expires_at": "2030-01-01T00:00:00Z"}),
        );
        let c = parse_create(&r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.payment_hash.as_deref(), Some("ab"));
        let r = HttpResponse::json(
            200,
            &json!({"state": "SETTLED", "settled_at": "2023-11-14T22:13:20Z"}),
        );
        assert_eq!(
            parse_check(&r),
            Ok(InvoiceState::Paid {
                settled_at_secs: Some(1_700_000_000)
            })
        );
        let r = HttpResponse::json(200, &json!({"state": "CREATED"}));
        assert_eq!(parse_check(&r), Ok(InvoiceState::Pending));
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(
            parse_create(&html_520()),
            Err(ProviderError::Upstream {
                status: 520,
                html: true,
                ..
            })
        ));
        let r = HttpResponse::json(200, &json!({"payment_hash": "ab"}));
        assert!(matches!(
            parse_create(&r),
            Err(ProviderError::InvalidResponse(_))
        ));
        let garbage = HttpResponse {
            status: 200,
            content_type: None,
            body: "{not json".into(),
        };
        assert!(matches!(
            parse_create(&garbage),
            Err(ProviderError::InvalidResponse(_))
        ));
        assert!(parse_probe(&HttpResponse::json(200, &json!({"balance": 5}))).is_ok());
    }
}
