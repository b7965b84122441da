//! LNbits-compatible wallets (LNbits itself, Voltz), `X-Api-Key` auth.

use crate::descriptor::{Descriptor, Setting};
use crate::BackendKind;
use serde_json::{json, Value};

use super::error::snippet;
use super::{
    json_body, str_field, str_of, u64_of, Backend, BackendConfig, BackendError, CreatedInvoice,
    InvoiceParams, InvoiceState, LookedUp, PaymentFacts,
};
use crate::http::{HttpRequest, HttpResponse};
use crate::outcome::{Covers, FailedRecord, LookupOutcome, PayOutcome};
use crate::timestamp::parse_timestamp_ms;

fn auth(cfg: &BackendConfig, r: HttpRequest) -> HttpRequest {
    r.header("x-api-key", &cfg.credential)
}

pub fn create_request(cfg: &BackendConfig, p: &InvoiceParams) -> HttpRequest {
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
    // LNbits POSTs the paid payment there (`webhook`, core/services/payments.py).
    if let Some(u) = &p.notify_url {
        body["webhook"] = Value::from(u.as_str());
    }
    auth(
        cfg,
        HttpRequest::post_json(cfg.url("/api/v1/payments"), &body),
    )
}

pub fn parse_create(r: &HttpResponse) -> Result<CreatedInvoice, BackendError> {
    let v = json_body(r)?;
    // Older servers say `payment_request`, newer `bolt11`.
    let payment_request = str_field(&v, "bolt11")
        .or_else(|| str_field(&v, "payment_request"))
        .ok_or_else(|| BackendError::InvalidResponse("missing `bolt11`".into()))?;
    Ok(CreatedInvoice {
        payment_request: payment_request.to_string(),
        payment_hash: str_field(&v, "payment_hash").map(str::to_ascii_lowercase),
    })
}

pub fn check_request(cfg: &BackendConfig, payment_hash: &str) -> HttpRequest {
    auth(
        cfg,
        HttpRequest::get(cfg.url(&format!("/api/v1/payments/{payment_hash}"))),
    )
}

pub fn parse_check(r: &HttpResponse) -> Result<InvoiceState, BackendError> {
    let v = json_body(r)?;
    let paid = v.get("paid").and_then(Value::as_bool);
    match (paid, str_field(&v, "status")) {
        (Some(true), _) | (_, Some("success")) => Ok(InvoiceState::Paid {
            settled_at_secs: None,
        }),
        (_, Some("failed")) => Ok(InvoiceState::Cancelled),
        (Some(false), _) | (_, Some("pending")) => Ok(InvoiceState::Pending),
        _ => Err(BackendError::InvalidResponse("missing `paid`".into())),
    }
}

pub fn probe_request(cfg: &BackendConfig) -> HttpRequest {
    auth(cfg, HttpRequest::get(cfg.url("/api/v1/wallet")))
}

pub fn parse_probe(r: &HttpResponse) -> Result<(), BackendError> {
    let v = json_body(r)?;
    if v.get("balance").is_some() {
        Ok(())
    } else {
        Err(BackendError::InvalidResponse("missing `balance`".into()))
    }
}

pub struct Lnbits;

/// LNbits 1.6.2 (`lnbits/core/views/payment_api.py`, `core/services/
/// payments.py`, `core/crud/payments.py`): a successful payment is the
/// `Payment` row with its `preimage`, and a paid lookup carries
/// `preimage`. Its 404 "Payment does not exist." is also the answer for
/// a row the key's wallet may not see (`get_standalone_payment`: a
/// shared wallet without view permission).
pub const DESCRIPTOR: Descriptor = Descriptor {
    kind: BackendKind::Lnbits,
    label: "LNbits",
    location: Some(Setting::public(&["LNBITS_URL"])),
    credential: Some(Setting::secret(&["LNBITS_INVOICE_KEY", "LNBITS_API_KEY"])),
    other: &[Setting::secret(&["LNBITS_ADMIN_KEY"])],
    facts: PaymentFacts {
        preimage_on_pay: true,
        preimage_on_lookup: true,
        lookup_may_be_blind: true,
        late_execution_floor_ms: 0,
        not_found_may_hide_in_flight: false,
    },
    finds_invoices_by_hash: true,
};

impl Backend for Lnbits {
    /// `GET /api/v1/payments/{hash}` with the wallet's key answers its payments
    /// of either direction; `details.amount` (msat) is negative for outgoing ones.
    fn lookup_invoice(&self, v: &Value) -> LookedUp {
        let details = v.get("details").unwrap_or(&Value::Null);
        if details
            .get("amount")
            .and_then(Value::as_i64)
            .is_some_and(|a| a < 0)
        {
            return LookedUp::Outgoing;
        }
        str_field(details, "bolt11")
            .or_else(|| str_field(details, "payment_request"))
            .map_or(LookedUp::NoInvoice, |s| LookedUp::Incoming(s.into()))
    }
    fn create_request(&self, cfg: &BackendConfig, p: &InvoiceParams) -> Option<HttpRequest> {
        Some(create_request(cfg, p))
    }
    fn parse_create(&self, r: &HttpResponse) -> Result<CreatedInvoice, BackendError> {
        parse_create(r)
    }
    fn check_request(&self, cfg: &BackendConfig, payment_hash: &str) -> Option<HttpRequest> {
        Some(check_request(cfg, payment_hash))
    }
    fn parse_check(&self, r: &HttpResponse) -> Result<InvoiceState, BackendError> {
        parse_check(r)
    }
    /// `GET /api/v1/payments/{hash}` shows `preimage` beside `paid`.
    fn check_preimage(&self, r: &HttpResponse) -> Option<String> {
        let v = json_body(r).ok()?;
        crate::hex_preimage(v.get("preimage").and_then(Value::as_str))
    }
    fn probe_request(&self, cfg: &BackendConfig) -> Option<HttpRequest> {
        Some(probe_request(cfg))
    }
    fn parse_probe(&self, r: &HttpResponse) -> Result<(), BackendError> {
        parse_probe(r)
    }
    fn pay_request(
        &self,
        cfg: &BackendConfig,
        invoice: &str,
        _amount_sat: u64,
    ) -> Option<HttpRequest> {
        Some(auth(
            cfg,
            HttpRequest::post_json(
                cfg.url("/api/v1/payments"),
                &json!({"out": true, "bolt11": invoice}),
            ),
        ))
    }
    fn classify_pay(&self, resp: &HttpResponse) -> PayOutcome {
        pay_outcome(resp)
    }
    fn lookup_request(&self, cfg: &BackendConfig, payment_hash: &str) -> Option<HttpRequest> {
        Some(check_request(cfg, payment_hash))
    }
    fn classify_lookup(&self, resp: &HttpResponse) -> LookupOutcome {
        lookup_outcome(resp)
    }
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
}

fn pay_outcome(resp: &HttpResponse) -> PayOutcome {
    let json: Option<Value> = serde_json::from_str(&resp.body).ok();
    let status = json
        .as_ref()
        .and_then(|v| str_of(v, &["status"]))
        .map(str::to_ascii_lowercase);
    let detail = json
        .as_ref()
        .and_then(|v| str_of(v, &["detail", "message"]))
        .map(str::to_string)
        .unwrap_or_else(|| snippet(&resp.body));
    match (resp.status, status.as_deref()) {
        (200..=299, Some("success")) => PayOutcome::Succeeded {
            preimage: json
                .as_ref()
                .and_then(|v| str_of(v, &["preimage", "payment_preimage"]))
                .map(str::to_string),
            fee_msat: json.as_ref().and_then(|v| u64_of(v, "fee")),
        },
        (200..=299, Some("failed")) => PayOutcome::Failed(detail),
        (200..=299, _) => {
            PayOutcome::Unknown("the backend accepted the payment and reports it pending".into())
        }
        // LNbits' own 520 carries a status; only an explicit "failed" is a failure.
        (520, Some("failed")) => PayOutcome::Failed(detail),
        (520, _) if json.is_some() => {
            PayOutcome::Unknown(format!("HTTP 520 without a failed status: {detail}"))
        }
        (500..=599, _) => PayOutcome::Unknown(BackendError::from_status(resp).to_string()),
        (404, _) => PayOutcome::NotSent(format!("HTTP 404: {detail} (wrong URL or key)")),
        (400..=499, _) => PayOutcome::Failed(format!("HTTP {}: {detail}", resp.status)),
        _ => PayOutcome::Unknown(format!("unexpected HTTP {}", resp.status)),
    }
}

/// The wallet's own record of a payment. A 404 proves absence only with
/// LNbits' own words ("does not exist"): a proxy's or a wrong path's 404
/// would let a paid hash be left.
fn lookup_outcome(resp: &HttpResponse) -> LookupOutcome {
    let json: Option<Value> = serde_json::from_str(&resp.body).ok();
    if resp.status == 404 {
        let detail = json
            .as_ref()
            .and_then(|v| str_of(v, &["detail"]))
            .unwrap_or("");
        return if detail.contains("does not exist") {
            LookupOutcome::NotFound
        } else {
            LookupOutcome::Error(format!(
                "HTTP 404 without the backend's own word: {}",
                snippet(&resp.body)
            ))
        };
    }
    if !resp.is_success() {
        return LookupOutcome::Error(BackendError::from_status(resp).to_string());
    }
    let Some(v) = json else {
        return LookupOutcome::Error("lookup answer is not JSON".into());
    };
    // With a key it recognises, LNbits answers with the wallet's own
    // record (`details`); without, any wallet's row for this hash.
    let Some(details) = v.get("details").filter(|d| d.is_object()).cloned() else {
        return LookupOutcome::Error(
            "lookup answer without the wallet's record (is the admin key still valid?)".into(),
        );
    };
    // A payout looks up what it paid: with one wallet both paying and
    // receiving, the wallet's incoming invoice of this hash says nothing
    // about that (`details.amount` is negative for outgoing payments).
    if details
        .get("amount")
        .and_then(Value::as_i64)
        .is_some_and(|a| a > 0)
    {
        return LookupOutcome::Error(
            "the wallet's record of this hash is an incoming invoice".into(),
        );
    }
    let paid = v.get("paid").and_then(Value::as_bool) == Some(true);
    match (
        paid,
        str_of(&v, &["status"]).or_else(|| str_of(&details, &["status"])),
    ) {
        (true, _) | (_, Some("success")) => LookupOutcome::Paid {
            preimage: str_of(&v, &["preimage"])
                .or_else(|| str_of(&details, &["preimage"]))
                .map(str::to_string),
            fee_msat: u64_of(&details, "fee"),
        },
        // One row per hash (`checking_id` is the hash; a send of a hash
        // that failed is refused: "retrying is not possible"). LNbits 1.6
        // marks a row failed only when its funding source answers the
        // payment `ok=False` (`_pay_external_invoice`; 1.5 also on "Unable
        // to connect": use 1.6 or later), and never re-checks it. That the
        // funding source's failure is final is taken on its word: LNbits'
        // LND backend answers `ok=False` only before dispatch.
        (_, Some("failed")) => LookupOutcome::Failed(FailedRecord {
            reason: "the backend reports the payment failed".into(),
            covers: Covers::EveryAttempt,
            created_at_ms: ["created_at", "time"]
                .iter()
                .find_map(|k| details.get(*k).and_then(parse_timestamp_ms)),
            may_still_settle: false,
            resendable: false,
        }),
        (_, Some("pending")) => LookupOutcome::Pending,
        _ => LookupOutcome::Error("lookup answer has no status".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{cfg, html_520, params};
    use crate::BackendKind;

    #[test]
    fn create_request_always_sends_out_false() {
        let r = create_request(&cfg(BackendKind::Lnbits), &params());
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
            Err(BackendError::Upstream {
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
            Err(BackendError::Upstream { html: true, .. })
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
