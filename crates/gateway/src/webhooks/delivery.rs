//! Delivering one event to one URL: each attempt recorded, redelivered
//! with backoff for more than three days (a receiver down over a weekend
//! still gets it), then given up (an admin can redeliver).

use serde::{Deserialize, Serialize};

use backends::http::{HttpResponse, TransportError};

/// Redelivery delays after each failed attempt: 10 s, 1 min, 10 min, 1 h,
/// 3 h, 6 h, 12 h, 12 h, 24 h, 24 h. Eleven attempts over 82 hours.
pub const SCHEDULE_MS: &[u64] = &[
    10_000,
    60_000,
    600_000,
    3_600_000,
    3 * 3_600_000,
    6 * 3_600_000,
    12 * 3_600_000,
    12 * 3_600_000,
    24 * 3_600_000,
    24 * 3_600_000,
];
pub const DELIVERY_TIMEOUT_MS: u64 = 10_000;
/// How many attempts a record keeps (the schedule counts them all).
pub const HISTORY_LEN: usize = 3 * SCHEDULE_MS.len();

/// One attempt: the receiver's status, or why there was none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Delivery {
    /// The attempt `result` made at `now_ms`: delivered on a 2xx only.
    pub fn of(result: &Result<HttpResponse, TransportError>, now_ms: u64) -> Delivery {
        let (status, error) = match result {
            Ok(r) if r.is_success() => (Some(r.status), None),
            Ok(r) => (Some(r.status), Some(format!("HTTP {}", r.status))),
            Err(e) => (None, Some(format!("{e:?}"))),
        };
        Delivery {
            at_ms: now_ms,
            status,
            error,
        }
    }

    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

/// When to try again after the `failed`-th failed attempt of one event
/// (counted from 1) at `now_ms`; `None` once the schedule is used up.
pub fn retry_at(failed: u32, now_ms: u64) -> Option<u64> {
    let i = usize::try_from(failed.checked_sub(1)?).ok()?;
    SCHEDULE_MS.get(i).map(|d| now_ms + d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_lasts_more_than_three_days() {
        let total: u64 = SCHEDULE_MS.iter().sum();
        assert!(total > 3 * 24 * 3_600_000, "{total}");
        assert_eq!(retry_at(1, 0), Some(10_000));
        assert_eq!(retry_at(SCHEDULE_MS.len() as u32 + 1, 0), None);
        assert_eq!(retry_at(0, 0), None);
    }

    #[test]
    fn only_a_2xx_is_delivered() {
        assert!(Delivery::of(&Ok(HttpResponse::json(204, &serde_json::json!({}))), 1).delivered());
        assert!(!Delivery::of(&Ok(HttpResponse::json(301, &serde_json::json!({}))), 1).delivered());
        assert!(!Delivery::of(&Err(TransportError::Timeout), 1).delivered());
    }
}
