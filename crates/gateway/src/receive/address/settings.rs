//! Which names the gateway serves as Lightning Addresses, and each one's
//! limits: `LIGHTNING_ADDRESS_NAMES` (`shop,tips`) and, optionally,
//! `LIGHTNING_ADDRESS_SETTINGS`, a JSON object keyed by name.

use serde::Deserialize;

/// LUD-16 usernames: `a-z0-9-_.`, here at most 64 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// One address's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Address {
    pub name: String,
    pub min_sat: u64,
    pub max_sat: u64,
    /// The `text/plain` metadata: what the payer's wallet shows.
    pub description: String,
    /// LUD-12: the longest comment accepted (0: none).
    pub comment_allowed: u32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Written {
    min_sats: Option<u64>,
    max_sats: Option<u64>,
    description: Option<String>,
    comment_allowed: Option<u32>,
}

/// The largest comment accepted (LUD-12 leaves it to the server).
pub const MAX_COMMENT: u32 = 255;

/// Reads the names and their settings; `max_invoice_sat` caps every maximum.
pub fn parse(
    names: Option<&str>,
    settings: Option<&str>,
    max_invoice_sat: u64,
) -> Result<Vec<Address>, (&'static str, String)> {
    let Some(names) = names.filter(|n| !n.trim().is_empty()) else {
        if settings.is_some() {
            return Err((
                "LIGHTNING_ADDRESS_SETTINGS",
                "is set but LIGHTNING_ADDRESS_NAMES is not".into(),
            ));
        }
        return Ok(Vec::new());
    };
    let mut written: std::collections::BTreeMap<String, Written> = match settings {
        None => Default::default(),
        Some(s) => serde_json::from_str(s).map_err(|e| {
            (
                "LIGHTNING_ADDRESS_SETTINGS",
                format!("must be a JSON object keyed by name, each with min_sats, max_sats, description, comment_allowed: {e}"),
            )
        })?,
    };
    let mut out: Vec<Address> = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !valid_name(name) {
            return Err((
                "LIGHTNING_ADDRESS_NAMES",
                format!("`{name}` is not a Lightning Address name (a-z, 0-9, - _ .; at most 64)"),
            ));
        }
        if name == "verify" {
            return Err((
                "LIGHTNING_ADDRESS_NAMES",
                "`verify` is reserved (the LUD-21 verify route)".into(),
            ));
        }
        if out.iter().any(|a| a.name == name) {
            return Err((
                "LIGHTNING_ADDRESS_NAMES",
                format!("`{name}` is listed twice"),
            ));
        }
        let w = written.remove(name).unwrap_or_default();
        let min_sat = w.min_sats.unwrap_or(1).max(1);
        let max_sat = w.max_sats.unwrap_or(max_invoice_sat).min(max_invoice_sat);
        if min_sat > max_sat {
            return Err((
                "LIGHTNING_ADDRESS_SETTINGS",
                format!("`{name}`: min_sats is above max_sats (or above INVOICE_MAX_SATS)"),
            ));
        }
        let comment_allowed = w.comment_allowed.unwrap_or(MAX_COMMENT);
        if comment_allowed > MAX_COMMENT {
            return Err((
                "LIGHTNING_ADDRESS_SETTINGS",
                format!("`{name}`: comment_allowed is at most {MAX_COMMENT}"),
            ));
        }
        let description = w
            .description
            .unwrap_or_else(|| format!("Payment to {name}"));
        if description.len() > 500 || description.chars().any(char::is_control) {
            return Err((
                "LIGHTNING_ADDRESS_SETTINGS",
                format!(
                    "`{name}`: description must be at most 500 bytes, without control characters"
                ),
            ));
        }
        out.push(Address {
            name: name.to_string(),
            min_sat,
            max_sat,
            description,
            comment_allowed,
        });
    }
    if let Some(extra) = written.keys().next() {
        return Err((
            "LIGHTNING_ADDRESS_SETTINGS",
            format!("`{extra}` is not in LIGHTNING_ADDRESS_NAMES"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_alone_get_defaults_and_settings_refine_them() {
        let a = parse(Some("shop, tips"), None, 100_000).unwrap_or_default();
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].min_sat, a[0].max_sat, a[0].comment_allowed),
            (1, 100_000, 255)
        );
        assert_eq!(a[1].description, "Payment to tips");
        let s = r#"{"tips": {"min_sats": 10, "max_sats": 5000, "description": "Tips, thank you", "comment_allowed": 0}}"#;
        let b = parse(Some("shop,tips"), Some(s), 100_000).unwrap_or_default();
        assert_eq!(
            (b[1].min_sat, b[1].max_sat, b[1].comment_allowed),
            (10, 5000, 0)
        );
        assert_eq!(b[1].description, "Tips, thank you");
        assert_eq!(parse(None, None, 1).ok(), Some(vec![]));
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let err = |n: Option<&str>, s: Option<&str>| parse(n, s, 100_000).err().map(|e| e.0);
        assert_eq!(err(Some("Shop"), None), Some("LIGHTNING_ADDRESS_NAMES"));
        assert_eq!(err(Some("a b"), None), Some("LIGHTNING_ADDRESS_NAMES"));
        assert_eq!(err(Some("a,a"), None), Some("LIGHTNING_ADDRESS_NAMES"));
        assert_eq!(err(None, Some("{}")), Some("LIGHTNING_ADDRESS_SETTINGS"));
        assert_eq!(
            err(Some("a"), Some("[1]")),
            Some("LIGHTNING_ADDRESS_SETTINGS")
        );
        assert_eq!(
            err(Some("a"), Some(r#"{"b": {}}"#)),
            Some("LIGHTNING_ADDRESS_SETTINGS")
        );
        assert_eq!(
            err(Some("a"), Some(r#"{"a": {"min_sats": 9, "max_sats": 2}}"#)),
            Some("LIGHTNING_ADDRESS_SETTINGS")
        );
        assert_eq!(
            err(Some("a"), Some(r#"{"a": {"colour": 1}}"#)),
            Some("LIGHTNING_ADDRESS_SETTINGS")
        );
    }
}
