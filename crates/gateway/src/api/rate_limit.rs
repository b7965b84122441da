//! Rate limiting of the public routes, per client. Counting is
//! done by Cloudflare's rate-limiting binding (see wrangler.toml); this
//! module decides what is counted together: the key.

use std::net::{IpAddr, Ipv6Addr};

use crate::vars::ConfigError;

/// The binding's name in wrangler.toml (`[[ratelimits]] name = ...`).
pub const BINDING: &str = "INVOICE_RATE_LIMITER";
/// The lower limit of check-invoice's search of every backend for a hash
/// that neither the watch nor the index knows.
pub const INDEX_MISS_BINDING: &str = "INDEX_MISS_LIMITER";
/// Set to `false` to ignore the binding (for a load test, say).
pub const ENABLED_VAR: &str = "INVOICE_RATE_LIMIT_ENABLED";
/// The binding does not say when its window ends; its longest period is 60 s.
pub const RETRY_AFTER_SECS: u64 = 60;

/// The limited routes; each has its own counter per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    CreateInvoice,
    CheckInvoice,
    /// `GET /api/lightning/health` and `GET /status`.
    Status,
    /// check-invoice's search of every backend, after the watch and the
    /// index missed (its own binding, [`INDEX_MISS_BINDING`]).
    IndexMiss,
}

impl Limited {
    /// The binding that counts this route.
    pub fn binding(self) -> &'static str {
        match self {
            Limited::IndexMiss => INDEX_MISS_BINDING,
            _ => BINDING,
        }
    }
}

/// What counts as one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientKeys {
    /// An IPv6 client counts by this prefix (`RATE_LIMIT_IPV6_PREFIX`: 48,
    /// 56 or 64; 56 by default, the block an ISP usually hands one home).
    pub ipv6_prefix: u8,
    /// `RATE_LIMIT_UNKNOWN_CLIENTS`: what a request without a readable
    /// `CF-Connecting-IP` does.
    pub unknown: UnknownClients,
}

/// Requests whose client IP is unknown: Cloudflare sets `CF-Connecting-IP`
/// on every request from the internet, so these come from a service binding
/// or a local test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownClients {
    /// They share one bucket (the default).
    Shared,
    /// They are not counted (a trusted Worker calling through a binding).
    Unlimited,
}

impl Default for ClientKeys {
    fn default() -> Self {
        ClientKeys {
            ipv6_prefix: 56,
            unknown: UnknownClients::Shared,
        }
    }
}

/// The rate-limit settings (`INVOICE_RATE_LIMIT_ENABLED`,
/// `RATE_LIMIT_IPV6_PREFIX`, `RATE_LIMIT_UNKNOWN_CLIENTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub enabled: bool,
    pub clients: ClientKeys,
}

impl RateLimits {
    pub fn from_lookup<F: Fn(&str) -> Option<String>>(get: F) -> Result<Self, ConfigError> {
        let ipv6_prefix = match get("RATE_LIMIT_IPV6_PREFIX").as_deref().map(str::trim) {
            None | Some("") => 56,
            Some("48") => 48,
            Some("56") => 56,
            Some("64") => 64,
            Some(_) => {
                return Err(ConfigError {
                    variable: "RATE_LIMIT_IPV6_PREFIX".into(),
                    message: "must be 48, 56 or 64".into(),
                })
            }
        };
        let unknown = match get("RATE_LIMIT_UNKNOWN_CLIENTS").as_deref().map(str::trim) {
            None | Some("") | Some("shared") => UnknownClients::Shared,
            Some("unlimited") => UnknownClients::Unlimited,
            Some(_) => {
                return Err(ConfigError {
                    variable: "RATE_LIMIT_UNKNOWN_CLIENTS".into(),
                    message: "must be shared or unlimited".into(),
                })
            }
        };
        Ok(RateLimits {
            enabled: enabled(get(ENABLED_VAR).as_deref())?,
            clients: ClientKeys {
                ipv6_prefix,
                unknown,
            },
        })
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            enabled: true,
            clients: ClientKeys::default(),
        }
    }
}

/// The client part of the key, or `None` when the client is not counted.
/// - The IP from `CF-Connecting-IP`; an IPv6 client by its prefix, so
///   rotating addresses inside the block one customer holds does not reset
///   the count.
/// - With `CF-Worker` (set by Cloudflare on a subrequest from another
///   zone's Worker, which all arrive from one shared IPv6 range), that
///   zone's name too: each calling Worker gets its own bucket.
/// - A missing or unreadable IP: one shared bucket, or not counted.
pub fn client(ip: Option<&str>, cf_worker: Option<&str>, keys: ClientKeys) -> Option<String> {
    let ip = match ip.map(str::trim).and_then(|h| h.parse::<IpAddr>().ok()) {
        Some(IpAddr::V4(ip)) => ip.to_string(),
        Some(IpAddr::V6(ip)) => {
            let bits = u128::from(ip);
            let prefix = u32::from(keys.ipv6_prefix.clamp(1, 128));
            let masked = Ipv6Addr::from(bits & (u128::MAX << (128 - prefix)));
            format!("{masked}/{prefix}")
        }
        None => match keys.unknown {
            UnknownClients::Shared => "unknown".into(),
            UnknownClients::Unlimited => return None,
        },
    };
    Some(match cf_worker.map(str::trim).filter(|w| !w.is_empty()) {
        // Zone names are short; a longer value is cut, not trusted to size the key.
        Some(w) => format!("{ip}@{}", w.get(..253).unwrap_or(w)),
        None => ip,
    })
}

/// The key counted by the binding, or `None` when the client is not counted.
pub fn key(
    route: Limited,
    ip: Option<&str>,
    cf_worker: Option<&str>,
    keys: ClientKeys,
) -> Option<String> {
    let route = match route {
        Limited::CreateInvoice => "create",
        Limited::CheckInvoice => "check",
        Limited::Status => "status",
        Limited::IndexMiss => "miss",
    };
    Some(format!("{route}:{}", client(ip, cf_worker, keys)?))
}

/// `INVOICE_RATE_LIMIT_ENABLED`: unset or `true` uses the binding if bound.
pub fn enabled(var: Option<&str>) -> Result<bool, ConfigError> {
    match var.map(str::trim) {
        None | Some("") | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(ConfigError {
            variable: ENABLED_VAR.into(),
            message: "must be true or false".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(ip: Option<&str>) -> Option<String> {
        client(ip, None, ClientKeys::default())
    }

    #[test]
    fn keys_per_route_and_client() {
        let d = ClientKeys::default();
        assert_eq!(
            key(Limited::CreateInvoice, Some("203.0.113.7"), None, d).as_deref(),
            Some("create:203.0.113.7")
        );
        assert_eq!(
            key(Limited::Status, Some(" 203.0.113.7 "), None, d).as_deref(),
            Some("status:203.0.113.7")
        );
        assert_eq!(
            key(
                Limited::CreateInvoice,
                Some("2001:db8:1:2:aaaa::1"),
                None,
                d
            )
            .as_deref(),
            Some("create:2001:db8:1::/56")
        );
        // One home's /56: every address in it is one client; the next /56 is another.
        assert_eq!(k(Some("2001:db8:1:ff:ffff::1")), k(Some("2001:db8:1::9")));
        assert_ne!(k(Some("2001:db8:1:100::1")), k(Some("2001:db8:1::1")));
        let per48 = ClientKeys {
            ipv6_prefix: 48,
            ..d
        };
        assert_eq!(
            client(Some("2001:db8:1:ffff::1"), None, per48).as_deref(),
            Some("2001:db8:1::/48")
        );
        let per64 = ClientKeys {
            ipv6_prefix: 64,
            ..d
        };
        assert_eq!(
            client(Some("2001:db8:1:2:aaaa::1"), None, per64).as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(k(None).as_deref(), Some("unknown"));
        assert_eq!(k(Some("not an ip, 1.2.3.4")).as_deref(), Some("unknown"));
        let unlimited = ClientKeys {
            unknown: UnknownClients::Unlimited,
            ..d
        };
        assert_eq!(client(None, None, unlimited), None);
    }

    #[test]
    fn each_calling_worker_has_its_own_bucket() {
        let d = ClientKeys::default();
        let ip = Some("2a06:98c0:3600::103");
        let a = client(ip, Some("shop-a.example"), d);
        let b = client(ip, Some("shop-b.example"), d);
        assert_ne!(a, b);
        assert_eq!(a.as_deref(), Some("2a06:98c0:3600::/56@shop-a.example"));
        assert_eq!(client(ip, Some(" "), d), client(ip, None, d));
    }

    #[test]
    fn settings_are_strict() {
        let get = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(RateLimits::from_lookup(get(&[])), Ok(RateLimits::default()));
        assert_eq!(
            RateLimits::from_lookup(get(&[("RATE_LIMIT_IPV6_PREFIX", "32")]))
                .map_err(|e| e.variable),
            Err("RATE_LIMIT_IPV6_PREFIX".to_string())
        );
        assert_eq!(
            RateLimits::from_lookup(get(&[("RATE_LIMIT_UNKNOWN_CLIENTS", "refuse")]))
                .map_err(|e| e.variable),
            Err("RATE_LIMIT_UNKNOWN_CLIENTS".to_string())
        );
        let r = RateLimits::from_lookup(get(&[
            ("RATE_LIMIT_UNKNOWN_CLIENTS", "unlimited"),
            ("RATE_LIMIT_IPV6_PREFIX", "48"),
        ]));
        assert_eq!(
            r.map(|r| (r.clients.unknown, r.clients.ipv6_prefix)),
            Ok((UnknownClients::Unlimited, 48))
        );
    }

    #[test]
    fn enabled_is_strict() {
        assert_eq!(enabled(None), Ok(true));
        assert_eq!(enabled(Some("true")), Ok(true));
        assert_eq!(enabled(Some("false")), Ok(false));
        assert_eq!(
            enabled(Some("no")).map_err(|e| e.variable),
            Err(ENABLED_VAR.to_string())
        );
    }
}
