//! Property tests for the `webhook-signature` header format (Standard
//! Webhooks), through the public API of `payout::webhook` only, so they live
//! apart from that module: `v1,<base64 of a 32-byte HMAC-SHA256>` per secret,
//! space-separated, in the secrets' order, each one the HMAC of
//! `{webhook-id}.{webhook-timestamp}.{body}` under the decoded `whsec_` key.

use lightning_fallback_gateway as gateway;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha256;

use gateway::payout::webhook::{
    signature_header, WebhookSecret, MAX_SECRET_BYTES, MIN_SECRET_BYTES, SECRET_PREFIX,
};

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), MIN_SECRET_BYTES..=MAX_SECRET_BYTES)
}

fn secret(key: &[u8]) -> WebhookSecret {
    WebhookSecret::parse(&format!("{SECRET_PREFIX}{}", B64.encode(key)))
        .unwrap_or_else(|e| panic!("{e:?}"))
}

/// An independent HMAC of the signed content.
fn expected(key: &[u8], id: &str, ts: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|e| panic!("{e}"));
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

fn is_token(t: &str) -> bool {
    t.strip_prefix("v1,").is_some_and(|sig| {
        sig.len() == 44 && sig.ends_with('=') && B64.decode(sig).is_ok_and(|raw| raw.len() == 32)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn one_v1_token_per_secret_in_order(
        keys in prop::collection::vec(key(), 1..4),
        id in "\\PC{0,60}",
        ts in any::<u64>(),
        body in "\\PC{0,300}",
    ) {
        let secrets: Vec<WebhookSecret> = keys.iter().map(|k| secret(k)).collect();
        let header = signature_header(&secrets, &id, ts, &body);
        prop_assert!(header.is_ascii() && !header.contains("  ") && header.trim() == header);
        let tokens: Vec<&str> = header.split(' ').collect();
        prop_assert_eq!(tokens.len(), keys.len());
        for (t, k) in tokens.iter().zip(&keys) {
            prop_assert!(is_token(t), "{t}");
            prop_assert_eq!(*t, expected(k, &id, ts, &body));
        }
    }

    /// Id, timestamp and body are all signed: changing any one changes every token.
    #[test]
    fn every_signed_part_counts(
        k in key(),
        id in "evt_[a-z0-9_]{1,40}",
        ts in 1u64..u64::MAX,
        body in "\\PC{0,200}",
        extra in "\\PC{1,5}",
    ) {
        let s = [secret(&k)];
        let h = signature_header(&s, &id, ts, &body);
        prop_assert_ne!(&h, &signature_header(&s, &format!("{id}{extra}"), ts, &body));
        prop_assert_ne!(&h, &signature_header(&s, &id, ts - 1, &body));
        prop_assert_ne!(&h, &signature_header(&s, &id, ts, &format!("{body}{extra}")));
        // The parts are joined with dots, so moving one between id and body shows too.
        prop_assert_ne!(&h, &signature_header(&s, &format!("{id}.{ts}"), ts, &body));
    }

    /// Secrets: exactly `whsec_` + standard base64 of 24 to 64 bytes (spaces
    /// around allowed); anything else is refused, never a panic.
    #[test]
    fn secrets_are_whsec_base64(raw in prop_oneof![
        "\\PC{0,120}",
        "whsec_[A-Za-z0-9+/=]{0,100}",
        key().prop_map(|k| format!(" {SECRET_PREFIX}{} ", B64.encode(k))),
        prop::collection::vec(any::<u8>(), 0..100).prop_map(|k| format!("{SECRET_PREFIX}{}", B64.encode(k))),
    ]) {
        let decoded = raw
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .and_then(|b| B64.decode(b).ok())
            .filter(|k| (MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&k.len()));
        match (WebhookSecret::parse(&raw), decoded) {
            (Ok(s), Some(k)) => prop_assert_eq!(s, secret(&k)),
            (Err(_), None) => {}
            (got, want) => prop_assert!(false, "parse gave {got:?}, expected a key: {}", want.is_some()),
        }
    }
}
