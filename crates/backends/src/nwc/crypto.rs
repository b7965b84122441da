//! The cryptography Nostr Wallet Connect needs: BIP-340 keys and signatures
//! (NIP-01), NIP-44 v2 and NIP-04 encryption. Every primitive comes from a
//! maintained crate (secp256k1, chacha20, aes, cbc; HMAC and HKDF over
//! bitcoin_hashes in [`crate::sha256`]); this file only composes them the
//! way the NIPs specify.

use aes::Aes256;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use chacha20::cipher::StreamCipher;
use chacha20::ChaCha20;
use secp256k1::XOnlyPublicKey;
use secp256k1::{ecdh, schnorr, Keypair, Message, Parity, PublicKey, Secp256k1, SecretKey};

use crate::sha256;

/// Why a key, signature or ciphertext was refused. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoError(pub &'static str);

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// The client's key pair, from the connection secret. Debug never shows it.
#[derive(Clone)]
pub struct Keys {
    secret: SecretKey,
    keypair: Keypair,
    /// The x-only public key, lower-case hex (the event `pubkey`).
    pub public_hex: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({}, secret redacted)", self.public_hex)
    }
}

impl Keys {
    pub fn from_secret_hex(secret_hex: &str) -> Result<Keys, CryptoError> {
        let bytes = decode32(secret_hex).ok_or(CryptoError("the secret is not 64 hex digits"))?;
        let secret = SecretKey::from_slice(&bytes)
            .map_err(|_| CryptoError("the secret is not a valid key"))?;
        let keypair = Keypair::from_secret_key(&Secp256k1::signing_only(), &secret);
        let (xonly, _) = keypair.x_only_public_key();
        Ok(Keys {
            secret,
            keypair,
            public_hex: hex::encode(xonly.serialize()),
        })
    }

    /// BIP-340 signature of a 32-byte event id; `aux` is fresh randomness.
    pub fn sign(&self, id: &[u8; 32], aux: &[u8; 32]) -> [u8; 64] {
        let sig = Secp256k1::signing_only().sign_schnorr_with_aux_rand(
            &Message::from_digest(*id),
            &self.keypair,
            aux,
        );
        sig.serialize()
    }
}

fn decode32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// An x-only public key in hex (a Nostr pubkey).
pub fn parse_pubkey(hex_key: &str) -> Result<XOnlyPublicKey, CryptoError> {
    let bytes = decode32(hex_key).ok_or(CryptoError("the public key is not 64 hex digits"))?;
    XOnlyPublicKey::from_slice(&bytes)
        .map_err(|_| CryptoError("the public key is not on the curve"))
}

/// Checks a BIP-340 signature over an event id.
pub fn verify(pubkey: &XOnlyPublicKey, id: &[u8; 32], sig: &[u8]) -> bool {
    match schnorr::Signature::from_slice(sig) {
        Ok(sig) => Secp256k1::verification_only()
            .verify_schnorr(&sig, &Message::from_digest(*id), pubkey)
            .is_ok(),
        Err(_) => false,
    }
}

/// The x coordinate of the ECDH point, unhashed (what NIP-04 and NIP-44 use).
fn shared_x(keys: &Keys, their: &XOnlyPublicKey) -> [u8; 32] {
    let point = PublicKey::from_x_only_public_key(*their, Parity::Even);
    let xy = ecdh::shared_secret_point(&point, &keys.secret);
    let mut x = [0u8; 32];
    x.copy_from_slice(&xy[..32]);
    x
}

/// NIP-44 version 2.
pub mod nip44 {
    use super::*;

    const VERSION: u8 = 2;
    const MIN_PLAINTEXT: usize = 1;
    const MAX_PLAINTEXT: usize = 65_535;

    /// HKDF-extract(salt = "nip44-v2", IKM = shared x).
    pub fn conversation_key(keys: &Keys, their: &XOnlyPublicKey) -> [u8; 32] {
        conversation_key_from_shared(&shared_x(keys, their))
    }

    fn conversation_key_from_shared(shared_x: &[u8; 32]) -> [u8; 32] {
        sha256::hkdf_extract(b"nip44-v2", shared_x)
    }

    /// ChaCha20 key, ChaCha20 nonce and HMAC key of one message.
    pub(super) type MessageKeys = ([u8; 32], [u8; 12], [u8; 32]);

    pub(super) fn message_keys(
        conversation_key: &[u8; 32],
        nonce: &[u8; 32],
    ) -> Result<MessageKeys, CryptoError> {
        let mut okm = [0u8; 76];
        sha256::hkdf_expand(conversation_key, nonce, &mut okm)
            .map_err(|_| CryptoError("hkdf expand failed"))?;
        let mut key = [0u8; 32];
        let mut chacha_nonce = [0u8; 12];
        let mut hmac_key = [0u8; 32];
        key.copy_from_slice(&okm[..32]);
        chacha_nonce.copy_from_slice(&okm[32..44]);
        hmac_key.copy_from_slice(&okm[44..]);
        Ok((key, chacha_nonce, hmac_key))
    }

    pub fn calc_padded_len(len: usize) -> usize {
        if len <= 32 {
            return 32;
        }
        let next_power = 1usize << (usize::BITS - (len - 1).leading_zeros());
        let chunk = if next_power <= 256 {
            32
        } else {
            next_power / 8
        };
        chunk * ((len - 1) / chunk + 1)
    }

    fn mac(hmac_key: &[u8; 32], nonce: &[u8], ciphertext: &[u8]) -> [u8; 32] {
        sha256::hmac(hmac_key, &[nonce, ciphertext])
    }

    /// Encrypts with a caller-chosen 32-byte nonce (fresh randomness).
    pub fn encrypt(
        conversation_key: &[u8; 32],
        plaintext: &str,
        nonce: &[u8; 32],
    ) -> Result<String, CryptoError> {
        let bytes = plaintext.as_bytes();
        if !(MIN_PLAINTEXT..=MAX_PLAINTEXT).contains(&bytes.len()) {
            return Err(CryptoError("plaintext length out of range"));
        }
        let (key, chacha_nonce, hmac_key) = message_keys(conversation_key, nonce)?;
        let mut padded = Vec::with_capacity(2 + calc_padded_len(bytes.len()));
        padded.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        padded.extend_from_slice(bytes);
        padded.resize(2 + calc_padded_len(bytes.len()), 0);
        ChaCha20::new(&key.into(), &chacha_nonce.into()).apply_keystream(&mut padded);
        let tag = mac(&hmac_key, nonce, &padded);
        let mut payload = Vec::with_capacity(1 + 32 + padded.len() + 32);
        payload.push(VERSION);
        payload.extend_from_slice(nonce);
        payload.extend_from_slice(&padded);
        payload.extend_from_slice(&tag);
        Ok(B64.encode(payload))
    }

    pub fn decrypt(conversation_key: &[u8; 32], payload: &str) -> Result<String, CryptoError> {
        if payload.is_empty() || payload.starts_with('#') {
            return Err(CryptoError("unknown encryption version"));
        }
        if !(132..=87_472).contains(&payload.len()) {
            return Err(CryptoError("invalid payload size"));
        }
        let data = B64
            .decode(payload)
            .map_err(|_| CryptoError("invalid base64"))?;
        if !(99..=65_603).contains(&data.len()) {
            return Err(CryptoError("invalid data size"));
        }
        if data[0] != VERSION {
            return Err(CryptoError("unknown encryption version"));
        }
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(&data[1..33]);
        let (ciphertext, tag) = data[33..].split_at(data.len() - 33 - 32);
        let (key, chacha_nonce, hmac_key) = message_keys(conversation_key, &nonce)?;
        if !sha256::same_mac(&mac(&hmac_key, &nonce, ciphertext), tag) {
            return Err(CryptoError("invalid MAC"));
        }
        let mut padded = ciphertext.to_vec();
        ChaCha20::new(&key.into(), &chacha_nonce.into()).apply_keystream(&mut padded);
        if padded.len() < 2 {
            return Err(CryptoError("invalid padding"));
        }
        let len = usize::from(u16::from_be_bytes([padded[0], padded[1]]));
        if len < MIN_PLAINTEXT || padded.len() != 2 + calc_padded_len(len) {
            return Err(CryptoError("invalid padding"));
        }
        String::from_utf8(padded[2..2 + len].to_vec()).map_err(|_| CryptoError("not UTF-8"))
    }
}

/// NIP-04 (AES-256-CBC keyed with the unhashed shared x), still the only
/// encryption of wallets that do not advertise NIP-44.
pub mod nip04 {
    use super::*;

    type Enc = cbc::Encryptor<Aes256>;
    type Dec = cbc::Decryptor<Aes256>;

    pub fn encrypt(keys: &Keys, their: &XOnlyPublicKey, plaintext: &str, iv: &[u8; 16]) -> String {
        let key = shared_x(keys, their);
        let ct =
            Enc::new(&key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes());
        format!("{}?iv={}", B64.encode(ct), B64.encode(iv))
    }

    pub fn decrypt(
        keys: &Keys,
        their: &XOnlyPublicKey,
        content: &str,
    ) -> Result<String, CryptoError> {
        let (ct, iv) = content
            .split_once("?iv=")
            .ok_or(CryptoError("not a NIP-04 payload"))?;
        let ct = B64.decode(ct).map_err(|_| CryptoError("invalid base64"))?;
        let iv: [u8; 16] = B64
            .decode(iv)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(CryptoError("invalid iv"))?;
        let key = shared_x(keys, their);
        let pt = Dec::new(&key.into(), &iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(&ct)
            .map_err(|_| CryptoError("invalid padding"))?;
        String::from_utf8(pt).map_err(|_| CryptoError("not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The official NIP-44 test vectors (github.com/paulmillr/nip44,
    /// nip44.vectors.json at commit 671a1f04).
    fn vectors() -> Value {
        serde_json::from_str(include_str!("nip44.vectors.json")).unwrap_or(Value::Null)
    }

    fn h32(v: &Value) -> [u8; 32] {
        decode32(v.as_str().unwrap_or("")).unwrap_or_else(|| panic!("hex32 {v}"))
    }

    fn s(v: &Value) -> &str {
        v.as_str().unwrap_or_else(|| panic!("string {v}"))
    }

    #[test]
    fn nip44_conversation_keys() {
        let v = vectors();
        let cases = v["v2"]["valid"]["get_conversation_key"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(cases.len() >= 30);
        for c in cases {
            let keys = Keys::from_secret_hex(s(&c["sec1"])).unwrap_or_else(|e| panic!("{e}"));
            let pk = parse_pubkey(s(&c["pub2"])).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                hex::encode(nip44::conversation_key(&keys, &pk)),
                s(&c["conversation_key"]),
                "{c}"
            );
        }
        // Invalid keys on either side are refused.
        let invalid = v["v2"]["invalid"]["get_conversation_key"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!invalid.is_empty());
        for c in invalid {
            let ok =
                Keys::from_secret_hex(s(&c["sec1"])).is_ok() && parse_pubkey(s(&c["pub2"])).is_ok();
            assert!(!ok, "{c}");
        }
    }

    #[test]
    fn nip44_message_keys_and_padding() {
        let v = vectors();
        let mk = &v["v2"]["valid"]["get_message_keys"];
        let ck = h32(&mk["conversation_key"]);
        for k in mk["keys"].as_array().cloned().unwrap_or_default() {
            let (key, nonce, hmac_key) =
                nip44::message_keys(&ck, &h32(&k["nonce"])).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(hex::encode(key), s(&k["chacha_key"]));
            assert_eq!(hex::encode(nonce), s(&k["chacha_nonce"]));
            assert_eq!(hex::encode(hmac_key), s(&k["hmac_key"]));
        }
        for pair in v["v2"]["valid"]["calc_padded_len"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let (len, padded) = (pair[0].as_u64().unwrap_or(0), pair[1].as_u64().unwrap_or(0));
            assert_eq!(nip44::calc_padded_len(len as usize) as u64, padded, "{len}");
        }
    }

    #[test]
    fn nip44_encrypt_decrypt_vectors() {
        let v = vectors();
        let cases = v["v2"]["valid"]["encrypt_decrypt"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(cases.len() >= 10);
        for c in cases {
            let sec1 = Keys::from_secret_hex(s(&c["sec1"])).unwrap_or_else(|e| panic!("{e}"));
            let sec2 = Keys::from_secret_hex(s(&c["sec2"])).unwrap_or_else(|e| panic!("{e}"));
            let pub2 = parse_pubkey(&sec2.public_hex).unwrap_or_else(|e| panic!("{e}"));
            let ck = nip44::conversation_key(&sec1, &pub2);
            assert_eq!(hex::encode(ck), s(&c["conversation_key"]));
            let payload = nip44::encrypt(&ck, s(&c["plaintext"]), &h32(&c["nonce"]))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(payload, s(&c["payload"]));
            // And the other side decrypts it with its own conversation key.
            let pub1 = parse_pubkey(&sec1.public_hex).unwrap_or_else(|e| panic!("{e}"));
            let ck2 = nip44::conversation_key(&sec2, &pub1);
            assert_eq!(
                nip44::decrypt(&ck2, &payload).as_deref(),
                Ok(s(&c["plaintext"]))
            );
        }
    }

    #[test]
    fn nip44_long_messages() {
        use sha2::{Digest, Sha256};
        let v = vectors();
        for c in v["v2"]["valid"]["encrypt_decrypt_long_msg"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let plaintext = s(&c["pattern"]).repeat(c["repeat"].as_u64().unwrap_or(0) as usize);
            assert_eq!(
                hex::encode(Sha256::digest(plaintext.as_bytes())),
                s(&c["plaintext_sha256"])
            );
            let ck = h32(&c["conversation_key"]);
            let payload = nip44::encrypt(&ck, &plaintext, &h32(&c["nonce"]))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                hex::encode(Sha256::digest(payload.as_bytes())),
                s(&c["payload_sha256"])
            );
            assert_eq!(
                nip44::decrypt(&ck, &payload).as_deref(),
                Ok(plaintext.as_str())
            );
        }
    }

    #[test]
    fn nip44_invalid_payloads_are_refused() {
        let v = vectors();
        let cases = v["v2"]["invalid"]["decrypt"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(cases.len() >= 10);
        for c in cases {
            let r = nip44::decrypt(&h32(&c["conversation_key"]), s(&c["payload"]));
            assert!(r.is_err(), "{c}");
            // A bad MAC must be refused by the MAC check itself, not by a
            // later check that happens to fail.
            if c["note"] == "invalid MAC" {
                assert_eq!(r, Err(CryptoError("invalid MAC")), "{c}");
            }
        }
        for len in v["v2"]["invalid"]["encrypt_msg_lengths"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let text = "a".repeat(len.as_u64().unwrap_or(0) as usize);
            assert!(
                nip44::encrypt(&[1u8; 32], &text, &[2u8; 32]).is_err(),
                "{len}"
            );
        }
    }

    #[test]
    fn nip04_round_trip_between_two_keys() {
        let a = Keys::from_secret_hex(&"01".repeat(32)).unwrap_or_else(|e| panic!("{e}"));
        let b = Keys::from_secret_hex(&"02".repeat(32)).unwrap_or_else(|e| panic!("{e}"));
        let pa = parse_pubkey(&a.public_hex).unwrap_or_else(|e| panic!("{e}"));
        let pb = parse_pubkey(&b.public_hex).unwrap_or_else(|e| panic!("{e}"));
        let msg = r#"{"method":"pay_invoice","params":{"invoice":"lnbc1…"}}"#;
        let ct = nip04::encrypt(&a, &pb, msg, &[7u8; 16]);
        assert!(ct.contains("?iv="), "{ct}");
        assert!(!ct.contains("pay_invoice"));
        assert_eq!(nip04::decrypt(&b, &pa, &ct).as_deref(), Ok(msg));
        // A third key cannot read it, and a tampered payload is refused.
        let c = Keys::from_secret_hex(&"03".repeat(32)).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(nip04::decrypt(&c, &pa, &ct).as_deref(), Ok(msg));
        assert!(nip04::decrypt(&b, &pa, "garbage").is_err());
    }

    /// BIP-340's published test vector 0 (secret key 3, aux 0), then a
    /// round trip and the refusals.
    #[test]
    fn bip340_sign_and_verify() {
        let keys = Keys::from_secret_hex(&format!("{:064x}", 3)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            keys.public_hex,
            "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9"
        );
        let sig = keys.sign(&[0u8; 32], &[0u8; 32]);
        assert_eq!(
            hex::encode(sig).to_uppercase(),
            "E907831F80848D1069A5371B402410364BDF1C5F8307B0084C55F1CE2DCA821525F66A4A85EA8B71E482A74F382D2CE5EBEEE8FDB2172F477DF4900D310536C0"
        );
        let pk = parse_pubkey(&keys.public_hex).unwrap_or_else(|e| panic!("{e}"));
        assert!(verify(&pk, &[0u8; 32], &sig));
        assert!(!verify(&pk, &[1u8; 32], &sig), "another message");
        let other = Keys::from_secret_hex(&"05".repeat(32)).unwrap_or_else(|e| panic!("{e}"));
        let other_pk = parse_pubkey(&other.public_hex).unwrap_or_else(|e| panic!("{e}"));
        assert!(!verify(&other_pk, &[0u8; 32], &sig), "another key");
        assert!(!verify(&pk, &[0u8; 32], &sig[..63]), "short signature");
        assert!(format!("{keys:?}").contains("redacted"));
        assert!(!format!("{keys:?}").contains(&"0".repeat(63)));
    }
}
