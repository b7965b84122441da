//! Signed webhooks, per Standard Webhooks
//! (<https://www.standardwebhooks.com>, spec v1.0.0), for payout and
//! invoice events alike.
//!
//! - Headers: `webhook-id` (the event id: receivers deduplicate on it; the
//!   same on every redelivery and to every URL), `webhook-timestamp` (Unix
//!   seconds of this attempt) and `webhook-signature`.
//! - Signature: `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`,
//!   so the id and the attempt time are signed along with the body.
//! - During a rotation the header carries one signature per configured
//!   secret, space-separated, and a receiver holding either secret verifies.
//! - Body: `{"id", "type", "timestamp", "data"}`; `timestamp` is when the
//!   event happened (RFC 3339), not when this attempt was made.

pub mod delivery;
pub mod secret;

use backends::http::{HttpRequest, HttpResponse, Method, Runtime, TransportError};

use crate::payout::safe_url::UrlPolicy;

pub use delivery::{Delivery, DELIVERY_TIMEOUT_MS, SCHEDULE_MS};
pub use secret::{
    SecretError, WebhookSecret, WebhookSecrets, MAX_SECRET_BYTES, MIN_SECRET_BYTES,
    PREVIOUS_SECRET_VAR, SECRET_PREFIX, SECRET_VAR,
};

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// The `webhook-signature` header value: one `v1,…` per secret, space-separated.
pub fn signature_header(
    secrets: &[WebhookSecret],
    msg_id: &str,
    timestamp_secs: u64,
    body: &str,
) -> String {
    secrets
        .iter()
        .map(|s| s.sign(msg_id, timestamp_secs, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The delivery request of event `id` with `body` to `url`, signed with
/// every secret at `now_ms`.
pub fn signed_request(
    url: &str,
    id: &str,
    body: String,
    secrets: &[WebhookSecret],
    now_ms: u64,
) -> HttpRequest {
    let ts = now_ms / 1000;
    let signature = signature_header(secrets, id, ts, &body);
    HttpRequest {
        method: Method::Post,
        url: url.to_string(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (HEADER_ID.into(), id.to_string()),
            (HEADER_TIMESTAMP.into(), ts.to_string()),
            (HEADER_SIGNATURE.into(), signature),
            ("user-agent".into(), "lightning-fallback-webhooks/1".into()),
        ],
        body: Some(body),
    }
}

/// One delivery attempt of a signed request (`None`: there was no secret to
/// sign with), refused for a URL the policy does not allow. The outcome is
/// recorded like any other attempt, so an attempt that cannot be made backs
/// off instead of staying due.
pub async fn attempt<R: Runtime>(
    rt: &R,
    req: Option<HttpRequest>,
    policy: &UrlPolicy,
) -> Result<HttpResponse, TransportError> {
    let Some(req) = req else {
        return Err(TransportError::Network(
            "not sent: WEBHOOK_SECRET is not set".into(),
        ));
    };
    match policy.check(&req.url) {
        Ok(_) => rt.send(req, DELIVERY_TIMEOUT_MS).await,
        Err(e) => Err(TransportError::Network(format!("URL refused: {e}"))),
    }
}
