//! SHA-256, HMAC-SHA256 (RFC 2104) and HKDF (RFC 5869), all over
//! `bitcoin_hashes`: lightning-invoice links its SHA-256 into the Worker
//! anyway, and a second implementation (`sha2` with `hmac` and `hkdf`)
//! cost 4.9 KB of gzipped wasm. The tests check every function against
//! those crates and against the RFCs' own vectors.

use bitcoin_hashes::{sha256, Hash, HashEngine, Hmac, HmacEngine};

/// SHA-256 of `data`.
pub fn digest(data: &[u8]) -> [u8; 32] {
    sha256::Hash::hash(data).to_byte_array()
}

/// SHA-256 of `data` as lower-case hex: how every stored or compared hash
/// (payment hashes, description hashes, fingerprints, payout ids) is written.
pub fn hex_digest(data: &[u8]) -> String {
    hex::encode(digest(data))
}

/// HMAC-SHA256 of the concatenation of `parts`; any key length is accepted.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut engine = HmacEngine::<sha256::Hash>::new(key);
    for p in parts {
        engine.input(p);
    }
    Hmac::from_engine(engine).to_byte_array()
}

/// Whether two MACs are equal, in time that does not depend on where they
/// differ.
pub fn same_mac(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bitcoin_hashes::cmp::fixed_time_eq(a, b)
}

/// HKDF-Extract: the pseudorandom key of `ikm` under `salt`.
pub fn hkdf_extract(salt: &[u8], ikm: &[u8]) -> [u8; 32] {
    hmac(salt, &[ikm])
}

/// HKDF-Expand of `prk` with `info` into `out`. RFC 5869 allows at most
/// 255 blocks (8,160 bytes); a longer `out` is refused.
pub fn hkdf_expand(prk: &[u8; 32], info: &[u8], out: &mut [u8]) -> Result<(), TooLong> {
    if out.len() > 255 * 32 {
        return Err(TooLong);
    }
    let mut block: [u8; 32] = [0; 32];
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let previous: &[u8] = if i == 0 { &[] } else { &block };
        // i < 255 by the length check above.
        block = hmac(prk, &[previous, info, &[i as u8 + 1]]);
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    Ok(())
}

/// More output asked of HKDF-Expand than RFC 5869 allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn sha256_of_the_standard_inputs() {
        assert_eq!(
            hex::encode(digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// RFC 4231, test cases 1, 2 and 6 (a key longer than a block).
    #[test]
    fn hmac_rfc4231() {
        let cases = [
            (
                "0b".repeat(20),
                hex::encode("Hi There"),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                hex::encode("Jefe"),
                hex::encode("what do ya want for nothing?"),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                "aa".repeat(131),
                hex::encode("Test Using Larger Than Block-Size Key - Hash Key First"),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
        ];
        for (key, data, mac) in cases {
            assert_eq!(hex::encode(hmac(&unhex(&key), &[&unhex(&data)])), mac);
        }
    }

    /// RFC 5869, test cases 1 and 3 (no salt, no info).
    #[test]
    fn hkdf_rfc5869() {
        let ikm = unhex(&"0b".repeat(22));
        let prk = hkdf_extract(&unhex("000102030405060708090a0b0c"), &ikm);
        assert_eq!(
            hex::encode(prk),
            "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
        );
        let mut okm = [0u8; 42];
        assert_eq!(
            hkdf_expand(&prk, &unhex("f0f1f2f3f4f5f6f7f8f9"), &mut okm),
            Ok(())
        );
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
        let prk = hkdf_extract(&[], &ikm);
        assert_eq!(
            hex::encode(prk),
            "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04"
        );
        let mut okm = [0u8; 42];
        assert_eq!(hkdf_expand(&prk, &[], &mut okm), Ok(()));
        assert_eq!(
            hex::encode(okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        );
        let mut too_long = vec![0u8; 255 * 32 + 1];
        assert_eq!(hkdf_expand(&prk, &[], &mut too_long), Err(TooLong));
        let mut longest = vec![0u8; 255 * 32];
        assert_eq!(hkdf_expand(&prk, &[], &mut longest), Ok(()));
    }

    #[test]
    fn same_mac_compares_whole_values() {
        assert!(same_mac(b"abc", b"abc"));
        assert!(!same_mac(b"abc", b"abd"));
        assert!(!same_mac(b"abc", b"ab"));
        assert!(!same_mac(b"", b"a"));
    }

    proptest! {
        /// The same answers as the RustCrypto crates this module replaced.
        #[test]
        fn agrees_with_rustcrypto(
            key in proptest::collection::vec(any::<u8>(), 0..150),
            a in proptest::collection::vec(any::<u8>(), 0..200),
            b in proptest::collection::vec(any::<u8>(), 0..200),
            len in 0usize..300,
        ) {
            use hmac::Mac as _;
            use sha2::Digest as _;
            prop_assert_eq!(digest(&a).to_vec(), sha2::Sha256::digest(&a).to_vec());
            let mut m = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&key)
                .unwrap_or_else(|e| panic!("{e}"));
            m.update(&a);
            m.update(&b);
            prop_assert_eq!(hmac(&key, &[&a, &b]).to_vec(), m.finalize().into_bytes().to_vec());
            let (prk, hk) = hkdf::Hkdf::<sha2::Sha256>::extract(Some(&key), &a);
            let ours = hkdf_extract(&key, &a);
            prop_assert_eq!(ours.to_vec(), prk.to_vec());
            let mut want = vec![0u8; len];
            hk.expand(&b, &mut want).unwrap_or_else(|e| panic!("{e}"));
            let mut got = vec![0u8; len];
            prop_assert_eq!(hkdf_expand(&ours, &b, &mut got), Ok(()));
            prop_assert_eq!(got, want);
        }
    }
}
