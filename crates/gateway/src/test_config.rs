//! A configuration for host tests.

/// A configuration from `pairs` on top of a development base.
pub fn config(pairs: &[(&str, &str)]) -> crate::config::Config {
    let mut m: std::collections::HashMap<String, String> = [("ENVIRONMENT", "development")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in pairs {
        m.insert(k.to_string(), v.to_string());
    }
    match crate::config::Config::from_lookup(|k| m.get(k).cloned()) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e:?}"),
    }
}
