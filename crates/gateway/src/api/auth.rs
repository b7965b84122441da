//! Bearer-key checks for admin and client routes, in constant time.

use subtle::ConstantTimeEq;

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
        Some(token.trim())
    } else {
        None
    }
}

/// True if `token` equals one of `keys`. Every key is compared, so timing
/// does not reveal which one matched or how much of it.
pub fn matches_any(token: &str, keys: &[&str]) -> bool {
    let mut ok = subtle::Choice::from(0u8);
    for k in keys {
        ok |= token.as_bytes().ct_eq(k.as_bytes());
    }
    bool::from(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_compares() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
        assert!(matches_any("k2", &["k1", "k2"]));
        assert!(!matches_any("k3", &["k1", "k2"]));
        assert!(!matches_any("", &[]));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Only `Bearer <the key>` (any case, spaces around) matches.
        #[test]
        fn only_the_exact_key_matches(
            key in "[!-~]{16,40}",
            header in prop_oneof![
                "\\PC{0,60}",
                "[Bb][Ee][Aa][Rr][Ee][Rr] [!-~ ]{0,40}",
            ],
        ) {
            let ok = bearer(Some(&header)).is_some_and(|t| matches_any(t, &[&key]));
            let h = header.trim();
            let expected = h.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("bearer "))
                && h.get(7..).is_some_and(|t| t.trim() == key);
            prop_assert_eq!(ok, expected, "{:?}", header);
            let exact = format!(" Bearer {key} ");
            prop_assert!(bearer(Some(&exact)).is_some_and(|t| matches_any(t, &[&key])));
        }
    }
}
