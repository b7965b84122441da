//! Upstream error text, made fit to show: a backend's error body may echo
//! the request (a key, a macaroon, a rune, a connection secret) and can be
//! any length. Every error built from a backend's answer passes through
//! [`sanitize`], so health, `/status`, API error bodies and payout records
//! only ever hold the cleaned text. The gateway's logs redact its own
//! configured secrets on top of this (gateway `redact`).

/// Longest detail kept, in characters.
pub const MAX_CHARS: usize = 200;
/// What a secret-looking token is replaced with.
pub const MASK: &str = "[redacted]";

/// A run of hex digits this long is a key, macaroon, secret or preimage.
const HEX_RUN: usize = 32;
/// A run of base64/base64url characters this long, with letters and digits
/// mixed, is a token (a CLN rune, a base64 macaroon, a bearer key).
const TOKEN_RUN: usize = 40;

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/' | '=')
}

fn secret_like(t: &str) -> bool {
    let hex = t.len() >= HEX_RUN && t.chars().all(|c| c.is_ascii_hexdigit());
    let mixed = t.len() >= TOKEN_RUN
        && t.chars().any(|c| c.is_ascii_digit())
        && t.chars().any(|c| c.is_ascii_alphabetic());
    hex || mixed
}

/// One line, secret-looking tokens masked, at most [`MAX_CHARS`]
/// characters (cut with `…`). Query strings of URLs are dropped: they carry
/// keys (`?api-key=`) more often than anything worth showing.
pub fn sanitize(raw: &str) -> String {
    let one_line: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out = String::with_capacity(one_line.len().min(MAX_CHARS + 16));
    let mut token = String::new();
    let mut in_query = false;
    let flush = |token: &mut String, out: &mut String| {
        if secret_like(token) {
            out.push_str(MASK);
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in one_line.chars() {
        if in_query {
            if c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>') {
                in_query = false;
                out.push(c);
            }
            continue;
        }
        if c == '?' && out.ends_with(|p: char| p != ' ') && token_or_path(&out, &token) {
            flush(&mut token, &mut out);
            out.push_str("?…");
            in_query = true;
            continue;
        }
        if token_char(c) {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    let trimmed = out.trim();
    if trimmed.chars().count() > MAX_CHARS {
        let cut: String = trimmed.chars().take(MAX_CHARS).collect();
        format!("{}…", cut.trim_end())
    } else {
        trimmed.to_string()
    }
}

/// A `?` starts a query string when it follows a URL's path.
fn token_or_path(out: &str, token: &str) -> bool {
    let word_start = out.rfind(char::is_whitespace).map_or(0, |i| i + 1);
    let word = format!("{}{}", &out[word_start..], token);
    word.contains("://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keys_tokens_and_query_strings() {
        let key = "a3f1c2d4e5b6a7980123456789abcdef";
        assert_eq!(
            sanitize(&format!("Invalid key {key}.")),
            "Invalid key [redacted]."
        );
        let rune = "tU-RLjMiDpY2U0o3W1oFowar36RFGpWloPbW9-RuZdo9MyZpZD0wMjRiOWE";
        assert_eq!(
            sanitize(&format!("bad rune: {rune}")),
            "bad rune: [redacted]"
        );
        assert_eq!(
            sanitize("error sending request for url (https://lnbits.example/api/v1/payments?api-key=abc&x=1)"),
            "error sending request for url (https://lnbits.example/api/v1/payments?…)"
        );
        let nwc = "nostr+walletconnect://b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4?relay=wss://r&secret=71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c";
        let s = sanitize(&format!("cannot use {nwc}"));
        assert!(!s.contains("71a8c14c") && !s.contains("b889ff5b"), "{s}");
    }

    #[test]
    fn keeps_ordinary_messages() {
        for m in [
            "Insufficient balance.",
            "HTML error page: 520: Web server is returning an unknown error",
            "invoice expiry too large",
            "Payment does not exist.",
            "no route found (12 attempts)",
            "what? no",
        ] {
            assert_eq!(sanitize(m), m);
        }
    }

    #[test]
    fn one_line_and_capped() {
        assert_eq!(sanitize(" a\nb\u{0}c "), "a b c");
        let long = "word ".repeat(100);
        let s = sanitize(&long);
        assert_eq!(s.chars().count(), MAX_CHARS.min(s.chars().count()));
        assert!(s.ends_with('…') && s.chars().count() <= MAX_CHARS + 1);
    }
}
