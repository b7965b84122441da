//! `Idempotency-Key` on create-invoice (with the invoice key): the same
//! key and body give back the same invoice, so a shop that retries an
//! order never holds two payable invoices for it. The key is taken before
//! the invoice is made and answered when it is stored; a request that
//! died in between frees its key after [`LEASE_MS`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Keys are kept this long (at least the 24 hours promised).
pub const KEEP_MS: u64 = 48 * 3_600_000;
/// A key taken by a request that never finished is free again after this:
/// longer than a create-invoice request may run (the chain's total deadline,
/// at most 120 s, plus the watch calls, each at most 10 s).
pub const LEASE_MS: u64 = 300_000;

/// SHA-256 of the body's meaning: the JSON value, keys in sorted order, so
/// spacing and key order do not matter. Bodies that are not JSON hash as bytes.
pub fn fingerprint(body: &[u8]) -> String {
    let canonical = match crate::api::body::from_bytes::<Value>(body) {
        Ok(v) => v.to_string(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    backends::sha256::hex_digest(canonical.as_bytes())
}

/// A key as the watch keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub fingerprint: String,
    pub taken_at_ms: u64,
    /// The 201 body, once the invoice is stored.
    pub answer: Option<Value>,
}

/// What a new request with a key may do.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// The key is this request's now: make the invoice.
    Proceed,
    /// The invoice made for this key and body.
    Replay(Value),
    /// The key was used with another body.
    Conflict,
    /// Another request with this key is making the invoice.
    InProgress,
}

/// Decides on a request with `fingerprint` at `now_ms`, given what the key
/// holds; the record to store when it proceeds.
pub fn begin(
    existing: Option<&KeyRecord>,
    fingerprint: &str,
    now_ms: u64,
) -> (Begin, Option<KeyRecord>) {
    let take = || {
        Some(KeyRecord {
            fingerprint: fingerprint.to_string(),
            taken_at_ms: now_ms,
            answer: None,
        })
    };
    match existing {
        Some(r) if r.taken_at_ms + KEEP_MS <= now_ms => (Begin::Proceed, take()),
        Some(r) if r.fingerprint != fingerprint => (Begin::Conflict, None),
        Some(KeyRecord {
            answer: Some(a), ..
        }) => (Begin::Replay(a.clone()), None),
        Some(r) if r.taken_at_ms + LEASE_MS > now_ms => (Begin::InProgress, None),
        _ => (Begin::Proceed, take()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Fingerprints are stored with each key: pinned, so a change of
    /// canonical form or hashing fails here and not as false conflicts.
    #[test]
    fn the_fingerprint_is_pinned() {
        assert_eq!(
            fingerprint(br#"{"description": "x", "amount": 5}"#),
            "9c48a292ac23b82e55d059b3a24eef05b4aa5adb2032c26b8717ac1559f7a526"
        );
    }

    #[test]
    fn same_key_same_body_replays_and_another_body_conflicts() {
        let f = fingerprint(br#"{"amount": 5, "description": "x"}"#);
        assert_eq!(f, fingerprint(br#"{"description":"x","amount":5}"#));
        assert_ne!(f, fingerprint(br#"{"amount":6,"description":"x"}"#));
        let (b, rec) = begin(None, &f, 1_000);
        assert_eq!(b, Begin::Proceed);
        let mut rec = rec.unwrap_or_else(|| panic!("a record"));
        assert_eq!(begin(Some(&rec), &f, 2_000).0, Begin::InProgress);
        assert_eq!(begin(Some(&rec), "other", 2_000).0, Begin::Conflict);
        // A request that died frees the key after the lease.
        assert_eq!(begin(Some(&rec), &f, 1_000 + LEASE_MS).0, Begin::Proceed);
        rec.answer = Some(json!({"payment_hash": "ab"}));
        assert_eq!(
            begin(Some(&rec), &f, 1_000 + LEASE_MS).0,
            Begin::Replay(json!({"payment_hash": "ab"}))
        );
        assert_eq!(begin(Some(&rec), "other", 5_000).0, Begin::Conflict);
        assert_eq!(
            begin(Some(&rec), "other", 1_000 + KEEP_MS).0,
            Begin::Proceed
        );
    }
}
