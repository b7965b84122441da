//! `NOSTR_ZAP_SECRET`: the deployment's Nostr key, which signs zap
//! receipts. Apart from `zap`, so that the settings can hold it without
//! depending on the callback's rules.

use backends::nwc::crypto::Keys;

/// `NOSTR_ZAP_SECRET`: the deployment's Nostr key, 64 hex digits or `nsec1…`.
#[derive(Clone, PartialEq, Eq)]
pub struct ZapSecret(String);

impl std::fmt::Debug for ZapSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ZapSecret(redacted)")
    }
}

impl ZapSecret {
    pub fn parse(raw: &str) -> Result<ZapSecret, String> {
        let raw = raw.trim();
        let hex_key = if raw.starts_with("nsec1") {
            let (hrp, data) =
                bech32::decode(raw).map_err(|_| "is not a valid nsec1 key".to_string())?;
            if hrp.as_str() != "nsec" || data.len() != 32 {
                return Err("is not a valid nsec1 key".into());
            }
            hex::encode(data)
        } else {
            raw.to_ascii_lowercase()
        };
        Keys::from_secret_hex(&hex_key)
            .map_err(|_| "must be a Nostr secret key: 64 hex digits or nsec1…".to_string())?;
        Ok(ZapSecret(hex_key))
    }

    pub fn keys(&self) -> Option<Keys> {
        Keys::from_secret_hex(&self.0).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "0000000000000000000000000000000000000000000000000000000000000007";

    #[test]
    fn the_secret_is_hex_or_nsec_and_never_printed() {
        let s = ZapSecret::parse(SERVER).unwrap();
        assert!(!format!("{s:?}").contains("0007"));
        let nsec = bech32::encode::<bech32::Bech32>(
            bech32::Hrp::parse("nsec").unwrap(),
            &hex::decode(SERVER).unwrap(),
        )
        .unwrap();
        assert_eq!(ZapSecret::parse(&nsec).unwrap(), s);
        assert!(ZapSecret::parse("nope").is_err());
        assert!(ZapSecret::parse(&"0".repeat(64)).is_err());
    }
}
