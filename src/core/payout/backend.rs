//! Paying and looking up payments on a backend. The classification here is
//! what keeps money safe: anything that could mean "paid" is `Unknown`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde_json::{json, Value};

use crate::core::http::{HttpRequest, HttpResponse, ReadLimits, Runtime, TransportError};
use crate::core::payout::machine::{LookupOutcome, PayOutcome};
use crate::core::providers::error::snippet;
use crate::core::providers::{ProviderConfig, ProviderError, ProviderKind};

pub const LOOKUP_TIMEOUT_MS: u64 = 10_000;

pub fn fee_limit_sat(amount_sat: u64) -> u64 {
    (amount_sat / 100).max(10)
}

pub fn pay_request(cfg: &ProviderConfig, invoice: &str, amount_sat: u64) -> Option<HttpRequest> {
    match cfg.kind {
        ProviderKind::Lnbits => Some(
            HttpRequest::post_json(
                cfg.url("/api/v1/payments"),
                &json!({"out": true, "bolt11": invoice}),
            )
            .header("x-api-key", &cfg.credential),
        ),
        ProviderKind::Lnd => Some(
            HttpRequest::post_json(
                cfg.url("/v2/router/send"),
                &json!({
                    "payment_request": invoice,
                    "timeout_seconds": 60,
                    "fee_limit_sat": fee_limit_sat(amount_sat).to_string(),
                    "no_inflight_updates": true,
                }),
            )
            .header("grpc-metadata-macaroon", &cfg.credential),
        ),
        ProviderKind::Alby => Some(
            HttpRequest::post_json(cfg.url("/payments/bolt11"), &json!({"invoice": invoice}))
                .header("authorization", &format!("Bearer {}", cfg.credential)),
        ),
        ProviderKind::Mock => None,
    }
}

pub fn lookup_request(cfg: &ProviderConfig, payment_hash: &str) -> Option<HttpRequest> {
    match cfg.kind {
        ProviderKind::Lnbits => Some(
            HttpRequest::get(cfg.url(&format!("/api/v1/payments/{payment_hash}")))
                .header("x-api-key", &cfg.credential),
        ),
        // TrackPaymentV2 streams the payment's current state as its first
        // line, then one line per change until the payment ends. Without
        // `no_inflight_updates` (which would send nothing until the end) the
        // first line answers at once; `lookup_read_limits` reads only that.
        ProviderKind::Lnd => {
            let raw = hex::decode(payment_hash).unwrap_or_default();
            Some(
                HttpRequest::get(cfg.url(&format!("/v2/router/track/{}", B64URL.encode(raw))))
                    .header("grpc-metadata-macaroon", &cfg.credential),
            )
        }
        ProviderKind::Alby => Some(
            HttpRequest::get(cfg.url(&format!("/invoices/{payment_hash}")))
                .header("authorization", &format!("Bearer {}", cfg.credential)),
        ),
        ProviderKind::Mock => None,
    }
}

/// How much of a lookup answer to read: LND's track stream stays open while
/// the payment is in flight, so only its first line (the current state) is
/// read and the rest is cancelled. Other backends answer one JSON body.
pub fn lookup_read_limits(kind: ProviderKind) -> ReadLimits {
    match kind {
        ProviderKind::Lnd => ReadLimits::first_line(),
        _ => ReadLimits::default(),
    }
}

fn str_of<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

fn u64_of(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::Number(n) => n.as_i64().map(i64::unsigned_abs).or_else(|| n.as_u64()),
        Value::String(s) => s.parse::<i64>().ok().map(i64::unsigned_abs),
        _ => None,
    }
}

/// The shared part: transport errors and statuses that mean the same on every backend.
fn common(r: &Result<HttpResponse, TransportError>) -> Result<&HttpResponse, PayOutcome> {
    match r {
        Err(TransportError::Timeout) => Err(PayOutcome::Unknown(
            "timed out waiting for the backend".into(),
        )),
        Err(TransportError::Network(m)) => Err(PayOutcome::Unknown(format!(
            "connection failed or was cut: {m}"
        ))),
        Err(TransportError::TooLarge) => Err(PayOutcome::Unknown("oversized answer".into())),
        Err(TransportError::SlowBody) => Err(PayOutcome::Unknown(
            "the answer's body did not arrive in time".into(),
        )),
        Ok(resp) => match resp.status {
            401 | 403 => Err(PayOutcome::NotSent(format!(
                "credentials refused (HTTP {})",
                resp.status
            ))),
            429 => Err(PayOutcome::NotSent("rate limited (HTTP 429)".into())),
            _ => Ok(resp),
        },
    }
}

fn lnbits_pay(resp: &HttpResponse) -> PayOutcome {
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
        (500..=599, _) => PayOutcome::Unknown(ProviderError::from_status(resp).to_string()),
        (404, _) => PayOutcome::NotSent(format!("HTTP 404: {detail} (wrong URL or key)")),
        (400..=499, _) => PayOutcome::Failed(format!("HTTP {}: {detail}", resp.status)),
        _ => PayOutcome::Unknown(format!("unexpected HTTP {}", resp.status)),
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

pub fn classify_pay(kind: ProviderKind, r: &Result<HttpResponse, TransportError>) -> PayOutcome {
    let resp = match common(r) {
        Ok(resp) => resp,
        Err(o) => return o,
    };
    match kind {
        ProviderKind::Lnbits => lnbits_pay(resp),
        ProviderKind::Lnd => lnd_pay(resp),
        ProviderKind::Alby => alby_pay(resp),
        ProviderKind::Mock => PayOutcome::Succeeded {
            preimage: None,
            fee_msat: Some(0),
        },
    }
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
            Some("FAILED") => LookupOutcome::Failed(format!(
                "LND: {}",
                str_of(r, &["failure_reason"]).unwrap_or("FAILED")
            )),
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

pub fn classify_lookup(
    kind: ProviderKind,
    r: &Result<HttpResponse, TransportError>,
) -> LookupOutcome {
    let resp = match r {
        Err(e) => return LookupOutcome::Error(ProviderError::from(e.clone()).to_string()),
        Ok(resp) => resp,
    };
    if kind == ProviderKind::Lnd {
        return lnd_lookup(resp);
    }
    let json: Option<Value> = serde_json::from_str(&resp.body).ok();
    if resp.status == 404 {
        // Only the backend's own words prove absence: a proxy's or a wrong
        // path's 404 would let a paid hash be left.
        let detail = json
            .as_ref()
            .and_then(|v| str_of(v, &["detail"]))
            .unwrap_or("");
        return if kind == ProviderKind::Lnbits && detail.contains("does not exist") {
            LookupOutcome::NotFound
        } else {
            LookupOutcome::Error(format!(
                "HTTP 404 without the backend's own word: {}",
                snippet(&resp.body)
            ))
        };
    }
    match kind {
        ProviderKind::Lnd => lnd_lookup(resp),
        _ if !resp.is_success() => {
            LookupOutcome::Error(ProviderError::from_status(resp).to_string())
        }
        ProviderKind::Lnbits => {
            let Some(v) = json else {
                return LookupOutcome::Error("lookup answer is not JSON".into());
            };
            // With a key it recognises, LNbits answers with the wallet's own
            // record (`details`); without, any wallet's row for this hash.
            let Some(details) = v.get("details").filter(|d| d.is_object()).cloned() else {
                return LookupOutcome::Error(
                    "lookup answer without the wallet's record (is the admin key still valid?)"
                        .into(),
                );
            };
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
                (_, Some("failed")) => {
                    LookupOutcome::Failed("the backend reports the payment failed".into())
                }
                (_, Some("pending")) => LookupOutcome::Pending,
                _ => LookupOutcome::Error("lookup answer has no status".into()),
            }
        }
        ProviderKind::Alby => {
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
        ProviderKind::Mock => LookupOutcome::Paid {
            preimage: None,
            fee_msat: Some(0),
        },
    }
}

/// Sends the pay request (or, for the mock, pays at once).
pub async fn pay<R: Runtime>(
    rt: &R,
    cfg: &ProviderConfig,
    invoice: &str,
    amount_sat: u64,
    timeout_ms: u64,
) -> PayOutcome {
    match pay_request(cfg, invoice, amount_sat) {
        None => classify_pay(ProviderKind::Mock, &Ok(HttpResponse::json(200, &json!({})))),
        Some(req) => classify_pay(cfg.kind, &rt.send(req, timeout_ms).await),
    }
}

pub async fn lookup<R: Runtime>(rt: &R, cfg: &ProviderConfig, payment_hash: &str) -> LookupOutcome {
    match lookup_request(cfg, payment_hash) {
        None => LookupOutcome::Paid {
            preimage: None,
            fee_msat: Some(0),
        },
        Some(req) => classify_lookup(
            cfg.kind,
            &rt.send_limited(req, LOOKUP_TIMEOUT_MS, lookup_read_limits(cfg.kind))
                .await,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::providers::test_support::html_520;

    fn ok(status: u16, v: Value) -> Result<HttpResponse, TransportError> {
        Ok(HttpResponse::json(status, &v))
    }

    #[test]
    fn lnbits_520_is_failed_only_when_it_says_so() {
        let k = ProviderKind::Lnbits;
        assert!(matches!(
            classify_pay(
                k,
                &ok(
                    520,
                    json!({"detail": "Insufficient balance.", "status": "failed"})
                )
            ),
            PayOutcome::Failed(_)
        ));
        assert!(matches!(
            classify_pay(
                k,
                &ok(
                    520,
                    json!({"detail": "Payment is pending", "status": "pending"})
                )
            ),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_pay(k, &ok(520, json!({"detail": "boom"}))),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_pay(k, &Ok(html_520())),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_pay(k, &Err(TransportError::Timeout)),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_pay(k, &Err(TransportError::Network("cut".into()))),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_pay(k, &ok(502, json!({}))),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_pay(k, &ok(401, json!({}))),
            PayOutcome::NotSent(_)
        ));
        assert!(matches!(
            classify_pay(k, &ok(400, json!({"detail": "bad invoice"}))),
            PayOutcome::Failed(_)
        ));
    }

    #[test]
    fn lnbits_2xx_pending_is_unknown_and_success_is_success() {
        let k = ProviderKind::Lnbits;
        assert!(matches!(
            classify_pay(
                k,
                &ok(201, json!({"payment_hash": "ab", "status": "pending"}))
            ),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_pay(
                k,
                &ok(201, json!({"payment_hash": "ab", "checking_id": "x"}))
            ),
            PayOutcome::Unknown(_)
        ));
        assert_eq!(
            classify_pay(
                k,
                &ok(
                    201,
                    json!({"status": "success", "preimage": "pp", "fee": -2000})
                )
            ),
            PayOutcome::Succeeded {
                preimage: Some("pp".into()),
                fee_msat: Some(2000)
            }
        );
        let garbage = Ok(HttpResponse {
            status: 200,
            content_type: None,
            body: "}{".into(),
        });
        assert!(
            matches!(classify_pay(k, &garbage), PayOutcome::Unknown(_)),
            "a 2xx we cannot read may have paid"
        );
    }

    #[test]
    fn lnbits_lookup() {
        let k = ProviderKind::Lnbits;
        assert!(matches!(
            classify_lookup(
                k,
                &ok(200, json!({"paid": true, "preimage": "p", "details": {}}))
            ),
            LookupOutcome::Paid { .. }
        ));
        assert!(matches!(
            classify_lookup(
                k,
                &ok(
                    200,
                    json!({"paid": false, "status": "failed", "details": {}})
                )
            ),
            LookupOutcome::Failed(_)
        ));
        assert_eq!(
            classify_lookup(
                k,
                &ok(
                    200,
                    json!({"paid": false, "status": "pending", "details": {}})
                )
            ),
            LookupOutcome::Pending
        );
        assert_eq!(
            classify_lookup(k, &ok(404, json!({"detail": "Payment does not exist."}))),
            LookupOutcome::NotFound
        );
        assert!(matches!(
            classify_lookup(k, &Ok(html_520())),
            LookupOutcome::Error(_)
        ));
        // A 404 that is not LNbits' own word, and an answer without the
        // wallet's record, prove nothing.
        assert!(matches!(
            classify_lookup(k, &ok(404, json!({"detail": "Not Found"}))),
            LookupOutcome::Error(_)
        ));
        assert!(matches!(
            classify_lookup(k, &ok(200, json!({"paid": false, "status": "failed"}))),
            LookupOutcome::Error(_)
        ));
        assert!(matches!(
            classify_lookup(k, &Err(TransportError::Timeout)),
            LookupOutcome::Error(_)
        ));
    }

    #[test]
    fn lnd_stream_and_errors() {
        let k = ProviderKind::Lnd;
        let body = |s: &str| {
            Ok(HttpResponse {
                status: 200,
                content_type: None,
                body: s.into(),
            })
        };
        let stream = "{\"result\":{\"status\":\"IN_FLIGHT\"}}\n{\"result\":{\"status\":\"SUCCEEDED\",\"payment_preimage\":\"aa\",\"fee_msat\":\"1000\"}}\n";
        assert_eq!(
            classify_pay(k, &body(stream)),
            PayOutcome::Succeeded {
                preimage: Some("aa".into()),
                fee_msat: Some(1000)
            }
        );
        assert!(
            matches!(classify_pay(k, &body("{\"result\":{\"status\":\"FAILED\",\"failure_reason\":\"FAILURE_REASON_NO_ROUTE\"}}")), PayOutcome::Failed(m) if m.contains("NO_ROUTE"))
        );
        assert!(matches!(
            classify_pay(k, &body("{\"result\":{\"status\":\"IN_FLIGHT\"}}")),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_pay(
                k,
                &ok(
                    500,
                    json!({"error": {"code": 6, "message": "invoice is already paid"}})
                )
            ),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_pay(
                k,
                &ok(500, json!({"code": 2, "message": "invoice expired"}))
            ),
            PayOutcome::Failed(_)
        ));
        assert!(matches!(
            classify_pay(k, &ok(503, json!({}))),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_pay(k, &ok(500, json!({"message": "context deadline exceeded"}))),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_lookup(
                k,
                &ok(
                    500,
                    json!({"code": 5, "message": "payment isn't initiated"})
                )
            ),
            LookupOutcome::NotFound
        ));
        assert!(matches!(
            classify_lookup(k, &body(stream)),
            LookupOutcome::Paid { .. }
        ));
    }

    #[test]
    fn alby_pay() {
        let k = ProviderKind::Alby;
        assert!(matches!(
            classify_pay(k, &ok(200, json!({"payment_preimage": "p", "fee": 1}))),
            PayOutcome::Succeeded {
                fee_msat: Some(1000),
                ..
            }
        ));
        assert!(matches!(
            classify_pay(k, &ok(400, json!({"message": "not enough balance"}))),
            PayOutcome::Failed(_)
        ));
        assert!(matches!(
            classify_pay(k, &ok(500, json!({}))),
            PayOutcome::Unknown(_)
        ));
    }

    #[test]
    fn lnd_lookup_reads_the_first_streamed_state() {
        let k = ProviderKind::Lnd;
        let line = |status: &str, extra: &str| {
            Ok(HttpResponse {
                status: 200,
                content_type: Some("application/json".into()),
                body: format!("{{\"result\":{{\"status\":\"{status}\"{extra}}}}}\n"),
            })
        };
        assert_eq!(
            classify_lookup(k, &line("IN_FLIGHT", "")),
            LookupOutcome::Pending
        );
        assert_eq!(
            classify_lookup(k, &line("INITIATED", "")),
            LookupOutcome::Pending
        );
        assert_eq!(
            classify_lookup(
                k,
                &line(
                    "SUCCEEDED",
                    ",\"payment_preimage\":\"aa\",\"fee_msat\":\"2000\""
                )
            ),
            LookupOutcome::Paid {
                preimage: Some("aa".into()),
                fee_msat: Some(2000)
            }
        );
        assert!(matches!(
            classify_lookup(
                k,
                &line("FAILED", ",\"failure_reason\":\"FAILURE_REASON_NO_ROUTE\"")
            ),
            LookupOutcome::Failed(m) if m.contains("NO_ROUTE")
        ));
        // What LND's REST proxy sends for an unknown hash (gRPC NotFound).
        assert_eq!(
            classify_lookup(
                k,
                &ok(
                    404,
                    json!({"error": {"code": 5, "message": "payment isn't initiated", "details": []}})
                )
            ),
            LookupOutcome::NotFound
        );
    }

    #[test]
    fn lnd_lookup_not_found_needs_lnds_own_words() {
        let k = ProviderKind::Lnd;
        let html_404 = Ok(HttpResponse {
            status: 404,
            content_type: Some("text/html".into()),
            body: "<html>404 page not found</html>".into(),
        });
        assert!(matches!(
            classify_lookup(k, &html_404),
            LookupOutcome::Error(_)
        ));
        assert!(matches!(
            classify_lookup(
                k,
                &ok(
                    404,
                    json!({"code": 5, "message": "Not Found", "details": []})
                )
            ),
            LookupOutcome::Error(_)
        ));
        assert!(matches!(
            classify_lookup(k, &ok(200, json!({}))),
            LookupOutcome::Error(_)
        ));
        assert!(matches!(
            classify_lookup(k, &Err(TransportError::TooLarge)),
            LookupOutcome::Error(_)
        ));
    }

    /// Like real LND: with `no_inflight_updates` an in-flight payment's track
    /// stream sends nothing until the payment ends; without it the first
    /// line (the current state) comes at once and the stream stays open.
    #[test]
    fn lnd_lookup_of_an_in_flight_payment_answers_pending_at_once() {
        use crate::core::testing::{FakeRuntime, Reply};
        use std::rc::Rc;
        let cfg = ProviderConfig {
            kind: ProviderKind::Lnd,
            base_url: "https://lnd.example".into(),
            credential: "ab".into(),
        };
        let rt = FakeRuntime::new(1_700_000_000_000);
        let track = format!(
            "https://lnd.example/v2/router/track/{}",
            B64URL.encode([0xabu8; 32])
        );
        // Nothing arrives before the lookup timeout.
        rt.on(
            &format!("{track}?no_inflight_updates=true"),
            vec![Reply::Hang],
        );
        rt.on(
            &track,
            vec![Reply::Func(
                Rc::new(|_: &HttpRequest, _| HttpResponse {
                    status: 200,
                    content_type: Some("application/json".into()),
                    // The current state, then more of a stream that a
                    // first-line read never waits for (here: 2 MB of it).
                    body: "{\"result\":{\"status\":\"IN_FLIGHT\"}}\n".to_string()
                        + &"{\"result\":{\"status\":\"IN_FLIGHT\",\"htlcs\":[]}}\n".repeat(50_000),
                }),
                20,
            )],
        );
        let r = futures_executor::block_on(lookup(&rt, &cfg, &"ab".repeat(32)));
        assert_eq!(r, LookupOutcome::Pending);
        let limits = rt.limits.borrow();
        assert_eq!(limits.len(), 1);
        assert!(limits[0].1.first_line_only, "{:?}", limits[0]);
        assert!(
            !limits[0].0.contains("no_inflight_updates"),
            "{}",
            limits[0].0
        );
        assert_eq!(
            lookup_read_limits(ProviderKind::Lnbits),
            ReadLimits::default()
        );
    }

    #[test]
    fn lnd_track_url_uses_base64url() {
        let cfg = ProviderConfig {
            kind: ProviderKind::Lnd,
            base_url: "https://n".into(),
            credential: "ab".into(),
        };
        let r = lookup_request(&cfg, &"ff".repeat(32)).unwrap_or_else(|| panic!("req"));
        assert!(r.url.contains(&B64URL.encode([0xffu8; 32])), "{}", r.url);
    }
}
