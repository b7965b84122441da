//! Nostr events (NIP-01) as NIP-47 uses them: the wallet's info event
//! (kind 13194), the client's request (23194) and the wallet's response
//! (23195). Building, signing and checking them is pure; the relay
//! conversation is in `exchange`.

use serde_json::{json, Value};

use super::crypto::{self, nip04, nip44, CryptoError, Keys};

pub const KIND_INFO: u32 = 13194;
pub const KIND_REQUEST: u32 = 23194;
pub const KIND_RESPONSE: u32 = 23195;

/// A Nostr event. Read and written through `serde_json::Value` by hand
/// (not derived): the derives cost the Worker several KB of wasm.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub pubkey: String,
    pub created_at: u64,
    pub kind: u32,
    pub tags: Vec<Vec<String>>,
    pub content: String,
    pub sig: String,
}

/// The NIP-01 id: SHA-256 of `[0, pubkey, created_at, kind, tags, content]`
/// serialised without whitespace (serde_json escapes as NIP-01 asks).
pub fn event_id(
    pubkey: &str,
    created_at: u64,
    kind: u32,
    tags: &[Vec<String>],
    content: &str,
) -> [u8; 32] {
    let canonical = json!([0, pubkey, created_at, kind, tags, content]).to_string();
    crate::sha256::digest(canonical.as_bytes())
}

impl Event {
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "pubkey": self.pubkey, "created_at": self.created_at, "kind": self.kind,
            "tags": self.tags, "content": self.content, "sig": self.sig})
    }

    /// An event as a relay sends it; `None` when a field is missing or mistyped.
    pub fn from_json(v: &Value) -> Option<Event> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let tags = v
            .get("tags")?
            .as_array()?
            .iter()
            .map(|t| {
                t.as_array()?
                    .iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<Vec<String>>>()
            })
            .collect::<Option<Vec<Vec<String>>>>()?;
        Some(Event {
            id: s("id")?,
            pubkey: s("pubkey")?,
            created_at: v.get("created_at")?.as_u64()?,
            kind: u32::try_from(v.get("kind")?.as_u64()?).ok()?,
            tags,
            content: s("content")?,
            sig: s("sig")?,
        })
    }

    /// Builds and signs an event; `aux` is fresh randomness for BIP-340.
    pub fn signed(
        keys: &Keys,
        created_at: u64,
        kind: u32,
        tags: Vec<Vec<String>>,
        content: String,
        aux: &[u8; 32],
    ) -> Event {
        let id = event_id(&keys.public_hex, created_at, kind, &tags, &content);
        Event {
            id: hex::encode(id),
            pubkey: keys.public_hex.clone(),
            created_at,
            kind,
            tags,
            content,
            sig: hex::encode(keys.sign(&id, aux)),
        }
    }

    /// True when the id is the hash of the content and the signature is the
    /// author's.
    pub fn is_authentic(&self) -> bool {
        let Ok(pk) = crypto::parse_pubkey(&self.pubkey) else {
            return false;
        };
        let id = event_id(
            &self.pubkey,
            self.created_at,
            self.kind,
            &self.tags,
            &self.content,
        );
        if hex::encode(id) != self.id.to_ascii_lowercase() {
            return false;
        }
        match hex::decode(&self.sig) {
            Ok(sig) => crypto::verify(&pk, &id, &sig),
            Err(_) => false,
        }
    }

    /// The first value of tag `name`.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.first().map(String::as_str) == Some(name))
            .and_then(|t| t.get(1))
            .map(String::as_str)
    }

    /// Whether any `name` tag has the value `value`.
    pub fn has_tag(&self, name: &str, value: &str) -> bool {
        self.tags.iter().any(|t| {
            t.first().map(String::as_str) == Some(name)
                && t.get(1).map(String::as_str) == Some(value)
        })
    }
}

/// How a request's content is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    Nip44V2,
    Nip04,
}

/// What the wallet's info event (kind 13194) says it supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletInfo {
    /// The methods listed in the content (space-separated).
    pub methods: Vec<String>,
    /// Whether its `encryption` tag lists `nip44_v2`. No tag means NIP-04 only.
    pub nip44: bool,
}

impl WalletInfo {
    /// When the wallet published no info event: NIP-04, every method tried.
    pub fn unknown() -> WalletInfo {
        WalletInfo {
            methods: Vec::new(),
            nip44: false,
        }
    }

    pub fn from_event(e: &Event) -> WalletInfo {
        WalletInfo {
            methods: e.content.split_whitespace().map(str::to_string).collect(),
            nip44: e
                .tag("encryption")
                .is_some_and(|t| t.split_whitespace().any(|s| s == "nip44_v2")),
        }
    }

    /// A method the wallet advertises (every method when it listed none).
    pub fn supports(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }

    pub fn encryption(&self) -> Encryption {
        if self.nip44 {
            Encryption::Nip44V2
        } else {
            Encryption::Nip04
        }
    }
}

/// Builds the signed kind-23194 request to `wallet`: content encrypted
/// with `encryption`, an `expiration` tag (NIP-47: a wallet must not act on
/// it later) and, for NIP-44, the `encryption` tag. `entropy` is 64 fresh
/// random bytes (nonce or IV, then BIP-340 aux).
pub fn request_event(
    keys: &Keys,
    wallet_hex: &str,
    body: &str,
    encryption: Encryption,
    created_at: u64,
    expiration: u64,
    entropy: &[u8; 64],
) -> Result<Event, CryptoError> {
    let wallet = crypto::parse_pubkey(wallet_hex)?;
    let mut nonce = [0u8; 32];
    nonce.copy_from_slice(&entropy[..32]);
    let mut aux = [0u8; 32];
    aux.copy_from_slice(&entropy[32..]);
    let mut tags = vec![
        vec!["p".to_string(), wallet_hex.to_string()],
        vec!["expiration".to_string(), expiration.to_string()],
    ];
    let content = match encryption {
        Encryption::Nip44V2 => {
            tags.push(vec!["encryption".into(), "nip44_v2".into()]);
            nip44::encrypt(&nip44::conversation_key(keys, &wallet), body, &nonce)?
        }
        Encryption::Nip04 => {
            let mut iv = [0u8; 16];
            iv.copy_from_slice(&nonce[..16]);
            nip04::encrypt(keys, &wallet, body, &iv)
        }
    };
    Ok(Event::signed(
        keys,
        created_at,
        KIND_REQUEST,
        tags,
        content,
        &aux,
    ))
}

/// Decrypts a response's content with whichever scheme it is written in
/// (NIP-04 payloads carry `?iv=`).
pub fn decrypt_response(
    keys: &Keys,
    wallet_hex: &str,
    content: &str,
) -> Result<String, CryptoError> {
    let wallet = crypto::parse_pubkey(wallet_hex)?;
    if content.contains("?iv=") {
        nip04::decrypt(keys, &wallet, content)
    } else {
        nip44::decrypt(&nip44::conversation_key(keys, &wallet), content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(byte: &str) -> Keys {
        Keys::from_secret_hex(&byte.repeat(32)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn id_follows_nip01_serialisation() {
        // Escapes as NIP-01 lists them; non-ASCII stays as UTF-8.
        let tags = vec![vec!["p".to_string(), "ab".to_string()]];
        let canonical = json!([0, "ab", 1, 1, tags, "a\"b\\c\nd é"]).to_string();
        assert_eq!(canonical, r#"[0,"ab",1,1,[["p","ab"]],"a\"b\\c\nd é"]"#);
        assert_eq!(
            hex::encode(event_id("ab", 1, 1, &tags, "a\"b\\c\nd é")),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(canonical.as_bytes()))
        );
    }

    #[test]
    fn events_read_back_what_they_write_and_refuse_malformed_ones() {
        let e = Event::signed(
            &keys("11"),
            7,
            KIND_INFO,
            vec![vec!["a".into(), "b".into()]],
            "c".into(),
            &[0u8; 32],
        );
        assert_eq!(Event::from_json(&e.to_json()), Some(e.clone()));
        let mut v = e.to_json();
        v["kind"] = json!("13194");
        assert_eq!(Event::from_json(&v), None);
        let mut v = e.to_json();
        v["tags"] = json!([["a", 1]]);
        assert_eq!(Event::from_json(&v), None);
        assert_eq!(Event::from_json(&json!({"id": "x"})), None);
    }

    #[test]
    fn signed_events_verify_and_tampering_is_caught() {
        let k = keys("11");
        let e = Event::signed(
            &k,
            1_700_000_000,
            KIND_RESPONSE,
            vec![vec!["e".into(), "x".into()]],
            "hi".into(),
            &[9u8; 32],
        );
        assert!(e.is_authentic());
        let mut t = e.clone();
        t.content = "hi!".into();
        assert!(!t.is_authentic(), "content changed");
        let mut t = e.clone();
        t.pubkey = keys("22").public_hex;
        assert!(!t.is_authentic(), "author swapped");
        let mut t = e.clone();
        t.sig = "00".repeat(64);
        assert!(!t.is_authentic(), "bad signature");
        let mut t = e;
        t.tags.push(vec!["p".into(), "y".into()]);
        assert!(!t.is_authentic(), "tags changed");
    }

    #[test]
    fn request_round_trips_with_either_encryption() {
        let client = keys("11");
        let wallet = keys("22");
        let body = r#"{"method":"get_balance","params":{}}"#;
        for enc in [Encryption::Nip44V2, Encryption::Nip04] {
            let e = request_event(&client, &wallet.public_hex, body, enc, 100, 160, &[3u8; 64])
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(e.is_authentic());
            assert_eq!(e.kind, KIND_REQUEST);
            assert_eq!(e.tag("p"), Some(wallet.public_hex.as_str()));
            assert_eq!(e.tag("expiration"), Some("160"));
            assert_eq!(e.tag("encryption").is_some(), enc == Encryption::Nip44V2);
            assert!(!e.content.contains("get_balance"));
            // The wallet reads it with its own key.
            assert_eq!(
                decrypt_response(&wallet, &client.public_hex, &e.content).as_deref(),
                Ok(body)
            );
        }
    }

    #[test]
    fn info_event_says_methods_and_encryption() {
        let w = keys("22");
        let e = Event::signed(
            &w,
            1,
            KIND_INFO,
            vec![vec!["encryption".into(), "nip04 nip44_v2".into()]],
            "pay_invoice get_balance".into(),
            &[0u8; 32],
        );
        let info = WalletInfo::from_event(&e);
        assert!(info.nip44);
        assert_eq!(info.encryption(), Encryption::Nip44V2);
        assert!(info.supports("pay_invoice"));
        assert!(!info.supports("make_invoice"));
        let legacy = Event::signed(&w, 1, KIND_INFO, vec![], "pay_invoice".into(), &[0u8; 32]);
        assert_eq!(
            WalletInfo::from_event(&legacy).encryption(),
            Encryption::Nip04
        );
        assert!(WalletInfo::unknown().supports("anything"));
    }
}
