//! Paying and looking up payments on a backend: the transport outcomes every
//! backend shares, then the backend's own classification (its module in
//! this crate). Anything that could mean "paid" is `Unknown`.

use crate::detail::sanitize;
use crate::exchange;
use crate::http::{HttpResponse, Runtime, TransportError};
use crate::outcome::{LookupOutcome, PayOutcome};
use crate::{BackendConfig, BackendKind};

pub const LOOKUP_TIMEOUT_MS: u64 = 10_000;

/// The routing fee a payout may spend: 1 %, at least 10 sat.
pub fn fee_limit_sat(amount_sat: u64) -> u64 {
    (amount_sat / 100).max(10)
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

pub fn classify_pay(kind: BackendKind, r: &Result<HttpResponse, TransportError>) -> PayOutcome {
    let outcome = match common(r) {
        Ok(resp) => kind.adapter().classify_pay(resp),
        Err(o) => o,
    };
    // Classified on the backend's own words; kept and shown sanitized.
    match outcome {
        // Whatever a backend calls it, "already paid" is never a failure.
        PayOutcome::Failed(m) | PayOutcome::Unknown(m) if says_already_paid(&m) => {
            PayOutcome::AlreadyPaid(sanitize(&m))
        }
        PayOutcome::Failed(m) => PayOutcome::Failed(sanitize(&m)),
        PayOutcome::Unknown(m) => PayOutcome::Unknown(sanitize(&m)),
        PayOutcome::NotSent(m) => PayOutcome::NotSent(sanitize(&m)),
        o => o,
    }
}

/// Wording backends use to refuse a second payment of a paid invoice:
/// LNbits "Internal invoice already paid." / "Payment already paid." /
/// "Failed payment was already paid on the fundingsource." (`lnbits/core/
/// services/payments.py`), LND "invoice is already paid" (`ErrAlreadyPaid`,
/// HTTP 409), CLN xpay 219 "Already paid this invoice successfully" and -3
/// "... error 201: Already succeeded ...", phoenixd "this invoice has already
/// been paid" (lightning-kmp `FinalFailure.AlreadyPaid`), Alby Hub `INTERNAL`
/// "this invoice has already been paid".
pub fn says_already_paid(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "already paid",
        "already been paid",
        "alreadypaid",
        "already_paid",
        // CLN: "Unexpected injectpaymentonion error 201: Already succeeded with amount ..."
        "already succeeded",
    ]
    .iter()
    .any(|w| m.contains(w))
}

pub fn classify_lookup(
    kind: BackendKind,
    r: &Result<HttpResponse, TransportError>,
) -> LookupOutcome {
    match r {
        Err(e) => LookupOutcome::Error(crate::BackendError::from(e.clone()).to_string()),
        Ok(resp) => kind.adapter().classify_lookup(resp),
    }
}

/// Whether `preimage` (hex) is the preimage of `payment_hash` (hex).
pub fn preimage_matches(preimage: &str, payment_hash: &str) -> bool {
    match hex::decode(preimage.trim()) {
        Ok(bytes) if bytes.len() == 32 => {
            crate::sha256::hex_digest(&bytes).eq_ignore_ascii_case(payment_hash.trim())
        }
        _ => false,
    }
}

/// What stands behind a "paid": the preimage where the backend's answer
/// carries one, checked against the hash. `Err` says why it is not proof.
fn paid_proof(
    preimage: Option<&str>,
    carried: bool,
    payment_hash: &str,
    who: &str,
) -> Result<(), String> {
    match preimage {
        Some(p) if preimage_matches(p, payment_hash) => Ok(()),
        Some(_) => Err(format!(
            "{who} reported it paid with a preimage that does not match the payment hash"
        )),
        None if carried => Err(format!(
            "{who} reported it paid without the preimage its answers carry"
        )),
        None => Ok(()),
    }
}

/// A "succeeded" is accepted only with its proof (see [`paid_proof`]).
pub fn verify_pay(kind: BackendKind, outcome: PayOutcome, payment_hash: &str) -> PayOutcome {
    match &outcome {
        PayOutcome::Succeeded { preimage, .. } => {
            let carried = kind.descriptor().facts.preimage_on_pay;
            match paid_proof(preimage.as_deref(), carried, payment_hash, kind.as_str()) {
                Ok(()) => outcome,
                Err(why) => PayOutcome::Unknown(why),
            }
        }
        _ => outcome,
    }
}

/// A "paid" lookup is accepted only with its proof (see [`paid_proof`]).
pub fn verify_lookup(
    kind: BackendKind,
    outcome: LookupOutcome,
    payment_hash: &str,
) -> LookupOutcome {
    match &outcome {
        LookupOutcome::Paid { preimage, .. } => {
            let carried = kind.descriptor().facts.preimage_on_lookup;
            match paid_proof(preimage.as_deref(), carried, payment_hash, kind.as_str()) {
                Ok(()) => outcome,
                Err(why) => LookupOutcome::Error(why),
            }
        }
        _ => outcome,
    }
}

/// Sends the pay request for `payment_hash`'s invoice, and checks the
/// proof of any success.
pub async fn pay<R: Runtime>(
    rt: &R,
    cfg: &BackendConfig,
    invoice: &str,
    payment_hash: &str,
    amount_sat: u64,
    timeout_ms: u64,
) -> PayOutcome {
    let outcome = match cfg.adapter().pay_request(cfg, invoice, amount_sat) {
        // Nothing left: a backend that cannot pay.
        None => PayOutcome::NotSent(format!("{} cannot pay", cfg.kind.descriptor().label)),
        Some(req) => classify_pay(cfg.kind, &exchange::send(rt, req, timeout_ms).await),
    };
    verify_pay(cfg.kind, outcome, payment_hash)
}

/// Looks `payment_hash` up, and checks the proof of any "paid".
pub async fn lookup<R: Runtime>(rt: &R, cfg: &BackendConfig, payment_hash: &str) -> LookupOutcome {
    let outcome = match cfg.adapter().lookup_request(cfg, payment_hash) {
        // Nothing is known: never "not found", which would let a hash be left.
        None => LookupOutcome::Error(format!(
            "{} cannot look payments up",
            cfg.kind.descriptor().label
        )),
        Some(req) => classify_lookup(
            cfg.kind,
            &exchange::send_limited(
                rt,
                req,
                LOOKUP_TIMEOUT_MS,
                cfg.adapter().lookup_read_limits(),
            )
            .await,
        ),
    };
    verify_lookup(cfg.kind, outcome, payment_hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::html_520;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use base64::Engine;
    use serde_json::{json, Value};

    fn ok(status: u16, v: Value) -> Result<HttpResponse, TransportError> {
        Ok(HttpResponse::json(status, &v))
    }

    #[test]
    fn a_preimage_matches_only_its_own_hash() {
        let zero = "00".repeat(32);
        let hash = "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925";
        assert!(preimage_matches(&zero, hash));
        assert!(preimage_matches(&format!(" {zero} "), &hash.to_uppercase()));
        assert!(!preimage_matches(&"01".repeat(32), hash));
        assert!(!preimage_matches(&"00".repeat(31), hash));
        assert!(!preimage_matches(&"zz".repeat(32), hash));
        assert!(!preimage_matches(&zero, &"00".repeat(32)));
    }

    #[test]
    fn lnbits_520_is_failed_only_when_it_says_so() {
        let k = BackendKind::Lnbits;
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
        let k = BackendKind::Lnbits;
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
        let k = BackendKind::Lnbits;
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
        let k = BackendKind::Lnd;
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
                    409,
                    json!({"error": {"code": 6, "message": "invoice is already paid"}})
                )
            ),
            PayOutcome::AlreadyPaid(_)
        ));
        assert!(matches!(
            classify_pay(
                k,
                &ok(500, json!({"code": 2, "message": "invoice expired"}))
            ),
            PayOutcome::Failed(_)
        ));
        // Classified on the whole message, shown capped: "already paid"
        // late in a long answer still counts.
        let long = format!("{} invoice is already paid", "context ".repeat(60));
        match classify_pay(k, &ok(409, json!({"error": {"code": 6, "message": long}}))) {
            PayOutcome::AlreadyPaid(m) => {
                assert!(m.chars().count() <= crate::detail::MAX_CHARS + 1, "{m}")
            }
            other => panic!("{other:?}"),
        }
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

    /// The shared transport outcomes hold for every backend: a timeout,
    /// a cut connection or an HTML 520 is unknown, credentials refused or
    /// a 429 is "not sent", and a lookup that got no answer proves nothing.
    #[test]
    fn every_backend_shares_the_transport_outcomes() {
        for k in [
            BackendKind::Lnd,
            BackendKind::Cln,
            BackendKind::Phoenixd,
            BackendKind::Lnbits,
        ] {
            for r in [
                Err(TransportError::Timeout),
                Err(TransportError::Network("cut".into())),
                Err(TransportError::SlowBody),
                Ok(html_520()),
                ok(502, json!({})),
            ] {
                assert!(
                    matches!(classify_pay(k, &r), PayOutcome::Unknown(_)),
                    "{k:?} {r:?}"
                );
                assert!(
                    matches!(classify_lookup(k, &r), LookupOutcome::Error(_)),
                    "{k:?} {r:?}"
                );
            }
            for status in [401, 403, 429] {
                assert!(
                    matches!(
                        classify_pay(k, &ok(status, json!({}))),
                        PayOutcome::NotSent(_)
                    ),
                    "{k:?} {status}"
                );
            }
        }
    }

    #[test]
    fn lnd_lookup_reads_the_first_streamed_state() {
        let k = BackendKind::Lnd;
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
            LookupOutcome::Failed(m) if m.reason.contains("NO_ROUTE")
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
        let k = BackendKind::Lnd;
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

    #[test]
    fn lnd_track_url_uses_base64url() {
        let cfg = BackendConfig {
            kind: BackendKind::Lnd,
            base_url: "https://n".into(),
            credential: "ab".into(),
        };
        let r = cfg
            .adapter()
            .lookup_request(&cfg, &"ff".repeat(32))
            .unwrap_or_else(|| panic!("req"));
        assert!(r.url.contains(&B64URL.encode([0xffu8; 32])), "{}", r.url);
    }
}
