//! phoenixd, ACINQ's Lightning server: HTTP Basic auth (empty user, the
//! `http-password` from `phoenix.conf`), form-encoded POST bodies, JSON
//! answers. An unknown payment answers 404 with the text `Not found`, an
//! unknown route 404 `Unknown endpoint (check api doc)`, a bad parameter 400
//! with a text message.
//!
//! References: <https://phoenix.acinq.co/server/api> and the routes in
//! ACINQ/phoenixd `src/commonMain/kotlin/fr/acinq/phoenixd/Api.kt` (answer
//! shapes in `json/JsonSerializers.kt`; payment failure reasons are
//! lightning-kmp's `FinalFailure`). phoenixd binds 127.0.0.1 and its docs
//! say not to expose it: a Worker reaches it through a tunnel.

use crate::descriptor::{Descriptor, Setting, NODE_FACTS};
use crate::BackendKind;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;

use super::error::snippet;
use super::{
    json_body, str_field, u64_of, Backend, BackendConfig, BackendError, CreatedInvoice,
    InvoiceParams, InvoiceState, LookedUp,
};
use crate::http::{HttpRequest, HttpResponse};
use crate::outcome::{Covers, LookupOutcome, PayOutcome};

/// phoenixd refuses longer descriptions (`createinvoice`, counted in
/// UTF-16 units as Kotlin's `String.length` does).
pub const MAX_DESCRIPTION_CHARS: usize = 128;

fn auth(cfg: &BackendConfig, r: HttpRequest) -> HttpRequest {
    let token = B64.encode(format!(":{}", cfg.credential));
    r.header("authorization", &format!("Basic {token}"))
}

/// `amountSat`, `description` or `descriptionHash` (exactly one of them),
/// `expirySeconds`, and `externalId` (a tag for the operator's own records).
pub fn create_request(cfg: &BackendConfig, p: &InvoiceParams, nonce: u64) -> HttpRequest {
    let amount = p.amount_sat.to_string();
    let expiry = p.expiry_secs.to_string();
    let external_id = format!("lightning-fallback-{nonce:016x}");
    let mut fields = vec![("amountSat", amount.as_str())];
    match (&p.description_hash, &p.description) {
        (Some(h), _) => fields.push(("descriptionHash", h.as_str())),
        (None, d) => fields.push(("description", d.as_deref().unwrap_or(""))),
    }
    fields.push(("expirySeconds", expiry.as_str()));
    fields.push(("externalId", external_id.as_str()));
    auth(
        cfg,
        HttpRequest::post_form(cfg.url("/createinvoice"), &fields),
    )
}

/// `{"amountSat", "paymentHash", "serialized"}`.
pub fn parse_create(r: &HttpResponse) -> Result<CreatedInvoice, BackendError> {
    let v = json_body(r)?;
    let serialized = str_field(&v, "serialized")
        .ok_or_else(|| BackendError::InvalidResponse("missing `serialized`".into()))?;
    Ok(CreatedInvoice {
        payment_request: serialized.to_string(),
        payment_hash: str_field(&v, "paymentHash").map(str::to_ascii_lowercase),
    })
}

pub fn check_request(cfg: &BackendConfig, payment_hash: &str) -> HttpRequest {
    auth(
        cfg,
        HttpRequest::get(cfg.url(&format!("/payments/incoming/{payment_hash}"))),
    )
}

/// An incoming payment: `{"isPaid", "isExpired", "completedAt" (ms)?, ...}`.
pub fn parse_check(r: &HttpResponse) -> Result<InvoiceState, BackendError> {
    let v = json_body(r)?;
    let flag = |k: &str| v.get(k).and_then(Value::as_bool);
    match (flag("isPaid"), flag("isExpired")) {
        (Some(true), _) => Ok(InvoiceState::Paid {
            settled_at_secs: v
                .get("completedAt")
                .and_then(Value::as_u64)
                .map(|ms| ms / 1000),
        }),
        (Some(false), Some(true)) => Ok(InvoiceState::Cancelled),
        (Some(false), _) => Ok(InvoiceState::Pending),
        (None, _) => Err(BackendError::InvalidResponse("missing `isPaid`".into())),
    }
}

pub fn probe_request(cfg: &BackendConfig) -> HttpRequest {
    auth(cfg, HttpRequest::get(cfg.url("/getinfo")))
}

/// `{"nodeId", "channels", "chain", "blockHeight", "version"}`.
pub fn parse_probe(r: &HttpResponse) -> Result<(), BackendError> {
    let v = json_body(r)?;
    match str_field(&v, "nodeId") {
        Some(_) => Ok(()),
        None => Err(BackendError::InvalidResponse("missing `nodeId`".into())),
    }
}

pub struct Phoenixd;

/// phoenixd 0.8.0 (`Api.kt`, `json/JsonSerializers.kt`): `PaymentSent`
/// carries `paymentPreimage`; a paid `OutgoingPayment` carries
/// `preimage`. `outgoingbyhash` reads the wallet's own table: its 404
/// "Not found" means no attempt was ever recorded.
pub const DESCRIPTOR: Descriptor = Descriptor {
    kind: BackendKind::Phoenixd,
    label: "phoenixd",
    location: Some(Setting::public(&["PHOENIXD_URL"])),
    credential: Some(Setting::secret(&["PHOENIXD_PASSWORD"])),
    other: &[],
    facts: NODE_FACTS,
    finds_invoices_by_hash: true,
};

impl Backend for Phoenixd {
    /// `/payments/incoming/{hash}` knows only this node's own invoices.
    fn lookup_invoice(&self, v: &Value) -> LookedUp {
        str_field(v, "invoice").map_or(LookedUp::NoInvoice, |s| LookedUp::Incoming(s.into()))
    }
    fn create_request(&self, cfg: &BackendConfig, p: &InvoiceParams) -> Option<HttpRequest> {
        Some(create_request(cfg, p, 0))
    }
    fn create_request_unique(
        &self,
        cfg: &BackendConfig,
        p: &InvoiceParams,
        nonce: u64,
    ) -> Option<HttpRequest> {
        Some(create_request(cfg, p, nonce))
    }
    fn unsupported(&self, p: &InvoiceParams) -> Option<String> {
        let len = p
            .description
            .as_deref()
            .map(|d| d.encode_utf16().count())
            .unwrap_or(0);
        (p.description_hash.is_none() && len > MAX_DESCRIPTION_CHARS).then(|| {
            format!("phoenixd takes descriptions of at most {MAX_DESCRIPTION_CHARS} characters")
        })
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
    /// `GET /payments/incoming/{hash}` shows `preimage` (hex).
    fn check_preimage(&self, r: &HttpResponse) -> Option<String> {
        let v = json_body(r).ok()?;
        crate::hex_preimage(str_field(&v, "preimage"))
    }
    fn probe_request(&self, cfg: &BackendConfig) -> Option<HttpRequest> {
        Some(probe_request(cfg))
    }
    fn parse_probe(&self, r: &HttpResponse) -> Result<(), BackendError> {
        parse_probe(r)
    }
    /// `payinvoice` with the invoice alone: `amountSat` would override the
    /// invoice's amount. It takes no fee limit (phoenixd pays through its
    /// trampoline node at that node's fee); it answers when the payment ended.
    fn pay_request(
        &self,
        cfg: &BackendConfig,
        invoice: &str,
        _amount_sat: u64,
    ) -> Option<HttpRequest> {
        Some(auth(
            cfg,
            HttpRequest::post_form(cfg.url("/payinvoice"), &[("invoice", invoice)]),
        ))
    }
    fn classify_pay(&self, resp: &HttpResponse) -> PayOutcome {
        pay_outcome(resp)
    }
    fn lookup_request(&self, cfg: &BackendConfig, payment_hash: &str) -> Option<HttpRequest> {
        Some(auth(
            cfg,
            HttpRequest::get(cfg.url(&format!("/payments/outgoingbyhash/{payment_hash}"))),
        ))
    }
    fn classify_lookup(&self, resp: &HttpResponse) -> LookupOutcome {
        lookup_outcome(resp)
    }
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
}

/// `PaymentNotSent` reasons (lightning-kmp `FinalFailure`) that do not mean
/// this payment failed: another payment for the invoice is in flight or
/// already paid it, the wallet restarted mid-payment, or nobody knows.
const AMBIGUOUS_REASONS: &[&str] = &[
    "another payment is in progress",
    "already been paid",
    "wallet restarted",
    "unknown error",
];

/// `payinvoice` answers 200 either way: `PaymentSent` `{"recipientAmountSat",
/// "routingFeeSat", "paymentId", "paymentHash", "paymentPreimage"}` or
/// `PaymentFailed` `{"paymentHash", "reason"}`.
fn pay_outcome(resp: &HttpResponse) -> PayOutcome {
    let json: Option<Value> = serde_json::from_str(&resp.body).ok();
    match resp.status {
        200..=299 => {
            let Some(v) = json else {
                return PayOutcome::Unknown(
                    "phoenixd answered a payment with an unreadable body".into(),
                );
            };
            if let Some(pre) = str_field(&v, "paymentPreimage") {
                return PayOutcome::Succeeded {
                    preimage: Some(pre.to_string()),
                    fee_msat: u64_of(&v, "routingFeeSat").map(|s| s.saturating_mul(1_000)),
                };
            }
            match str_field(&v, "reason") {
                Some(r)
                    if AMBIGUOUS_REASONS
                        .iter()
                        .any(|a| r.to_ascii_lowercase().contains(a)) =>
                {
                    PayOutcome::Unknown(format!("phoenixd: {r}"))
                }
                Some(r) => PayOutcome::Failed(format!("phoenixd: {r}")),
                None => PayOutcome::Unknown(format!(
                    "phoenixd answered without a preimage or a reason: {}",
                    snippet(&resp.body)
                )),
            }
        }
        // phoenixd's "Unknown endpoint": the URL is wrong, nothing ran.
        404 => PayOutcome::NotSent(format!(
            "HTTP 404: {} (wrong PHOENIXD_URL?)",
            snippet(&resp.body)
        )),
        // A refused parameter (an unreadable invoice), before paying.
        400 => PayOutcome::Failed(format!("HTTP 400: {}", snippet(&resp.body))),
        _ => PayOutcome::Unknown(BackendError::from_status(resp).to_string()),
    }
}

/// An outgoing payment by hash (the most advanced one when there are
/// several): `{"isPaid", "preimage"?, "fees" (msat), "completedAt"?}`.
/// Paid when `isPaid`; failed when it completed unpaid; otherwise pending.
/// 404 `Not found` is phoenixd's own word that it has no such payment;
/// any other 404 (its "Unknown endpoint", a proxy) proves nothing.
fn lookup_outcome(resp: &HttpResponse) -> LookupOutcome {
    if resp.status == 404 {
        return if resp.body.trim() == "Not found" {
            LookupOutcome::NotFound
        } else {
            LookupOutcome::Error(format!(
                "HTTP 404 without phoenixd's own word: {}",
                snippet(&resp.body)
            ))
        };
    }
    if !resp.is_success() {
        return LookupOutcome::Error(BackendError::from_status(resp).to_string());
    }
    let Some(v) = serde_json::from_str::<Value>(&resp.body).ok() else {
        return LookupOutcome::Error("lookup answer is not JSON".into());
    };
    let completed = v.get("completedAt").is_some_and(|c| !c.is_null());
    match v.get("isPaid").and_then(Value::as_bool) {
        Some(true) => LookupOutcome::Paid {
            preimage: str_field(&v, "preimage").map(str::to_string),
            fee_msat: u64_of(&v, "fees"),
        },
        // One row per `/payinvoice`; the route answers the most advanced
        // (succeeded, then pending, then failed), so a failed answer means
        // every attempt completed failed. Which failed row's `createdAt`
        // (ms, phoenixd's clock) comes back is unspecified.
        Some(false) if completed => LookupOutcome::failed(
            "phoenixd lists the payment as failed",
            Covers::EveryAttempt,
            v.get("createdAt").and_then(Value::as_u64),
        ),
        Some(false) => LookupOutcome::Pending,
        None => LookupOutcome::Error("lookup answer has no `isPaid`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;
    use crate::test_support::{cfg, html_520, params};
    use crate::BackendKind;
    use serde_json::json;

    fn text(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            content_type: Some("text/plain; charset=UTF-8".into()),
            body: body.into(),
        }
    }

    #[test]
    fn requests_are_form_encoded_with_basic_auth() {
        let c = cfg(BackendKind::Phoenixd);
        let r = create_request(&c, &params(), 0xabc);
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.url, "https://example.test/createinvoice");
        // base64(":secret")
        assert!(r
            .headers
            .contains(&("authorization".into(), "Basic OnNlY3JldA==".into())));
        assert_eq!(
            r.body.as_deref(),
            Some("amountSat=1000&description=coffee&expirySeconds=600&externalId=lightning-fallback-0000000000000abc")
        );
        let mut p = params();
        p.description_hash = Some("ab".repeat(32));
        let r = create_request(&c, &p, 1);
        let body = r.body.unwrap_or_default();
        assert!(
            body.contains(&format!("descriptionHash={}", "ab".repeat(32))),
            "{body}"
        );
        assert!(
            !body.contains("description="),
            "exactly one of the two: {body}"
        );
        let pay = Phoenixd
            .pay_request(&c, "lnbc1x", 5)
            .unwrap_or_else(|| panic!("request"));
        assert_eq!(pay.url, "https://example.test/payinvoice");
        assert_eq!(pay.body.as_deref(), Some("invoice=lnbc1x"));
        let look = Phoenixd
            .lookup_request(&c, &"cd".repeat(32))
            .unwrap_or_else(|| panic!("request"));
        assert_eq!(
            look.url,
            format!(
                "https://example.test/payments/outgoingbyhash/{}",
                "cd".repeat(32)
            )
        );
        assert_eq!(look.method, Method::Get);
    }

    #[test]
    fn long_descriptions_are_refused_before_sending() {
        let mut p = params();
        p.description = Some("é".repeat(128));
        assert!(Phoenixd.unsupported(&p).is_none());
        p.description = Some("x".repeat(129));
        assert!(Phoenixd.unsupported(&p).is_some());
        p.description_hash = Some("00".repeat(32));
        assert!(
            Phoenixd.unsupported(&p).is_none(),
            "the hash is sent instead"
        );
    }

    #[test]
    fn create_check_and_probe_answers() {
        let c = parse_create(&HttpResponse::json(
            200,
            &json!({"amountSat": 1000, "paymentHash": "AB", "serialized": "lnbc1x"}),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.payment_request, "lnbc1x");
        assert_eq!(c.payment_hash.as_deref(), Some("ab"));
        assert!(matches!(
            parse_create(&text(
                400,
                "Must provide either a description or descriptionHash"
            )),
            Err(BackendError::Rejected { status: 400, .. })
        ));
        let check = |v: Value| parse_check(&HttpResponse::json(200, &v));
        assert_eq!(
            check(json!({"isPaid": true, "isExpired": false, "completedAt": 1_700_000_000_123u64})),
            Ok(InvoiceState::Paid {
                settled_at_secs: Some(1_700_000_000)
            })
        );
        assert_eq!(
            check(json!({"isPaid": false, "isExpired": false})),
            Ok(InvoiceState::Pending)
        );
        assert_eq!(
            check(json!({"isPaid": false, "isExpired": true})),
            Ok(InvoiceState::Cancelled)
        );
        assert!(check(json!({})).is_err());
        assert!(matches!(
            parse_check(&text(404, "Not found")),
            Err(BackendError::NotFound { .. })
        ));
        assert!(parse_probe(&HttpResponse::json(
            200,
            &json!({"nodeId": "02ab", "channels": [], "chain": "mainnet", "blockHeight": 1, "version": "0.6"})
        ))
        .is_ok());
        assert!(parse_probe(&HttpResponse::json(200, &json!({}))).is_err());
        assert!(matches!(
            parse_probe(&text(401, "Invalid authentication (use basic auth with the http password set in phoenix.conf)")),
            Err(BackendError::Unauthorized { .. })
        ));
    }

    #[test]
    fn pay_answers() {
        assert_eq!(
            pay_outcome(&HttpResponse::json(
                200,
                &json!({"recipientAmountSat": 1000, "routingFeeSat": 4, "paymentId": "u", "paymentHash": "ab", "paymentPreimage": "pp"})
            )),
            PayOutcome::Succeeded {
                preimage: Some("pp".into()),
                fee_msat: Some(4_000)
            }
        );
        let failed = |reason: &str| {
            pay_outcome(&HttpResponse::json(
                200,
                &json!({"paymentHash": "ab", "reason": reason}),
            ))
        };
        assert!(matches!(
            failed(
                "the recipient was offline or did not have enough liquidity to receive the payment"
            ),
            PayOutcome::Failed(_)
        ));
        assert!(matches!(
            failed("not enough funds in wallet to afford payment"),
            PayOutcome::Failed(_)
        ));
        for ambiguous in [
            "another payment is in progress for that invoice",
            "this invoice has already been paid",
            "wallet restarted while a payment was ongoing",
            "an unknown error occurred",
        ] {
            assert!(
                matches!(failed(ambiguous), PayOutcome::Unknown(_)),
                "{ambiguous}"
            );
        }
        assert!(matches!(
            pay_outcome(&text(400, "Invalid parameter invoice")),
            PayOutcome::Failed(_)
        ));
        assert!(matches!(
            pay_outcome(&text(404, "Unknown endpoint (check api doc)")),
            PayOutcome::NotSent(_)
        ));
        assert!(matches!(pay_outcome(&html_520()), PayOutcome::Unknown(_)));
        assert!(matches!(
            pay_outcome(&text(500, "boom")),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            pay_outcome(&HttpResponse::json(200, &json!({"paymentHash": "ab"}))),
            PayOutcome::Unknown(_)
        ));
    }

    #[test]
    fn lookups_need_phoenixds_own_not_found() {
        let out = |v: Value| lookup_outcome(&HttpResponse::json(200, &v));
        assert_eq!(
            out(json!({"isPaid": true, "preimage": "pp", "fees": 4000, "completedAt": 1})),
            LookupOutcome::Paid {
                preimage: Some("pp".into()),
                fee_msat: Some(4000)
            }
        );
        assert_eq!(
            out(json!({"isPaid": false, "completedAt": null})),
            LookupOutcome::Pending
        );
        assert_eq!(out(json!({"isPaid": false})), LookupOutcome::Pending);
        assert!(matches!(
            out(json!({"isPaid": false, "completedAt": 1_700_000_000_000u64})),
            LookupOutcome::Failed(_)
        ));
        assert!(matches!(out(json!({})), LookupOutcome::Error(_)));
        assert_eq!(
            lookup_outcome(&text(404, "Not found")),
            LookupOutcome::NotFound
        );
        assert!(matches!(
            lookup_outcome(&text(404, "Unknown endpoint (check api doc)")),
            LookupOutcome::Error(_)
        ));
        assert!(matches!(
            lookup_outcome(&html_520()),
            LookupOutcome::Error(_)
        ));
    }
}
