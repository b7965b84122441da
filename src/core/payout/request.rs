//! Validation of `POST /api/payouts` and its idempotency.

use bitcoin_hashes::{sha256, Hash};
use serde_json::{json, Map, Value};

use crate::core::error::ApiError;

pub const MAX_COMMENT_CHARS: usize = 2000;
pub const MAX_EXTERNAL_ID_CHARS: usize = 255;
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

#[derive(Debug, Clone, PartialEq)]
pub struct PayoutRequest {
    pub destination: String,
    pub amount_sat: Option<u64>,
    pub comment: Option<String>,
    pub webhook_url: Option<String>,
    pub external_id: Option<String>,
}

impl PayoutRequest {
    /// SHA-256 over the normalised request: the same key must come with the same meaning.
    pub fn fingerprint(&self) -> String {
        let canon = json!([
            self.destination,
            self.amount_sat,
            self.comment,
            self.webhook_url,
            self.external_id
        ]);
        sha256::Hash::hash(canon.to_string().as_bytes()).to_string()
    }
}

/// The payout id that an idempotency key maps to: retried calls into the
/// queue insert-or-ignore on it.
pub fn payout_id(idempotency_key: &str) -> String {
    let h = sha256::Hash::hash(format!("payout:{idempotency_key}").as_bytes()).to_string();
    format!("po_{}", &h[..24])
}

pub fn parse_idempotency_key(raw: Option<&str>) -> Result<String, ApiError> {
    let k = raw.map(str::trim).unwrap_or("");
    if k.is_empty() {
        return Err(ApiError::MissingIdempotencyKey);
    }
    if k.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS
        || !k.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return Err(ApiError::invalid_field(
            "idempotency_key",
            "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(k.to_string())
}

fn opt_string(
    m: &Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > max => Err(ApiError::invalid_field(
            field,
            format!("is longer than {max} characters"),
        )),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(ApiError::invalid_field(field, "must be a string")),
    }
}

pub fn parse(body: &[u8]) -> Result<PayoutRequest, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let Value::Object(m) = v else {
        return Err(ApiError::InvalidJson("expected a JSON object".into()));
    };
    let destination = match m.get("destination") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ApiError::invalid_field("destination", "is required"))
        }
        Some(_) => return Err(ApiError::invalid_field("destination", "must be a string")),
    };
    let amount_sat = match m.get("amount_sat") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) | None => {
                return Err(ApiError::invalid_field(
                    "amount_sat",
                    "must be a whole number of sats greater than 0",
                ))
            }
            Some(a) => Some(a),
        },
        Some(_) => {
            return Err(ApiError::invalid_field(
                "amount_sat",
                "must be a JSON integer (sats)",
            ))
        }
    };
    Ok(PayoutRequest {
        destination,
        amount_sat,
        comment: opt_string(&m, "comment", MAX_COMMENT_CHARS)?,
        webhook_url: opt_string(&m, "webhook_url", 2048)?,
        external_id: opt_string(&m, "external_id", MAX_EXTERNAL_ID_CHARS)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> String {
        match parse(body.as_bytes()) {
            Ok(_) => "ok".into(),
            Err(e) => e.code().into(),
        }
    }

    #[test]
    fn validates_fields() {
        assert_eq!(code(r#"{"destination":"a@b.com","amount_sat":10}"#), "ok");
        assert_eq!(code(r#"{"amount_sat":10}"#), "invalid_destination");
        assert_eq!(code(r#"{"destination":5}"#), "invalid_destination");
        assert_eq!(
            code(r#"{"destination":"a@b.com","amount_sat":"10"}"#),
            "invalid_amount"
        );
        assert_eq!(
            code(r#"{"destination":"a@b.com","amount_sat":0}"#),
            "invalid_amount"
        );
        assert_eq!(
            code(r#"{"destination":"a@b.com","amount_sat":1.5}"#),
            "invalid_amount"
        );
        assert_eq!(
            code(r#"{"destination":"a@b.com","comment":7}"#),
            "invalid_comment"
        );
        assert_eq!(
            code(r#"{"destination":"a@b.com","webhook_url":[]}"#),
            "invalid_webhook_url"
        );
        assert_eq!(
            code(&format!(
                r#"{{"destination":"a@b.com","external_id":"{}"}}"#,
                "x".repeat(300)
            )),
            "invalid_external_id"
        );
        assert_eq!(code("[]"), "invalid_json");
        assert_eq!(code("{"), "invalid_json");
    }

    #[test]
    fn idempotency_and_fingerprint() {
        assert_eq!(
            parse_idempotency_key(None).map_err(|e| e.code()),
            Err("missing_idempotency_key")
        );
        assert_eq!(
            parse_idempotency_key(Some("  ")).map_err(|e| e.code()),
            Err("missing_idempotency_key")
        );
        assert!(parse_idempotency_key(Some("has space")).is_err());
        assert_eq!(
            parse_idempotency_key(Some("order-42")),
            Ok("order-42".into())
        );
        assert_eq!(payout_id("order-42"), payout_id("order-42"));
        assert_ne!(payout_id("order-42"), payout_id("order-43"));
        let a = parse(br#"{"destination":"a@b.com","amount_sat":10}"#)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let b = parse(br#"{"amount_sat":10, "destination":" a@b.com "}"#)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let c = parse(br#"{"destination":"a@b.com","amount_sat":11}"#)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
