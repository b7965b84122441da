//! Rate limiting of the public invoice routes, per client IP. Counting is
//! done by Cloudflare's rate-limiting binding (see wrangler.toml); this
//! module decides what is counted together: the key.

use std::net::{IpAddr, Ipv6Addr};

use crate::config::ConfigError;

/// The binding's name in wrangler.toml (`[[ratelimits]] name = ...`).
pub const BINDING: &str = "INVOICE_RATE_LIMITER";
/// Set to `false` to ignore the binding (for a load test, say).
pub const ENABLED_VAR: &str = "INVOICE_RATE_LIMIT_ENABLED";
/// The binding does not say when its window ends; its longest period is 60 s.
pub const RETRY_AFTER_SECS: u64 = 60;

/// The limited routes; each has its own counter per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    CreateInvoice,
    CheckInvoice,
}

/// The client part of the key: the IP from `CF-Connecting-IP`. An IPv6
/// client counts by its /64, the block one customer usually holds, so
/// rotating addresses inside it does not reset the count. A missing or
/// unreadable header shares one bucket (Cloudflare always sets it).
pub fn client(header: Option<&str>) -> String {
    match header.map(str::trim).and_then(|h| h.parse::<IpAddr>().ok()) {
        Some(IpAddr::V4(ip)) => ip.to_string(),
        Some(IpAddr::V6(ip)) => {
            let s = ip.segments();
            let prefix = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{prefix}/64")
        }
        None => "unknown".into(),
    }
}

/// The key counted by the binding.
pub fn key(route: Limited, client_header: Option<&str>) -> String {
    let route = match route {
        Limited::CreateInvoice => "create",
        Limited::CheckInvoice => "check",
    };
    format!("{route}:{}", client(client_header))
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

    #[test]
    fn keys_per_route_and_client() {
        assert_eq!(
            key(Limited::CreateInvoice, Some("203.0.113.7")),
            "create:203.0.113.7"
        );
        assert_eq!(
            key(Limited::CheckInvoice, Some(" 203.0.113.7 ")),
            "check:203.0.113.7"
        );
        assert_eq!(
            key(Limited::CreateInvoice, Some("2001:db8:1:2:aaaa::1")),
            "create:2001:db8:1:2::/64"
        );
        assert_eq!(
            client(Some("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            client(Some("2001:db8:1:2::9"))
        );
        assert_ne!(
            client(Some("2001:db8:1:3::1")),
            client(Some("2001:db8:1:2::1"))
        );
        assert_eq!(client(None), "unknown");
        assert_eq!(client(Some("not an ip, 1.2.3.4")), "unknown");
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
