//! Timestamps: backends' read, and ours written, as RFC 3339 in UTC. The
//! calendar is Howard Hinnant's civil-date arithmetic ("chrono-Compatible
//! Low-Level Date Algorithms"), a few lines in place of a date crate (about
//! 4 KB gzip of the Worker); the tests check it against the `time` crate.

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
    let ms = parse_rfc3339_ms(s.as_bytes())?;
    u64::try_from(ms).ok()
}

/// Unix seconds as RFC 3339 in UTC (`2023-11-14T22:13:20Z`); a time past
/// the year 9999 is shown as the epoch.
pub fn rfc3339_secs(secs: u64) -> String {
    let Ok(secs) = i64::try_from(secs) else {
        return EPOCH.into();
    };
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if y > 9999 {
        return EPOCH.into();
    }
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

const EPOCH: &str = "1970-01-01T00:00:00Z";

/// `YYYY-MM-DD(T| )HH:MM:SS[.frac][Z|±HH:MM]`, no offset read as UTC, as
/// Unix milliseconds (the fraction truncated).
fn parse_rfc3339_ms(s: &[u8]) -> Option<i64> {
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = s.get(from..from + len)?;
        digits.iter().try_fold(0i64, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let at = |i: usize, c: u8| s.get(i).is_some_and(|x| x.eq_ignore_ascii_case(&c));
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(at(4, b'-') && at(7, b'-') && (at(10, b'T') || at(10, b' ')))
        || !(at(13, b':') && at(16, b':'))
    {
        return None;
    }
    let month_ok = (1..=12).contains(&mo);
    if !month_ok || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0;
    if at(i, b'.') {
        let digits = s[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let first3 = &s[i + 1..i + 1 + digits.min(3)];
        frac_ms = first3
            .iter()
            .fold(0i64, |n, c| n * 10 + i64::from(c - b'0'))
            * 10i64.pow(3 - first3.len() as u32);
        i += 1 + digits;
    }
    let offset_secs = match s.get(i) {
        None => 0,
        Some(b'Z' | b'z') if s.len() == i + 1 => 0,
        Some(sign @ (b'+' | b'-')) if s.len() == i + 6 && at(i + 3, b':') => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    Some(secs * 1000 + frac_ms)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    use super::{parse_timestamp_ms, rfc3339_secs};

    #[test]
    fn reads_backend_timestamps() {
        let p = parse_timestamp_ms;
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
        for bad in [
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0200",
            "2023-11-14T22:13:20Zjunk",
            "2023-11-14",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(p(&json!(bad)), None, "{bad}");
        }
        assert_eq!(p(&json!("2024-02-29T00:00:00Z")), Some(1_709_164_800_000));
    }

    #[test]
    fn writes_utc() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_secs(u64::MAX), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(253_402_300_800), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    /// The `time` crate's reading of the same text, as the code read it before.
    fn by_time_crate(s: &str) -> Option<u64> {
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

    proptest! {
        #[test]
        fn writes_as_the_time_crate_does(secs in 0u64..253_402_300_800) {
            let t = OffsetDateTime::from_unix_timestamp(secs as i64).ok()
                .and_then(|t| t.format(&Rfc3339).ok());
            prop_assert_eq!(Some(rfc3339_secs(secs)), t);
        }

        #[test]
        fn reads_as_the_time_crate_does(
            secs in 0i64..253_402_300_800,
            frac in proptest::option::of("[0-9]{1,9}"),
            sep in prop_oneof![Just('T'), Just(' ')],
            offset in proptest::option::of((prop_oneof![Just('+'), Just('-')], 0u32..24, 0u32..60)),
            zulu in any::<bool>(),
        ) {
            let t = OffsetDateTime::from_unix_timestamp(secs).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut s = format!(
                "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}",
                t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second()
            );
            if let Some(f) = &frac {
                s.push('.');
                s.push_str(f);
            }
            match offset {
                Some((sign, h, m)) => s.push_str(&format!("{sign}{h:02}:{m:02}")),
                None if zulu => s.push('Z'),
                None => {}
            }
            prop_assert_eq!(parse_timestamp_ms(&json!(s)), by_time_crate(&s), "{}", s);
        }
    }
}
