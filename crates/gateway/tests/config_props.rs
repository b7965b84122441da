//! Property tests for configuration parsing (`Config::from_lookup` and
//! `PayoutConfig::from_lookup`): any values, set or not, give a
//! configuration or an error naming a variable that was read, never a panic,
//! and an error never repeats a secret's value.
//!
//! Kept apart from `config.rs` so the rules and their properties can change
//! independently; only the public parsing API is used.

use lightning_fallback_gateway as gateway;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use gateway::config::{Config, ConfigError};
use gateway::payout::config::PayoutConfig;

/// Every variable the gateway reads (docs/configuration.md).
const VARIABLES: &[&str] = &[
    "ENVIRONMENT",
    "LIGHTNING_PROVIDERS",
    "LIGHTNING_NETWORK",
    "ALBY_API_URL",
    "ALBY_API_KEY",
    "DAZNODE_API_URL",
    "DAZNODE_API_KEY",
    "LND_REST_URL",
    "LND_ADMIN_MACAROON",
    "LND_MACAROON",
    "CLN_REST_URL",
    "CLN_RUNE",
    "PHOENIXD_URL",
    "PHOENIXD_PASSWORD",
    "LIGHTNING_FALLBACK_ENABLE_LOCAL_LND",
    "LNBITS_URL",
    "LNBITS_INVOICE_KEY",
    "LNBITS_API_KEY",
    "LIGHTNING_FALLBACK_ENABLE_MOCK",
    "LIGHTNING_FALLBACK_STRATEGY",
    "LIGHTNING_FALLBACK_MAX_RETRIES",
    "LIGHTNING_FALLBACK_RETRY_DELAY",
    "LIGHTNING_FALLBACK_MAX_RETRY_DELAY",
    "LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS",
    "LIGHTNING_FALLBACK_TOTAL_TIMEOUT_MS",
    "BREAKER_FAILURE_THRESHOLD",
    "BREAKER_COOLDOWN_SECS",
    "INVOICE_MAX_SATS",
    "INVOICE_DEFAULT_EXPIRY_SECS",
    "INVOICE_MAX_EXPIRY_SECS",
    "CORS_ALLOWED_ORIGINS",
    "ADMIN_API_KEY",
    "PAYOUT_API_KEY",
    "PAYOUT_API_KEY_PREVIOUS",
    "PAYOUT_PROVIDER",
    "PAYOUT_PROVIDERS",
    "PAYOUT_BREAKER_FAILURES",
    "PAYOUT_BREAKER_COOLDOWN_SECS",
    "LNBITS_B_URL",
    "LNBITS_B_ADMIN_KEY",
    "LNBITS_ADMIN_KEY",
    "PAYOUT_MAX_SATS",
    "PAYOUT_DAILY_LIMIT_SATS",
    "PAYOUT_MAX_ATTEMPTS",
    "PAYOUT_MAX_AGE_SECS",
    "PAYOUT_RETRY_BASE_MS",
    "PAYOUT_LOOKUP_BASE_MS",
    "PAYOUT_NOT_FOUND_GRACE_MS",
    "WEBHOOK_SECRET",
    "WEBHOOK_SECRET_PREVIOUS",
    "LNURL_ALLOW_HTTP_HOSTS",
    "LNURL_TIMEOUT_MS",
];

/// Variables holding credentials: their values must never be echoed.
const SECRETS: &[&str] = &[
    "ALBY_API_KEY",
    "DAZNODE_API_KEY",
    "LND_ADMIN_MACAROON",
    "LND_MACAROON",
    "CLN_RUNE",
    "PHOENIXD_PASSWORD",
    "LNBITS_INVOICE_KEY",
    "LNBITS_API_KEY",
    "ADMIN_API_KEY",
    "PAYOUT_API_KEY",
    "PAYOUT_API_KEY_PREVIOUS",
    "LNBITS_ADMIN_KEY",
    "WEBHOOK_SECRET",
    "WEBHOOK_SECRET_PREVIOUS",
];

/// Values that look like what each kind of variable holds, and values that do not.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            " ",
            "0",
            "1",
            "-1",
            "1.5",
            "1e3",
            "true",
            "false",
            "yes",
            "TRUE",
            "off",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
            "production",
            "development",
            "dev",
            "Production",
            "test",
            "staging",
            "bitcoin",
            "mainnet",
            "testnet",
            "signet",
            "regtest",
            "simnet",
            "mock",
            "lnd",
            "alby",
            "lnbits",
            "lnd,alby,lnbits,mock",
            "mock,mock",
            ",",
            "lnd,,alby",
            "cln",
            "phoenixd",
            "cln,phoenixd,lnd",
            "hedged",
            "sequential",
            "*",
            "https://shop.example",
            "https://shop.example/path",
            "http://localhost:3000, https://a.example",
            "https://node.example.com:8080",
            "http://127.0.0.1:1",
            "https://user:pw@example.com",
            "ftp://example.com",
            "not a url",
            "https://",
            "https://[::1]:8080",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_",
            "whsec_!!!",
            "0123456789abcdef0123456789abcdef",
            "short",
            "127.0.0.1,localhost",
        ])
        .prop_map(String::from),
        "[0-9]{1,25}",
        "\\PC{0,40}",
        any::<String>(),
        "[a-z0-9_,:/.\\- ]{0,60}",
    ]
}

fn variables() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop_oneof![
            9 => prop::sample::select(VARIABLES.to_vec()).prop_map(String::from),
            1 => "[A-Z_]{1,20}",
        ],
        value(),
        0..24,
    )
}

/// A base configuration that always parses, for the payout settings.
fn base() -> Config {
    let vars: BTreeMap<&str, &str> = [
        ("ENVIRONMENT", "development"),
        ("LIGHTNING_FALLBACK_ENABLE_MOCK", "true"),
        ("LNBITS_URL", "http://127.0.0.1:5000"),
        ("LNBITS_INVOICE_KEY", "invoice-key-0123456789"),
    ]
    .into_iter()
    .collect();
    Config::from_lookup(|n| vars.get(n).map(|v| v.to_string()))
        .unwrap_or_else(|e| panic!("base config: {e:?}"))
}

/// Marks every secret's value, so an error that repeats one is seen.
const MARK: &str = "SeCrEt";

/// The same variables, with every secret's value carrying [`MARK`] (and
/// still often malformed: too short, spaced, not base64).
fn variables_with_marked_secrets() -> impl Strategy<Value = BTreeMap<String, String>> {
    (
        variables(),
        prop::collection::btree_map(
            prop::sample::select(SECRETS.to_vec()).prop_map(String::from),
            (
                prop::sample::select(vec!["", "whsec_", " ", "x", "whsec_AAAA"]),
                "[A-Za-z0-9+/= ]{0,40}",
            )
                .prop_map(|(prefix, rest)| format!("{prefix}{MARK}{rest}")),
            0..6,
        ),
    )
        .prop_map(|(mut vars, secrets)| {
            vars.extend(secrets);
            vars
        })
}

/// The error's promises: it names a variable that was read, says something,
/// and repeats no secret.
fn check_error(e: &ConfigError, read: &BTreeSet<String>) -> Result<(), TestCaseError> {
    prop_assert!(!e.message.trim().is_empty(), "{e:?}");
    prop_assert!(
        read.contains(&e.variable),
        "the error names {}, which was not read ({e:?})",
        e.variable
    );
    prop_assert!(
        !e.message.contains(MARK),
        "the error repeats a secret: {e:?}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn any_values_never_panic(vars in variables()) {
        if let Ok(base) = Config::from_lookup(|n| vars.get(n).cloned()) {
            let _ = PayoutConfig::from_lookup(|n| vars.get(n).cloned(), &base);
        }
        let _ = PayoutConfig::from_lookup(|n| vars.get(n).cloned(), &base());
    }

    #[test]
    fn any_receive_settings_parse_or_name_a_variable(vars in variables_with_marked_secrets()) {
        let read = RefCell::new(BTreeSet::new());
        let got = Config::from_lookup(|n| {
            read.borrow_mut().insert(n.to_string());
            vars.get(n).cloned()
        });
        if let Err(e) = got {
            check_error(&e, &read.borrow())?;
        }
    }

    #[test]
    fn any_payout_settings_parse_or_name_a_variable(vars in variables_with_marked_secrets()) {
        let base = base();
        let read = RefCell::new(BTreeSet::new());
        let got = PayoutConfig::from_lookup(
            |n| {
                read.borrow_mut().insert(n.to_string());
                vars.get(n).cloned()
            },
            &base,
        );
        match got {
            Err(e) => check_error(&e, &read.borrow())?,
            Ok(cfg) => {
                prop_assert!(!cfg.api_keys.is_empty());
                prop_assert!(cfg.api_keys.iter().all(|k| k.len() >= 16));
            }
        }
    }

    /// A lookup that hands back surrounding whitespace means the same as the trimmed value.
    #[test]
    fn surrounding_whitespace_does_not_change_the_outcome(vars in variables()) {
        let plain = Config::from_lookup(|n| vars.get(n).map(|v| v.trim().to_string()));
        let padded = Config::from_lookup(|n| vars.get(n).map(|v| format!(" \t{}\n", v.trim())));
        prop_assert_eq!(plain.map_err(|e| e.variable), padded.map_err(|e| e.variable));
    }
}
