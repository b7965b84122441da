//! Where a payout goes: a Lightning Address (LUD-16), an LNURL-pay (LUD-06:
//! bech32 `lnurl1…` or `lnurlp://`), or a BOLT11 invoice.

use bech32::primitives::decode::CheckedHrpstring;
use bech32::Bech32;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    LightningAddress,
    Lnurl,
    Bolt11,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// The LNURL-pay URL to query (from an address or an LNURL).
    Lnurl {
        kind: DestinationKind,
        url: String,
    },
    Bolt11(String),
}

impl Destination {
    pub fn kind(&self) -> DestinationKind {
        match self {
            Destination::Lnurl { kind, .. } => *kind,
            Destination::Bolt11(_) => DestinationKind::Bolt11,
        }
    }
}

fn address(s: &str) -> Option<Result<Destination, String>> {
    let (name, domain) = s.split_once('@')?;
    let name = name.to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.+".contains(&b))
    {
        return Some(Err(
            "the name part of a Lightning Address may hold only a-z, 0-9, - _ . +".into(),
        ));
    }
    if domain.is_empty()
        || !domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
    {
        return Some(Err("the domain of a Lightning Address is not valid".into()));
    }
    // LUD-16: onion domains use http; everything else https. The URL policy decides later.
    let scheme = if domain.ends_with(".onion") {
        "http"
    } else {
        "https"
    };
    Some(Ok(Destination::Lnurl {
        kind: DestinationKind::LightningAddress,
        url: format!("{scheme}://{domain}/.well-known/lnurlp/{name}"),
    }))
}

/// Decodes a bech32 `lnurl1…` string to its URL. LNURLs are longer than
/// bech32's 90-character limit for addresses, which this decoder allows.
pub fn decode_lnurl(s: &str) -> Result<String, String> {
    let checked =
        CheckedHrpstring::new::<Bech32>(s).map_err(|e| format!("not a valid LNURL: {e}"))?;
    if checked.hrp().to_lowercase() != "lnurl" {
        return Err("not an LNURL (prefix must be lnurl)".into());
    }
    let bytes: Vec<u8> = checked.byte_iter().collect();
    String::from_utf8(bytes).map_err(|_| "LNURL does not hold a UTF-8 URL".into())
}

pub fn parse(raw: &str) -> Result<Destination, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > 2048 {
        return Err("is too long".into());
    }
    let lower = s.to_ascii_lowercase();
    let lower = lower
        .strip_prefix("lightning:")
        .unwrap_or(&lower)
        .to_string();
    if lower.starts_with("lnurl1") {
        let url = decode_lnurl(&lower)?;
        return Ok(Destination::Lnurl {
            kind: DestinationKind::Lnurl,
            url,
        });
    }
    if let Some(rest) = lower.strip_prefix("lnurlp://") {
        // LUD-17: lnurlp:// stands for https:// (http for .onion).
        let host = rest.split('/').next().unwrap_or("");
        let scheme = if host.ends_with(".onion") {
            "http"
        } else {
            "https"
        };
        let original = &s[s.len() - rest.len()..];
        return Ok(Destination::Lnurl {
            kind: DestinationKind::Lnurl,
            url: format!("{scheme}://{original}"),
        });
    }
    if lower.starts_with("lnbc") || lower.starts_with("lntb") || lower.starts_with("lnsb") {
        return Ok(Destination::Bolt11(lower));
    }
    if let Some(r) = address(&lower) {
        return r;
    }
    Err("must be a Lightning Address (name@domain), an LNURL-pay (lnurl1… or lnurlp://…) or a BOLT11 invoice".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bech32::Hrp;

    #[test]
    fn lightning_address_becomes_well_known_url() {
        assert_eq!(
            parse("Alice@Example.com"),
            Ok(Destination::Lnurl {
                kind: DestinationKind::LightningAddress,
                url: "https://example.com/.well-known/lnurlp/alice".into()
            })
        );
        assert!(parse("al ice@example.com").is_err());
        assert!(parse("alice@").is_err());
        assert!(parse("@example.com").is_err());
    }

    #[test]
    fn bech32_lnurl_round_trips_even_when_long() {
        let url =
            "https://service.example.com/api/v1/lnurl/pay/abcdefghijklmnopqrstuvwxyz0123456789";
        let enc = bech32::encode::<Bech32>(
            Hrp::parse("lnurl").unwrap_or_else(|_| panic!("hrp")),
            url.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(enc.len() > 90);
        assert_eq!(
            parse(&enc.to_uppercase()),
            Ok(Destination::Lnurl {
                kind: DestinationKind::Lnurl,
                url: url.into()
            })
        );
        assert!(parse("lnurl1qqqqqq").is_err());
    }

    #[test]
    fn lnurlp_scheme_and_bolt11_and_garbage() {
        assert_eq!(
            parse("lnurlp://pay.example.com/Path"),
            Ok(Destination::Lnurl {
                kind: DestinationKind::Lnurl,
                url: "https://pay.example.com/Path".into()
            })
        );
        assert_eq!(
            parse("lightning:LNBC1ABC").map(|d| d.kind()),
            Ok(DestinationKind::Bolt11)
        );
        assert!(parse("").is_err());
        assert!(parse("bitcoin:bc1q...").is_err());
        assert!(parse(&"a".repeat(3000)).is_err());
    }
}
