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

#[cfg(test)]
mod props {
    use super::*;
    use bech32::Hrp;
    use proptest::prelude::*;

    fn lnurl(data: &[u8]) -> String {
        let hrp = Hrp::parse("lnurl").unwrap_or_else(|_| panic!("hrp"));
        bech32::encode::<Bech32>(hrp, data).unwrap_or_else(|e| panic!("{e}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn never_panics_on_any_string(s in any::<String>()) {
            let _ = parse(&s);
        }

        /// Strings that reach each branch (prefixes, '@', bech32 letters, unicode).
        #[test]
        fn never_panics_near_each_form(
            prefix in prop::sample::select(vec![
                "", "lightning:", "LIGHTNING:", "lnurl1", "LNURL1", "lnurlp://", "LNURLP://",
                "lightning:lnurlp://", "lnbc", "lntb", "lnsb", "a@", "@", " ",
            ]),
            rest in "[a-zA-Z0-9@:/.\\-_+ \u{0}\u{202e}é⚡]{0,120}",
        ) {
            let _ = parse(&format!("{prefix}{rest}"));
        }

        #[test]
        fn an_address_is_its_well_known_url(
            name in "[a-z0-9_.+-]{1,64}",
            domain in "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){1,3}(:[0-9]{1,5})?",
            upper in any::<bool>(),
            pad in prop::sample::select(vec!["", " ", "\n\t "]),
        ) {
            let raw = format!("{pad}{name}@{domain}{pad}");
            let raw = if upper { raw.to_uppercase() } else { raw };
            let scheme = if domain.ends_with(".onion") { "http" } else { "https" };
            prop_assert_eq!(
                parse(&raw),
                Ok(Destination::Lnurl {
                    kind: DestinationKind::LightningAddress,
                    url: format!("{scheme}://{domain}/.well-known/lnurlp/{name}"),
                })
            );
        }

        /// A name or domain with anything outside the allowed characters is refused, never mangled.
        #[test]
        fn an_address_with_a_foreign_character_is_refused(
            name in "[a-z0-9]{1,10}",
            domain in "[a-z0-9]{1,10}\\.com",
            bad in "[^a-zA-Z0-9_.+\\-@:\\s]",
            in_name in any::<bool>(),
        ) {
            let raw = if in_name { format!("{name}{bad}@{domain}") } else { format!("{name}@{domain}{bad}") };
            prop_assert!(parse(&raw).is_err(), "{raw:?}");
        }

        #[test]
        fn a_bech32_lnurl_decodes_to_its_url(
            url in "https://[a-z]{1,20}\\.[a-z]{2,6}(/[ -~]{0,300})?",
            upper in any::<bool>(),
            prefixed in any::<bool>(),
        ) {
            let enc = lnurl(url.as_bytes());
            let enc = if upper { enc.to_uppercase() } else { enc };
            let enc = if prefixed { format!("lightning:{enc}") } else { enc };
            prop_assert_eq!(
                parse(&enc),
                Ok(Destination::Lnurl { kind: DestinationKind::Lnurl, url })
            );
        }

        /// Any payload: a URL when it is UTF-8, an error otherwise; never a panic.
        #[test]
        fn any_lnurl_payload_is_decoded_or_refused(data in prop::collection::vec(any::<u8>(), 0..600)) {
            let enc = lnurl(&data);
            match (parse(&enc), String::from_utf8(data)) {
                (Ok(d), Ok(s)) if enc.len() <= 2048 => {
                    prop_assert_eq!(d, Destination::Lnurl { kind: DestinationKind::Lnurl, url: s })
                }
                (Ok(d), _) => prop_assert!(false, "accepted {:?}", d),
                (Err(_), Ok(_)) => prop_assert!(enc.len() > 2048),
                (Err(_), Err(_)) => {}
            }
        }

        /// One changed character in an LNURL is caught by its checksum.
        #[test]
        fn a_corrupted_lnurl_is_refused(
            path in "[a-z0-9/]{0,100}",
            at in any::<prop::sample::Index>(),
            with in prop::sample::select("qpzry9x8gf2tvdw0s3jn54khce6mua7l".chars().collect::<Vec<_>>()),
        ) {
            let enc = lnurl(format!("https://pay.example.com/{path}").as_bytes());
            let i = "lnurl1".len() + at.index(enc.len() - "lnurl1".len());
            let mut chars: Vec<char> = enc.chars().collect();
            prop_assume!(chars[i] != with);
            chars[i] = with;
            let bad: String = chars.into_iter().collect();
            prop_assert!(parse(&bad).is_err(), "{bad}");
        }

        /// `lnurlp://` keeps the rest of the URL as written (path case included).
        #[test]
        fn lnurlp_keeps_the_rest(host in "[a-z0-9]{1,20}\\.[a-z]{2,6}", path in "(/[A-Za-z0-9._~%-]{0,30}){0,4}") {
            let rest = format!("{host}{path}");
            prop_assert_eq!(
                parse(&format!("LNURLP://{rest}")),
                Ok(Destination::Lnurl { kind: DestinationKind::Lnurl, url: format!("https://{rest}") })
            );
        }

        #[test]
        fn bolt11_case_prefix_and_whitespace_do_not_matter(
            body in "lnbc[0-9]{0,6}[munp]?1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{6,300}",
        ) {
            let want = Ok(Destination::Bolt11(body.clone()));
            prop_assert_eq!(parse(&body), want.clone());
            prop_assert_eq!(parse(&body.to_uppercase()), want.clone());
            prop_assert_eq!(parse(&format!(" lightning:{body}\n")), want);
        }
    }
}
