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
