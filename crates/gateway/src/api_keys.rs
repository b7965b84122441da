//! The gateway's own API keys (admin, payout, invoice). Each unlocks
//! something different, so in production none may be a published example
//! or equal to another.

use crate::vars::{ConfigError, Vars};

/// Every example key the documentation publishes (README, `.dev.vars.example`)
/// contains this.
const EXAMPLE_MARK: &str = "change-me";

/// The variables that hold the gateway's own keys.
const KEY_VARS: [&str; 6] = [
    "ADMIN_API_KEY",
    "ADMIN_API_KEY_PREVIOUS",
    "PAYOUT_API_KEY",
    "PAYOUT_API_KEY_PREVIOUS",
    "INVOICE_API_KEY",
    "INVOICE_API_KEY_PREVIOUS",
];

/// One key: at least 16 characters, and in production not an example.
pub(crate) fn check(name: &str, key: &str, production: bool) -> Result<(), ConfigError> {
    if key.len() < 16 {
        return Err(ConfigError::new(name, "must be at least 16 characters"));
    }
    if production && key.to_ascii_lowercase().contains(EXAMPLE_MARK) {
        return Err(ConfigError::new(
            name,
            "is an example key from the documentation; make one with `openssl rand -hex 32`",
        ));
    }
    Ok(())
}

/// A key and, during a rotation, its previous one (`<name>_PREVIOUS`),
/// each checked; the ones set, current first.
pub(crate) fn with_previous<F: Fn(&str) -> Option<String>>(
    v: &Vars<F>,
    name: &str,
    production: bool,
) -> Result<Vec<String>, ConfigError> {
    let mut keys = Vec::new();
    for n in [name.to_string(), format!("{name}_PREVIOUS")] {
        if let Some(k) = v.get(&n) {
            check(&n, &k, production)?;
            keys.push(k);
        }
    }
    Ok(keys)
}

/// In production, no two of the gateway's keys are equal: a payout key
/// that is also the admin key gives every payout client the admin routes.
pub(crate) fn distinct<F: Fn(&str) -> Option<String>>(
    v: &Vars<F>,
    production: bool,
) -> Result<(), ConfigError> {
    if !production {
        return Ok(());
    }
    let set: Vec<(&str, String)> = KEY_VARS
        .iter()
        .filter_map(|n| v.get(n).map(|k| (*n, k)))
        .collect();
    for (i, (name, key)) in set.iter().enumerate() {
        if let Some((first, _)) = set[..i].iter().find(|(_, k)| k == key) {
            // A key and its own previous one may match during a rotation's first step.
            if name.trim_end_matches("_PREVIOUS") != first.trim_end_matches("_PREVIOUS") {
                return Err(ConfigError::new(
                    name,
                    format!("must differ from {first}: each key unlocks different routes"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(
        pairs: &'static [(&'static str, &'static str)],
    ) -> Vars<impl Fn(&str) -> Option<String>> {
        Vars(move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn production_refuses_example_and_equal_keys() {
        assert!(check("ADMIN_API_KEY", "dev-admin-key-change-me-0123", false).is_ok());
        assert_eq!(
            check("ADMIN_API_KEY", "dev-admin-key-change-me-0123", true).map_err(|e| e.variable),
            Err("ADMIN_API_KEY".to_string())
        );
        assert!(check("ADMIN_API_KEY", "short", false).is_err());
        let same = vars(&[
            ("ADMIN_API_KEY", "k-0123456789abcdef"),
            ("PAYOUT_API_KEY", "k-0123456789abcdef"),
        ]);
        assert!(distinct(&same, false).is_ok());
        assert_eq!(
            distinct(&same, true).map_err(|e| e.variable),
            Err("PAYOUT_API_KEY".to_string())
        );
        let inv = vars(&[
            ("PAYOUT_API_KEY", "k-0123456789abcdef"),
            ("INVOICE_API_KEY", "k-0123456789abcdef"),
        ]);
        assert_eq!(
            distinct(&inv, true).map_err(|e| e.variable),
            Err("INVOICE_API_KEY".to_string())
        );
        let rotation = vars(&[
            ("PAYOUT_API_KEY", "k-0123456789abcdef"),
            ("PAYOUT_API_KEY_PREVIOUS", "k-0123456789abcdef"),
        ]);
        assert!(distinct(&rotation, true).is_ok());
        let fine = vars(&[
            ("ADMIN_API_KEY", "a-0123456789abcdef"),
            ("PAYOUT_API_KEY", "p-0123456789abcdef"),
        ]);
        assert!(distinct(&fine, true).is_ok());
    }
}
