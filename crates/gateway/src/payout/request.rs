//! Validation of `POST /api/payouts` and its idempotency.

use serde_json::{json, Map, Value};

use crate::api::body::{has_control_chars, parse_object};
use crate::api::error::ApiError;

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
        backends::sha256::hex_digest(canon.to_string().as_bytes())
    }
}

/// The payout id that an idempotency key maps to: retried calls into the
/// queue insert-or-ignore on it.
pub fn payout_id(idempotency_key: &str) -> String {
    let h = backends::sha256::hex_digest(format!("payout:{idempotency_key}").as_bytes());
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
    allow_line_breaks: bool,
) -> Result<Option<String>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > max => Err(ApiError::invalid_field(
            field,
            format!("is longer than {max} characters"),
        )),
        Some(Value::String(s)) if has_control_chars(s, allow_line_breaks) => {
            Err(ApiError::invalid_field(
                field,
                if allow_line_breaks {
                    "must not contain control characters (other than tab and line breaks)"
                } else {
                    "must not contain control characters"
                },
            ))
        }
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(ApiError::invalid_field(field, "must be a string")),
    }
}

pub fn parse(body: &[u8]) -> Result<PayoutRequest, ApiError> {
    let m = parse_object(body)?;
    let destination = match m.get("destination") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ApiError::invalid_field("destination", "is required"))
        }
        Some(_) => return Err(ApiError::invalid_field("destination", "must be a string")),
    };
    let amount_sat = match m.get("amount_sat") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match crate::api::body::whole_u64(n) {
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
        comment: opt_string(&m, "comment", MAX_COMMENT_CHARS, true)?,
        webhook_url: opt_string(&m, "webhook_url", 2048, false)?,
        external_id: opt_string(&m, "external_id", MAX_EXTERNAL_ID_CHARS, false)?,
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
        assert_eq!(
            code(r#"{"destination":"nobody","destination":"a@b.com","amount_sat":10}"#),
            "invalid_json"
        );
        for (field, value, want) in [
            ("comment", r"hi\u0000there", "invalid_comment"),
            ("comment", r"\u001b]0;x\u0007", "invalid_comment"),
            (
                "webhook_url",
                r"https://example.com/\u0000",
                "invalid_webhook_url",
            ),
            ("external_id", r"order\u000042", "invalid_external_id"),
            ("external_id", r"order\n42", "invalid_external_id"),
            ("comment", r"thanks!\nsee you \u202e ⚡", "ok"),
        ] {
            assert_eq!(
                code(&format!(
                    r#"{{"destination":"a@b.com","amount_sat":1,"{field}":"{value}"}}"#
                )),
                want,
                "{field}: {value}"
            );
        }
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
        // Both are stored (the payout's id, its request's fingerprint): pinned,
        // so a change of hashing code cannot change them unnoticed.
        assert_eq!(payout_id("order-42"), "po_d840d174044326bac819bada");
        assert_eq!(
            a.fingerprint(),
            "6bff2afdc3f086ae8d8e7edf8134afe944d81f650e44d6d21fe0a7de46f7be81"
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Values of every JSON type, some valid for a field and most not.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "\\PC{0,40}".prop_map(Value::from),
            "[ \t\n\u{0}\u{1b}\u{7f}\u{85}a-z@.]{0,20}".prop_map(Value::from),
            (2000usize..2100).prop_map(|n| Value::from("c".repeat(n))),
            Just(Value::from("alice@example.com")),
            Just(Value::from("   ")),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The rules, written again independently: the code the first wrong field gets.
    fn oracle(m: &Map<String, Value>) -> Result<(), &'static str> {
        match m.get("destination") {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            _ => return Err("invalid_destination"),
        }
        match m.get("amount_sat") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n))
                if n.as_u64().is_some_and(|a| a > 0)
                    || n.as_f64()
                        .is_some_and(|f| f >= 1.0 && f.fract() == 0.0 && f <= 2f64.powi(53)) => {}
            _ => return Err("invalid_amount"),
        }
        for (field, max, breaks, code) in [
            ("comment", MAX_COMMENT_CHARS, true, "invalid_comment"),
            ("webhook_url", 2048, false, "invalid_webhook_url"),
            (
                "external_id",
                MAX_EXTERNAL_ID_CHARS,
                false,
                "invalid_external_id",
            ),
        ] {
            match m.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => {
                    let bad_char = s
                        .chars()
                        .any(|c| c.is_control() && !(breaks && matches!(c, '\t' | '\n' | '\r')));
                    if s.chars().count() > max || bad_char {
                        return Err(code);
                    }
                }
                Some(_) => return Err(code),
            }
        }
        Ok(())
    }

    fn field() -> impl Strategy<Value = Option<Value>> {
        prop::option::weighted(0.7, value())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn never_panics_on_any_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Err(e) = parse(&body) {
                prop_assert!(e.status() == 400, "{e:?}");
            }
        }

        #[test]
        fn never_panics_on_any_json(v in value()) {
            let _ = parse(v.to_string().as_bytes());
        }

        #[test]
        fn each_field_is_checked_by_the_rules(
            destination in prop_oneof![field(), Just(Some(Value::from("bob@example.com")))],
            amount_sat in prop_oneof![field(), (1u64..1_000_000).prop_map(|a| Some(Value::from(a)))],
            comment in field(),
            webhook_url in field(),
            external_id in field(),
            other in prop::option::of(value()),
        ) {
            let mut m = Map::new();
            for (k, v) in [
                ("destination", destination),
                ("amount_sat", amount_sat),
                ("comment", comment),
                ("webhook_url", webhook_url),
                ("external_id", external_id),
                ("unknown_field", other),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            let got = parse(Value::Object(m.clone()).to_string().as_bytes());
            match (oracle(&m), &got) {
                (Ok(()), Ok(r)) => {
                    prop_assert_eq!(Some(r.destination.as_str()), m["destination"].as_str().map(str::trim));
                    prop_assert_eq!(r.amount_sat, m.get("amount_sat").and_then(Value::as_u64));
                }
                (Err(code), Err(e)) => prop_assert_eq!(code, e.code()),
                (want, got) => prop_assert!(false, "rules say {want:?}, parse says {got:?}"),
            }
        }

        /// The same request, whatever the key order, spacing or padding of
        /// its strings, has the same fingerprint; a different amount does not.
        #[test]
        fn the_fingerprint_follows_the_meaning(
            destination in "[a-z]{1,10}@[a-z]{1,10}\\.com",
            amount in 1u64..1_000_000,
            comment in prop::option::of("[a-z ]{1,20}"),
            pad in prop::sample::select(vec!["", " ", "\n\t"]),
        ) {
            let a = json!({"destination": destination, "amount_sat": amount, "comment": comment});
            let quoted = |v: &Option<String>| serde_json::to_string(v).unwrap_or_default();
            let b = format!(
                "{pad}{{ \"comment\" : {}, \"amount_sat\":{amount},{pad}\"destination\": {} }}",
                quoted(&comment.as_ref().map(|c| format!("{pad}{c}"))),
                quoted(&Some(format!("{pad}{destination}{pad}"))),
            );
            let c = json!({"destination": destination, "amount_sat": amount + 1, "comment": comment});
            let fa = parse(a.to_string().as_bytes()).map(|r| r.fingerprint());
            let fb = parse(b.as_bytes()).map(|r| r.fingerprint());
            let fc = parse(c.to_string().as_bytes()).map(|r| r.fingerprint());
            prop_assert!(fa.is_ok(), "{fa:?}");
            prop_assert_eq!(&fa, &fb, "{}", b);
            prop_assert_ne!(&fa, &fc);
        }

        #[test]
        fn idempotency_keys_are_1_to_255_visible_ascii(raw in prop_oneof![
            "\\PC{0,300}",
            "[!-~]{0,300}",
            "[ \t]{0,3}[!-~]{1,260}[ \t]{0,3}",
        ]) {
            let k = raw.trim();
            let valid = !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (0x21..=0x7e).contains(&b));
            match parse_idempotency_key(Some(&raw)) {
                Ok(key) => {
                    prop_assert!(valid);
                    prop_assert_eq!(key.as_str(), k);
                }
                Err(e) if k.is_empty() => prop_assert_eq!(e.code(), "missing_idempotency_key"),
                Err(e) => {
                    prop_assert!(!valid);
                    prop_assert_eq!(e.code(), "invalid_idempotency_key");
                }
            }
        }
    }
}
