//! Timestamps as the API shows them (RFC 3339, UTC).

/// Formats Unix seconds as RFC 3339; out-of-range values fall back to the epoch.
pub fn iso8601_secs(secs: u64) -> String {
    backends::timestamp::rfc3339_secs(secs)
}

pub fn iso8601_ms(ms: u64) -> String {
    iso8601_secs(ms / 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc() {
        assert_eq!(super::iso8601_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::iso8601_secs(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
