//! Backends' timestamps, read.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Reads a backend's timestamp as Unix milliseconds: RFC 3339 (a space for
/// the `T`, and no offset, read as UTC, as Python's `datetime.isoformat`
/// writes LNbits' UTC times), or a number of seconds.
pub fn parse_timestamp_ms(v: &serde_json::Value) -> Option<u64> {
    if let Some(secs) = v.as_u64() {
        return Some(secs.saturating_mul(1000));
    }
    let s = v.as_str()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    let mut t = s.replacen(' ', "T", 1);
    let has_offset = t.ends_with('Z')
        || t.ends_with('z')
        || t.get(19..)
            .is_some_and(|rest| rest.contains('+') || rest.contains('-'));
    if !has_offset {
        t.push('Z');
    }
    let at = OffsetDateTime::parse(&t, &Rfc3339).ok()?;
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_backend_timestamps() {
        use serde_json::json;
        let p = super::parse_timestamp_ms;
        assert_eq!(p(&json!("2023-11-14T22:13:20Z")), Some(1_700_000_000_000));
        assert_eq!(
            p(&json!("2023-11-14T22:13:20.5+00:00")),
            Some(1_700_000_000_500)
        );
        assert_eq!(
            p(&json!("2023-11-14 22:13:20.123456")),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            p(&json!("2023-11-15T00:13:20+02:00")),
            Some(1_700_000_000_000)
        );
        assert_eq!(p(&json!(1_700_000_000u64)), Some(1_700_000_000_000));
        assert_eq!(p(&json!("1700000000")), Some(1_700_000_000_000));
        assert_eq!(p(&json!("yesterday")), None);
        assert_eq!(p(&json!(null)), None);
    }
}
