//! Request bodies of the JSON routes: one JSON object with no repeated keys,
//! and text fields free of control characters.

use std::fmt;

use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::api::error::ApiError;

/// A JSON object whose keys are all different. `serde_json` keeps the last of
/// repeated keys, while other parsers (a proxy, a WAF, the client's own
/// signing code) may keep the first: a request that means two things is refused.
struct UniqueKeys(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = UniqueKeys;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueKeys, A::Error> {
                let mut m = Map::new();
                while let Some(key) = access.next_key::<String>()? {
                    if m.contains_key(&key) {
                        let shown: String = key.chars().take(64).collect();
                        return Err(de::Error::custom(format!("duplicate key {shown:?}")));
                    }
                    let value: Value = access.next_value()?;
                    m.insert(key, value);
                }
                Ok(UniqueKeys(m))
            }
        }
        d.deserialize_map(ObjectVisitor)
    }
}

/// JSON from bytes, read as text first. Every JSON read of this project
/// goes through `serde_json::from_str` (or this): `from_slice` would be a
/// second copy of serde_json's parser, and of every type's reader, in the
/// wasm. Bytes that are not UTF-8 are refused as JSON would refuse them.
pub fn from_bytes<T: DeserializeOwned>(body: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(e) => Err(de::Error::custom(format_args!(
            "not UTF-8 at byte {}",
            e.valid_up_to()
        ))),
    }
}

/// Parses a request body that must be one JSON object with no repeated keys
/// (`invalid_json` otherwise).
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    from_bytes::<UniqueKeys>(body).map(|o| o.0).map_err(|e| {
        if e.is_data() && e.to_string().starts_with("invalid type") {
            ApiError::InvalidJson("expected a JSON object".into())
        } else {
            ApiError::InvalidJson(e.to_string())
        }
    })
}

/// Control characters (C0, DEL, C1) in `s`, other than the tab, line feed and
/// carriage return that `allow_line_breaks` lets through. Text fields reach
/// providers, recipients' servers, logs and webhooks: a NUL, for one, is
/// refused by PostgreSQL-backed wallets, and terminal escapes spoof logs.
pub fn has_control_chars(s: &str, allow_line_breaks: bool) -> bool {
    s.chars()
        .any(|c| c.is_control() && !(allow_line_breaks && matches!(c, '\t' | '\n' | '\r')))
}

/// A JSON number as a whole number: `559` and `559.0` alike (JSON Schema's
/// `integer` allows both), up to 2^53, where doubles stop being exact.
pub fn whole_u64(n: &serde_json::Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= 9_007_199_254_740_992.0)
            .map(|f| f as u64)
    })
}

/// Adds one chunk of a request body to `buf`, or refuses the body once it
/// would pass `max` bytes (nothing more of it is read).
pub fn append_capped(buf: &mut Vec<u8>, chunk: &[u8], max: usize) -> Result<(), ApiError> {
    if buf.len().saturating_add(chunk.len()) > max {
        return Err(ApiError::PayloadTooLarge { max_bytes: max });
    }
    buf.extend_from_slice(chunk);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &[u8]) -> Result<usize, String> {
        parse_object(body).map(|m| m.len()).map_err(|e| e.message())
    }

    #[test]
    fn a_body_is_cut_at_the_cap() {
        let mut buf = Vec::new();
        assert!(append_capped(&mut buf, &[1; 10], 16).is_ok());
        assert!(append_capped(&mut buf, &[2; 6], 16).is_ok());
        assert_eq!(
            append_capped(&mut buf, &[3], 16),
            Err(ApiError::PayloadTooLarge { max_bytes: 16 })
        );
        assert_eq!(buf.len(), 16, "the refused chunk is not kept");
    }

    #[test]
    fn one_object_with_unique_keys() {
        assert_eq!(code(br#"{"a": 1, "b": {"a": 1, "a": 2}}"#), Ok(2));
        assert_eq!(code(b"{}"), Ok(0));
        let dup = code(br#"{"amount": 1, "amount": 1000}"#);
        assert!(
            matches!(&dup, Err(m) if m.contains("duplicate key \"amount\"")),
            "{dup:?}"
        );
        for not_object in [&b"[]"[..], b"null", b"1", b"\"s\"", b"true"] {
            assert_eq!(
                code(not_object),
                Err("request body is not valid JSON: expected a JSON object".into())
            );
        }
        for broken in [
            &b""[..],
            b"{",
            b"{}{}",
            b"{\"a\":1} x",
            b"{\"\\ud800\": 1}",
            b"{\"a\":\"\xc0\xaf\"}",
            b"{\"a\": 1e400}",
        ] {
            assert!(code(broken).is_err(), "{broken:?}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(code(deep.as_bytes()).is_err());
        let long_key = format!("{{\"{0}\":1,\"{0}\":2}}", "k".repeat(10_000));
        let e = code(long_key.as_bytes()).err().unwrap_or_default();
        assert!(
            e.len() < 200,
            "the message quotes at most 64 characters of a key: {e}"
        );
    }

    #[test]
    fn control_characters() {
        assert!(!has_control_chars(
            "plain text, émoji ⚡, RTL \u{202e}",
            false
        ));
        assert!(!has_control_chars("two\nlines\ttab\r", true));
        assert!(has_control_chars("two\nlines", false));
        for c in ['\0', '\u{7}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}'] {
            assert!(has_control_chars(&format!("a{c}b"), true), "{c:?}");
        }
    }
}
