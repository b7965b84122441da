//! The connection URI a wallet hands out (NIP-47):
//! `nostr+walletconnect://<wallet pubkey>?relay=wss://…&secret=<hex>[&lud16=…]`.
//! Errors never repeat the URI: it holds the secret.

use super::crypto;

#[derive(Clone, PartialEq)]
pub struct Connection {
    /// The wallet service's public key, lower-case hex.
    pub wallet: String,
    /// The relay the Worker connects to (the first one listed).
    pub relay: String,
    /// The client's secret key, lower-case hex.
    pub secret: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Connection({} via {}, secret redacted)",
            self.wallet, self.relay
        )
    }
}

const PREFIXES: [&str; 2] = ["nostr+walletconnect://", "nostr+walletconnect:"];

/// Parses and checks a connection URI. `allow_ws`: plain `ws://` relays
/// (development only; production needs `wss://`).
pub fn parse(raw: &str, allow_ws: bool) -> Result<Connection, String> {
    let raw = raw.trim();
    let rest = PREFIXES
        .iter()
        .find_map(|p| {
            raw.get(..p.len())
                .filter(|head| head.eq_ignore_ascii_case(p))
                .map(|_| &raw[p.len()..])
        })
        .ok_or("must start with nostr+walletconnect:// (copy the whole connection secret from your wallet)")?;
    let (wallet, query) = rest
        .split_once('?')
        .ok_or("has no ?relay=…&secret=… part")?;
    let wallet = wallet.trim_end_matches('/').to_ascii_lowercase();
    crypto::parse_pubkey(&wallet).map_err(|_| {
        "the wallet public key (after nostr+walletconnect://) is not a valid 64-hex-digit key"
            .to_string()
    })?;
    let mut relay = None;
    let mut secret = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "relay" if relay.is_none() => relay = Some(v.into_owned()),
            "secret" => secret = Some(v.into_owned()),
            _ => {}
        }
    }
    let relay = relay.ok_or("has no relay= parameter")?;
    let parsed = url::Url::parse(&relay).map_err(|_| "its relay is not a URL".to_string())?;
    match parsed.scheme() {
        "wss" => {}
        "ws" if allow_ws => {}
        "ws" => return Err("its relay must use wss:// in production".into()),
        _ => return Err("its relay must be a wss:// URL".into()),
    }
    if parsed.host_str().is_none() || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("its relay must be a plain wss:// URL without credentials".into());
    }
    let secret = secret
        .ok_or("has no secret= parameter")?
        .to_ascii_lowercase();
    crypto::Keys::from_secret_hex(&secret)
        .map_err(|_| "its secret is not a valid 64-hex-digit key".to_string())?;
    Ok(Connection {
        wallet,
        relay: parsed.as_str().to_string(),
        secret,
    })
}

/// The identity shown in health, logs and a payout's pinned backend: the
/// URI without its secret.
pub fn public_form(wallet: &str, relay: &str) -> String {
    format!("nostr+walletconnect://{wallet}?relay={relay}")
}

/// The wallet and relay back from [`public_form`].
pub fn split_public_form(s: &str) -> (&str, &str) {
    let rest = s.strip_prefix("nostr+walletconnect://").unwrap_or(s);
    rest.split_once("?relay=").unwrap_or((rest, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALLET: &str = "b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4";
    const SECRET: &str = "71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c";

    #[test]
    fn parses_the_nip47_example() {
        let uri = format!("nostr+walletconnect://{WALLET}?relay=wss%3A%2F%2Frelay.damus.io&secret={SECRET}&lud16=a%40b.c");
        let c = parse(&uri, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.wallet, WALLET);
        assert_eq!(c.relay, "wss://relay.damus.io/");
        assert_eq!(c.secret, SECRET);
        assert_eq!(
            split_public_form(&public_form(&c.wallet, &c.relay)),
            (WALLET, "wss://relay.damus.io/")
        );
        assert!(!format!("{c:?}").contains(SECRET));
        // The form without slashes, upper-case hex and an unencoded relay.
        let uri = format!(
            "nostr+walletconnect:{}?relay=wss://relay.getalby.com/v1&secret={}",
            WALLET.to_uppercase(),
            SECRET.to_uppercase()
        );
        let c = parse(&uri, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.wallet.as_str(), c.relay.as_str(), c.secret.as_str()),
            (WALLET, "wss://relay.getalby.com/v1", SECRET)
        );
    }

    #[test]
    fn refusals_never_echo_the_secret() {
        let cases = [
            format!("https://{WALLET}?relay=wss://r.example&secret={SECRET}"),
            format!("nostr+walletconnect://{WALLET}"),
            format!("nostr+walletconnect://nothex?relay=wss://r.example&secret={SECRET}"),
            format!("nostr+walletconnect://{WALLET}?secret={SECRET}"),
            format!("nostr+walletconnect://{WALLET}?relay=https://r.example&secret={SECRET}"),
            format!("nostr+walletconnect://{WALLET}?relay=ws://127.0.0.1:7000&secret={SECRET}"),
            format!("nostr+walletconnect://{WALLET}?relay=wss://r.example"),
            format!(
                "nostr+walletconnect://{WALLET}?relay=wss://r.example&secret={}",
                &SECRET[..60]
            ),
            format!("nostr+walletconnect://{WALLET}?relay=wss://u:p@r.example&secret={SECRET}"),
        ];
        for uri in cases {
            let e = parse(&uri, false)
                .err()
                .unwrap_or_else(|| panic!("accepted {uri}"));
            assert!(!e.contains(SECRET) && !e.contains(&SECRET[..60]), "{e}");
        }
        assert!(parse(
            &format!("nostr+walletconnect://{WALLET}?relay=ws://127.0.0.1:7000&secret={SECRET}"),
            true
        )
        .is_ok());
    }
}
