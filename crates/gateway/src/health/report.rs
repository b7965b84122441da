//! What `GET /api/lightning/health` and `/status` show, derived from the
//! health book. Field names follow the shape monitors already watch.

use serde::Serialize;

use crate::config::Config;
use crate::health::breaker::BreakerState;
use crate::health::{HealthBook, Sample};
use crate::time::iso8601_ms;
use backends::BackendKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overall {
    /// Every enabled provider is online.
    Healthy,
    /// Some are offline, at least one is online.
    Degraded,
    /// None is online.
    Down,
}

impl Overall {
    pub fn as_str(self) -> &'static str {
        match self {
            Overall::Healthy => "healthy",
            Overall::Degraded => "degraded",
            Overall::Down => "down",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub name: &'static str,
    pub provider: &'static str,
    /// `online` or `offline`.
    pub status: &'static str,
    pub last_check: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<u64>,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_retry_at: Option<String>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub last_success: Option<String>,
    /// Share of successes over the last `health::WINDOW` outcomes.
    pub success_rate: Option<f64>,
    #[serde(skip)]
    pub history: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fallback {
    pub is_online: bool,
    /// The provider that would serve the next invoice: the first online one.
    pub active_provider: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    pub status: Overall,
    pub timestamp: String,
    pub network: &'static str,
    pub services: Vec<Service>,
    pub fallback: Fallback,
}

impl HealthReport {
    /// 200 while anything can serve, 503 when nothing can (for uptime monitors).
    pub fn http_status(&self) -> u16 {
        match self.status {
            Overall::Down => 503,
            _ => 200,
        }
    }
}

/// How health and `/status` name a backend: its descriptor's label.
pub fn label(kind: BackendKind) -> &'static str {
    kind.descriptor().label
}

pub fn report(cfg: &Config, book: &HealthBook, now_ms: u64) -> HealthReport {
    let services: Vec<Service> = cfg
        .backends
        .iter()
        .map(|p| {
            let h = book.get(p.name());
            let checked = h.last_check_ms.is_some();
            Service {
                name: label(p.kind),
                provider: p.name(),
                status: if checked && h.online() {
                    "online"
                } else {
                    "offline"
                },
                last_check: h.last_check_ms.map(iso8601_ms),
                latency: h.last_latency_ms,
                breaker: h.breaker.name(),
                breaker_retry_at: match h.breaker {
                    BreakerState::Open { until_ms } => Some(iso8601_ms(until_ms)),
                    _ => None,
                },
                consecutive_failures: h.consecutive_failures,
                last_error: if checked && !h.online() {
                    h.last_error
                        .clone()
                        .or_else(|| Some("never checked".into()))
                } else if !checked {
                    Some("never checked".into())
                } else {
                    None
                },
                last_success: h.last_success_ms.map(iso8601_ms),
                success_rate: h.success_rate().map(|r| (r * 1000.0).round() / 1000.0),
                history: h.history.clone(),
            }
        })
        .collect();
    let online = services.iter().filter(|s| s.status == "online").count();
    let status = if online == services.len() && online > 0 {
        Overall::Healthy
    } else if online > 0 {
        Overall::Degraded
    } else {
        Overall::Down
    };
    let active_provider = services
        .iter()
        .find(|s| s.status == "online")
        .map(|s| s.provider);
    HealthReport {
        status,
        timestamp: iso8601_ms(now_ms),
        network: cfg.network.as_str(),
        services,
        fallback: Fallback {
            is_online: online > 0,
            active_provider,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::breaker::BreakerPolicy;
    use crate::health::Source;

    fn cfg() -> Config {
        crate::test_config::config(&[
            ("LIGHTNING_PROVIDERS", "phoenixd,lnd"),
            ("PHOENIXD_URL", "http://127.0.0.1:2"),
            ("PHOENIXD_PASSWORD", "k"),
            ("LND_REST_URL", "http://127.0.0.1:1"),
            ("LND_ADMIN_MACAROON", "ab"),
        ])
    }

    const P: BreakerPolicy = BreakerPolicy {
        failure_threshold: 2,
        cooldown_ms: 1000,
    };

    #[test]
    fn healthy_degraded_down() {
        let c = cfg();
        let mut b = HealthBook::default();
        let r = report(&c, &b, 0);
        assert_eq!(r.status, Overall::Down, "never checked is not online");
        assert_eq!(r.http_status(), 503);
        b.record_success("phoenixd", 10, 1, Source::Probe);
        b.record_success("lnd", 20, 1, Source::Probe);
        let r = report(&c, &b, 2);
        assert_eq!((r.status, r.http_status()), (Overall::Healthy, 200));
        assert_eq!(r.fallback.active_provider, Some("phoenixd"));
        b.record_failure("phoenixd", "HTTP 500", 5, 3, Source::Probe, &P);
        let r = report(&c, &b, 4);
        assert_eq!((r.status, r.http_status()), (Overall::Degraded, 200));
        assert_eq!(r.fallback.active_provider, Some("lnd"));
        assert_eq!(r.services[0].last_error.as_deref(), Some("HTTP 500"));
        b.record_failure("lnd", "timed out", 5, 3, Source::Probe, &P);
        let r = report(&c, &b, 4);
        assert_eq!(r.status, Overall::Down);
        assert!(!r.fallback.is_online);
        assert_eq!(r.fallback.active_provider, None);
    }

    #[test]
    fn json_uses_the_monitored_field_names() {
        let c = cfg();
        let mut b = HealthBook::default();
        b.record_success("phoenixd", 10, 1_700_000_000_000, Source::Probe);
        let v = serde_json::to_value(report(&c, &b, 1_700_000_000_000)).unwrap_or_default();
        assert_eq!(v["status"], "degraded");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20Z");
        let s = &v["services"][0];
        for k in [
            "name",
            "status",
            "provider",
            "lastCheck",
            "latency",
            "breaker",
            "consecutiveFailures",
            "lastError",
            "successRate",
        ] {
            assert!(s.get(k).is_some(), "missing {k} in {s}");
        }
        assert_eq!(s["status"], "online");
        assert_eq!(v["fallback"]["isOnline"], true);
        assert_eq!(v["fallback"]["activeProvider"], "phoenixd");
        assert!(
            v["services"][1].get("latency").is_none(),
            "latency is omitted when unknown"
        );
    }
}
