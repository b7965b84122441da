//! Keeps secrets out of log lines. Three layers, because no single one is
//! enough: fields whose *name* is sensitive are blanked whatever they hold;
//! the configured secret *values* are cut out of every string (an upstream
//! error message may echo a key); and well-known secret *shapes* (NWC
//! connection URIs, `Bearer` tokens, a hex run after "preimage" or
//! "macaroon") are cut out even when their value is not configured here.

use serde_json::Value;

use backends::BackendKind;

pub const REDACTED: &str = "[redacted]";

/// The gateway's own variables that hold a secret. Its values never
/// appear in a log line; nor do those of every backend's secret settings
/// (its descriptor says which: [`secret_vars`]), nor of any other variable
/// [`is_secret_var`] flags.
pub const GATEWAY_SECRET_VARS: &[&str] = &[
    "ADMIN_API_KEY",
    "ADMIN_API_KEY_PREVIOUS",
    "PAYOUT_API_KEY",
    "PAYOUT_API_KEY_PREVIOUS",
    "WEBHOOK_SECRET",
    "WEBHOOK_SECRET_PREVIOUS",
];

/// Every variable known to hold a secret: the gateway's own, and each
/// backend's secret settings (retired ones included: old deployments may
/// still carry them).
pub fn secret_vars() -> Vec<&'static str> {
    let backends = [BackendKind::Alby]
        .into_iter()
        .chain(BackendKind::ALL)
        .flat_map(|k| k.descriptor().secret_names());
    GATEWAY_SECRET_VARS
        .iter()
        .copied()
        .chain(backends)
        .collect()
}

/// A field whose name contains one of these is blanked (case-insensitive).
const SENSITIVE_NAMES: &[&str] = &[
    "key",
    "secret",
    "macaroon",
    "preimage",
    "authorization",
    "token",
    "password",
    "cookie",
    "nwc",
    "connection_uri",
];

/// After one of these words (case-insensitive), the next token is a secret
/// when it is long enough to be one.
const SECRET_MARKERS: &[&str] = &[
    "bearer",
    "preimage",
    "macaroon",
    "secret",
    "api_key",
    "api-key",
    "apikey",
    "adminkey",
    "inkey",
    "authorization",
];

/// Shorter configured values are not matched by value (they would blank
/// ordinary words); every real key is far longer.
const MIN_SECRET_LEN: usize = 8;
/// A token after a marker shorter than this is an ordinary word ("preimage is").
const MIN_TOKEN_LEN: usize = 8;

/// A variable whose name says it holds a secret.
pub fn is_secret_var(name: &str) -> bool {
    const PARTS: &[&str] = &[
        "KEY",
        "SECRET",
        "MACAROON",
        "TOKEN",
        "RUNE",
        "PASSWORD",
        "NWC",
        "CREDENTIAL",
    ];
    let upper = name.to_ascii_uppercase();
    PARTS.iter().any(|p| upper.contains(p))
}

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is cut whole.
    values: Vec<String>,
}

impl Redactor {
    /// Collects the values of [`secret_vars`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Redactor {
        Redactor::from_vars(std::iter::empty::<&str>(), lookup)
    }

    /// Collects the values of [`secret_vars`] and of every name in `names`
    /// that [`is_secret_var`] flags.
    pub fn from_vars<'a>(
        names: impl IntoIterator<Item = &'a str>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Redactor {
        let mut values = Vec::new();
        let extra = names.into_iter().filter(|n| is_secret_var(n));
        for name in secret_vars().into_iter().chain(extra) {
            let Some(v) = lookup(name) else { continue };
            let v = v.trim().to_string();
            // A Standard Webhooks secret is also used without its prefix.
            if let Some(raw) = v.strip_prefix("whsec_") {
                values.push(raw.to_string());
            }
            values.push(v);
        }
        values.retain(|v| v.len() >= MIN_SECRET_LEN);
        crate::small_sort::sort_by_key(&mut values, |v| std::cmp::Reverse(v.len()));
        values.dedup();
        Redactor { values }
    }

    /// `s` with every secret value and secret shape cut out.
    pub fn redact_str(&self, s: &str) -> String {
        let mut out = s.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), REDACTED);
            }
        }
        let out = redact_nwc(&out);
        redact_after_markers(&out)
    }

    /// Redacts a JSON value in place: sensitive field names, then every string.
    pub fn redact(&self, v: &mut Value) {
        match v {
            Value::String(s) => *s = self.redact_str(s),
            Value::Array(items) => items.iter_mut().for_each(|i| self.redact(i)),
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    if is_sensitive_name(k) {
                        if !item.is_null() {
                            *item = Value::String(REDACTED.into());
                        }
                    } else {
                        self.redact(item);
                    }
                }
            }
            _ => {}
        }
    }
}

pub fn is_sensitive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SENSITIVE_NAMES.iter().any(|n| lower.contains(n))
}

/// NWC connection URIs carry the wallet's secret: the whole URI goes.
fn redact_nwc(s: &str) -> String {
    const SCHEME: &str = "nostr+walletconnect:";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.to_ascii_lowercase().find(SCHEME) {
        out.push_str(&rest[..i]);
        out.push_str(REDACTED);
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-' | '.' | '~' | '%')
}

/// Cuts the token that follows a marker word ("Bearer abc…",
/// "preimage: 00ff…", "x-api-key=…") when it is long enough to be a secret.
fn redact_after_markers(s: &str) -> String {
    // ASCII lowercasing keeps byte offsets, so indices carry over to `s`.
    let lower = s.to_ascii_lowercase();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    for marker in SECRET_MARKERS {
        let mut from = 0;
        while let Some(found) = lower[from..].find(marker) {
            let after = from + found + marker.len();
            from = after;
            let sep_len = s[after..]
                .find(|c: char| !matches!(c, ' ' | ':' | '=' | '"' | '\'' | '\t'))
                .unwrap_or(s.len() - after);
            let start = after + sep_len;
            let len = s[start..]
                .find(|c: char| !is_token_char(c))
                .unwrap_or(s.len() - start);
            if len >= MIN_TOKEN_LEN {
                cuts.push((start, start + len));
            }
        }
    }
    if cuts.is_empty() {
        return s.to_string();
    }
    crate::small_sort::sort_by_key(&mut cuts, |c| *c);
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (start, end) in cuts {
        if start < at {
            continue;
        }
        out.push_str(&s[at..start]);
        out.push_str(REDACTED);
        at = end;
    }
    out.push_str(&s[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALBY: &str = "alby-access-token-0123456789";
    const MACAROON: &str = "0201036c6e6402f801030a10c2b1f0e3";
    const LNBITS_IN: &str = "lnbits-invoice-key-abcdef";
    const LNBITS_ADMIN: &str = "lnbits-admin-key-abcdef";
    const ADMIN: &str = "admin-key-for-tests-0123456789";
    const PAYOUT: &str = "payout-key-current-0123456789";
    const PAYOUT_OLD: &str = "payout-key-previous-0123456789";
    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NWC: &str = "nostr+walletconnect://b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4?relay=wss%3A%2F%2Frelay.example&secret=71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c";
    const PREIMAGE: &str = "5c1e0c3c2bd5a1e8f37b0d6c9e4a2f1b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f";

    fn redactor() -> Redactor {
        Redactor::from_lookup(|name| {
            Some(
                match name {
                    "ALBY_API_KEY" => ALBY,
                    "LND_ADMIN_MACAROON" => MACAROON,
                    "LNBITS_INVOICE_KEY" => LNBITS_IN,
                    "LNBITS_ADMIN_KEY" => LNBITS_ADMIN,
                    "ADMIN_API_KEY" => ADMIN,
                    "PAYOUT_API_KEY" => PAYOUT,
                    "PAYOUT_API_KEY_PREVIOUS" => PAYOUT_OLD,
                    "WEBHOOK_SECRET" => WHSEC,
                    "NWC_URL" => NWC,
                    _ => return None,
                }
                .to_string(),
            )
        })
    }

    /// Every kind of secret the gateway holds, in the places a log line could
    /// carry it: a field named for it, a free-text message, a nested object.
    #[test]
    fn no_configured_secret_or_secret_shape_survives() {
        let r = redactor();
        let mut line = json!({
            "event": "request",
            "message": format!("upstream said: bad key {ALBY} / {LNBITS_IN} / {LNBITS_ADMIN}"),
            "provider_error": format!("Grpc-Metadata-macaroon {MACAROON}"),
            "attempts": [{"message": format!("echo Authorization: Bearer {PAYOUT}")}],
            "note": format!("admin {ADMIN}, old {PAYOUT_OLD}, hook {WHSEC} raw {}", &WHSEC[6..]),
            "nwc": NWC,
            "detail": format!("wallet {NWC} failed"),
            "unconfigured": "connect with nostr+walletconnect://abc?secret=ffff and Bearer sk_live_123456789",
            "payout": {"preimage": PREIMAGE, "payment_preimage": PREIMAGE, "payment_hash": "ab".repeat(32)},
            "text": format!("paid, preimage: {PREIMAGE}"),
            "headers": {"authorization": format!("Bearer {PAYOUT}"), "x-api-key": LNBITS_ADMIN},
            "webhook_secret": WHSEC,
        });
        r.redact(&mut line);
        let out = line.to_string();
        for secret in [
            ALBY,
            MACAROON,
            LNBITS_IN,
            LNBITS_ADMIN,
            ADMIN,
            PAYOUT,
            PAYOUT_OLD,
            WHSEC,
            &WHSEC[6..],
            NWC,
            "71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c",
            "walletconnect://abc",
            "sk_live_123456789",
            PREIMAGE,
        ] {
            assert!(!out.contains(secret), "{secret} leaked in {out}");
        }
        // What is not secret stays readable.
        assert_eq!(line["payout"]["payment_hash"], "ab".repeat(32));
        assert_eq!(line["event"], "request");
        assert!(out.contains("upstream said: bad key [redacted]"), "{out}");
    }

    #[test]
    fn variables_named_like_secrets_are_covered_too() {
        let vars = [
            ("CLN_RUNE", "rune-abcdefghijklmnop"),
            ("NWC_CONNECTION_STRING", "nostr-secret-xyz-123456"),
            ("SOME_NEW_API_TOKEN", "tok-0123456789abcdef"),
            ("LNBITS_URL", "https://lnbits.example.com"),
        ];
        let lookup = |n: &str| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        let r = Redactor::from_vars(vars.iter().map(|(k, _)| *k), lookup);
        let out = r.redact_str(
            "rune-abcdefghijklmnop nostr-secret-xyz-123456 tok-0123456789abcdef https://lnbits.example.com",
        );
        assert_eq!(
            out,
            "[redacted] [redacted] [redacted] https://lnbits.example.com"
        );
        assert!(!is_secret_var("LNBITS_URL") && is_secret_var("lnbits_admin_key"));
    }

    #[test]
    fn sensitive_names_are_blanked_whatever_they_hold() {
        let r = Redactor::default();
        let mut v = json!({"api_key": "x", "Authorization": 12, "nested": [{"preimage": "00"}], "missing_key": null, "amount": 5});
        r.redact(&mut v);
        assert_eq!(
            v,
            json!({"api_key": REDACTED, "Authorization": REDACTED, "nested": [{"preimage": REDACTED}], "missing_key": null, "amount": 5})
        );
    }

    #[test]
    fn ordinary_words_after_markers_and_short_values_are_left_alone() {
        let r = Redactor::from_lookup(|n| (n == "ADMIN_API_KEY").then(|| "short".to_string()));
        assert_eq!(
            r.redact_str("no preimage in answer; short is fine"),
            "no preimage in answer; short is fine"
        );
        assert_eq!(
            r.redact_str("ünïcödé bearer\u{e9}x"),
            "ünïcödé bearer\u{e9}x"
        );
    }
}
