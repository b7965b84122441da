//! The receive API's request and response shapes, and the record that maps
//! a payment hash to the provider that issued it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::api::error::ApiError;
use crate::config::InvoiceLimits;
use crate::receive::chain::{Attempt, Issued};
use crate::time::iso8601_secs;
use backends::bolt11::{is_payment_hash, Network};
use backends::{BackendKind, InvoiceParams, InvoiceState};

/// BOLT11 caps the `d` field at 639 bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 639;
pub const MIN_EXPIRY_SECS: u64 = 60;
/// How long the hash → provider record outlives the invoice.
pub const RECORD_RETENTION_SECS: u64 = 30 * 24 * 3600;

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    crate::api::body::parse_object(body)
}

fn whole_number(
    m: &Map<String, Value>,
    field: &'static str,
    what: &str,
) -> Result<Option<u64>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match crate::api::body::whole_u64(n) {
            Some(v) => Ok(Some(v)),
            None => Err(ApiError::invalid_field(
                field,
                format!("must be a positive whole number of {what}"),
            )),
        },
        Some(Value::String(_)) => Err(ApiError::invalid_field(
            field,
            format!("must be a JSON number of {what}, not a string"),
        )),
        Some(_) => Err(ApiError::invalid_field(
            field,
            format!("must be a whole number of {what}"),
        )),
    }
}

/// Validates `POST /api/create-invoice`.
pub fn parse_create_request(
    body: &[u8],
    limits: &InvoiceLimits,
    network: Network,
) -> Result<InvoiceParams, ApiError> {
    let m = object(body)?;
    let amount = whole_number(&m, "amount", "sats")?
        .ok_or_else(|| ApiError::invalid_field("amount", "is required (sats, integer > 0)"))?;
    if amount == 0 {
        return Err(ApiError::invalid_field("amount", "must be greater than 0"));
    }
    if amount > limits.max_sat {
        return Err(ApiError::AmountTooLarge {
            max_sat: limits.max_sat,
        });
    }
    let description = match m.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() > MAX_DESCRIPTION_BYTES => {
            return Err(ApiError::invalid_field(
                "description",
                format!("is longer than {MAX_DESCRIPTION_BYTES} bytes"),
            ))
        }
        Some(Value::String(s)) if crate::api::body::has_control_chars(s, true) => {
            return Err(ApiError::invalid_field(
                "description",
                "must not contain control characters (other than tab and line breaks)",
            ))
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::invalid_field("description", "must be a string")),
    };
    let description_hash = match m.get("description_hash") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_payment_hash(s) => Some(s.to_ascii_lowercase()),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "description_hash",
                "must be a SHA-256 as 64 hex digits",
            ))
        }
    };
    let expiry = match whole_number(&m, "expiry", "seconds")? {
        None => limits.default_expiry_secs,
        Some(e) if e < MIN_EXPIRY_SECS || e > u64::from(limits.max_expiry_secs) => {
            return Err(ApiError::invalid_field(
                "expiry",
                format!(
                    "must be from {MIN_EXPIRY_SECS} to {} seconds",
                    limits.max_expiry_secs
                ),
            ))
        }
        Some(e) => e as u32,
    };
    Ok(InvoiceParams {
        amount_sat: amount,
        description,
        description_hash,
        expiry_secs: expiry,
        network,
        notify_url: None,
    })
}

/// Validates the `payment_hash` query parameter.
pub fn parse_payment_hash(raw: Option<&str>) -> Result<String, ApiError> {
    match raw {
        None | Some("") => Err(ApiError::InvalidQuery {
            param: "payment_hash",
            message: "is required".into(),
        }),
        Some(h) if is_payment_hash(h) => Ok(h.to_ascii_lowercase()),
        Some(_) => Err(ApiError::InvalidQuery {
            param: "payment_hash",
            message: "must be 64 hex digits".into(),
        }),
    }
}

/// What KV keeps per invoice: who issued it, for `check-invoice`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceRecord {
    pub payment_hash: String,
    pub provider: BackendKind,
    pub amount_sat: u64,
    pub created_at: u64,
    pub expires_at: u64,
    /// Set once a check saw it paid, so later checks need no provider call.
    #[serde(default)]
    pub settled_at: Option<u64>,
    #[serde(default)]
    pub paid: bool,
}

impl InvoiceRecord {
    pub fn from_issued(i: &Issued) -> Self {
        InvoiceRecord {
            payment_hash: i.payment_hash.clone(),
            provider: i.provider,
            amount_sat: i.amount_sat,
            created_at: i.created_at_secs,
            expires_at: i.expires_at_secs,
            settled_at: None,
            paid: false,
        }
    }

    /// KV TTL: the invoice's life plus a retention period.
    pub fn ttl_secs(&self, now_secs: u64) -> u64 {
        self.expires_at.saturating_sub(now_secs) + RECORD_RETENTION_SECS
    }

    pub fn key(payment_hash: &str) -> String {
        format!("inv:{payment_hash}")
    }

    /// Folds the provider's answer into the record; `true` if it changed.
    pub fn apply(&mut self, state: InvoiceState, now_secs: u64) -> bool {
        match state {
            InvoiceState::Paid { settled_at_secs } if !self.paid => {
                self.paid = true;
                self.settled_at = Some(settled_at_secs.unwrap_or(now_secs));
                true
            }
            _ => false,
        }
    }

    /// `pending`, `paid` or `expired` as the API reports it.
    pub fn status(&self, state: Option<InvoiceState>, now_secs: u64) -> &'static str {
        match state {
            _ if self.paid => "paid",
            Some(InvoiceState::Paid { .. }) => "paid",
            Some(InvoiceState::Cancelled) => "expired",
            _ if now_secs >= self.expires_at => "expired",
            _ => "pending",
        }
    }

    pub fn check_response(&self, state: Option<InvoiceState>, now_secs: u64) -> Value {
        let mut v = json!({
            "payment_hash": self.payment_hash,
            "status": self.status(state, now_secs),
            "provider": self.provider.as_str(),
            "amount": self.amount_sat,
            "expires_at": iso8601_secs(self.expires_at),
        });
        if let Some(t) = self.settled_at {
            v["settled_at"] = Value::from(iso8601_secs(t));
        }
        v
    }
}

/// The 201 body of `create-invoice`.
pub fn create_response(i: &Issued, attempts: &[Attempt]) -> Value {
    json!({
        "payment_request": i.payment_request,
        "payment_hash": i.payment_hash,
        "amount": i.amount_sat,
        "expires_at": iso8601_secs(i.expires_at_secs),
        "provider": i.provider.as_str(),
        "attempts": attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: InvoiceLimits = InvoiceLimits {
        max_sat: 100_000,
        default_expiry_secs: 3600,
        max_expiry_secs: 86_400,
    };

    fn code(body: &str) -> String {
        match parse_create_request(body.as_bytes(), &L, Network::Bitcoin) {
            Ok(_) => "ok".into(),
            Err(e) => e.code().into(),
        }
    }

    #[test]
    fn accepts_the_documented_shape() {
        let p = parse_create_request(
            br#"{"amount":1000,"description":"test"}"#,
            &L,
            Network::Bitcoin,
        );
        let p = p.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(p.amount_sat, 1000);
        assert_eq!(p.expiry_secs, 3600);
        assert_eq!(p.description.as_deref(), Some("test"));
    }

    #[test]
    fn hostile_input_gets_stable_codes() {
        assert_eq!(code(""), "invalid_json");
        assert_eq!(code("[1]"), "invalid_json");
        assert_eq!(code("{\"amount\":"), "invalid_json");
        assert_eq!(code("{}"), "invalid_amount");
        assert_eq!(code(r#"{"amount":"1000"}"#), "invalid_amount");
        assert_eq!(code(r#"{"amount":-5}"#), "invalid_amount");
        assert_eq!(code(r#"{"amount":0}"#), "invalid_amount");
        assert_eq!(code(r#"{"amount":10.5}"#), "invalid_amount");
        assert_eq!(code(r#"{"amount":1e30}"#), "invalid_amount");
        assert_eq!(code(r#"{"amount":100001}"#), "amount_too_large");
        assert_eq!(
            code(r#"{"amount":18446744073709551615}"#),
            "amount_too_large"
        );
        assert_eq!(
            code(r#"{"amount":1,"description":5}"#),
            "invalid_description"
        );
        assert_eq!(
            code(&format!(
                r#"{{"amount":1,"description":"{}"}}"#,
                "x".repeat(640)
            )),
            "invalid_description"
        );
        assert_eq!(
            code(r#"{"amount":1,"description_hash":"abc"}"#),
            "invalid_description_hash"
        );
        assert_eq!(code(r#"{"amount":1,"amount":1000}"#), "invalid_json");
        for bad in [r"a\u0000b", r"\u001b[31m", r"a\u007fb", r"a\u0085b"] {
            assert_eq!(
                code(&format!(r#"{{"amount":1,"description":"{bad}"}}"#)),
                "invalid_description",
                "{bad}"
            );
        }
        assert_eq!(
            code(r#"{"amount":1,"description":"two\nlines \u202e ⚡"}"#),
            "ok"
        );
        assert_eq!(code(r#"{"amount":1,"expiry":5}"#), "invalid_expiry");
        assert_eq!(code(r#"{"amount":1,"expiry":999999999}"#), "invalid_expiry");
        assert_eq!(
            code(r#"{"amount":1,"description":null,"expiry":null}"#),
            "ok"
        );
    }

    #[test]
    fn payment_hash_param() {
        assert!(parse_payment_hash(None).is_err());
        assert!(parse_payment_hash(Some("xyz")).is_err());
        assert_eq!(
            parse_payment_hash(Some(&"AB".repeat(32))),
            Ok("ab".repeat(32))
        );
    }

    #[test]
    fn status_follows_provider_then_clock() {
        let mut r = InvoiceRecord {
            payment_hash: "ab".repeat(32),
            provider: BackendKind::Lnd,
            amount_sat: 5,
            created_at: 100,
            expires_at: 200,
            settled_at: None,
            paid: false,
        };
        assert_eq!(r.status(Some(InvoiceState::Pending), 150), "pending");
        assert_eq!(r.status(Some(InvoiceState::Pending), 200), "expired");
        assert_eq!(r.status(Some(InvoiceState::Cancelled), 150), "expired");
        assert!(r.apply(
            InvoiceState::Paid {
                settled_at_secs: None
            },
            190
        ));
        assert!(!r.apply(
            InvoiceState::Paid {
                settled_at_secs: Some(1)
            },
            191
        ));
        assert_eq!(r.status(None, 10_000), "paid");
        assert_eq!(
            r.check_response(None, 10_000)["settled_at"],
            "1970-01-01T00:03:10Z"
        );
        assert!(r.ttl_secs(150) > RECORD_RETENTION_SECS);
    }
}
