//! Paying and looking up payments on a backend. The classification here is
//! what keeps money safe: anything that could mean "paid" is `Unknown`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde_json::{json, Value};

use crate::core::http::{HttpRequest, HttpResponse, Runtime, TransportError};
use crate::core::payout::machine::{LookupOutcome, PayOutcome};
use crate::core::providers::error::snippet;
use crate::core::providers::{ProviderConfig, ProviderError, ProviderKind};

/// How long a pay request may take before its outcome counts as unknown.
/// LNbits answers "pending" after about 5 s; LND streams until the end.
pub const PAY_TIMEOUT_MS: u64 = 20_000;
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
        ProviderKind::Lnd => {
            let raw = hex::decode(payment_hash).unwrap_or_default();
            Some(
                HttpRequest::get(cfg.url(&format!(
                    "/v2/router/track/{}?no_inflight_updates=true",
                    B64URL.encode(raw)
                )))
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
        // LND answers request errors (bad invoice, expired, no route before sending) with 500 + message.
        (_, Some(e)) => PayOutcome::Failed(format!("LND: {e}")),
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

pub fn classify_lookup(
    kind: ProviderKind,
    r: &Result<HttpResponse, TransportError>,
) -> LookupOutcome {
    let resp = match r {
        Err(e) => return LookupOutcome::Error(ProviderError::from(e.clone()).to_string()),
        Ok(resp) => resp,
    };
    if resp.status == 404 {
        return LookupOutcome::NotFound;
    }
    let json: Option<Value> = serde_json::from_str(&resp.body).ok();
    match kind {
        ProviderKind::Lnd => {
            let (result, error) = lnd_lines(&resp.body);
            match (result.as_ref().and_then(lnd_result), error) {
                (Some(PayOutcome::Succeeded { preimage, fee_msat }), _) => {
                    LookupOutcome::Paid { preimage, fee_msat }
                }
                (Some(PayOutcome::Failed(r)), _) => LookupOutcome::Failed(r),
                (Some(_), _) => LookupOutcome::Pending,
                (None, Some(e))
                    if ["not initiated", "isn't initiated", "not found"]
                        .iter()
                        .any(|m| e.contains(m)) =>
                {
                    LookupOutcome::NotFound
                }
                (None, e) => {
                    LookupOutcome::Error(e.unwrap_or_else(|| format!("HTTP {}", resp.status)))
                }
            }
        }
        _ if !resp.is_success() => {
            LookupOutcome::Error(ProviderError::from_status(resp).to_string())
        }
        ProviderKind::Lnbits => {
            let Some(v) = json else {
                return LookupOutcome::Error("lookup answer is not JSON".into());
            };
            let paid = v.get("paid").and_then(Value::as_bool) == Some(true);
            let details = v.get("details").cloned().unwrap_or(Value::Null);
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
) -> PayOutcome {
    match pay_request(cfg, invoice, amount_sat) {
        None => classify_pay(ProviderKind::Mock, &Ok(HttpResponse::json(200, &json!({})))),
        Some(req) => classify_pay(cfg.kind, &rt.send(req, PAY_TIMEOUT_MS).await),
    }
}

pub async fn lookup<R: Runtime>(rt: &R, cfg: &ProviderConfig, payment_hash: &str) -> LookupOutcome {
    match lookup_request(cfg, payment_hash) {
        None => LookupOutcome::Paid {
            preimage: None,
            fee_msat: Some(0),
        },
        Some(req) => classify_lookup(cfg.kind, &rt.send(req, LOOKUP_TIMEOUT_MS).await),
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
            classify_lookup(k, &ok(200, json!({"paid": true, "preimage": "p"}))),
            LookupOutcome::Paid { .. }
        ));
        assert!(matches!(
            classify_lookup(k, &ok(200, json!({"paid": false, "status": "failed"}))),
            LookupOutcome::Failed(_)
        ));
        assert_eq!(
            classify_lookup(k, &ok(200, json!({"paid": false, "status": "pending"}))),
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
