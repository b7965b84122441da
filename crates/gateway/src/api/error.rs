//! The errors the API answers with. Every variant maps to one stable `code`
//! that clients can match on, and to one HTTP status.

use serde::Serialize;
use serde_json::{json, Value};

use crate::receive::chain::{Attempt, BackendFailure};

/// A client-visible error: what went wrong, as a typed value.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The body is not valid JSON, or not a JSON object.
    InvalidJson(String),
    /// A field is missing or has the wrong type or value.
    InvalidField {
        field: &'static str,
        message: String,
    },
    /// A query parameter is missing or malformed.
    InvalidQuery {
        param: &'static str,
        message: String,
    },
    /// The requested amount is above the configured maximum.
    AmountTooLarge {
        max_sat: u64,
    },
    PayloadTooLarge {
        max_bytes: usize,
    },
    UnsupportedMediaType(String),
    RouteNotFound,
    /// Missing or wrong `Authorization: Bearer` key.
    Unauthorized,
    /// The route needs a key that this deployment has not configured.
    AdminDisabled,
    MethodNotAllowed {
        allowed: &'static [&'static str],
    },
    InvoiceNotFound,
    /// Every provider of the chain failed or was skipped.
    AllBackendsFailed {
        failures: Vec<BackendFailure>,
        attempts: Vec<Attempt>,
    },
    /// The one provider that can answer (the issuer of an invoice) is down.
    BackendUnavailable {
        provider: String,
        retry_after_secs: u64,
        reason: String,
    },
    /// The index missed the hash, nobody that answered knows it, and some
    /// providers could not answer: it may exist, so no 404.
    InvoiceLookupUnavailable {
        failures: Vec<BackendFailure>,
        retry_after_secs: u64,
    },
    MissingIdempotencyKey,
    IdempotencyConflict,
    /// Another request with this `Idempotency-Key` is still being answered.
    IdempotencyInProgress,
    /// A field only the invoice key may set, and no `INVOICE_API_KEY` is configured.
    InvoiceKeyDisabled,
    /// A keyless `success_url` names a host not in `CHECKOUT_REDIRECT_HOSTS`.
    SuccessUrlNotAllowed(String),
    /// The invoice watch could not take the invoice: nothing was handed out.
    InvoiceWatchUnavailable(String),
    /// The invoice is already being paid (or was paid) by another payout.
    InvoiceAlreadyUsed {
        payout_id: String,
    },
    LimitExceeded(String),
    DestinationNotAllowed(String),
    InvalidInvoice(String),
    /// The LNURL server answered, but not with a usable invoice.
    LnurlError(String),
    /// The LNURL server could not be reached.
    LnurlUnreachable(String),
    PayoutNotFound,
    PayoutsDisabled(String),
    /// A `webhook_url`, or an admin redelivery, on a deployment without
    /// `WEBHOOK_SECRET`, which signs every event: refused, nothing changed.
    WebhooksDisabled,
    RetryNotAllowed(String),
    /// Admin cancel refused: some hash of the payout may still pay, or it ended.
    CancelNotAllowed(String),
    /// Webhook redelivery of a payout created without a `webhook_url`.
    NoWebhook,
    /// Webhook redelivery of a payout that has not ended (no event yet).
    NoWebhookEvent(String),
    /// The deployment's configuration is invalid; names the variable to fix.
    Configuration {
        variable: String,
        message: String,
    },
    /// A storage binding (KV) failed; nothing was changed.
    StorageUnavailable(String),
    /// A payout create failed after the payout may have been stored (and
    /// sent): retrying with the same `Idempotency-Key` shows it.
    PayoutMayExist(String),
    /// This client sent more requests to the route than its limit allows.
    RateLimited {
        retry_after_secs: u64,
    },
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: String,
}

const WEBHOOKS_DISABLED: &str = "webhooks are not enabled on this deployment: they need the WEBHOOK_SECRET secret, which signs every event; nothing was created or changed";

const INVOICE_KEY_DISABLED: &str =
    "this field needs INVOICE_API_KEY, which is not configured on this deployment";

fn success_url_refused(host: &str) -> String {
    format!("success_url may point at {host} only with INVOICE_API_KEY, or when CHECKOUT_REDIRECT_HOSTS lists it")
}

impl ApiError {
    pub fn invalid_field(field: &'static str, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field,
            message: message.into(),
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidField { field, .. } => match *field {
                "amount" => "invalid_amount",
                "description" => "invalid_description",
                "description_hash" => "invalid_description_hash",
                "expiry" => "invalid_expiry",
                "destination" => "invalid_destination",
                "amount_sat" => "invalid_amount",
                "comment" => "invalid_comment",
                "webhook_url" => "invalid_webhook_url",
                "success_url" => "invalid_success_url",
                "external_id" => "invalid_external_id",
                "idempotency_key" => "invalid_idempotency_key",
                "metadata" => "invalid_metadata",
                "payment_hash" => "invalid_payment_hash",
                _ => "invalid_request",
            },
            ApiError::InvalidQuery { param, .. } => match *param {
                "payment_hash" => "invalid_payment_hash",
                "limit" => "invalid_limit",
                "status" => "invalid_status",
                "cursor" => "invalid_cursor",
                _ => "invalid_query",
            },
            ApiError::AmountTooLarge { .. } => "amount_too_large",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RouteNotFound => "not_found",
            ApiError::Unauthorized => "unauthorized",
            ApiError::AdminDisabled => "admin_disabled",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::InvoiceNotFound => "invoice_not_found",
            ApiError::AllBackendsFailed { .. } => "all_providers_failed",
            ApiError::BackendUnavailable { .. } => "provider_unavailable",
            ApiError::InvoiceLookupUnavailable { .. } => "invoice_lookup_unavailable",
            ApiError::MissingIdempotencyKey => "missing_idempotency_key",
            ApiError::IdempotencyConflict => "idempotency_conflict",
            ApiError::IdempotencyInProgress => "idempotency_in_progress",
            ApiError::InvoiceKeyDisabled => "invoice_key_disabled",
            ApiError::SuccessUrlNotAllowed(_) => "success_url_not_allowed",
            ApiError::InvoiceWatchUnavailable(_) => "invoice_watch_unavailable",
            ApiError::InvoiceAlreadyUsed { .. } => "invoice_already_used",
            ApiError::LimitExceeded(_) => "limit_exceeded",
            ApiError::DestinationNotAllowed(_) => "destination_not_allowed",
            ApiError::InvalidInvoice(_) => "invalid_invoice",
            ApiError::LnurlError(_) => "lnurl_error",
            ApiError::LnurlUnreachable(_) => "lnurl_unreachable",
            ApiError::PayoutNotFound => "payout_not_found",
            ApiError::PayoutsDisabled(_) => "payouts_disabled",
            ApiError::WebhooksDisabled => "webhooks_disabled",
            ApiError::RetryNotAllowed(_) => "retry_not_allowed",
            ApiError::CancelNotAllowed(_) => "cancel_not_allowed",
            ApiError::NoWebhook => "no_webhook",
            ApiError::NoWebhookEvent(_) => "no_webhook_event",
            ApiError::Configuration { .. } => "configuration_error",
            ApiError::StorageUnavailable(_) => "storage_unavailable",
            ApiError::PayoutMayExist(_) => "payout_may_exist",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal(_) => "internal_error",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidField { .. }
            | ApiError::InvalidQuery { .. }
            | ApiError::AmountTooLarge { .. } => 400,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::Unauthorized => 401,
            ApiError::AdminDisabled => 403,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::RouteNotFound | ApiError::InvoiceNotFound | ApiError::PayoutNotFound => 404,
            ApiError::MissingIdempotencyKey | ApiError::DestinationNotAllowed(_) => 400,
            ApiError::IdempotencyConflict
            | ApiError::IdempotencyInProgress
            | ApiError::RetryNotAllowed(_)
            | ApiError::CancelNotAllowed(_)
            | ApiError::NoWebhook
            | ApiError::NoWebhookEvent(_)
            | ApiError::InvoiceAlreadyUsed { .. } => 409,
            ApiError::LimitExceeded(_) | ApiError::InvalidInvoice(_) | ApiError::LnurlError(_) => {
                422
            }
            ApiError::LnurlUnreachable(_) => 502,
            ApiError::PayoutsDisabled(_)
            | ApiError::WebhooksDisabled
            | ApiError::InvoiceKeyDisabled
            | ApiError::SuccessUrlNotAllowed(_) => 403,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::RateLimited { .. } => 429,
            ApiError::AllBackendsFailed { .. }
            | ApiError::BackendUnavailable { .. }
            | ApiError::InvoiceLookupUnavailable { .. }
            | ApiError::StorageUnavailable(_)
            | ApiError::InvoiceWatchUnavailable(_)
            | ApiError::PayoutMayExist(_) => 503,
            ApiError::Configuration { .. } | ApiError::Internal(_) => 500,
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::InvalidJson(m) => format!("request body is not valid JSON: {m}"),
            ApiError::InvalidField { field, message } => format!("`{field}`: {message}"),
            ApiError::InvalidQuery { param, message } => format!("`{param}`: {message}"),
            ApiError::AmountTooLarge { max_sat } => {
                format!("`amount` is above the maximum of {max_sat} sats")
            }
            ApiError::PayloadTooLarge { max_bytes } => {
                format!("request body is larger than {max_bytes} bytes")
            }
            ApiError::UnsupportedMediaType(ct) => {
                format!("content-type `{ct}` is not supported; send application/json")
            }
            ApiError::RouteNotFound => "no such route".to_string(),
            ApiError::Unauthorized => "send a valid key as `Authorization: Bearer <key>`".to_string(),
            ApiError::AdminDisabled => {
                "this route needs ADMIN_API_KEY, which is not configured on this deployment".to_string()
            }
            ApiError::MethodNotAllowed { allowed } => {
                format!("method not allowed; use {}", allowed.join(", "))
            }
            ApiError::InvoiceNotFound => {
                "no invoice with this payment_hash was issued by this gateway (or it has expired from the index)"
                    .to_string()
            }
            ApiError::AllBackendsFailed { failures, .. } => {
                let names: Vec<&str> = failures.iter().map(|f| f.provider.as_str()).collect();
                format!("every provider failed: {}", names.join(", "))
            }
            ApiError::BackendUnavailable {
                provider, reason, ..
            } => format!("provider `{provider}` that issued this invoice is unavailable: {reason}"),
            ApiError::InvoiceLookupUnavailable { failures, .. } => {
                let names: Vec<&str> = failures.iter().map(|f| f.provider.as_str()).collect();
                format!(
                    "this payment_hash is not in the index yet and {} could not be asked; it may exist, try again",
                    names.join(", ")
                )
            }
            ApiError::MissingIdempotencyKey => {
                "the Idempotency-Key header is required: reuse it to retry this payout safely".to_string()
            }
            ApiError::IdempotencyConflict => {
                "this Idempotency-Key was already used with a different request body".to_string()
            }
            ApiError::IdempotencyInProgress => {
                "a request with this Idempotency-Key is still being answered; retry in a moment with the same key".to_string()
            }
            ApiError::InvoiceKeyDisabled => INVOICE_KEY_DISABLED.to_string(),
            ApiError::SuccessUrlNotAllowed(host) => success_url_refused(host),
            ApiError::InvoiceWatchUnavailable(m) => format!(
                "the invoice could not be put under watch ({m}); nothing was handed out, try again"
            ),
            ApiError::InvoiceAlreadyUsed { payout_id } => {
                format!("this invoice is already paid or being paid by payout {payout_id}")
            }
            ApiError::LimitExceeded(m) => m.clone(),
            ApiError::DestinationNotAllowed(m) => format!("destination is not allowed: {m}"),
            ApiError::InvalidInvoice(m) => format!("invoice cannot be paid: {m}"),
            ApiError::LnurlError(m) => format!("could not get an invoice from the recipient: {m}"),
            ApiError::LnurlUnreachable(m) => format!("the recipient's LNURL server is unreachable: {m}"),
            ApiError::PayoutNotFound => "no payout with this id".to_string(),
            ApiError::PayoutsDisabled(m) => format!("payouts are not enabled on this deployment: {m}"),
            ApiError::WebhooksDisabled => WEBHOOKS_DISABLED.to_string(),
            ApiError::RetryNotAllowed(m) => m.clone(),
            ApiError::CancelNotAllowed(m) => format!("this payout cannot be cancelled: {m}"),
            ApiError::NoWebhook => "this payout has no webhook_url; there is nothing to deliver".to_string(),
            ApiError::NoWebhookEvent(m) => format!("no webhook event to deliver yet: {m}"),
            ApiError::Configuration { variable, message } => {
                format!("invalid configuration in `{variable}`: {message}")
            }
            ApiError::StorageUnavailable(m) => format!("storage is unavailable: {m}"),
            ApiError::PayoutMayExist(m) => format!(
                "the payout may have been stored and sent before this failed ({m}); repeat the request with the same Idempotency-Key to see it, never with a new one"
            ),
            ApiError::RateLimited { retry_after_secs } => {
                format!("too many requests from this client; retry after {retry_after_secs} s")
            }
            ApiError::Internal(m) => format!("internal error: {m}"),
        }
    }

    /// `Retry-After` seconds, for errors a client should retry later.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::BackendUnavailable {
                retry_after_secs, ..
            }
            | ApiError::InvoiceLookupUnavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::IdempotencyInProgress => Some(2),
            ApiError::AllBackendsFailed { .. }
            | ApiError::InvoiceWatchUnavailable(_)
            | ApiError::StorageUnavailable(_)
            | ApiError::PayoutMayExist(_)
            | ApiError::LnurlUnreachable(_) => Some(5),
            _ => None,
        }
    }

    /// The JSON body: `{"error": {"code", "message", ...details}}`.
    pub fn to_json(&self) -> Value {
        let mut error = serde_json::to_value(Body {
            code: self.code(),
            message: self.message(),
        })
        .unwrap_or_else(|_| json!({}));
        if let Some(obj) = error.as_object_mut() {
            match self {
                ApiError::InvalidField { field, .. } => {
                    obj.insert("field".into(), json!(field));
                }
                ApiError::InvalidQuery { param, .. } => {
                    obj.insert("param".into(), json!(param));
                }
                ApiError::AmountTooLarge { max_sat } => {
                    obj.insert("max_sat".into(), json!(max_sat));
                }
                ApiError::MethodNotAllowed { allowed } => {
                    obj.insert("allowed".into(), json!(allowed));
                }
                ApiError::AllBackendsFailed { failures, attempts } => {
                    obj.insert("providers".into(), json!(failures));
                    obj.insert("attempts".into(), json!(attempts));
                }
                ApiError::InvoiceLookupUnavailable { failures, .. } => {
                    obj.insert("providers".into(), json!(failures));
                }
                ApiError::BackendUnavailable { provider, .. } => {
                    obj.insert("provider".into(), json!(provider));
                }
                ApiError::Configuration { variable, .. } => {
                    obj.insert("variable".into(), json!(variable));
                }
                ApiError::WebhooksDisabled => {
                    obj.insert(
                        "variable".into(),
                        json!(crate::webhooks::secret::SECRET_VAR),
                    );
                }
                ApiError::InvoiceAlreadyUsed { payout_id } => {
                    obj.insert("payout_id".into(), json!(payout_id));
                }
                _ => {}
            }
            if let Some(secs) = self.retry_after_secs() {
                obj.insert("retry_after".into(), json!(secs));
            }
        }
        json!({ "error": error })
    }
}

impl From<crate::config::ConfigError> for ApiError {
    fn from(e: crate::config::ConfigError) -> Self {
        ApiError::Configuration {
            variable: e.variable,
            message: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `webhook_url` without `WEBHOOK_SECRET` is the client asking for
    /// something this deployment does not offer: a 4xx naming the secret,
    /// not a 500 that a client would retry.
    #[test]
    fn webhooks_disabled_is_a_403_naming_the_secret() {
        let e = ApiError::WebhooksDisabled;
        let v = e.to_json();
        assert_eq!(e.status(), 403);
        assert_eq!(v["error"]["code"], "webhooks_disabled");
        assert_eq!(v["error"]["variable"], "WEBHOOK_SECRET");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("WEBHOOK_SECRET") && m.contains("nothing was created")));
        assert_eq!(e.retry_after_secs(), None);
    }

    #[test]
    fn every_error_has_code_and_message_in_json() {
        let e = ApiError::invalid_field("amount", "must be a positive integer");
        let v = e.to_json();
        assert_eq!(v["error"]["code"], "invalid_amount");
        assert_eq!(v["error"]["field"], "amount");
        assert_eq!(e.status(), 400);
        assert!(v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("amount"));
    }

    #[test]
    fn provider_unavailable_carries_retry_hint() {
        let e = ApiError::BackendUnavailable {
            provider: "lnd".into(),
            retry_after_secs: 30,
            reason: "circuit open".into(),
        };
        assert_eq!(e.status(), 503);
        assert_eq!(e.to_json()["error"]["retry_after"], 30);
        assert_eq!(e.retry_after_secs(), Some(30));
    }

    #[test]
    fn rate_limited_is_429_with_retry_after() {
        let e = ApiError::RateLimited {
            retry_after_secs: 60,
        };
        assert_eq!((e.status(), e.code()), (429, "rate_limited"));
        assert_eq!(e.retry_after_secs(), Some(60));
        assert_eq!(e.to_json()["error"]["retry_after"], 60);
    }
}
