//! What a shop attaches to an invoice: its order id, a small JSON object,
//! and where to send the invoice's events. Stored with the invoice, echoed
//! in the create answer and in every event; `check-invoice`, which anyone
//! may call, shows it only to a caller with the invoice key.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::body::has_control_chars;
use crate::api::error::ApiError;

pub const MAX_EXTERNAL_ID_CHARS: usize = 255;
/// `metadata` as compact JSON.
pub const MAX_METADATA_BYTES: usize = 2048;
/// Objects and arrays inside `metadata`, the outer object counting as one.
pub const MAX_METADATA_DEPTH: usize = 5;
pub const MAX_WEBHOOK_URL_CHARS: usize = 2048;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InvoiceContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Checked against the URL rules of payout webhooks by the caller,
    /// which holds that policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The served Lightning Address the invoice was made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lightning_address: Option<String>,
    /// The payer's LUD-12 comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Where the checkout page sends the browser once paid; checked by the
    /// caller against the redirect rules (`checkout::success_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_url: Option<String>,
    /// A NIP-57 zap request (kind 9734) as sent; the invoice commits to it
    /// and its receipt is published once paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zap_request: Option<String>,
}

impl InvoiceContext {
    /// Reads the optional fields of a create-invoice body.
    pub fn parse(m: &Map<String, Value>) -> Result<InvoiceContext, ApiError> {
        Ok(InvoiceContext {
            external_id: external_id(m.get("external_id"))?,
            metadata: metadata(m.get("metadata"))?,
            webhook_url: webhook_url(m.get("webhook_url"))?,
            success_url: success_url(m.get("success_url"))?,
            ..InvoiceContext::default()
        })
    }

    /// Fields that only a caller with the invoice key may set: browsers
    /// call create-invoice, and a page must not point an invoice's events
    /// at a URL of its choosing.
    pub fn needs_invoice_key(&self) -> bool {
        self.webhook_url.is_some()
    }

    pub fn is_empty(&self) -> bool {
        *self == InvoiceContext::default()
    }

    /// Adds the fields to an answer or an event's `data`.
    pub fn extend(&self, v: &mut Value) {
        if let Some(e) = &self.external_id {
            v["external_id"] = Value::from(e.clone());
        }
        if let Some(m) = &self.metadata {
            v["metadata"] = Value::Object(m.clone());
        }
        if let Some(u) = &self.webhook_url {
            v["webhook_url"] = Value::from(u.clone());
        }
        if let Some(a) = &self.lightning_address {
            v["lightning_address"] = Value::from(a.clone());
        }
        if let Some(c) = &self.comment {
            v["comment"] = Value::from(c.clone());
        }
        if let Some(u) = &self.success_url {
            v["success_url"] = Value::from(u.clone());
        }
        if let Some(z) = &self.zap_request {
            v["zap_request"] = Value::from(z.clone());
        }
    }
}

fn external_id(v: Option<&Value>) -> Result<Option<String>, ApiError> {
    let bad = |m: &str| ApiError::invalid_field("external_id", m);
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(bad("must not be empty")),
        Some(Value::String(s)) if s.chars().count() > MAX_EXTERNAL_ID_CHARS => Err(bad(&format!(
            "is longer than {MAX_EXTERNAL_ID_CHARS} characters"
        ))),
        Some(Value::String(s)) if has_control_chars(s, false) => {
            Err(bad("must not contain control characters"))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad("must be a string")),
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn metadata(v: Option<&Value>) -> Result<Option<Map<String, Value>>, ApiError> {
    let bad = |m: String| ApiError::invalid_field("metadata", m);
    let m = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad("must be a JSON object".into())),
    };
    let whole = Value::Object(m.clone());
    if depth(&whole) > MAX_METADATA_DEPTH {
        return Err(bad(format!(
            "is nested deeper than {MAX_METADATA_DEPTH} levels"
        )));
    }
    let size = whole.to_string().len();
    if size > MAX_METADATA_BYTES {
        return Err(bad(format!(
            "is {size} bytes as JSON; at most {MAX_METADATA_BYTES}"
        )));
    }
    Ok(Some(m.clone()))
}

fn webhook_url(v: Option<&Value>) -> Result<Option<String>, ApiError> {
    let bad = |m: &str| ApiError::invalid_field("webhook_url", m);
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() || s.len() > MAX_WEBHOOK_URL_CHARS => Err(bad(
            &format!("must be a URL of 1 to {MAX_WEBHOOK_URL_CHARS} characters"),
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad("must be a string")),
    }
}

fn success_url(v: Option<&Value>) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid_field("success_url", "must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<InvoiceContext, String> {
        let m = v.as_object().cloned().unwrap_or_default();
        InvoiceContext::parse(&m).map_err(|e| e.code().to_string())
    }

    #[test]
    fn bad_fields_get_their_own_codes() {
        let nested = json!({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}});
        let cases = [
            (json!({"external_id": ""}), "invalid_external_id"),
            (
                json!({"external_id": "x".repeat(256)}),
                "invalid_external_id",
            ),
            (json!({"external_id": "a\u{7}b"}), "invalid_external_id"),
            (json!({"external_id": 7}), "invalid_external_id"),
            (json!({"metadata": [1]}), "invalid_metadata"),
            (json!({"metadata": "x"}), "invalid_metadata"),
            (
                json!({"metadata": {"k": "x".repeat(2100)}}),
                "invalid_metadata",
            ),
            (json!({"metadata": nested}), "invalid_metadata"),
            (json!({"webhook_url": 1}), "invalid_webhook_url"),
            (json!({"webhook_url": ""}), "invalid_webhook_url"),
        ];
        for (body, code) in cases {
            assert_eq!(parse(body.clone()), Err(code.to_string()), "{body}");
        }
    }

    #[test]
    fn good_fields_are_kept_and_echoed() {
        let c = parse(json!({
            "external_id": "order-7 é",
            "metadata": {"cart": [{"sku": "tea", "qty": 2}], "note": null},
            "webhook_url": "https://shop.example/hooks"
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.needs_invoice_key());
        let mut v = json!({});
        c.extend(&mut v);
        assert_eq!(v["external_id"], "order-7 é");
        assert_eq!(v["metadata"]["cart"][0]["qty"], 2);
        let none = parse(json!({"amount": 1})).unwrap_or_else(|e| panic!("{e}"));
        assert!(none.is_empty() && !none.needs_invoice_key());
    }
}
