//! LND REST, authenticated with a hex macaroon header.

use crate::descriptor::{self, Descriptor, Setting, SettingError, Values, NODE_FACTS};
use crate::BackendKind;
use base64::engine::general_purpose::STANDARD as B64;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde_json::{json, Value};

use super::error::snippet;
use super::{
    json_body, str_field, str_of, u64_of, Backend, BackendConfig, BackendError, CreatedInvoice,
    InvoiceParams, InvoiceState, LookedUp,
};
use crate::http::{HttpRequest, HttpResponse, ReadLimits};
use crate::outcome::{Covers, LookupOutcome, PayOutcome};
use crate::payment::fee_limit_sat;

fn auth(cfg: &BackendConfig, r: HttpRequest) -> HttpRequest {
    r.header("grpc-metadata-macaroon", &cfg.credential)
}

pub fn create_request(cfg: &BackendConfig, p: &InvoiceParams) -> HttpRequest {
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

pub fn parse_create(r: &HttpResponse) -> Result<CreatedInvoice, BackendError> {
    let v = json_body(r)?;
    let payment_request = str_field(&v, "payment_request")
        .ok_or_else(|| BackendError::InvalidResponse("missing `payment_request`".into()))?;
    let payment_hash = match str_field(&v, "r_hash") {
        Some(b) => Some(hex::encode(B64.decode(b).map_err(|_| {
            BackendError::InvalidResponse("`r_hash` is not base64".into())
        })?)),
        None => None,
    };
    Ok(CreatedInvoice {
        payment_request: payment_request.to_string(),
        payment_hash,
    })
}

pub fn check_request(cfg: &BackendConfig, payment_hash: &str) -> HttpRequest {
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

pub fn parse_check(r: &HttpResponse) -> Result<InvoiceState, BackendError> {
    let v = json_body(r)?;
    let settled_at_secs = u64_field(&v, "settle_date").filter(|t| *t > 0);
    match str_field(&v, "state") {
        Some("SETTLED") => Ok(InvoiceState::Paid { settled_at_secs }),
        Some("OPEN") | Some("ACCEPTED") => Ok(InvoiceState::Pending),
        Some("CANCELED") => Ok(InvoiceState::Cancelled),
        Some(other) => Err(BackendError::InvalidResponse(format!(
            "unknown invoice state `{other}`"
        ))),
        None if v.get("settled").and_then(Value::as_bool) == Some(true) => {
            Ok(InvoiceState::Paid { settled_at_secs })
        }
        None => Err(BackendError::InvalidResponse("missing `state`".into())),
    }
}

pub fn probe_request(cfg: &BackendConfig) -> HttpRequest {
    auth(cfg, HttpRequest::get(cfg.url("/v1/getinfo")))
}

pub fn parse_probe(r: &HttpResponse) -> Result<(), BackendError> {
    let v = json_body(r)?;
    match v.get("synced_to_chain").and_then(Value::as_bool) {
        Some(true) => Ok(()),
        Some(false) => Err(BackendError::Unhealthy(
            "node is not synced to chain".into(),
        )),
        None => Err(BackendError::InvalidResponse(
            "missing `synced_to_chain`".into(),
        )),
    }
}

pub struct Lnd;

/// `SendPaymentV2`/`TrackPaymentV2` stream `lnrpc.Payment`: SUCCEEDED
/// needs a settled HTLC, whose preimage `MarshallPayment` puts in
/// `payment_preimage`. The record exists before any HTLC leaves, so
/// "payment isn't initiated" is LND's word (lnd v0.21
/// `routing/router.go:PreparePayment`, `payments/db`).
pub const DESCRIPTOR: Descriptor = Descriptor {
    kind: BackendKind::Lnd,
    label: "LND (REST)",
    location: Some(Setting::public(&["LND_REST_URL"])),
    credential: Some(Setting::secret(&["LND_ADMIN_MACAROON", "LND_MACAROON"])),
    other: &[],
    facts: NODE_FACTS,
    finds_invoices_by_hash: true,
};

impl Backend for Lnd {
    /// `GET /v1/invoice/{hash}` knows only the node's own invoices.
    fn lookup_invoice(&self, v: &Value) -> LookedUp {
        str_field(v, "payment_request")
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
    /// `GET /v1/invoice/{r_hash}`: `r_preimage`, base64 of 32 bytes (lnrpc.Invoice).
    fn check_preimage(&self, r: &HttpResponse) -> Option<String> {
        let v = json_body(r).ok()?;
        let raw = B64.decode(str_field(&v, "r_preimage")?).ok()?;
        (raw.len() == 32).then(|| hex::encode(raw))
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
        amount_sat: u64,
    ) -> Option<HttpRequest> {
        Some(auth(
            cfg,
            HttpRequest::post_json(
                cfg.url("/v2/router/send"),
                &json!({
                    "payment_request": invoice,
                    "timeout_seconds": 60,
                    "fee_limit_sat": fee_limit_sat(amount_sat).to_string(),
                    "no_inflight_updates": true,
                }),
            ),
        ))
    }
    fn classify_pay(&self, resp: &HttpResponse) -> PayOutcome {
        lnd_pay(resp)
    }
    /// TrackPaymentV2 streams the payment's current state as its first
    /// line, then one line per change until the payment ends. Without
    /// `no_inflight_updates` (which would send nothing until the end) the
    /// first line answers at once; `lookup_read_limits` reads only that.
    fn lookup_request(&self, cfg: &BackendConfig, payment_hash: &str) -> Option<HttpRequest> {
        let raw = hex::decode(payment_hash).unwrap_or_default();
        Some(auth(
            cfg,
            HttpRequest::get(cfg.url(&format!("/v2/router/track/{}", B64URL.encode(raw)))),
        ))
    }
    fn classify_lookup(&self, resp: &HttpResponse) -> LookupOutcome {
        lnd_lookup(resp)
    }
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    /// The macaroon goes in a header as hex: anything else is refused here.
    fn configure(&self, v: &Values) -> Result<BackendConfig, SettingError> {
        let c = descriptor::url_and_credential(BackendKind::Lnd, v)?;
        if hex::decode(&c.credential).is_err() {
            let var = v
                .credential
                .as_ref()
                .map_or("LND_ADMIN_MACAROON", |(n, _)| n);
            return Err(SettingError::new(var, "must be the macaroon in hex"));
        }
        Ok(c)
    }
    /// The track stream stays open while the payment is in flight: only its
    /// first line (the current state) is read and the rest is cancelled.
    fn lookup_read_limits(&self) -> ReadLimits {
        ReadLimits::first_line()
    }
}

/// LND errors that do not prove nothing was sent: a payment for this hash
/// exists, or the call was cut while it may have been running.
const AMBIGUOUS_LND_ERRORS: &[&str] = &[
    "already",
    "in transition",
    "in flight",
    "deadline",
    "unavailable",
    "canceled",
    "cancelled",
    "eof",
    "transport",
];

/// LND errors that are checks of the request itself, made before any HTLC
/// leaves (lnrpc/routerrpc validation). Still confirmed by a lookup.
const LND_REFUSED_BEFORE_SENDING: &[&str] = &[
    "invoice expired",
    "invalid payment request",
    "unable to decode payment request",
    "self-payments not allowed",
    "amount must be specified",
    "invoice is for network",
    // zpay32: "invoice not for current active network '%s'"
    "not for current active network",
];

/// LND streams JSON lines; the last `result` (or `error`) is the answer.
fn lnd_lines(body: &str) -> (Option<Value>, Option<String>) {
    let mut result = None;
    let mut error = None;
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            if let Some(r) = v.get("result") {
                result = Some(r.clone());
            } else if let Some(e) = v.get("error") {
                error = Some(str_of(e, &["message"]).unwrap_or("error").to_string());
            } else if v.get("status").is_some() {
                result = Some(v);
            } else if let Some(m) = str_of(&v, &["message"]) {
                error = Some(m.to_string());
            }
        }
    }
    (result, error)
}

fn lnd_result(r: &Value) -> Option<PayOutcome> {
    match str_of(r, &["status"])? {
        "SUCCEEDED" => Some(PayOutcome::Succeeded {
            preimage: str_of(r, &["payment_preimage"]).map(str::to_string),
            fee_msat: u64_of(r, "fee_msat"),
        }),
        "FAILED" => Some(PayOutcome::Failed(format!(
            "LND: {}",
            str_of(r, &["failure_reason"]).unwrap_or("FAILED")
        ))),
        _ => Some(PayOutcome::Unknown(
            "LND reports the payment in flight".into(),
        )),
    }
}

fn lnd_pay(resp: &HttpResponse) -> PayOutcome {
    let (result, error) = lnd_lines(&resp.body);
    if let Some(o) = result.as_ref().and_then(lnd_result) {
        return o;
    }
    match (resp.status, error) {
        // "already paid" / "in transition": a payment for this hash exists. Look it up.
        (_, Some(e))
            if AMBIGUOUS_LND_ERRORS
                .iter()
                .any(|a| e.to_ascii_lowercase().contains(a)) =>
        {
            PayOutcome::Unknown(format!("LND: {e}"))
        }
        (500..=599, Some(e)) if resp.status != 500 => {
            PayOutcome::Unknown(format!("LND HTTP {}: {e}", resp.status))
        }
        // LND answers request errors (bad invoice, expired) with 500 + message.
        // Only texts known to mean "refused before sending" are a failure;
        // any other (a shutdown while HTLCs are in flight...) is unknown.
        (_, Some(e))
            if LND_REFUSED_BEFORE_SENDING
                .iter()
                .any(|a| e.to_ascii_lowercase().contains(a)) =>
        {
            PayOutcome::Failed(format!("LND: {e}"))
        }
        (_, Some(e)) => PayOutcome::Unknown(format!("LND: {e}")),
        (200..=299, None) => PayOutcome::Unknown("LND stream ended without a final status".into()),
        (s, None) => PayOutcome::Unknown(format!("LND HTTP {s}")),
    }
}

/// When LND created the payment record: `creation_time_ns`, else
/// `creation_date` (seconds); both int64, so JSON strings.
fn lnd_created_at_ms(r: &Value) -> Option<u64> {
    u64_of(r, "creation_time_ns")
        .filter(|ns| *ns > 0)
        .map(|ns| ns / 1_000_000)
        .or_else(|| {
            u64_of(r, "creation_date")
                .filter(|s| *s > 0)
                .map(|s| s * 1000)
        })
}

/// LND's answer to `track` (read up to its first line): the payment's
/// current state, or an error.
///
/// - `SUCCEEDED` → paid, `FAILED` → failed, `IN_FLIGHT` / `INITIATED` (or
///   any other state) → pending: the payment exists and is not over.
/// - The error `payment isn't initiated` (LND's `ErrPaymentNotInitiated`,
///   gRPC NotFound, served by the REST proxy as HTTP 404
///   `{"error":{"code":5,"message":"payment isn't initiated"}}`) → not found.
/// - Anything else, including a bare 404 from a proxy or a wrong path, is a
///   lookup error, never "not found": "not found" lets an address payout
///   move on to a new invoice, so it needs LND's own words.
fn lnd_lookup(resp: &HttpResponse) -> LookupOutcome {
    let (result, error) = lnd_lines(&resp.body);
    if let Some(r) = result.as_ref() {
        return match str_of(r, &["status"]) {
            Some("SUCCEEDED") => LookupOutcome::Paid {
                preimage: str_of(r, &["payment_preimage"]).map(str::to_string),
                fee_msat: u64_of(r, "fee_msat"),
            },
            // One record per hash; a send after a failure replaces it
            // (`InitPayment`), with a new `creation_date` (node clock, s).
            // FAILED means no HTLC is in flight (`decidePaymentStatus`).
            Some("FAILED") => LookupOutcome::failed(
                format!(
                    "LND: {}",
                    str_of(r, &["failure_reason"]).unwrap_or("FAILED")
                ),
                Covers::EveryAttempt,
                lnd_created_at_ms(r),
            ),
            Some(_) => LookupOutcome::Pending,
            None => LookupOutcome::Error("LND track answer has no payment status".into()),
        };
    }
    match error {
        Some(e)
            if ["isn't initiated", "not initiated"]
                .iter()
                .any(|m| e.to_ascii_lowercase().contains(m)) =>
        {
            LookupOutcome::NotFound
        }
        Some(e) => LookupOutcome::Error(format!("LND HTTP {}: {e}", resp.status)),
        None => LookupOutcome::Error(format!(
            "LND HTTP {}: no payment state in the answer: {}",
            resp.status,
            snippet(&resp.body)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{cfg, html_520, params};
    use crate::BackendKind;

    #[test]
    fn create_request_shape() {
        let mut p = params();
        p.description_hash = Some("00".repeat(32));
        let r = create_request(&cfg(BackendKind::Lnd), &p);
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
            Err(BackendError::InvalidResponse(_))
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
            Err(BackendError::Upstream { .. })
        ));
        assert_eq!(
            parse_check(&HttpResponse::json(
                404,
                &json!({"message": "unable to locate invoice"})
            )),
            Err(BackendError::NotFound {
                detail: "unable to locate invoice".into()
            })
        );
    }

    #[test]
    fn probe_requires_sync() {
        assert!(parse_probe(&HttpResponse::json(200, &json!({"synced_to_chain": true}))).is_ok());
        assert!(matches!(
            parse_probe(&HttpResponse::json(200, &json!({"synced_to_chain": false}))),
            Err(BackendError::Unhealthy(_))
        ));
    }
}
