//! Outgoing URLs that a customer controls (LNURL endpoints, callbacks,
//! webhooks) must not reach anything internal: https only, no IP literals,
//! no loopback, private or link-local names, no other port than 443, no
//! credentials. Hosts on an explicit allow-list (local tests) relax only
//! what being local needs: plain http, the listed name or IP literal itself
//! and any port. Every other check (scheme http/https, no credentials)
//! still applies to them.

use url::{Host, Url};

use crate::vars::{ConfigError, Vars};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UrlPolicy {
    /// Hosts (no port) that may use plain http, be an IP literal or a local
    /// name, and use any port. Credentials are refused for them as for any
    /// other host.
    pub allow_http_hosts: Vec<String>,
    /// `OUTBOUND_DENY_DOMAINS`: domains (and every name under them) never
    /// fetched, such as the operator's own zones. Cloudflare's
    /// `global_fetch_strictly_public` flag already sends a fetch to the
    /// Worker's own zone through the public internet (past no origin
    /// shortcut); this refuses such names before any fetch.
    pub deny_domains: Vec<String>,
}

const BLOCKED_SUFFIXES: &[&str] = &[
    ".localhost",
    ".local",
    ".internal",
    ".lan",
    ".home.arpa",
    ".intranet",
    ".corp",
    ".onion",
];

impl UrlPolicy {
    /// `LNURL_ALLOW_HTTP_HOSTS`: hosts tests may reach over plain http (refused in production).
    pub(crate) fn from_vars<F: Fn(&str) -> Option<String>>(
        v: &Vars<F>,
        production: bool,
    ) -> Result<UrlPolicy, ConfigError> {
        let allow_http_hosts: Vec<String> = v
            .get("LNURL_ALLOW_HTTP_HOSTS")
            .map(|v| {
                v.split(',')
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if !allow_http_hosts.is_empty() && production {
            return Err(ConfigError::new(
                "LNURL_ALLOW_HTTP_HOSTS",
                "is for local tests and is refused when ENVIRONMENT=production",
            ));
        }
        let deny_domains = v
            .get("OUTBOUND_DENY_DOMAINS")
            .map(|v| {
                v.split(',')
                    .map(|d| {
                        d.trim()
                            .trim_start_matches("*.")
                            .trim_matches('.')
                            .to_ascii_lowercase()
                    })
                    .filter(|d| !d.is_empty())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if let Some(bad) = deny_domains
            .iter()
            .find(|d| url::Host::parse(d).is_err() || d.contains(['/', ':', '@']))
        {
            return Err(ConfigError::new(
                "OUTBOUND_DENY_DOMAINS",
                format!("`{bad}` is not a domain; list domains like example.com, comma-separated"),
            ));
        }
        Ok(UrlPolicy {
            allow_http_hosts,
            deny_domains,
        })
    }

    fn denied(&self, host: &str) -> bool {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        self.deny_domains.iter().any(|d| {
            h == *d
                || (h.len() > d.len()
                    && h.ends_with(d.as_str())
                    && h.as_bytes()[h.len() - d.len() - 1] == b'.')
        })
    }

    fn allow_listed(&self, host: &str) -> bool {
        self.allow_http_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Lightning Addresses resolve over https; hosts on the allow-list (local
    /// test servers) are reached over plain http instead.
    pub fn local_scheme(&self, url: &str) -> String {
        match Url::parse(url) {
            Ok(u)
                if u.scheme() == "https" && u.host_str().is_some_and(|h| self.allow_listed(h)) =>
            {
                format!("http{}", &url["https".len()..])
            }
            _ => url.to_string(),
        }
    }

    /// Parses `raw` and checks it; the error says why it is refused.
    pub fn check(&self, raw: &str) -> Result<Url, String> {
        let url = Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
        // Checks for every URL, allow-listed host or not.
        match url.scheme() {
            "http" | "https" => {}
            s => return Err(format!("scheme `{s}` is not allowed")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("URLs with credentials are not allowed".into());
        }
        let host_str = url
            .host_str()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if self.denied(&host_str) {
            return Err(format!("host `{host_str}` is in OUTBOUND_DENY_DOMAINS"));
        }
        // An allow-listed host is trusted to be local: plain http, its own
        // address and any port. Nothing else is relaxed.
        if self.allow_listed(&host_str) {
            return Ok(url);
        }
        if url.scheme() != "https" {
            return Err("only https URLs are allowed".into());
        }
        match url.host() {
            Some(Host::Domain(d)) => {
                let d = d.to_ascii_lowercase();
                let d = d.trim_end_matches('.');
                if d == "localhost"
                    || !d.contains('.')
                    || BLOCKED_SUFFIXES.iter().any(|s| d.ends_with(s))
                {
                    return Err(format!("host `{d}` is not a public domain"));
                }
                // A name made only of digits and dots is an IPv4 literal in disguise.
                if d.split('.')
                    .all(|label| label.chars().all(|c| c.is_ascii_digit() || c == 'x'))
                {
                    return Err("IP addresses are not allowed".into());
                }
            }
            Some(Host::Ipv4(_)) | Some(Host::Ipv6(_)) => {
                return Err("IP addresses are not allowed".into())
            }
            None => return Err("URL has no host".into()),
        }
        if let Some(p) = url.port() {
            if p != 443 {
                return Err(format!("port {p} is not allowed"));
            }
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_https_only() {
        let p = UrlPolicy::default();
        assert!(p
            .check("https://getalby.com/.well-known/lnurlp/bob")
            .is_ok());
        for bad in [
            "http://getalby.com/x",
            "https://127.0.0.1/x",
            "https://[::1]/x",
            "https://10.0.0.1/x",
            "https://169.254.169.254/latest",
            "https://localhost/x",
            "https://printer.local/x",
            "https://metadata.google.internal/x",
            "https://user:pw@getalby.com/x",
            "https://getalby.com:8443/x",
            "https://intranet/x",
            "https://0x7f.1/x",
            "ftp://getalby.com/x",
            "not a url",
        ] {
            assert!(p.check(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn denied_domains_and_their_subdomains_are_refused() {
        let v = Vars(|n: &str| {
            (n == "OUTBOUND_DENY_DOMAINS")
                .then(|| " shop.example , *.Corp-Zone.example. ".to_string())
        });
        let p = UrlPolicy::from_vars(&v, true).unwrap_or_default();
        assert_eq!(p.deny_domains, vec!["shop.example", "corp-zone.example"]);
        for bad in [
            "https://shop.example/.well-known/lnurlp/x",
            "https://internal.shop.example/x",
            "https://a.b.SHOP.example./x",
            "https://corp-zone.example/x",
        ] {
            assert!(
                matches!(p.check(bad), Err(m) if m.contains("OUTBOUND_DENY_DOMAINS")),
                "{bad}"
            );
        }
        for ok in [
            "https://myshop.example/x",
            "https://shop.example.com/x",
            "https://getalby.com/x",
        ] {
            assert!(p.check(ok).is_ok(), "{ok}");
        }
        // Deny wins over the test allow-list.
        let both = UrlPolicy {
            allow_http_hosts: vec!["lnurl.test".into()],
            deny_domains: vec!["lnurl.test".into()],
        };
        assert!(both.check("http://lnurl.test/x").is_err());
        let junk = Vars(|n: &str| {
            (n == "OUTBOUND_DENY_DOMAINS").then(|| "https://x.example/".to_string())
        });
        assert_eq!(
            UrlPolicy::from_vars(&junk, true).map_err(|e| e.variable),
            Err("OUTBOUND_DENY_DOMAINS".to_string())
        );
    }

    #[test]
    fn allow_list_permits_http_for_named_hosts() {
        let p = UrlPolicy {
            allow_http_hosts: vec!["127.0.0.1".into()],
            ..UrlPolicy::default()
        };
        assert!(p
            .check("http://127.0.0.1:8080/.well-known/lnurlp/alice")
            .is_ok());
        assert!(p.check("http://127.0.0.2:8080/x").is_err());
        assert!(p.check("https://127.0.0.1:9/x").is_ok());
    }

    /// Only the scheme, address and port are relaxed for allow-listed hosts.
    #[test]
    fn allow_list_still_refuses_credentials_and_other_schemes() {
        let p = UrlPolicy {
            allow_http_hosts: vec!["127.0.0.1".into(), "lnurl.test".into()],
            ..UrlPolicy::default()
        };
        for bad in [
            "http://user:pw@127.0.0.1:8080/cb",
            "http://user@127.0.0.1:8080/cb",
            "http://:pw@127.0.0.1/cb",
            "https://alice:secret@lnurl.test/.well-known/lnurlp/alice",
            "ftp://127.0.0.1/x",
            "ws://lnurl.test/x",
        ] {
            let r = p.check(bad);
            assert!(r.is_err(), "{bad} must be refused: {r:?}");
        }
        assert!(matches!(
            p.check("http://user:pw@127.0.0.1:8080/cb"),
            Err(m) if m.contains("credentials")
        ));
        assert!(p.check("http://lnurl.test:8080/cb?amount=1").is_ok());
        assert_eq!(
            p.local_scheme("https://127.0.0.1:9/a"),
            "http://127.0.0.1:9/a"
        );
        assert_eq!(
            p.local_scheme("https://example.com/a"),
            "https://example.com/a"
        );
    }
}
