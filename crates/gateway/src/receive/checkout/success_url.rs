//! Where the checkout page sends the browser once the invoice is paid.
//! Browsers call create-invoice without a key, so a keyless `success_url`
//! must point at a host the operator listed: the gateway is never an open
//! redirect for someone else's page.

use crate::api::error::ApiError;

pub const MAX_CHARS: usize = 2048;

/// Checks `success_url` as sent: https, no credentials, at most
/// [`MAX_CHARS`]; a keyless caller's host must be in `allowed_hosts`.
pub fn check(raw: &str, keyed: bool, allowed_hosts: &[String]) -> Result<String, ApiError> {
    let bad = |m: &str| ApiError::invalid_field("success_url", m);
    if raw.is_empty() || raw.len() > MAX_CHARS {
        return Err(bad(&format!(
            "must be a URL of 1 to {MAX_CHARS} characters"
        )));
    }
    let u = url::Url::parse(raw).map_err(|_| bad("must be an absolute https URL"))?;
    if u.scheme() != "https" {
        return Err(bad("must be an https URL"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("must not carry a user name or password"));
    }
    let Some(host) = u.host_str() else {
        return Err(bad("must name a host"));
    };
    // A keyless caller gets the listed hosts on the default port only.
    if !keyed && (!allowed_hosts.iter().any(|h| h == host) || u.port().is_some()) {
        return Err(ApiError::SuccessUrlNotAllowed(host.to_string()));
    }
    Ok(u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<String, ApiError>) -> String {
        r.unwrap_or_else(|e| e.code().to_string())
    }

    #[test]
    fn a_keyless_success_url_must_be_a_listed_https_host() {
        let hosts = vec!["shop.example.com".to_string()];
        assert_eq!(
            code(check("https://shop.example.com/thanks?o=1", false, &hosts)),
            "https://shop.example.com/thanks?o=1"
        );
        assert_eq!(
            code(check("https://SHOP.example.com/", false, &hosts)),
            "https://shop.example.com/"
        );
        for (raw, want) in [
            ("https://evil.example/", "success_url_not_allowed"),
            ("https://shop.example.com:8443/", "success_url_not_allowed"),
            (
                "https://shop.example.com.evil.example/",
                "success_url_not_allowed",
            ),
            (
                "https://evil.example\\@shop.example.com/",
                "success_url_not_allowed",
            ),
            (
                "https://shop.example.com@evil.example/",
                "invalid_success_url",
            ),
            ("http://shop.example.com/", "invalid_success_url"),
            ("javascript:alert(1)", "invalid_success_url"),
            ("//evil.example/", "invalid_success_url"),
            ("/thanks", "invalid_success_url"),
            ("", "invalid_success_url"),
        ] {
            assert_eq!(code(check(raw, false, &hosts)), want, "{raw}");
        }
        // The invoice key may send the browser anywhere over https.
        assert_eq!(
            code(check("https://other.example/x", true, &[])),
            "https://other.example/x"
        );
        assert_eq!(
            code(check("data:text/html,x", true, &[])),
            "invalid_success_url"
        );
    }
}
