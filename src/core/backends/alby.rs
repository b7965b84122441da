//! Alby wallet API (`https://api.getalby.com`), bearer-token auth.

use serde_json::{json, Value};

use super::error::snippet;
use super::{
    json_body, str_field, str_of, u64_of, Backend, CreatedInvoice, InvoiceParams, InvoiceState,
    LookedUp, ProviderConfig, ProviderError,
};
use crate::core::http::{HttpRequest, HttpResponse};
use crate::core::payout::machine::{LookupOutcome, PayOutcome};

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
fn lookup_invoice(v: &Value) -> LookedUp {
    if str_field(v, "type") == Some("outgoing") {
        return LookedUp::Outgoing;
    }
    str_field(v, "payment_request").map_or(LookedUp::NoInvoice, |s| LookedUp::Incoming(s.into()))
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

pub struct Alby;

impl Backend for Alby {
    fn lookup_invoice(&self, v: &Value) -> LookedUp {
        lookup_invoice(v)
    }
    fn create_request(&self, cfg: &ProviderConfig, p: &InvoiceParams) -> Option<HttpRequest> {
        Some(create_request(cfg, p))
    }
    fn parse_create(&self, r: &HttpResponse) -> Result<CreatedInvoice, ProviderError> {
        parse_create(r)
    }
    fn check_request(&self, cfg: &ProviderConfig, payment_hash: &str) -> Option<HttpRequest> {
        Some(check_request(cfg, payment_hash))
    }
    fn parse_check(&self, r: &HttpResponse) -> Result<InvoiceState, ProviderError> {
        parse_check(r)
    }
    fn probe_request(&self, cfg: &ProviderConfig) -> Option<HttpRequest> {
        Some(probe_request(cfg))
    }
    fn parse_probe(&self, r: &HttpResponse) -> Result<(), ProviderError> {
        parse_probe(r)
    }
    fn pay_request(
        &self,
        cfg: &ProviderConfig,
        invoice: &str,
        _amount_sat: u64,
    ) -> Option<HttpRequest> {
        Some(auth(
            cfg,
            HttpRequest::post_json(cfg.url("/payments/bolt11"), &json!({"invoice": invoice})),
        ))
    }
    fn classify_pay(&self, resp: &HttpResponse) -> PayOutcome {
        alby_pay(resp)
    }
    fn lookup_request(&self, cfg: &ProviderConfig, payment_hash: &str) -> Option<HttpRequest> {
        Some(check_request(cfg, payment_hash))
    }
    fn classify_lookup(&self, resp: &HttpResponse) -> LookupOutcome {
        let json: Option<Value> = serde_json::from_str(&resp.body).ok();
        if resp.status == 404 {
            return LookupOutcome::Error(format!(
                "HTTP 404 without the backend's own word: {}",
                snippet(&resp.body)
            ));
        }
        if !resp.is_success() {
            return LookupOutcome::Error(ProviderError::from_status(resp).to_string());
        }
        let Some(v) = json else {
            return LookupOutcome::Error("lookup answer is not JSON".into());
        };
        let settled = v.get("settled").and_then(Value::as_bool) == Some(true);
        match (
            settled,
            str_of(&v, &["state"])
                .map(str::to_ascii_uppercase)
                .as_deref(),
        ) {
            (true, _) | (_, Some("SETTLED")) => LookupOutcome::Paid {
                preimage: str_of(&v, &["preimage", "payment_preimage"]).map(str::to_string),
                fee_msat: None,
            },
            (_, Some("FAILED")) | (_, Some("ERROR")) => {
                LookupOutcome::Failed("Alby reports the payment failed".into())
            }
            _ => LookupOutcome::Pending,
        }
    }
}

fn alby_pay(resp: &HttpResponse) -> PayOutcome {
    let json: Option<Value> = serde_json::from_str(&resp.body).ok();
    match resp.status {
        200..=299 => match json
            .as_ref()
            .and_then(|v| str_of(v, &["payment_preimage", "preimage"]))
        {
            Some(pre) => PayOutcome::Succeeded {
                preimage: Some(pre.to_string()),
                fee_msat: json
                    .as_ref()
                    .and_then(|v| u64_of(v, "fee"))
                    .map(|sat| sat * 1000),
            },
            None => PayOutcome::Unknown("Alby accepted the payment without a preimage".into()),
        },
        400..=499 => PayOutcome::Failed(ProviderError::from_status(resp).to_string()),
        _ => PayOutcome::Unknown(ProviderError::from_status(resp).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::backends::test_support::{cfg, html_520, params};
    use crate::core::backends::ProviderKind;
    use crate::core::http::Method;

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
