//! Zaps (NIP-57) for every served address, when `NOSTR_ZAP_SECRET` is set:
//! the zap request (kind 9734) a payer's client sends to the callback is
//! checked, the invoice commits to it, and once the watch sees the invoice
//! paid, a zap receipt (kind 9735) signed with the deployment's key goes to
//! the relays the request names. Those relays are named by anonymous
//! callers, so they get the outbound URL rules: `wss` on public hosts, at
//! most [`MAX_RELAYS`].

use serde_json::Value;

use crate::payout::safe_url::UrlPolicy;
use crate::receive::address::lnurl::LnurlError;
use crate::receive::context::InvoiceContext;
use backends::nwc::crypto::Keys;

pub use crate::receive::address::zap_key::ZapSecret;
use backends::nwc::event::Event;
use backends::InvoiceParams;

pub const KIND_ZAP_REQUEST: u32 = 9734;
pub const KIND_ZAP_RECEIPT: u32 = 9735;
/// Relays a receipt goes to, at most.
pub const MAX_RELAYS: usize = 5;
/// The zap request as sent in the callback's `nostr` parameter.
pub const MAX_REQUEST_BYTES: usize = 8192;
/// Publish attempts per relay before the receipt is given up there.
pub const MAX_PUBLISH_ATTEMPTS: u32 = 5;

/// A zap request that passed every check, kept as sent: the invoice's
/// description hash and the receipt's `description` are over these bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ZapRequest {
    pub raw: String,
    pub event: Event,
    pub relays: Vec<String>,
}

fn bad(m: impl Into<String>) -> LnurlError {
    LnurlError::InvalidZapRequest(m.into())
}

/// 64 lower-case hex digits, as NIP-01 writes keys and ids.
fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn tags<'a>(e: &'a Event, name: &'a str) -> impl Iterator<Item = &'a Vec<String>> + 'a {
    e.tags
        .iter()
        .filter(move |t| t.first().map(String::as_str) == Some(name))
}

/// A relay an anonymous caller named: `wss://` on a public host (plain
/// `ws://` only for a host allowed for local development).
pub fn check_relay(url: &str, policy: &UrlPolicy) -> Result<(), String> {
    let as_http = if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        return Err(format!("relay {url:?} is not a wss:// URL"));
    };
    policy
        .check(&as_http)
        .map(|_| ())
        .map_err(|e| format!("relay {url:?} is refused: {e}"))
}

/// Checks a zap request (NIP-57 appendix D) for a callback asking
/// `amount_msat`.
pub fn check_request(
    raw: &str,
    amount_msat: u64,
    policy: &UrlPolicy,
) -> Result<ZapRequest, LnurlError> {
    if raw.len() > MAX_REQUEST_BYTES {
        return Err(bad(format!(
            "The zap request is larger than {MAX_REQUEST_BYTES} bytes."
        )));
    }
    let v: Value = serde_json::from_str(raw).map_err(|_| bad("The zap request is not JSON."))?;
    let event = Event::from_json(&v).ok_or_else(|| bad("The zap request is not a Nostr event."))?;
    if event.kind != KIND_ZAP_REQUEST {
        return Err(bad(format!(
            "The zap request must be of kind {KIND_ZAP_REQUEST}."
        )));
    }
    if !event.is_authentic() {
        return Err(bad("The zap request's id or signature is invalid."));
    }
    let p: Vec<_> = tags(&event, "p").collect();
    if p.len() != 1 || !p[0].get(1).is_some_and(|k| is_hex64(k)) {
        return Err(bad(
            "The zap request must have exactly one p tag with a public key.",
        ));
    }
    let e: Vec<_> = tags(&event, "e").collect();
    if e.len() > 1 || e.iter().any(|t| !t.get(1).is_some_and(|id| is_hex64(id))) {
        return Err(bad("The zap request may have one e tag with an event id."));
    }
    if tags(&event, "P").count() > 1 || tags(&event, "a").count() > 1 {
        return Err(bad("The zap request may have one P tag and one a tag."));
    }
    if tags(&event, "amount").count() > 1 {
        return Err(bad("The zap request may have one amount tag."));
    }
    if let Some(a) = event.tag("amount") {
        if a.parse::<u64>().ok() != Some(amount_msat) {
            return Err(bad(format!(
                "The zap request's amount ({a} msat) is not the amount asked for ({amount_msat} msat)."
            )));
        }
    }
    let relays: Vec<String> = tags(&event, "relays")
        .flat_map(|t| t.iter().skip(1).cloned())
        .collect();
    if relays.is_empty() {
        return Err(bad("The zap request names no relays."));
    }
    if relays.len() > MAX_RELAYS {
        return Err(LnurlError::ZapRelayRefused(format!(
            "The zap request names {} relays; at most {MAX_RELAYS}.",
            relays.len()
        )));
    }
    for r in &relays {
        check_relay(r, policy).map_err(LnurlError::ZapRelayRefused)?;
    }
    Ok(ZapRequest {
        raw: raw.to_string(),
        event,
        relays,
    })
}

/// What the payRequest adds for zaps: `allowsNostr` and the key that signs
/// the receipts.
pub fn advertise(pay_request: &mut Value, keys: &Keys) {
    pay_request["allowsNostr"] = Value::Bool(true);
    pay_request["nostrPubkey"] = Value::from(keys.public_hex.clone());
}

/// A callback that carries a zap request: checked against the amount
/// asked, the invoice commits to it instead of the metadata, and it is kept
/// with the invoice for its receipt.
pub fn apply(
    raw: &str,
    params: &mut InvoiceParams,
    context: &mut InvoiceContext,
    policy: &UrlPolicy,
) -> Result<(), LnurlError> {
    let z = check_request(raw, params.amount_sat * 1000, policy)?;
    params.description_hash = Some(description_hash(&z.raw));
    context.zap_request = Some(z.raw);
    Ok(())
}

/// The invoice's description hash: SHA-256 of the zap request as sent.
pub fn description_hash(raw: &str) -> String {
    backends::sha256::hex_digest(raw.as_bytes())
}

/// The zap receipt of a paid invoice (NIP-57 appendix E), dated at the
/// settlement and signed deterministically: every retry publishes the
/// same event, which relays deduplicate by id.
pub fn receipt(
    keys: &Keys,
    zap_request_raw: &str,
    bolt11: &str,
    preimage: Option<&str>,
    paid_at_secs: u64,
) -> Option<Event> {
    let zap = Event::from_json(&serde_json::from_str(zap_request_raw).ok()?)?;
    let mut tags: Vec<Vec<String>> = Vec::new();
    for name in ["p", "e", "a"] {
        if let Some(v) = zap.tag(name) {
            tags.push(vec![name.into(), v.into()]);
        }
    }
    tags.push(vec!["P".into(), zap.pubkey.clone()]);
    tags.push(vec!["bolt11".into(), bolt11.into()]);
    tags.push(vec!["description".into(), zap_request_raw.into()]);
    if let Some(p) = preimage {
        tags.push(vec!["preimage".into(), p.into()]);
    }
    let aux = backends::sha256::digest(format!("{zap_request_raw}|{bolt11}").as_bytes());
    Some(Event::signed(
        keys,
        paid_at_secs,
        KIND_ZAP_RECEIPT,
        tags,
        String::new(),
        &aux,
    ))
}

/// The relays a stored zap request names (already checked at the callback).
pub fn relays_of(zap_request_raw: &str) -> Vec<String> {
    serde_json::from_str::<Value>(zap_request_raw)
        .ok()
        .as_ref()
        .and_then(Event::from_json)
        .map(|e| {
            tags(&e, "relays")
                .flat_map(|t| t.iter().skip(1).cloned())
                .take(MAX_RELAYS)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SENDER: &str = "0000000000000000000000000000000000000000000000000000000000000003";
    const SERVER: &str = "0000000000000000000000000000000000000000000000000000000000000007";

    fn policy() -> UrlPolicy {
        UrlPolicy::default()
    }

    fn zap_request(tags: Value, kind: u32) -> String {
        let keys = Keys::from_secret_hex(SENDER).unwrap();
        let tags: Vec<Vec<String>> = serde_json::from_value(tags).unwrap();
        Event::signed(&keys, 1_700_000_000, kind, tags, "great".into(), &[1; 32])
            .to_json()
            .to_string()
    }

    fn good_tags() -> Value {
        json!([
            ["p", "ab".repeat(32)],
            ["amount", "21000"],
            ["relays", "wss://relay.example.com", "wss://nos.example.org"]
        ])
    }

    #[test]
    fn a_signed_zap_request_for_the_amount_is_accepted() {
        let raw = zap_request(good_tags(), KIND_ZAP_REQUEST);
        let z = check_request(&raw, 21_000, &policy()).unwrap();
        assert_eq!(z.relays.len(), 2);
        // NIP-57: SHA-256 of the zap request exactly as sent, checked
        // against an independent implementation.
        assert_eq!(
            description_hash(&raw),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw.as_bytes()))
        );
    }

    #[test]
    fn forged_wrong_or_hostile_zap_requests_are_refused_with_their_code() {
        let ok = zap_request(good_tags(), KIND_ZAP_REQUEST);
        let forged = ok.replace("great", "grEat");
        let with_relays = |list: &[&str]| {
            let mut t = vec![json!(["p", "ab".repeat(32)])];
            let mut r = vec![json!("relays")];
            r.extend(list.iter().map(|s| json!(s)));
            t.push(Value::Array(r));
            zap_request(Value::Array(t), KIND_ZAP_REQUEST)
        };
        let cases: Vec<(String, u64, &str)> = vec![
            (ok.clone(), 22_000, "invalid_zap_request"),
            (forged, 21_000, "invalid_zap_request"),
            (zap_request(good_tags(), 1), 21_000, "invalid_zap_request"),
            ("{".into(), 21_000, "invalid_zap_request"),
            ("{}".into(), 21_000, "invalid_zap_request"),
            ("x".repeat(9000), 21_000, "invalid_zap_request"),
            (
                zap_request(
                    json!([["relays", "wss://relay.example.com"]]),
                    KIND_ZAP_REQUEST,
                ),
                21_000,
                "invalid_zap_request",
            ),
            (
                zap_request(
                    json!([
                        ["p", "ab".repeat(32)],
                        ["p", "cd".repeat(32)],
                        ["relays", "wss://relay.example.com"]
                    ]),
                    KIND_ZAP_REQUEST,
                ),
                21_000,
                "invalid_zap_request",
            ),
            (with_relays(&[]), 21_000, "invalid_zap_request"),
            (
                with_relays(&["ws://relay.example.com"]),
                21_000,
                "zap_relay_not_allowed",
            ),
            (
                with_relays(&["wss://127.0.0.1"]),
                21_000,
                "zap_relay_not_allowed",
            ),
            (
                with_relays(&["wss://localhost"]),
                21_000,
                "zap_relay_not_allowed",
            ),
            (
                with_relays(&["wss://10.0.0.1:7000"]),
                21_000,
                "zap_relay_not_allowed",
            ),
            (
                with_relays(&["https://relay.example.com"]),
                21_000,
                "zap_relay_not_allowed",
            ),
            (
                with_relays(&[
                    "wss://a.example.com",
                    "wss://b.example.com",
                    "wss://c.example.com",
                    "wss://d.example.com",
                    "wss://e.example.com",
                    "wss://f.example.com",
                ]),
                21_000,
                "zap_relay_not_allowed",
            ),
        ];
        for (raw, amount, want) in cases {
            let got = check_request(&raw, amount, &policy())
                .map(|_| "ok")
                .unwrap_or_else(|e| e.code());
            assert_eq!(got, want, "{}", &raw[..raw.len().min(200)]);
        }
    }

    #[test]
    fn the_receipt_is_signed_by_the_server_and_carries_the_request() {
        let raw = zap_request(good_tags(), KIND_ZAP_REQUEST);
        let keys = Keys::from_secret_hex(SERVER).unwrap();
        let r = receipt(&keys, &raw, "lnbc1x", Some("00ff"), 1_700_000_100).unwrap();
        assert!(r.is_authentic());
        assert_eq!(r.kind, KIND_ZAP_RECEIPT);
        assert_eq!(r.pubkey, keys.public_hex);
        assert_eq!(r.created_at, 1_700_000_100);
        assert_eq!(r.tag("p"), Some("ab".repeat(32).as_str()));
        assert_eq!(r.tag("description"), Some(raw.as_str()));
        assert_eq!(r.tag("bolt11"), Some("lnbc1x"));
        assert_eq!(r.tag("preimage"), Some("00ff"));
        // The same receipt on every retry.
        assert_eq!(
            receipt(&keys, &raw, "lnbc1x", Some("00ff"), 1_700_000_100),
            Some(r)
        );
        assert_eq!(relays_of(&raw).len(), 2);
    }
}
