//! How a provider call failed, classified for retry, failover and health.

use std::fmt;

use serde_json::Value;

use crate::detail::{sanitize, MAX_CHARS};
use crate::http::{HttpResponse, TransportError};

#[derive(Debug, Clone, PartialEq)]
pub enum BackendError {
    /// No answer within the attempt timeout.
    Timeout,
    /// Connection refused, reset or cut.
    Network(String),
    /// 5xx (including 520) or 429: the provider is struggling. `html` is set
    /// when the body was an HTML page (a Cloudflare 520 in front of a backend)
    /// rather than the provider's own JSON.
    Upstream {
        status: u16,
        detail: String,
        html: bool,
        /// LNbits' `"status"` field in a JSON error body, if any.
        payment_status: Option<String>,
    },
    /// 401/403: our credentials were refused.
    Unauthorized { status: u16, detail: String },
    /// 404: on a lookup, the provider does not know the object; on create,
    /// a wrong base URL or (LNbits) an unknown key.
    NotFound { detail: String },
    /// Another 4xx: the provider refused the request itself.
    Rejected { status: u16, detail: String },
    /// The provider answers but reports itself unfit (e.g. LND not synced).
    Unhealthy(String),
    /// The backend's API cannot do what was asked (CLN cannot take a given
    /// description hash); decided before any request left.
    Unsupported(String),
    /// A 2xx whose body is not what the API promises (garbage, missing
    /// fields, an invoice that does not match what we asked for).
    InvalidResponse(String),
}

impl BackendError {
    /// Worth another attempt on the same provider.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BackendError::Timeout | BackendError::Network(_) | BackendError::Upstream { .. }
        )
    }

    /// Stable code for API bodies and logs.
    pub fn code(&self) -> &'static str {
        match self {
            BackendError::Timeout => "timeout",
            BackendError::Network(_) => "network_error",
            BackendError::Upstream { status: 520, .. } => "upstream_520",
            BackendError::Upstream { status: 429, .. } => "rate_limited",
            BackendError::Upstream { .. } => "upstream_error",
            BackendError::Unauthorized { .. } => "unauthorized",
            BackendError::NotFound { .. } => "not_found",
            BackendError::Rejected { .. } => "rejected",
            BackendError::Unhealthy(_) => "unhealthy",
            BackendError::Unsupported(_) => "unsupported",
            BackendError::InvalidResponse(_) => "invalid_response",
        }
    }

    /// Classifies a non-2xx response.
    pub fn from_status(r: &HttpResponse) -> BackendError {
        let html = looks_like_html(r);
        let json: Option<Value> = if html {
            None
        } else {
            serde_json::from_str(&r.body).ok()
        };
        // The backend's own words, whole: classification reads them (an
        // "already paid" may come late in a long message); every display of
        // the error goes through `Display`, which sanitizes and caps them.
        let detail = match &json {
            Some(v) => json_detail(v).unwrap_or_else(|| snippet(&r.body)),
            None if html => html_title(&r.body)
                .map(|t| format!("HTML error page: {t}"))
                .unwrap_or_else(|| "HTML error page".to_string()),
            None => snippet(&r.body),
        };
        let payment_status = json
            .as_ref()
            .and_then(|v| v.get("status"))
            .and_then(|s| s.as_str())
            .map(str::to_string);
        match r.status {
            401 | 403 => BackendError::Unauthorized {
                status: r.status,
                detail,
            },
            404 => BackendError::NotFound { detail },
            429 | 500..=599 => BackendError::Upstream {
                status: r.status,
                detail,
                html,
                payment_status,
            },
            // Anything else that is not 2xx: 4xx, or an odd 1xx/3xx (redirects are not followed).
            _ => BackendError::Rejected {
                status: r.status,
                detail,
            },
        }
    }
}

impl From<TransportError> for BackendError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Timeout => BackendError::Timeout,
            TransportError::Network(m) => BackendError::Network(m),
            TransportError::TooLarge => BackendError::InvalidResponse("response too large".into()),
            TransportError::SlowBody => BackendError::Timeout,
        }
    }
}

/// Every message is shown through [`sanitize`]: whatever built the error,
/// what reaches health, `/status`, an API body or a payout record is one
/// capped line with secret-looking tokens masked.
impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Timeout => write!(f, "timed out"),
            BackendError::Network(m) => write!(f, "network error: {}", sanitize(m)),
            BackendError::Upstream { status, detail, .. } => {
                write!(f, "HTTP {status}: {}", sanitize(detail))
            }
            BackendError::Unauthorized { status, detail } => {
                write!(
                    f,
                    "credentials refused (HTTP {status}): {}",
                    sanitize(detail)
                )
            }
            BackendError::NotFound { detail } => write!(f, "HTTP 404: {}", sanitize(detail)),
            BackendError::Rejected { status, detail } => {
                write!(f, "HTTP {status}: {}", sanitize(detail))
            }
            BackendError::Unhealthy(m) => write!(f, "unhealthy: {}", sanitize(m)),
            BackendError::Unsupported(m) => {
                write!(f, "not supported by this backend: {}", sanitize(m))
            }
            BackendError::InvalidResponse(m) => write!(f, "invalid response: {}", sanitize(m)),
        }
    }
}

fn looks_like_html(r: &HttpResponse) -> bool {
    let ct_html = r
        .content_type
        .as_deref()
        .map(|c| c.to_ascii_lowercase().contains("text/html"))
        .unwrap_or(false);
    let head = r.body.trim_start();
    ct_html || head.starts_with('<')
}

fn html_title(body: &str) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = lower[start..].find("</title>")? + start;
    body.get(start..end).map(|t| t.trim().to_string())
}

/// LNbits says `detail`, LND and CLNRest `message` (or `error`).
fn json_detail(v: &Value) -> Option<String> {
    for key in ["detail", "message", "error", "reason"] {
        match v.get(key) {
            Some(Value::String(s)) if !s.is_empty() => return Some(s.clone()),
            Some(Value::Object(o)) => {
                if let Some(Value::String(s)) = o.get("message") {
                    return Some(s.clone());
                }
            }
            _ => {}
        }
    }
    None
}

/// A short, single-line excerpt of a body for error messages.
pub fn snippet(body: &str) -> String {
    let head: String = body.chars().take(4 * MAX_CHARS).collect();
    let s = sanitize(&head);
    if s.is_empty() {
        "(empty body)".to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::html_520;
    use serde_json::json;

    #[test]
    fn html_520_is_transient_and_marked_html() {
        let e = BackendError::from_status(&html_520());
        match &e {
            BackendError::Upstream {
                status: 520,
                html: true,
                detail,
                payment_status: None,
            } => assert!(detail.contains("520"), "{detail}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.is_transient());
        assert_eq!(e.code(), "upstream_520");
    }

    #[test]
    fn lnbits_json_520_keeps_detail_and_payment_status() {
        let r = HttpResponse::json(
            520,
            &json!({"detail": "Insufficient balance.", "status": "failed"}),
        );
        let e = BackendError::from_status(&r);
        assert_eq!(
            e,
            BackendError::Upstream {
                status: 520,
                detail: "Insufficient balance.".into(),
                html: false,
                payment_status: Some("failed".into()),
            }
        );
    }

    #[test]
    fn client_errors_are_not_transient() {
        let r = HttpResponse::json(401, &json!({"detail": "Invalid key"}));
        assert!(!BackendError::from_status(&r).is_transient());
        let r = HttpResponse::json(400, &json!({"message": "bad amount"}));
        assert_eq!(
            BackendError::from_status(&r),
            BackendError::Rejected {
                status: 400,
                detail: "bad amount".into()
            }
        );
        let r = HttpResponse::json(429, &json!({}));
        assert!(BackendError::from_status(&r).is_transient());
    }

    #[test]
    fn lnd_error_object_message_is_used() {
        let r = HttpResponse::json(
            500,
            &json!({"code": 2, "message": "invoice expiry too large"}),
        );
        match BackendError::from_status(&r) {
            BackendError::Upstream { detail, .. } => {
                assert_eq!(detail, "invoice expiry too large")
            }
            other => panic!("{other:?}"),
        }
    }

    /// What is shown of an error (health, /status, API bodies, payout
    /// records) is one capped line without key-like tokens; the error keeps
    /// the backend's words for classification.
    #[test]
    fn shown_text_is_sanitized_and_capped() {
        let key = "a3f1c2d4e5b6a7980123456789abcdef";
        let r = HttpResponse::json(
            401,
            &json!({"detail": format!("Invalid key {key}. {}", "x ".repeat(300))}),
        );
        let e = BackendError::from_status(&r);
        let shown = e.to_string();
        assert!(!shown.contains(key), "{shown}");
        assert!(shown.contains("[redacted]"));
        assert!(shown.chars().count() < 260, "{}", shown.chars().count());
        assert!(matches!(e, BackendError::Unauthorized { detail, .. } if detail.contains(key)));
    }

    #[test]
    fn garbage_body_becomes_snippet() {
        let r = HttpResponse {
            status: 502,
            content_type: None,
            body: "\u{0}\u{1}bad gateway\n".into(),
        };
        match BackendError::from_status(&r) {
            BackendError::Upstream { detail, .. } => assert_eq!(detail, "bad gateway"),
            other => panic!("{other:?}"),
        }
    }
}
