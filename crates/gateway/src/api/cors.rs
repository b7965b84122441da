//! CORS for browser callers: which origins may read responses, and the
//! headers a preflight answer carries.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    Any,
    List(Vec<String>),
}

pub const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
pub const ALLOW_HEADERS: &str = "content-type, authorization, idempotency-key";
pub const MAX_AGE_SECS: &str = "600";

/// Whether browsers from the allowed origins may call `path`. Payout and
/// admin routes, and the invoice routes that take a server's key or a
/// backend's notice, answer without CORS headers: their keys belong on a
/// server, and a page that could read their answers invites holding them.
pub fn browser_path(path: &str) -> bool {
    !(path == "/api/payouts"
        || path.starts_with("/api/payouts/")
        || path.starts_with("/api/invoices/"))
}

impl AllowedOrigins {
    /// `*`, or a comma-separated list of origins like `https://shop.example`.
    pub fn parse(s: &str) -> Result<AllowedOrigins, String> {
        if s.trim() == "*" {
            return Ok(AllowedOrigins::Any);
        }
        let mut list = Vec::new();
        for o in s.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let u = url::Url::parse(o).map_err(|_| format!("`{o}` is not an origin"))?;
            let origin = u.origin().ascii_serialization();
            if !matches!(u.scheme(), "http" | "https") || origin != o.trim_end_matches('/') {
                return Err(format!("`{o}` is not an origin like https://shop.example"));
            }
            list.push(origin);
        }
        if list.is_empty() {
            return Err("is empty; use * or a list of origins".into());
        }
        Ok(AllowedOrigins::List(list))
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`.
    pub fn allow(&self, origin: Option<&str>) -> Option<String> {
        match self {
            AllowedOrigins::Any => Some("*".into()),
            AllowedOrigins::List(list) => {
                let o = origin?;
                list.iter().find(|a| a.as_str() == o).cloned()
            }
        }
    }

    /// Headers for any response to a request from `origin`.
    pub fn response_headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let Some(v) = self.allow(origin) {
            h.push(("access-control-allow-origin", v));
            h.push(("access-control-expose-headers", "retry-after".into()));
        }
        if matches!(self, AllowedOrigins::List(_)) {
            h.push(("vary", "Origin".into()));
        }
        h
    }

    /// Headers for a preflight (`OPTIONS`) answer.
    pub fn preflight_headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = self.response_headers(origin);
        if self.allow(origin).is_some() {
            h.push(("access-control-allow-methods", ALLOW_METHODS.into()));
            h.push(("access-control-allow-headers", ALLOW_HEADERS.into()));
            h.push(("access-control-max-age", MAX_AGE_SECS.into()));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_allows_only_listed_origins() {
        let a = AllowedOrigins::parse("https://shop.example, http://localhost:3000")
            .unwrap_or(AllowedOrigins::Any);
        assert_eq!(
            a.allow(Some("https://shop.example")),
            Some("https://shop.example".into())
        );
        assert_eq!(a.allow(Some("https://evil.example")), None);
        assert_eq!(a.allow(None), None);
        assert!(a
            .response_headers(Some("https://evil.example"))
            .iter()
            .all(|(k, _)| *k == "vary"));
        assert_eq!(a.preflight_headers(Some("http://localhost:3000")).len(), 6);
    }

    #[test]
    fn payout_and_admin_paths_get_no_cors() {
        for p in [
            "/api/payouts",
            "/api/payouts/po_1",
            "/api/payouts/attention",
            "/api/invoices/events",
            "/api/invoices/notify",
        ] {
            assert!(!browser_path(p), "{p}");
        }
        for p in [
            "/",
            "/api/create-invoice",
            "/api/check-invoice",
            "/api/lightning/health",
            "/status",
            "/.well-known/lnurlp/x",
            "/lnurlp/x/callback",
            "/pay/ab",
            "/api/payoutsx",
        ] {
            assert!(browser_path(p), "{p}");
        }
    }

    #[test]
    fn star_allows_everyone() {
        let a = AllowedOrigins::parse("*").unwrap_or(AllowedOrigins::List(vec![]));
        assert_eq!(a.allow(Some("https://x.example")), Some("*".into()));
    }

    #[test]
    fn rejects_paths_and_junk() {
        assert!(AllowedOrigins::parse("https://shop.example/path").is_err());
        assert!(AllowedOrigins::parse("shop.example").is_err());
        assert!(AllowedOrigins::parse(" , ").is_err());
    }
}
