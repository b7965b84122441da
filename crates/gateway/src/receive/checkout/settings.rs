//! The checkout page's settings: the shop's name (`CHECKOUT_SHOP_NAME`),
//! the hosts a keyless `success_url` may point at
//! (`CHECKOUT_REDIRECT_HOSTS`) and the origins that may embed the page
//! (`CHECKOUT_FRAME_ANCESTORS`).

pub const DEFAULT_SHOP_NAME: &str = "Lightning payment";
pub const MAX_SHOP_NAME_CHARS: usize = 80;

#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutSettings {
    pub shop_name: String,
    /// Lower-case host names, exact matches only.
    pub redirect_hosts: Vec<String>,
    /// Serialized origins (`https://shop.example`); empty: nobody may frame it.
    pub frame_ancestors: Vec<String>,
}

impl Default for CheckoutSettings {
    fn default() -> Self {
        CheckoutSettings {
            shop_name: DEFAULT_SHOP_NAME.into(),
            redirect_hosts: Vec::new(),
            frame_ancestors: Vec::new(),
        }
    }
}

fn list(raw: Option<&str>) -> impl Iterator<Item = &str> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A DNS host name as a browser writes it (lower case, ASCII: punycode for
/// others), without a port.
fn host_name(s: &str) -> Option<String> {
    let h = s.to_ascii_lowercase();
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then_some(h)
}

/// An origin that may frame the page: `https://host[:port]`, or plain http
/// for `localhost` while developing.
fn frame_origin(s: &str) -> Option<String> {
    let u = url::Url::parse(s).ok()?;
    let local = u.host_str() == Some("localhost");
    let scheme_ok = u.scheme() == "https" || (u.scheme() == "http" && local);
    let bare = u.path() == "/" && u.query().is_none() && u.fragment().is_none();
    let plain = u.username().is_empty() && u.password().is_none();
    (scheme_ok && bare && plain && u.host_str().is_some()).then(|| u.origin().ascii_serialization())
}

impl CheckoutSettings {
    pub fn parse(
        shop_name: Option<&str>,
        redirect_hosts: Option<&str>,
        frame_ancestors: Option<&str>,
    ) -> Result<CheckoutSettings, (&'static str, String)> {
        let shop_name = match shop_name.map(str::trim).filter(|s| !s.is_empty()) {
            None => DEFAULT_SHOP_NAME.to_string(),
            Some(s) if s.chars().count() > MAX_SHOP_NAME_CHARS || s.chars().any(char::is_control) => {
                return Err((
                    "CHECKOUT_SHOP_NAME",
                    format!("must be at most {MAX_SHOP_NAME_CHARS} characters, without control characters"),
                ))
            }
            Some(s) => s.to_string(),
        };
        let redirect_hosts = list(redirect_hosts)
            .map(|h| {
                host_name(h).ok_or((
                    "CHECKOUT_REDIRECT_HOSTS",
                    format!("{h:?} is not a host name (list names such as shop.example.com, comma-separated)"),
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let frame_ancestors = list(frame_ancestors)
            .map(|o| {
                frame_origin(o).ok_or((
                    "CHECKOUT_FRAME_ANCESTORS",
                    format!("{o:?} is not an https origin such as https://shop.example.com"),
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CheckoutSettings {
            shop_name,
            redirect_hosts,
            frame_ancestors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_lists_and_refuses_what_a_browser_would_not_match() {
        let s = CheckoutSettings::parse(
            Some(" Corner Café "),
            Some("Shop.Example.com, pay.example.org"),
            Some("https://shop.example.com, http://localhost:8080"),
        )
        .unwrap();
        assert_eq!(s.shop_name, "Corner Café");
        assert_eq!(s.redirect_hosts, ["shop.example.com", "pay.example.org"]);
        assert_eq!(
            s.frame_ancestors,
            ["https://shop.example.com", "http://localhost:8080"]
        );
        assert_eq!(
            CheckoutSettings::parse(None, None, None).unwrap(),
            CheckoutSettings::default()
        );
        for hosts in [
            "https://shop.example",
            "shop.example/x",
            "*.example.com",
            "a b",
        ] {
            assert!(
                CheckoutSettings::parse(None, Some(hosts), None).is_err(),
                "{hosts}"
            );
        }
        for origin in [
            "http://shop.example",
            "https://shop.example/path",
            "*",
            "'self'",
            "https://u:p@shop.example",
            "https://shop.example; script-src *",
        ] {
            assert!(
                CheckoutSettings::parse(None, None, Some(origin)).is_err(),
                "{origin}"
            );
        }
        assert!(CheckoutSettings::parse(Some(&"x".repeat(81)), None, None).is_err());
        assert!(CheckoutSettings::parse(Some("a\nb"), None, None).is_err());
    }
}
