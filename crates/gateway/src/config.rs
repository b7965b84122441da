//! Configuration from Worker variables and secrets. Parsed from a lookup
//! function so the rules are tested on the host. Every error names the
//! variable to fix.

use crate::api::cors::AllowedOrigins;
use crate::api::rate_limit::RateLimits;
use crate::backoff::{HedgePolicy, RetryPolicy};
use crate::health::breaker::BreakerPolicy;
use crate::receive::settings::InvoiceSettings;
pub use crate::vars::ConfigError;
use crate::vars::Vars;
use backends::bolt11::Network;
use backends::{BackendConfig, BackendKind, Setting, Values};

/// What an operator with an old Alby setup must do (the Alby wallet API
/// closed in January 2026; Alby Hub speaks Nostr Wallet Connect).
pub const ALBY_MIGRATION: &str = "the Alby wallet API closed in January 2026 and this gateway no longer speaks it: connect Alby Hub (or another wallet) through Nostr Wallet Connect by setting NWC_URL to its connection URI (nostr+walletconnect://...), list `nwc` in LIGHTNING_PROVIDERS (and PAYOUT_PROVIDER), and remove ALBY_API_KEY, ALBY_API_URL, DAZNODE_API_KEY and DAZNODE_API_URL";

/// The settings of each backend kind, for messages: `(kind, variables)`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Production,
    Development,
}

/// How invoice creation moves through the providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Default: a time budget per provider, and the next provider started
    /// alongside one that is slower than its hedge delay.
    Hedged,
    /// The seed's behaviour, kept as a baseline to measure against: each
    /// provider in turn, up to `1 + max_retries` attempts with a linearly
    /// growing delay, no breaker, no hedging.
    Sequential,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Hedged => "hedged",
            Strategy::Sequential => "sequential",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceLimits {
    pub max_sat: u64,
    pub default_expiry_secs: u32,
    pub max_expiry_secs: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub environment: Environment,
    pub network: Network,
    /// In fallback order.
    pub backends: Vec<BackendConfig>,
    pub retry: RetryPolicy,
    /// Invoice creation only; lookups always ask the issuer alone.
    pub strategy: Strategy,
    pub hedge: HedgePolicy,
    pub breaker: BreakerPolicy,
    pub limits: InvoiceLimits,
    pub cors: AllowedOrigins,
    /// Keys for admin-only routes (`ADMIN_API_KEY` and, during a rotation,
    /// `ADMIN_API_KEY_PREVIOUS`); none disables them.
    pub admin_keys: Vec<String>,
    /// Who counts as one client for the rate limits, and whether they apply.
    pub rate_limits: RateLimits,
    /// `STATUS_DETAILS_PUBLIC`: health and `/status` show the queue and
    /// watch figures to anyone, not only with the admin key.
    pub status_details_public: bool,
    /// `SERVER_TIMING`: create-invoice answers with a `Server-Timing`
    /// header giving each step's wait (off by default: it shows anyone how
    /// fast the backends answer).
    pub server_timing: bool,
    /// The invoice key, invoice events and the watch.
    pub invoices: InvoiceSettings,
}

impl Config {
    pub fn backend(&self, name: &str) -> Option<&BackendConfig> {
        self.backends.iter().find(|p| p.name() == name)
    }
}

/// One backend's configuration, from the settings its descriptor names.
fn provider<F: Fn(&str) -> Option<String>>(
    v: &Vars<F>,
    kind: BackendKind,
    env: Environment,
) -> Result<BackendConfig, ConfigError> {
    if kind.is_retired() {
        return Err(ConfigError::new("LIGHTNING_PROVIDERS", ALBY_MIGRATION));
    }
    let d = kind.descriptor();
    let read = |s: Option<Setting>| s.and_then(|s| v.first(s.names));
    let values = Values {
        location: read(d.location),
        credential: read(d.credential),
        allow_http: env == Environment::Development,
    };
    kind.adapter()
        .configure(&values)
        .map_err(|e| ConfigError::new(e.variable, e.message))
}

/// Whether `kind`'s location setting is present (it then joins the
/// automatic order).
fn located<F: Fn(&str) -> Option<String>>(v: &Vars<F>, kind: BackendKind) -> bool {
    kind.descriptor()
        .location
        .is_some_and(|s| v.first(s.names).is_some())
}

/// Refuses the settings of the retired Alby wallet API, saying what to do.
///
/// `DAZNODE_API_URL`/`DAZNODE_API_KEY` (the seed's names) always configured
/// the Alby wallet API: its URL defaulted to `https://api.getalby.com` and
/// the key was an Alby access token. When the URL is Alby's (or unset),
/// they get the Alby migration message. Any other URL cannot be matched to a
/// backend kind from the URL alone (LNbits, LND, CLN and phoenixd are all
/// plain HTTPS base URLs), and guessing the protocol of a wallet that holds
/// money is not safe: the error names the variables to set instead.
fn refuse_retired<F: Fn(&str) -> Option<String>>(v: &Vars<F>) -> Result<(), ConfigError> {
    for name in ["ALBY_API_KEY", "ALBY_API_URL"] {
        if v.get(name).is_some() {
            return Err(ConfigError::new(name, ALBY_MIGRATION));
        }
    }
    let Some((name, _)) = v.first(&["DAZNODE_API_URL", "DAZNODE_API_KEY"]) else {
        return Ok(());
    };
    let host = v
        .get("DAZNODE_API_URL")
        .and_then(|u| url::Url::parse(&u).ok())
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    match host {
        None => Err(ConfigError::new(name, ALBY_MIGRATION)),
        Some(h) if h == "getalby.com" || h.ends_with(".getalby.com") => {
            Err(ConfigError::new(name, ALBY_MIGRATION))
        }
        Some(h) => {
            // The backends configured by a URL and a key, each with its settings.
            let kinds: Vec<String> = BackendKind::ALL
                .iter()
                .filter_map(|k| {
                    let d = k.descriptor();
                    match (d.location, d.credential) {
                        (Some(l), Some(c)) => {
                            Some(format!("{}: {} and {}", k.as_str(), l.name(), c.name()))
                        }
                        _ => None,
                    }
                })
                .collect();
            Err(ConfigError::new(
                "DAZNODE_API_URL",
                format!(
                    "DAZNODE_API_URL/DAZNODE_API_KEY configured the Alby wallet API, which closed in January 2026; `{h}` is not Alby's, and the gateway will not guess which protocol it speaks: set that backend's own variables instead ({}; Alby Hub and other wallets: NWC_URL) and remove DAZNODE_API_URL and DAZNODE_API_KEY",
                    kinds.join("; ")
                ),
            ))
        }
    }
}

/// The provider order: explicit in `LIGHTNING_PROVIDERS`, or every provider
/// whose settings are present, in the order nwc, lnd, cln, phoenixd, lnbits, mock.
fn providers<F: Fn(&str) -> Option<String>>(
    v: &Vars<F>,
    env: Environment,
) -> Result<Vec<BackendConfig>, ConfigError> {
    refuse_retired(v)?;
    let enable_mock = v.bool("LIGHTNING_FALLBACK_ENABLE_MOCK")?;
    let enable_lnd = v.bool("LIGHTNING_FALLBACK_ENABLE_LOCAL_LND")?;
    let kinds: Vec<BackendKind> = match v.get("LIGHTNING_PROVIDERS") {
        Some(list) => {
            let mut kinds = Vec::new();
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if name.eq_ignore_ascii_case("alby") {
                    return Err(ConfigError::new("LIGHTNING_PROVIDERS", ALBY_MIGRATION));
                }
                let k = BackendKind::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = BackendKind::ALL.iter().map(|k| k.as_str()).collect();
                    ConfigError::new(
                        "LIGHTNING_PROVIDERS",
                        format!("unknown provider `{name}` (known: {})", known.join(", ")),
                    )
                })?;
                if kinds.contains(&k) {
                    return Err(ConfigError::new(
                        "LIGHTNING_PROVIDERS",
                        format!("`{name}` is listed twice"),
                    ));
                }
                kinds.push(k);
            }
            if kinds.contains(&BackendKind::Mock) && env == Environment::Production {
                return Err(ConfigError::new(
                    "LIGHTNING_PROVIDERS",
                    "the mock provider is for development only and is refused when ENVIRONMENT=production",
                ));
            }
            kinds
        }
        None => {
            let mut kinds = Vec::new();
            for k in BackendKind::ALL {
                let selected = match k {
                    // LIGHTNING_FALLBACK_ENABLE_LOCAL_LND=false leaves LND out
                    // even with its URL set; true takes it in.
                    BackendKind::Lnd => enable_lnd.unwrap_or_else(|| located(v, k)),
                    BackendKind::Mock => enable_mock == Some(true),
                    _ => located(v, k),
                };
                if !selected {
                    continue;
                }
                if k == BackendKind::Mock && env == Environment::Production {
                    return Err(ConfigError::new(
                        "LIGHTNING_FALLBACK_ENABLE_MOCK",
                        "the mock provider is for development only and is refused when ENVIRONMENT=production",
                    ));
                }
                kinds.push(k);
            }
            kinds
        }
    };
    if kinds.is_empty() {
        return Err(ConfigError::new(
            "LIGHTNING_PROVIDERS",
            "no provider is configured: set LIGHTNING_PROVIDERS and the provider's keys (see .dev.vars.example)",
        ));
    }
    kinds.into_iter().map(|k| provider(v, k, env)).collect()
}

impl Config {
    pub fn from_lookup<F: Fn(&str) -> Option<String>>(get: F) -> Result<Config, ConfigError> {
        let v = Vars(get);
        let environment = environment(&v)?;
        let strategy = strategy(&v)?;
        let retry = retry_policy(&v, strategy)?;
        let limits = invoice_limits(&v)?;
        let max_invoice_sat = limits.max_sat;
        Ok(Config {
            environment,
            network: network(&v)?,
            backends: providers(&v, environment)?,
            hedge: hedge_policy(&v, &retry)?,
            retry,
            strategy,
            breaker: BreakerPolicy {
                failure_threshold: v.number("BREAKER_FAILURE_THRESHOLD", 3, 1, 100)? as u32,
                cooldown_ms: v.number("BREAKER_COOLDOWN_SECS", 30, 1, 3_600)? * 1_000,
            },
            limits,
            cors: match v.get("CORS_ALLOWED_ORIGINS") {
                None => AllowedOrigins::Any,
                Some(s) => AllowedOrigins::parse(&s)
                    .map_err(|m| ConfigError::new("CORS_ALLOWED_ORIGINS", m))?,
            },
            admin_keys: admin_keys(&v, environment == Environment::Production)?,
            rate_limits: RateLimits::from_lookup(|n| v.get(n))?,
            status_details_public: v.bool("STATUS_DETAILS_PUBLIC")?.unwrap_or(false),
            server_timing: v.bool("SERVER_TIMING")?.unwrap_or(false),
            invoices: InvoiceSettings::from_vars(
                &v,
                environment == Environment::Production,
                max_invoice_sat,
            )?,
        })
    }
}

fn environment<F: Fn(&str) -> Option<String>>(v: &Vars<F>) -> Result<Environment, ConfigError> {
    match v
        .get("ENVIRONMENT")
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("production") | Some("prod") => Ok(Environment::Production),
        Some("development") | Some("dev") | Some("test") | Some("local") | Some("staging") => {
            Ok(Environment::Development)
        }
        Some(other) => Err(ConfigError::new(
            "ENVIRONMENT",
            format!("`{other}` is not one of production, development"),
        )),
    }
}

fn network<F: Fn(&str) -> Option<String>>(v: &Vars<F>) -> Result<Network, ConfigError> {
    match v.get("LIGHTNING_NETWORK") {
        None => Ok(Network::Bitcoin),
        Some(n) => Network::parse(&n).ok_or_else(|| {
            ConfigError::new(
                "LIGHTNING_NETWORK",
                format!("`{n}` is not one of bitcoin, testnet, signet, regtest"),
            )
        }),
    }
}

fn strategy<F: Fn(&str) -> Option<String>>(v: &Vars<F>) -> Result<Strategy, ConfigError> {
    match v
        .get("LIGHTNING_FALLBACK_STRATEGY")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("hedged") => Ok(Strategy::Hedged),
        Some("sequential") => Ok(Strategy::Sequential),
        Some(other) => Err(ConfigError::new(
            "LIGHTNING_FALLBACK_STRATEGY",
            format!("`{other}` is not one of hedged, sequential"),
        )),
    }
}

fn retry_policy<F: Fn(&str) -> Option<String>>(
    v: &Vars<F>,
    strategy: Strategy,
) -> Result<RetryPolicy, ConfigError> {
    // The seed waited 2 s (then 4 s) between tries; the baseline keeps that.
    let default_delay = match strategy {
        Strategy::Hedged => 250,
        Strategy::Sequential => 2_000,
    };
    Ok(RetryPolicy {
        max_retries: v.number("LIGHTNING_FALLBACK_MAX_RETRIES", 2, 0, 10)? as u32,
        base_delay_ms: v.number("LIGHTNING_FALLBACK_RETRY_DELAY", default_delay, 0, 60_000)?,
        max_delay_ms: v.number("LIGHTNING_FALLBACK_MAX_RETRY_DELAY", 2_000, 0, 60_000)?,
        attempt_timeout_ms: v.number(
            "LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS",
            5_000,
            100,
            60_000,
        )?,
        total_timeout_ms: v.number("LIGHTNING_FALLBACK_TOTAL_TIMEOUT_MS", 15_000, 100, 120_000)?,
    })
}

fn hedge_policy<F: Fn(&str) -> Option<String>>(
    v: &Vars<F>,
    retry: &RetryPolicy,
) -> Result<HedgePolicy, ConfigError> {
    let min_delay_ms = v.number("LIGHTNING_FALLBACK_HEDGE_MIN_MS", 250, 0, 60_000)?;
    Ok(HedgePolicy {
        min_delay_ms,
        max_delay_ms: v.number(
            "LIGHTNING_FALLBACK_HEDGE_MAX_MS",
            2_000.max(min_delay_ms),
            min_delay_ms.max(1),
            60_000,
        )?,
        provider_budget_ms: v.number(
            "LIGHTNING_FALLBACK_PROVIDER_BUDGET_MS",
            retry.attempt_timeout_ms,
            100,
            120_000,
        )?,
    })
}

fn invoice_limits<F: Fn(&str) -> Option<String>>(
    v: &Vars<F>,
) -> Result<InvoiceLimits, ConfigError> {
    let max_expiry = v.number("INVOICE_MAX_EXPIRY_SECS", 604_800, 60, 31_536_000)? as u32;
    Ok(InvoiceLimits {
        max_sat: v.number("INVOICE_MAX_SATS", 10_000_000, 1, 2_100_000_000_000_000)?,
        default_expiry_secs: v.number(
            "INVOICE_DEFAULT_EXPIRY_SECS",
            3_600,
            60,
            u64::from(max_expiry),
        )? as u32,
        max_expiry_secs: max_expiry,
    })
}

fn admin_keys<F: Fn(&str) -> Option<String>>(
    v: &Vars<F>,
    production: bool,
) -> Result<Vec<String>, ConfigError> {
    let keys = crate::api_keys::with_previous(v, "ADMIN_API_KEY", production)?;
    if keys.len() == 1 && v.get("ADMIN_API_KEY").is_none() {
        return Err(ConfigError::new(
            "ADMIN_API_KEY_PREVIOUS",
            "is the old key of a rotation; set ADMIN_API_KEY to the new one",
        ));
    }
    crate::api_keys::distinct(v, production)?;
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    fn names(c: &Config) -> Vec<&'static str> {
        c.backends.iter().map(|p| p.name()).collect()
    }

    #[test]
    fn seed_era_names_still_configure_the_chain() {
        let c = cfg(&[
            ("LND_REST_URL", "https://node.example.com:8080"),
            ("LND_MACAROON", "0201abcd"),
            ("LIGHTNING_FALLBACK_ENABLE_LOCAL_LND", "true"),
            ("LNBITS_URL", "https://lnbits.example.com/"),
            ("LNBITS_API_KEY", "k"),
            ("LIGHTNING_FALLBACK_MAX_RETRIES", "4"),
            ("LIGHTNING_FALLBACK_RETRY_DELAY", "1000"),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(names(&c), vec!["lnd", "lnbits"]);
        assert_eq!(c.backends[1].base_url, "https://lnbits.example.com");
        assert_eq!(c.retry.max_retries, 4);
        assert_eq!(c.retry.base_delay_ms, 1000);
        assert_eq!(c.environment, Environment::Production);
    }

    /// The Alby wallet API closed: every old way of configuring it is a
    /// configuration error that says to move to NWC, even next to a
    /// working provider (its silent loss would hide a dead primary).
    #[test]
    fn alby_settings_say_how_to_move_to_nwc() {
        let lnd = [
            ("LND_REST_URL", "https://node.example.com"),
            ("LND_ADMIN_MACAROON", "ab"),
        ];
        let refused = |extra: &[(&str, &str)]| {
            let e = cfg(&[&lnd[..], extra].concat())
                .err()
                .unwrap_or_else(|| panic!("accepted {extra:?}"));
            assert!(e.message.contains("NWC_URL"), "{e:?}");
            e.variable
        };
        assert_eq!(refused(&[("ALBY_API_KEY", "t")]), "ALBY_API_KEY");
        assert_eq!(
            refused(&[("ALBY_API_URL", "https://api.getalby.com")]),
            "ALBY_API_URL"
        );
        assert_eq!(
            refused(&[("LIGHTNING_PROVIDERS", "lnd,alby")]),
            "LIGHTNING_PROVIDERS"
        );
        assert_eq!(refused(&[("DAZNODE_API_KEY", "t")]), "DAZNODE_API_KEY");
        assert_eq!(
            refused(&[
                ("DAZNODE_API_URL", "https://api.getalby.com/"),
                ("DAZNODE_API_KEY", "t")
            ]),
            "DAZNODE_API_URL"
        );
        // A DAZNODE URL that is not Alby's: which protocol it speaks cannot
        // be told from the URL, so the error names each backend's variables.
        let e = cfg(&[
            &lnd[..],
            &[
                ("DAZNODE_API_URL", "https://wallet.example.org"),
                ("DAZNODE_API_KEY", "t"),
            ],
        ]
        .concat())
        .err()
        .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(e.variable, "DAZNODE_API_URL");
        assert!(e.message.contains("wallet.example.org"), "{e:?}");
        assert!(e.message.contains("LNBITS_URL"), "{e:?}");
        assert!(e.message.contains("CLN_REST_URL"), "{e:?}");
    }

    #[test]
    fn cln_and_phoenixd_are_configured_by_their_variables() {
        let c = cfg(&[
            ("CLN_REST_URL", "https://cln.example.com:3010/"),
            ("CLN_RUNE", "rune-abc"),
            ("PHOENIXD_URL", "https://phoenixd.example.com"),
            ("PHOENIXD_PASSWORD", "pw"),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(names(&c), vec!["cln", "phoenixd"]);
        assert_eq!(c.backends[0].base_url, "https://cln.example.com:3010");
        assert_eq!(c.backends[0].credential, "rune-abc");
        assert_eq!(c.backends[1].credential, "pw");
        let var = |pairs: &[(&str, &str)]| cfg(pairs).err().map(|e| e.variable);
        assert_eq!(
            var(&[
                ("LIGHTNING_PROVIDERS", "cln"),
                ("CLN_REST_URL", "https://c")
            ]),
            Some("CLN_RUNE".into())
        );
        assert_eq!(
            var(&[
                ("PHOENIXD_URL", "http://127.0.0.1:9740"),
                ("PHOENIXD_PASSWORD", "pw")
            ]),
            Some("PHOENIXD_URL".into()),
            "plain http (a private phoenixd) is refused in production"
        );
    }

    #[test]
    fn explicit_order_is_kept() {
        let c = cfg(&[
            ("ENVIRONMENT", "development"),
            ("LIGHTNING_PROVIDERS", "lnbits, mock ,phoenixd"),
            ("LNBITS_URL", "http://127.0.0.1:5000"),
            ("LNBITS_INVOICE_KEY", "k"),
            ("PHOENIXD_URL", "https://phoenixd.example"),
            ("PHOENIXD_PASSWORD", "t"),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(names(&c), vec!["lnbits", "mock", "phoenixd"]);
    }

    #[test]
    fn mock_is_refused_in_production() {
        let e = cfg(&[("LIGHTNING_FALLBACK_ENABLE_MOCK", "true")]).err();
        assert_eq!(
            e.map(|e| e.variable),
            Some("LIGHTNING_FALLBACK_ENABLE_MOCK".into())
        );
        let e = cfg(&[
            ("ENVIRONMENT", "production"),
            ("LIGHTNING_PROVIDERS", "mock"),
        ])
        .err();
        assert_eq!(e.map(|e| e.variable), Some("LIGHTNING_PROVIDERS".into()));
        assert!(cfg(&[
            ("ENVIRONMENT", "development"),
            ("LIGHTNING_FALLBACK_ENABLE_MOCK", "true")
        ])
        .is_ok());
    }

    #[test]
    fn framing_by_plain_http_is_for_development_only() {
        let base = [
            ("LIGHTNING_PROVIDERS", "phoenixd"),
            ("PHOENIXD_URL", "https://phoenixd.example"),
            ("PHOENIXD_PASSWORD", "t"),
        ];
        let with = |env: &str, origins: &str| {
            let mut v = base.to_vec();
            v.push(("ENVIRONMENT", env));
            v.push(("CHECKOUT_FRAME_ANCESTORS", origins));
            cfg(&v).err().map(|e| e.variable)
        };
        assert_eq!(with("development", "http://localhost:8080"), None);
        assert_eq!(
            with("production", "https://shop.example, http://localhost:8080"),
            Some("CHECKOUT_FRAME_ANCESTORS".into())
        );
        assert_eq!(with("production", "https://shop.example"), None);
    }

    #[test]
    fn errors_name_the_variable() {
        let var = |pairs: &[(&str, &str)]| cfg(pairs).err().map(|e| e.variable);
        assert_eq!(var(&[]), Some("LIGHTNING_PROVIDERS".into()));
        assert_eq!(
            var(&[("LIGHTNING_PROVIDERS", "lnd")]),
            Some("LND_REST_URL".into())
        );
        assert_eq!(
            var(&[("LIGHTNING_PROVIDERS", "paypal")]),
            Some("LIGHTNING_PROVIDERS".into())
        );
        assert_eq!(
            var(&[
                ("LIGHTNING_PROVIDERS", "lnd"),
                ("LND_REST_URL", "http://node:8080"),
                ("LND_ADMIN_MACAROON", "ab")
            ]),
            Some("LND_REST_URL".into()),
            "plain http is refused in production"
        );
        assert_eq!(
            var(&[
                ("LIGHTNING_PROVIDERS", "lnd"),
                ("LND_REST_URL", "https://node"),
                ("LND_ADMIN_MACAROON", "xyz")
            ]),
            Some("LND_ADMIN_MACAROON".into())
        );
        assert_eq!(
            var(&[
                ("PHOENIXD_URL", "https://phoenixd.example"),
                ("PHOENIXD_PASSWORD", "t"),
                ("LIGHTNING_FALLBACK_MAX_RETRIES", "lots")
            ]),
            Some("LIGHTNING_FALLBACK_MAX_RETRIES".into())
        );
        assert_eq!(
            var(&[
                ("PHOENIXD_URL", "https://phoenixd.example"),
                ("PHOENIXD_PASSWORD", "t"),
                ("LIGHTNING_NETWORK", "litecoin")
            ]),
            Some("LIGHTNING_NETWORK".into())
        );
        assert_eq!(
            var(&[
                ("PHOENIXD_URL", "https://phoenixd.example"),
                ("PHOENIXD_PASSWORD", "t"),
                ("ENVIRONMENT", "prd")
            ]),
            Some("ENVIRONMENT".into())
        );
        assert_eq!(
            var(&[
                ("PHOENIXD_URL", "https://phoenixd.example"),
                ("PHOENIXD_PASSWORD", "t"),
                ("LIGHTNING_FALLBACK_ENABLE_MOCK", "maybe")
            ]),
            Some("LIGHTNING_FALLBACK_ENABLE_MOCK".into())
        );
    }

    #[test]
    fn strategy_and_hedge_settings() {
        let c = cfg(&[
            ("PHOENIXD_URL", "https://phoenixd.example"),
            ("PHOENIXD_PASSWORD", "t"),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(c.strategy, Strategy::Hedged);
        assert_eq!(c.retry.base_delay_ms, 250);
        assert_eq!(
            c.hedge,
            HedgePolicy {
                min_delay_ms: 250,
                max_delay_ms: 2_000,
                provider_budget_ms: 5_000
            }
        );
        let c = cfg(&[
            ("PHOENIXD_URL", "https://phoenixd.example"),
            ("PHOENIXD_PASSWORD", "t"),
            ("LIGHTNING_FALLBACK_STRATEGY", "Sequential"),
            ("LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS", "3000"),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(c.strategy, Strategy::Sequential);
        assert_eq!(c.retry.base_delay_ms, 2_000, "the seed's 2 s delay");
        assert_eq!(
            c.hedge.provider_budget_ms, 3_000,
            "budget follows the attempt timeout"
        );
        let c = cfg(&[
            ("PHOENIXD_URL", "https://phoenixd.example"),
            ("PHOENIXD_PASSWORD", "t"),
            ("LIGHTNING_FALLBACK_HEDGE_MIN_MS", "100"),
            ("LIGHTNING_FALLBACK_HEDGE_MAX_MS", "800"),
            ("LIGHTNING_FALLBACK_PROVIDER_BUDGET_MS", "4000"),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            (
                c.hedge.min_delay_ms,
                c.hedge.max_delay_ms,
                c.hedge.provider_budget_ms
            ),
            (100, 800, 4_000)
        );
        let var = |pairs: &[(&str, &str)]| cfg(pairs).err().map(|e| e.variable);
        assert_eq!(
            var(&[
                ("PHOENIXD_URL", "https://phoenixd.example"),
                ("PHOENIXD_PASSWORD", "t"),
                ("LIGHTNING_FALLBACK_STRATEGY", "fast")
            ]),
            Some("LIGHTNING_FALLBACK_STRATEGY".into())
        );
        assert_eq!(
            var(&[
                ("PHOENIXD_URL", "https://phoenixd.example"),
                ("PHOENIXD_PASSWORD", "t"),
                ("LIGHTNING_FALLBACK_HEDGE_MIN_MS", "900"),
                ("LIGHTNING_FALLBACK_HEDGE_MAX_MS", "800")
            ]),
            Some("LIGHTNING_FALLBACK_HEDGE_MAX_MS".into()),
            "the cap may not be below the floor"
        );
    }

    const NWC_WALLET: &str = "b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4";
    const NWC_SECRET: &str = "71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c";

    #[test]
    fn nwc_url_configures_nwc_without_keeping_the_secret_in_the_url() {
        let uri = format!(
            "nostr+walletconnect://{NWC_WALLET}?relay=wss%3A%2F%2Frelay.example%2Fv1&secret={NWC_SECRET}&lud16=me%40example.com"
        );
        let c = cfg(&[
            ("NWC_URL", &uri),
            ("LNBITS_URL", "https://l.example"),
            ("LNBITS_INVOICE_KEY", "k"),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            names(&c),
            vec!["nwc", "lnbits"],
            "nwc comes first in the automatic order"
        );
        let p = &c.backends[0];
        assert_eq!(p.credential, NWC_SECRET);
        assert!(!p.base_url.contains(NWC_SECRET), "{}", p.base_url);
        assert_eq!(
            p.base_url,
            format!("nostr+walletconnect://{NWC_WALLET}?relay=wss://relay.example/v1")
        );
        let c = cfg(&[
            ("LIGHTNING_PROVIDERS", "lnbits,nwc"),
            ("NWC_URL", &uri),
            ("LNBITS_URL", "https://l.example"),
            ("LNBITS_INVOICE_KEY", "k"),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(names(&c), vec!["lnbits", "nwc"]);
    }

    #[test]
    fn a_bad_nwc_url_names_the_variable_and_never_echoes_the_secret() {
        for (env, uri) in [
            ("production", format!("nostr+walletconnect://{NWC_WALLET}?relay=ws://127.0.0.1:7000&secret={NWC_SECRET}")),
            ("development", format!("nostr+walletconnect://{NWC_WALLET}?relay=wss://r.example&secret={}zz", &NWC_SECRET[..62])),
            ("development", format!("https://{NWC_WALLET}?relay=wss://r.example&secret={NWC_SECRET}")),
            ("development", format!("nostr+walletconnect://{NWC_WALLET}?relay=wss://r.example")),
        ] {
            let e = cfg(&[("ENVIRONMENT", env), ("LIGHTNING_PROVIDERS", "nwc"), ("NWC_URL", &uri)])
                .err()
                .unwrap_or_else(|| panic!("accepted {uri}"));
            assert_eq!(e.variable, "NWC_URL");
            assert!(!e.message.contains(&NWC_SECRET[..62]), "{}", e.message);
        }
        let e = cfg(&[("LIGHTNING_PROVIDERS", "nwc")])
            .err()
            .map(|e| e.variable);
        assert_eq!(e, Some("NWC_URL".into()));
        assert!(cfg(&[
            ("ENVIRONMENT", "development"),
            ("NWC_URL", &format!("nostr+walletconnect://{NWC_WALLET}?relay=ws://127.0.0.1:7000&secret={NWC_SECRET}"))
        ])
        .is_ok(), "ws:// is allowed in development");
    }

    #[test]
    fn disabled_local_lnd_is_left_out() {
        let c = cfg(&[
            ("PHOENIXD_URL", "https://phoenixd.example"),
            ("PHOENIXD_PASSWORD", "t"),
            ("LND_REST_URL", "https://node"),
            ("LND_ADMIN_MACAROON", "ab"),
            ("LIGHTNING_FALLBACK_ENABLE_LOCAL_LND", "false"),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(names(&c), vec!["phoenixd"]);
    }
}
