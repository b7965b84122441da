//! Payout events (`payout.succeeded`, `payout.failed`, `payout.overpaid`)
//! and their delivery to the payout's own `webhook_url` and the operator's
//! `PAYOUT_WEBHOOK_URL`. Signing and the redelivery schedule are the
//! shared ones of `crate::webhooks`.

use serde_json::{json, Value};

use crate::payout::model::{Payout, PayoutState, Webhook};
use crate::time::iso8601_ms;
use crate::webhooks::delivery::{retry_at, HISTORY_LEN};
use crate::webhooks::signed_request;
use backends::http::{HttpRequest, HttpResponse, TransportError};

pub use crate::webhooks::{
    signature_header, Delivery, SecretError, WebhookSecret, WebhookSecrets, DELIVERY_TIMEOUT_MS,
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, MAX_SECRET_BYTES, MIN_SECRET_BYTES,
    PREVIOUS_SECRET_VAR, SCHEDULE_MS, SECRET_PREFIX, SECRET_VAR,
};

/// The event a payout's current state announces, if any. The first matching
/// arm wins. To add an event (e.g. `payout.overpaid` once the machine sets
/// `Payout.overpaid`), add an arm above the more general one:
///
/// ```text
/// PayoutState::Succeeded { .. } if p.overpaid => Some("payout.overpaid"),
/// ```
///
/// The event id is derived from the type (`evt_<payout id>_overpaid`), so a
/// payout that moves from one event to another is announced again under a new
/// id, even after the earlier event was delivered. A payout holds one pending
/// event: if the new one arrives before the earlier one was delivered, only
/// the new one is sent (its `data` is the whole payout, so nothing is lost).
pub fn event_type(p: &Payout) -> Option<&'static str> {
    match &p.state {
        PayoutState::Succeeded { .. } if p.overpaid => Some("payout.overpaid"),
        PayoutState::Succeeded { .. } => Some("payout.succeeded"),
        PayoutState::Failed { .. } => Some("payout.failed"),
        PayoutState::Queued { .. } | PayoutState::Sending { .. } | PayoutState::Unknown { .. } => {
            None
        }
    }
}

/// `evt_<payout id>_<event>`, stable across redeliveries. After `n` admin
/// retries it is `evt_<payout id>_<event>_r<n>`: a failure after a retry is
/// a new event, which a receiver must not drop as a duplicate of the first.
/// It contains no `.` (payout ids are `po_<hex>`), which the spec asks of
/// signed ids.
pub fn event_id(p: &Payout) -> Option<String> {
    let t = event_type(p)?;
    let name = t.strip_prefix("payout.").unwrap_or(t);
    Some(match p.reopened {
        0 => format!("evt_{}_{name}", p.id),
        n => format!("evt_{}_{name}_r{n}", p.id),
    })
}

/// When the event happened: the time of the terminal state.
fn event_time_ms(p: &Payout, now_ms: u64) -> u64 {
    match &p.state {
        PayoutState::Succeeded { at_ms } | PayoutState::Failed { at_ms, .. } => *at_ms,
        _ => now_ms,
    }
}

pub fn event_body(p: &Payout, event_id: &str, now_ms: u64) -> Value {
    json!({
        "id": event_id,
        "type": event_type(p).unwrap_or("payout.updated"),
        "timestamp": iso8601_ms(event_time_ms(p, now_ms)),
        "data": p.client_view(),
    })
}

/// Which of a payout's webhooks: the client's own `webhook_url`, or the
/// operator's `PAYOUT_WEBHOOK_URL` (every payout's events). Both get the
/// same event under the same `webhook-id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Client,
    Operator,
}

pub const HOOKS: [Hook; 2] = [Hook::Client, Hook::Operator];

fn hook(p: &Payout, which: Hook) -> Option<&Webhook> {
    match which {
        Hook::Client => p.webhook.as_ref(),
        Hook::Operator => p.operator_webhook.as_ref(),
    }
}

fn hook_mut(p: &mut Payout, which: Hook) -> Option<&mut Webhook> {
    match which {
        Hook::Client => p.webhook.as_mut(),
        Hook::Operator => p.operator_webhook.as_mut(),
    }
}

/// Whether `which` has an attempt due at `now_ms`.
pub fn due(p: &Payout, which: Hook, now_ms: u64) -> bool {
    hook(p, which)
        .and_then(|w| w.next_at_ms)
        .is_some_and(|t| t <= now_ms)
}

/// The delivery request of `p`'s pending event to `which`, signed with every
/// secret. `None` without that webhook, an armed event or a secret.
pub fn request(
    p: &Payout,
    which: Hook,
    secrets: &[WebhookSecret],
    now_ms: u64,
) -> Option<HttpRequest> {
    let hook = hook(p, which)?;
    let id = hook.event_id.clone()?;
    if secrets.is_empty() {
        return None;
    }
    let body = event_body(p, &id, now_ms).to_string();
    Some(signed_request(&hook.url, &id, body, secrets, now_ms))
}

/// Arms delivery when a payout reaches a state with an event (once per
/// event), to each of its webhooks.
pub fn arm(p: &mut Payout, now_ms: u64) {
    let Some(id) = event_id(p) else { return };
    for which in HOOKS {
        if let Some(w) = hook_mut(p, which) {
            if w.event_id.as_deref() != Some(id.as_str()) {
                w.event_id = Some(id.clone());
                w.next_at_ms = Some(now_ms);
                w.delivered_at_ms = None;
                w.event_attempts = 0;
            }
        }
    }
}

/// Why a webhook cannot be redelivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeliver {
    NoWebhook,
    NoEvent,
}

/// Makes the current event due now at each webhook (admin redelivery),
/// with a fresh schedule, and notes it in the payout's log. The event id
/// stays the same.
pub fn rearm_now(p: &mut Payout, now_ms: u64) -> Result<(), Redeliver> {
    if p.webhook.is_none() && p.operator_webhook.is_none() {
        return Err(Redeliver::NoWebhook);
    }
    let id = event_id(p).ok_or(Redeliver::NoEvent)?;
    arm(p, now_ms);
    for which in HOOKS {
        if let Some(w) = hook_mut(p, which) {
            w.next_at_ms = Some(now_ms);
            w.event_attempts = 0;
        }
    }
    p.note(
        now_ms,
        format!("webhook {id} redelivery requested by an admin"),
    );
    Ok(())
}

/// Records a delivery attempt to `which` and schedules the next one.
pub fn record(
    p: &mut Payout,
    which: Hook,
    result: &Result<HttpResponse, TransportError>,
    now_ms: u64,
) {
    let Some(w) = hook_mut(p, which) else { return };
    let attempt = Delivery::of(result, now_ms);
    w.event_attempts += 1;
    if attempt.delivered() {
        w.delivered_at_ms = Some(now_ms);
        w.next_at_ms = None;
    } else {
        w.next_at_ms = retry_at(w.event_attempts, now_ms);
    }
    w.attempts.push(attempt);
    // The history shown is bounded; the schedule counts per event.
    if w.attempts.len() > HISTORY_LEN {
        w.attempts.remove(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use proptest::prelude::*;
    use sha2::Sha256;

    // The published vector of the Standard Webhooks reference libraries
    // (libraries/javascript/src/webhook.test.ts, "sign function works").
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: u64 = 1_614_265_330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret(s: &str) -> WebhookSecret {
        WebhookSecret::parse(s).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn whsec(key: &[u8]) -> String {
        format!("whsec_{}", B64.encode(key))
    }

    /// An independent verifier, written the way a receiver would: recompute
    /// with the key, then look for a `v1` signature that matches.
    fn verifies(key: &[u8], header: &str, id: &str, ts: u64, body: &str) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| panic!("key"));
        mac.update(format!("{id}.{ts}.{body}").as_bytes());
        let expected = B64.encode(mac.finalize().into_bytes());
        header
            .split(' ')
            .filter_map(|s| s.split_once(','))
            .any(|(v, sig)| v == "v1" && sig == expected)
    }

    fn payout(state: Value) -> Payout {
        serde_json::from_value(json!({
            "id": "po_0123456789abcdef01234567",
            "idempotency_key": "order-1",
            "fingerprint": "f",
            "created_at_ms": 1_700_000_000_000u64,
            "age_from_ms": 1_700_000_000_000u64,
            "destination": "alice@example.com",
            "destination_kind": "lightning_address",
            "lnurl": null,
            "amount_sat": 21,
            "comment": null,
            "external_id": "order-77",
            "provider": "lnbits",
            "invoice": "lnbc1",
            "payment_hash": "00",
            "invoice_expires_at_secs": 0,
            "previous_hashes": [],
            "state": state,
            "send_attempts": 1,
            "last_sent_at_ms": null,
            "lookups": 0,
            "last_error": null,
            "fee_msat": null,
            "preimage": null,
            "webhook": {"url": "https://hooks.example.com/x", "event_id": null, "next_at_ms": null, "delivered_at_ms": null, "attempts": []},
            "log": [],
            "version": 1,
        }))
        .unwrap_or_else(|e| panic!("test payout no longer matches the model: {e}"))
    }

    fn header<'a>(r: &'a HttpRequest, name: &str) -> &'a str {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn signs_the_published_standard_webhooks_vector() {
        assert_eq!(
            secret(SPEC_SECRET).sign(SPEC_ID, SPEC_TS, SPEC_BODY),
            SPEC_SIG
        );
    }

    #[test]
    fn the_id_and_the_timestamp_are_signed() {
        let s = secret(SPEC_SECRET);
        let sig = s.sign(SPEC_ID, SPEC_TS, SPEC_BODY);
        assert_ne!(sig, s.sign("msg_other", SPEC_TS, SPEC_BODY));
        assert_ne!(sig, s.sign(SPEC_ID, SPEC_TS + 1, SPEC_BODY));
        assert_ne!(sig, s.sign(SPEC_ID, SPEC_TS, r#"{"test": 1}"#));
        assert_ne!(
            sig,
            secret(&whsec(&[7u8; 32])).sign(SPEC_ID, SPEC_TS, SPEC_BODY)
        );
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_24_to_64_bytes() {
        assert_eq!(secret(&whsec(&[1u8; 24])), WebhookSecret(vec![1u8; 24]));
        assert_eq!(secret(&whsec(&[1u8; 64])), WebhookSecret(vec![1u8; 64]));
        let err = |s: &str| WebhookSecret::parse(s).err();
        assert_eq!(
            err(&B64.encode([1u8; 32])),
            Some(SecretError::MissingPrefix)
        );
        assert_eq!(
            err("whsec-e2e-0123456789"),
            Some(SecretError::MissingPrefix)
        );
        assert_eq!(err("whsec_not base64!"), Some(SecretError::NotBase64));
        assert_eq!(err(&whsec(&[1u8; 23])), Some(SecretError::TooShort));
        assert_eq!(err(&whsec(&[1u8; 65])), Some(SecretError::TooLong));
        assert_eq!(err("whsec_"), Some(SecretError::TooShort));
    }

    #[test]
    fn config_errors_name_the_variable_say_how_to_make_one_and_never_echo_it() {
        let bad = "whsec_c2hvcnQ=".to_string();
        let good = whsec(&[9u8; 32]);
        let e = WebhookSecrets::from_vars(Some(bad.clone()), None)
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(e.variable, "WEBHOOK_SECRET");
        assert!(
            e.message.contains("openssl rand -base64 32"),
            "{}",
            e.message
        );
        assert!(!e.message.contains(&bad) && !e.message.contains("c2hvcnQ"));
        let e =
            WebhookSecrets::from_vars(Some(good.clone()), Some("legacy-secret-0123456789".into()))
                .err()
                .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(e.variable, "WEBHOOK_SECRET_PREVIOUS");
        assert!(!e.message.contains("legacy-secret"));
        let e = WebhookSecrets::from_vars(None, Some(good.clone()))
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(e.variable, "WEBHOOK_SECRET");
        assert_eq!(WebhookSecrets::from_vars(None, None), Ok(None));
    }

    #[test]
    fn payout_config_parses_the_secrets() {
        let vars = [
            ("ENVIRONMENT", "production"),
            ("LNBITS_URL", "https://lnbits.example.com"),
            ("LNBITS_INVOICE_KEY", "k"),
            ("PAYOUT_API_KEY", "0123456789abcdef"),
            ("LNBITS_ADMIN_KEY", "admin"),
        ];
        let base = crate::test_config::config(&vars[..3]);
        let parse = |extra: &[(&str, String)]| {
            crate::payout::config::PayoutConfig::from_lookup(
                |k| {
                    extra
                        .iter()
                        .find(|(n, _)| *n == k)
                        .map(|(_, v)| v.clone())
                        .or_else(|| {
                            vars.iter()
                                .find(|(n, _)| *n == k)
                                .map(|(_, v)| v.to_string())
                        })
                },
                &base,
            )
        };
        let none = parse(&[]).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(none.webhook_secret.is_none());
        let (new, old) = (whsec(&[1u8; 32]), whsec(&[2u8; 32]));
        let both = parse(&[
            ("WEBHOOK_SECRET", new.clone()),
            ("WEBHOOK_SECRET_PREVIOUS", old),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        let keys = both.webhook_secret.as_deref().unwrap_or_default();
        assert_eq!(
            keys,
            &[WebhookSecret(vec![1u8; 32]), WebhookSecret(vec![2u8; 32])]
        );
        let shown = format!("{both:?}");
        assert!(
            !shown.contains(&new[6..]) && !shown.contains("[1, 1"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
        let e = parse(&[("WEBHOOK_SECRET", "whsec-e2e-0123456789".into())])
            .err()
            .unwrap_or_else(|| panic!("a legacy secret was accepted"));
        assert_eq!(e.variable, "WEBHOOK_SECRET");
    }

    #[test]
    fn a_rotation_sends_two_signatures_and_each_secret_alone_verifies() {
        let (new, old) = ([1u8; 32], [2u8; 24]);
        let secrets = WebhookSecrets::from_vars(Some(whsec(&new)), Some(whsec(&old)))
            .unwrap_or_else(|e| panic!("{e:?}"))
            .unwrap_or_else(|| panic!("no secrets"));
        let mut p = payout(json!({"status": "succeeded", "at_ms": 1_700_000_123_456u64}));
        arm(&mut p, 1_700_000_200_000);
        let req = request(&p, Hook::Client, &secrets, 1_700_000_200_999)
            .unwrap_or_else(|| panic!("no request"));
        let (id, ts, sig) = (
            header(&req, HEADER_ID),
            header(&req, HEADER_TIMESTAMP),
            header(&req, HEADER_SIGNATURE),
        );
        let body = req.body.as_deref().unwrap_or_default();
        assert_eq!(id, "evt_po_0123456789abcdef01234567_succeeded");
        assert_eq!(ts, "1700000200");
        assert_eq!(sig.split(' ').count(), 2, "{sig}");
        assert!(sig.split(' ').all(|s| s.starts_with("v1,")));
        assert!(verifies(&new, sig, id, 1_700_000_200, body));
        assert!(verifies(&old, sig, id, 1_700_000_200, body));
        assert!(!verifies(&[3u8; 32], sig, id, 1_700_000_200, body));
        assert!(!verifies(&new, sig, "evt_other", 1_700_000_200, body));

        // The same secret twice is one signature.
        let same = WebhookSecrets::from_vars(Some(whsec(&new)), Some(whsec(&new)))
            .unwrap_or_else(|e| panic!("{e:?}"))
            .unwrap_or_else(|| panic!("no secrets"));
        assert_eq!(same.len(), 1);
        assert!(
            request(&p, Hook::Client, &[], 0).is_none(),
            "nothing is sent unsigned"
        );
    }

    #[test]
    fn the_body_has_id_type_event_timestamp_and_data() {
        let mut p = payout(
            json!({"status": "failed", "at_ms": 1_700_000_000_000u64, "reason": "no route"}),
        );
        arm(&mut p, 1_700_000_050_000);
        let req = request(&p, Hook::Client, &[secret(SPEC_SECRET)], 1_700_000_099_000)
            .unwrap_or_else(|| panic!("no request"));
        let body: Value = serde_json::from_str(req.body.as_deref().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body["id"], "evt_po_0123456789abcdef01234567_failed");
        assert_eq!(body["type"], "payout.failed");
        assert_eq!(
            body["timestamp"], "2023-11-14T22:13:20Z",
            "when it failed, not when sent"
        );
        assert_eq!(body["data"]["id"], "po_0123456789abcdef01234567");
        assert_eq!(body["data"]["external_id"], "order-77");
        assert!(!body["id"].as_str().unwrap_or(".").contains('.'));
    }

    #[test]
    fn arming_is_once_per_event_and_only_for_events() {
        let mut p = payout(json!({"status": "unknown", "since_ms": 1, "next_check_ms": 2}));
        arm(&mut p, 10);
        assert_eq!(p.webhook.as_ref().and_then(|w| w.event_id.clone()), None);
        p.state = PayoutState::Succeeded { at_ms: 20 };
        arm(&mut p, 20);
        record(
            &mut p,
            Hook::Client,
            &Ok(HttpResponse::json(200, &json!({}))),
            21,
        );
        arm(&mut p, 30);
        let w = p.webhook.as_ref().unwrap_or_else(|| panic!("webhook"));
        assert_eq!(
            w.event_id.as_deref(),
            Some("evt_po_0123456789abcdef01234567_succeeded")
        );
        assert_eq!(
            (w.delivered_at_ms, w.next_at_ms),
            (Some(21), None),
            "not re-armed"
        );
    }

    #[test]
    fn a_failure_after_an_admin_retry_is_a_new_event() {
        let mut p = payout(json!({"status": "failed", "at_ms": 10, "reason": "x"}));
        arm(&mut p, 10);
        let first = p.webhook.as_ref().and_then(|w| w.event_id.clone());
        assert_eq!(
            first.as_deref(),
            Some("evt_po_0123456789abcdef01234567_failed")
        );
        record(
            &mut p,
            Hook::Client,
            &Ok(HttpResponse::json(200, &json!({}))),
            11,
        );
        assert!(crate::payout::machine::reopen(&mut p, 20).is_ok());
        if let Some(w) = p.webhook.as_mut() {
            w.event_id = None;
            w.next_at_ms = None;
        }
        p.state = PayoutState::Failed {
            at_ms: 30,
            reason: "again".into(),
        };
        arm(&mut p, 30);
        let w = p.webhook.as_ref().unwrap_or_else(|| panic!("webhook"));
        assert_eq!(
            w.event_id.as_deref(),
            Some("evt_po_0123456789abcdef01234567_failed_r1")
        );
        assert_eq!(w.next_at_ms, Some(30), "sent, not taken as delivered");
    }

    #[test]
    fn redelivery_rearms_the_same_event_now_with_a_fresh_schedule() {
        let mut p = payout(json!({"status": "queued", "next_at_ms": 0, "verify_first": false}));
        assert_eq!(rearm_now(&mut p, 5), Err(Redeliver::NoEvent));
        p.state = PayoutState::Failed {
            at_ms: 10,
            reason: "x".into(),
        };
        arm(&mut p, 10);
        for t in 0..SCHEDULE_MS.len() as u64 + 1 {
            record(&mut p, Hook::Client, &Err(TransportError::Timeout), 11 + t);
        }
        let w = p.webhook.clone().unwrap_or_else(|| panic!("webhook"));
        assert_eq!(w.next_at_ms, None, "the schedule gave up");
        assert_eq!(rearm_now(&mut p, 1_000), Ok(()));
        let w = p.webhook.clone().unwrap_or_else(|| panic!("webhook"));
        assert_eq!(w.next_at_ms, Some(1_000));
        assert_eq!(w.event_attempts, 0);
        assert_eq!(
            w.event_id.as_deref(),
            Some("evt_po_0123456789abcdef01234567_failed"),
            "the same id: receivers deduplicate"
        );
        assert!(p
            .log
            .iter()
            .any(|l| l.event.contains("redelivery requested")));
        p.webhook = None;
        assert_eq!(rearm_now(&mut p, 1_001), Err(Redeliver::NoWebhook));
    }

    #[test]
    fn schedule_backs_off_and_gives_up() {
        let mut next = 0;
        for (i, d) in SCHEDULE_MS.iter().enumerate() {
            assert!(*d >= next, "attempt {i}");
            next = *d;
        }
    }

    proptest! {
        #[test]
        fn any_key_signs_what_an_independent_verifier_accepts(
            key in proptest::collection::vec(any::<u8>(), MIN_SECRET_BYTES..=MAX_SECRET_BYTES),
            other in proptest::collection::vec(any::<u8>(), MIN_SECRET_BYTES..=MAX_SECRET_BYTES),
            id in "evt_[a-z0-9_]{1,40}",
            ts in any::<u32>(),
            body in ".{0,200}",
        ) {
            let s = secret(&whsec(&key));
            prop_assert_eq!(&s, &WebhookSecret(key.clone()));
            let both = signature_header(&[s, secret(&whsec(&other))], &id, u64::from(ts), &body);
            prop_assert!(verifies(&key, &both, &id, u64::from(ts), &body));
            prop_assert!(verifies(&other, &both, &id, u64::from(ts), &body));
        }

        #[test]
        fn secret_parsing_never_panics_and_answers_a_fixed_message(s in "\\PC{0,100}") {
            if let Err(e) = WebhookSecrets::from_vars(Some(s), None) {
                // A fixed message, so it cannot carry any part of the value.
                let fixed = [SecretError::MissingPrefix, SecretError::NotBase64, SecretError::TooShort, SecretError::TooLong];
                prop_assert_eq!(e.variable.as_str(), "WEBHOOK_SECRET");
                prop_assert!(fixed.iter().any(|f| f.message() == e.message));
            }
        }
    }
}
