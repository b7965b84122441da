//! Signed webhooks for terminal payout events. The signature is
//! HMAC-SHA256 over `"{timestamp}.{body}"`; receivers should reject
//! timestamps older than five minutes and deduplicate on the event id.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::core::http::{HttpRequest, HttpResponse, TransportError};
use crate::core::payout::model::{Delivery, Payout, PayoutState};
use crate::core::time::iso8601_ms;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// Redelivery delays after each failed attempt (BTCPay-like: 10 s, 1 min, then 10 min).
pub const SCHEDULE_MS: &[u64] = &[10_000, 60_000, 600_000, 600_000, 600_000, 600_000, 600_000];
pub const DELIVERY_TIMEOUT_MS: u64 = 10_000;

/// `v1=<hex>` over `"{timestamp}.{body}"`.
pub fn sign(secret: &[u8], timestamp_secs: u64, body: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(format!("{timestamp_secs}.{body}").as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn event_type(p: &Payout) -> &'static str {
    match p.state {
        PayoutState::Succeeded { .. } => "payout.succeeded",
        _ => "payout.failed",
    }
}

pub fn event_body(p: &Payout, event_id: &str, now_ms: u64) -> Value {
    json!({
        "id": event_id,
        "type": event_type(p),
        "created_at": iso8601_ms(now_ms),
        "data": p.view(),
    })
}

/// The delivery request for `p`'s terminal event.
pub fn request(p: &Payout, secret: &[u8], now_ms: u64) -> Option<HttpRequest> {
    let hook = p.webhook.as_ref()?;
    let id = hook.event_id.clone()?;
    let body = event_body(p, &id, now_ms).to_string();
    let ts = now_ms / 1000;
    Some(HttpRequest {
        method: crate::core::http::Method::Post,
        url: hook.url.clone(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (HEADER_ID.into(), id),
            (HEADER_TIMESTAMP.into(), ts.to_string()),
            (HEADER_SIGNATURE.into(), sign(secret, ts, &body)),
            ("user-agent".into(), "lightning-fallback-webhooks/1".into()),
        ],
        body: Some(body),
    })
}

/// Arms delivery when a payout reaches a terminal state (once).
pub fn arm(p: &mut Payout, now_ms: u64) {
    let id = format!("evt_{}_{}", p.id, p.state.name());
    if let Some(w) = p.webhook.as_mut() {
        if p.state.is_terminal() && w.event_id.as_deref() != Some(id.as_str()) {
            w.event_id = Some(id);
            w.next_at_ms = Some(now_ms);
            w.delivered_at_ms = None;
        }
    }
}

/// Records a delivery attempt and schedules the next one.
pub fn record(p: &mut Payout, result: &Result<HttpResponse, TransportError>, now_ms: u64) {
    let Some(w) = p.webhook.as_mut() else { return };
    let (status, error) = match result {
        Ok(r) => (
            Some(r.status),
            if r.is_success() {
                None
            } else {
                Some(format!("HTTP {}", r.status))
            },
        ),
        Err(e) => (None, Some(format!("{e:?}"))),
    };
    let ok = error.is_none();
    w.attempts.push(Delivery {
        at_ms: now_ms,
        status,
        error,
    });
    if ok {
        w.delivered_at_ms = Some(now_ms);
        w.next_at_ms = None;
    } else {
        let n = w.attempts.len() - 1;
        w.next_at_ms = SCHEDULE_MS.get(n).map(|d| now_ms + d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 style check against an independent computation.
        let sig = sign(b"secret", 1_700_000_000, "{\"a\":1}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap_or_else(|_| panic!("key"));
        mac.update(b"1700000000.{\"a\":1}");
        assert_eq!(
            sig,
            format!("v1={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_ne!(sig, sign(b"other", 1_700_000_000, "{\"a\":1}"));
        assert_ne!(sig, sign(b"secret", 1_700_000_001, "{\"a\":1}"));
    }

    #[test]
    fn schedule_backs_off_and_gives_up() {
        let mut next = 0;
        for (i, d) in SCHEDULE_MS.iter().enumerate() {
            assert!(*d >= next, "attempt {i}");
            next = *d;
        }
    }
}
