//! LND REST, authenticated with a hex macaroon header.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::{
    json_body, str_field, CreatedInvoice, InvoiceParams, InvoiceState, ProviderConfig,
    ProviderError,
};
use crate::core::http::{HttpRequest, HttpResponse};

fn auth(cfg: &ProviderConfig, r: HttpRequest) -> HttpRequest {
    r.header("grpc-metadata-macaroon", &cfg.credential)
}

pub fn create_request(cfg: &ProviderConfig, p: &InvoiceParams) -> HttpRequest {
    // int64 fields travel as strings in LND's JSON mapping.
    let mut body = json!({
        "value": p.amount_sat.to_string(),
        "expiry": p.expiry_secs.to_string(),
        "memo": p.description.clone().unwrap_or_default(),
    });
    if let Some(h) = p
        .description_hash
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
    {
        body["description_hash"] = Value::from(B64.encode(h));
    }
    auth(cfg, HttpRequest::post_json(cfg.url("/v1/invoices"), &body))
}

pub fn parse_create(r: &HttpResponse) -> Result<CreatedInvoice, ProviderError> {
    let v = json_body(r)?;
    let payment_request = str_field(&v, "payment_request")
        .ok_or_else(|| ProviderError::InvalidResponse("missing `payment_request`".into()))?;
    let payment_hash = match str_field(&v, "r_hash") {
        Some(b) => Some(hex::encode(B64.decode(b).map_err(|_| {
            ProviderError::InvalidResponse("`r_hash` is not base64".into())
        })?)),
        None => None,
    };
    Ok(CreatedInvoice {
        payment_request: payment_request.to_string(),
        payment_hash,
    })
}

pub fn check_request(cfg: &ProviderConfig, payment_hash: &str) -> HttpRequest {
    auth(
        cfg,
        HttpRequest::get(cfg.url(&format!("/v1/invoice/{payment_hash}"))),
    )
}

fn u64_field(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

pub fn parse_check(r: &HttpResponse) -> Result<InvoiceState, ProviderError> {
    let v = json_body(r)?;
    let settled_at_secs = u64_field(&v, "settle_date").filter(|t| *t > 0);
    match str_field(&v, "state") {
        Some("SETTLED") => Ok(InvoiceState::Paid { settled_at_secs }),
        Some("OPEN") | Some("ACCEPTED") => Ok(InvoiceState::Pending),
        Some("CANCELED") => Ok(InvoiceState::Cancelled),
        Some(other) => Err(ProviderError::InvalidResponse(format!(
            "unknown invoice state `{other}`"
        ))),
        None if v.get("settled").and_then(Value::as_bool) == Some(true) => {
            Ok(InvoiceState::Paid { settled_at_secs })
        }
        None => Err(ProviderError::InvalidResponse("missing `state`".into())),
    }
}

/// `GET /v1/invoice/{hash}` knows only the node's own invoices.
pub fn lookup_invoice(v: &Value) -> super::LookedUp {
    str_field(v, "payment_request").map_or(super::LookedUp::NoInvoice, |s| {
        super::LookedUp::Incoming(s.into())
    })
}

pub fn probe_request(cfg: &ProviderConfig) -> HttpRequest {
    auth(cfg, HttpRequest::get(cfg.url("/v1/getinfo")))
}

pub fn parse_probe(r: &HttpResponse) -> Result<(), ProviderError> {
    let v = json_body(r)?;
    match v.get("synced_to_chain").and_then(Value::as_bool) {
        Some(true) => Ok(()),
        Some(false) => Err(ProviderError::Unhealthy(
            "node is not synced to chain".into(),
        )),
        None => Err(ProviderError::InvalidResponse(
            "missing `synced_to_chain`".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::providers::test_support::{cfg, html_520, params};
    use crate::core::providers::ProviderKind;

    #[test]
    fn create_request_shape() {
        let mut p = params();
        p.description_hash = Some("00".repeat(32));
        let r = create_request(&cfg(ProviderKind::Lnd), &p);
        assert_eq!(r.url, "https://example.test/v1/invoices");
        assert!(r
            .headers
            .contains(&("grpc-metadata-macaroon".into(), "secret".into())));
        let body: Value = serde_json::from_str(r.body.as_deref().unwrap_or("")).unwrap_or_default();
        assert_eq!(body["value"], "1000");
        assert_eq!(body["expiry"], "600");
        assert_eq!(body["description_hash"], B64.encode([0u8; 32]));
    }

    #[test]
    fn r_hash_is_converted_from_base64_to_hex() {
        let r = HttpResponse::json(
            200,
            &json!({"r_hash": B64.encode([0xabu8; 32]), "payment_request": "lnbc1x", "add_index": "1"}),
        );
        let c = parse_create(&r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.payment_hash, Some("ab".repeat(32)));
        let bad = HttpResponse::json(200, &json!({"r_hash": "!!", "payment_request": "lnbc1x"}));
        assert!(matches!(
            parse_create(&bad),
            Err(ProviderError::InvalidResponse(_))
        ));
    }

    #[test]
    fn invoice_states() {
        let s = |st: &str| {
            parse_check(&HttpResponse::json(
                200,
                &json!({"state": st, "settle_date": "1700000000"}),
            ))
        };
        assert_eq!(
            s("SETTLED"),
            Ok(InvoiceState::Paid {
                settled_at_secs: Some(1_700_000_000)
            })
        );
        assert_eq!(s("OPEN"), Ok(InvoiceState::Pending));
        assert_eq!(s("ACCEPTED"), Ok(InvoiceState::Pending));
        assert_eq!(s("CANCELED"), Ok(InvoiceState::Cancelled));
        assert!(s("WEIRD").is_err());
        assert!(matches!(
            parse_check(&html_520()),
            Err(ProviderError::Upstream { .. })
        ));
        assert_eq!(
            parse_check(&HttpResponse::json(
                404,
                &json!({"message": "unable to locate invoice"})
            )),
            Err(ProviderError::NotFound {
                detail: "unable to locate invoice".into()
            })
        );
    }

    #[test]
    fn probe_requires_sync() {
        assert!(parse_probe(&HttpResponse::json(200, &json!({"synced_to_chain": true}))).is_ok());
        assert!(matches!(
            parse_probe(&HttpResponse::json(200, &json!({"synced_to_chain": false}))),
            Err(ProviderError::Unhealthy(_))
        ));
    }
}
