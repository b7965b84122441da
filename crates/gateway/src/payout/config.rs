//! Payout settings. Parsed separately from the receive settings, so a
//! deployment that does not use payouts is not broken by their absence.

use crate::backoff::RetryPolicy;
use crate::config::{Config, ConfigError, Environment};
use crate::health::breaker::BreakerPolicy;
use crate::payout::machine::PayoutPolicy;
use crate::payout::safe_url::UrlPolicy;
use crate::payout::shard::{daily_share, ShardSlot};
use crate::vars::Vars;
use backends::bolt11::Network;
use backends::identity::BackendId;
use backends::{BackendConfig, BackendKind};

#[derive(Debug, Clone, PartialEq)]
pub struct PayoutConfig {
    /// Accepted client keys: the current one and, during rotation, the previous.
    pub api_keys: Vec<String>,
    /// The first backend of the chain: where new payouts go while its
    /// payout breaker is closed.
    pub default_backend: BackendConfig,
    /// The payout chain, in order (`PAYOUT_PROVIDERS`; `PAYOUT_PROVIDER` or
    /// the automatic choice is a chain of one). A payout whose current
    /// invoice no backend may still pay goes to the first one whose payout
    /// breaker lets it through.
    pub chain: Vec<BackendConfig>,
    /// The payout breaker of each backend, fed by pay outcomes.
    pub breaker: BreakerPolicy,
    /// Every configured backend that can pay, `provider` included. A payout
    /// is acted on only through the one it is pinned to, so keeping the old
    /// backend configured lets its payouts finish after a switch.
    pub backends: Vec<BackendConfig>,
    pub network: Network,
    pub max_sat: u64,
    pub daily_limit_sat: u64,
    pub policy: PayoutPolicy,
    /// Webhook signing keys (`WEBHOOK_SECRET`, then `WEBHOOK_SECRET_PREVIOUS`
    /// during a rotation); `None` when webhooks are off. Debug redacts them.
    pub webhook_secret: Option<crate::payout::webhook::WebhookSecrets>,
    /// `PAYOUT_WEBHOOK_URL`: gets every payout's events, beside each
    /// payout's own `webhook_url`.
    pub operator_webhook_url: Option<String>,
    pub url_policy: UrlPolicy,
    pub lnurl_timeout_ms: u64,
    /// Payouts in progress at once per backend within one queue shard.
    pub max_in_flight_per_backend: usize,
    /// Queue Durable Objects; a payout lives on the one its id names.
    pub shards: u32,
}

fn err(var: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::new(var, msg)
}

impl PayoutConfig {
    /// The configuration as one shard applies it: its share of the daily limit.
    pub fn for_shard(mut self, slot: ShardSlot) -> PayoutConfig {
        if slot.shards > 1 {
            self.daily_limit_sat = daily_share(self.daily_limit_sat, slot.shards, slot.shard);
        }
        self
    }

    pub fn from_lookup<F: Fn(&str) -> Option<String>>(
        get: F,
        base: &Config,
    ) -> Result<PayoutConfig, ConfigError> {
        let v = Vars(get);
        let production = base.environment == Environment::Production;
        let api_keys = api_keys(&v, production)?;
        let (chain, backends) = payout_backends(&v, base)?;
        let default_backend = chain
            .first()
            .cloned()
            .ok_or_else(|| err("PAYOUT_PROVIDERS", "names no backend"))?;
        // LNbits runs one wallet's payments one at a time: more in flight
        // only queue there and run late.
        let in_flight_default = if default_backend.kind == BackendKind::Lnbits {
            1
        } else {
            8
        };
        PayoutConfig {
            api_keys,
            default_backend,
            chain,
            breaker: BreakerPolicy {
                failure_threshold: v.number("PAYOUT_BREAKER_FAILURES", 3, 1, 100)? as u32,
                cooldown_ms: v.secs_as_ms("PAYOUT_BREAKER_COOLDOWN_SECS", 60_000, 1, 86_400)?,
            },
            network: base.network,
            max_sat: v.number("PAYOUT_MAX_SATS", 100_000, 1, 2_100_000_000_000_000)?,
            daily_limit_sat: v.number(
                "PAYOUT_DAILY_LIMIT_SATS",
                1_000_000,
                1,
                2_100_000_000_000_000,
            )?,
            backends,
            policy: policy(&v, production)?,
            webhook_secret: crate::payout::webhook::WebhookSecrets::from_vars(
                v.get("WEBHOOK_SECRET"),
                v.get("WEBHOOK_SECRET_PREVIOUS"),
            )?,
            operator_webhook_url: None,
            url_policy: UrlPolicy::from_vars(&v, production)?,
            lnurl_timeout_ms: v.number("LNURL_TIMEOUT_MS", 5_000, 100, 30_000)?,
            max_in_flight_per_backend: v.number(
                "PAYOUT_MAX_IN_FLIGHT_PER_BACKEND",
                in_flight_default,
                1,
                64,
            )? as usize,
            shards: v.number("PAYOUT_QUEUE_SHARDS", 1, 1, 64)? as u32,
        }
        .with_operator_webhook(v.get("PAYOUT_WEBHOOK_URL"))
    }

    /// Checks `PAYOUT_WEBHOOK_URL` as a payout's own `webhook_url` is
    /// checked, and that there is a secret to sign with.
    fn with_operator_webhook(mut self, url: Option<String>) -> Result<PayoutConfig, ConfigError> {
        let Some(url) = url else { return Ok(self) };
        self.url_policy
            .check(&url)
            .map_err(|e| err("PAYOUT_WEBHOOK_URL", e))?;
        if self.webhook_secret.is_none() {
            return Err(err(
                "PAYOUT_WEBHOOK_URL",
                "needs WEBHOOK_SECRET to sign the events",
            ));
        }
        self.operator_webhook_url = Some(url);
        Ok(self)
    }
}

/// The client keys: the current one and, during a rotation, the previous.
fn api_keys<F: Fn(&str) -> Option<String>>(
    v: &Vars<F>,
    production: bool,
) -> Result<Vec<String>, ConfigError> {
    let keys = crate::api_keys::with_previous(v, "PAYOUT_API_KEY", production)?;
    if keys.is_empty() {
        return Err(err("PAYOUT_API_KEY", "is required to use payouts"));
    }
    Ok(keys)
}

/// The payout chain (`PAYOUT_PROVIDERS`, or `PAYOUT_PROVIDER` as a chain
/// of one, or LNbits when its admin key is set, or the first other
/// configured backend), and every backend that can pay: payouts pinned to
/// an older one finish there.
fn payout_backends<F: Fn(&str) -> Option<String>>(
    v: &Vars<F>,
    base: &Config,
) -> Result<(Vec<BackendConfig>, Vec<BackendConfig>), ConfigError> {
    let lnbits_admin = v.get("LNBITS_ADMIN_KEY");
    // LNbits pays with its admin key, at the URL it receives on.
    let lnbits_payer = match (base.backend("lnbits"), lnbits_admin.as_ref()) {
        (Some(p), Some(key)) => Some(BackendConfig {
            kind: BackendKind::Lnbits,
            base_url: p.base_url.clone(),
            credential: key.clone(),
        }),
        _ => None,
    };
    let names: Vec<(&'static str, String)> =
        match (v.get("PAYOUT_PROVIDERS"), v.get("PAYOUT_PROVIDER")) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "PAYOUT_PROVIDERS",
                    "set PAYOUT_PROVIDERS or PAYOUT_PROVIDER, not both (PAYOUT_PROVIDER is a chain of one)",
                ))
            }
            (Some(list), None) => {
                let names: Vec<String> = list
                    .split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .collect();
                if names.iter().any(String::is_empty) {
                    return Err(err(
                        "PAYOUT_PROVIDERS",
                        "must be a comma-separated list of payout backends, such as `nwc,lnbits`",
                    ));
                }
                names.into_iter().map(|n| ("PAYOUT_PROVIDERS", n)).collect()
            }
            (None, Some(one)) => vec![("PAYOUT_PROVIDER", one.trim().to_ascii_lowercase())],
            (None, None) if lnbits_admin.is_some() => vec![("PAYOUT_PROVIDER", "lnbits".into())],
            (None, None) => vec![(
                "PAYOUT_PROVIDER",
                base.backends
                    .iter()
                    .map(|p| p.kind)
                    .find(|k| *k != BackendKind::Lnbits)
                    .ok_or_else(|| err("PAYOUT_PROVIDER", "no payout provider: set LNBITS_URL and LNBITS_ADMIN_KEY, or configure nwc, lnd, cln or phoenixd"))?
                    .as_str()
                    .to_string(),
            )],
        };
    let mut chain: Vec<BackendConfig> = Vec::new();
    for (var, name) in &names {
        let b = chain_entry(v, base, var, name, lnbits_payer.as_ref())?;
        if chain.iter().any(|c| BackendId::of(c) == BackendId::of(&b)) {
            return Err(err(var, format!("`{name}` is listed twice")));
        }
        chain.push(b);
    }
    let mut backends = chain.clone();
    let others = lnbits_payer.into_iter().chain(
        base.backends
            .iter()
            .filter(|p| !matches!(p.kind, BackendKind::Lnbits | BackendKind::Mock))
            .cloned(),
    );
    for b in others {
        if !backends.contains(&b) {
            backends.push(b);
        }
    }
    Ok((chain, backends))
}

/// One backend of the payout chain: a kind (configured for receiving, or
/// LNbits with its admin key), or `lnbits:NAME`, a further LNbits-compatible
/// wallet at `LNBITS_NAME_URL` paying with `LNBITS_NAME_ADMIN_KEY`.
fn chain_entry<F: Fn(&str) -> Option<String>>(
    v: &Vars<F>,
    base: &Config,
    var: &'static str,
    name: &str,
    lnbits_payer: Option<&BackendConfig>,
) -> Result<BackendConfig, ConfigError> {
    if name == "alby" {
        return Err(err(var, crate::config::ALBY_MIGRATION));
    }
    if let Some(wallet) = name.strip_prefix("lnbits:") {
        return named_lnbits(v, base, var, wallet);
    }
    let kind =
        BackendKind::parse(name).ok_or_else(|| err(var, format!("unknown provider `{name}`")))?;
    match kind {
        BackendKind::Lnbits => match (lnbits_payer, base.backend("lnbits")) {
            (Some(payer), _) => Ok(payer.clone()),
            (None, Some(_)) => Err(err("LNBITS_ADMIN_KEY", "is required to pay through LNbits")),
            (None, None) => Err(err(
                "LNBITS_URL",
                "is required for the lnbits payout provider (with LNBITS_INVOICE_KEY)",
            )),
        },
        BackendKind::Mock if base.environment == Environment::Production => Err(err(
            var,
            "the mock provider is refused when ENVIRONMENT=production",
        )),
        kind => base.backend(kind.as_str()).cloned().ok_or_else(|| {
            err(
                var,
                format!(
                    "`{}` is not configured (see LIGHTNING_PROVIDERS)",
                    kind.as_str()
                ),
            )
        }),
    }
}

/// `lnbits:NAME`: another LNbits-compatible wallet that only pays.
fn named_lnbits<F: Fn(&str) -> Option<String>>(
    v: &Vars<F>,
    base: &Config,
    var: &'static str,
    wallet: &str,
) -> Result<BackendConfig, ConfigError> {
    if wallet.is_empty()
        || wallet.len() > 32
        || !wallet
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
    {
        return Err(err(
            var,
            format!("`lnbits:{wallet}`: the wallet name must be 1 to 32 of a-z, 0-9 and _"),
        ));
    }
    let upper = wallet.to_ascii_uppercase();
    let (url_var, key_var) = (
        format!("LNBITS_{upper}_URL"),
        format!("LNBITS_{upper}_ADMIN_KEY"),
    );
    let missing = || {
        err(
            var,
            format!("`lnbits:{wallet}` needs {url_var} and {key_var}"),
        )
    };
    let url = v.get(&url_var).ok_or_else(missing)?;
    let key = v.get(&key_var).ok_or_else(missing)?;
    let allow_http = base.environment == Environment::Development;
    let base_url = backends::descriptor::base_url("LNBITS_URL", &url, allow_http)
        .map_err(|e| err(&url_var, e.message))?;
    Ok(BackendConfig {
        kind: BackendKind::Lnbits,
        base_url,
        credential: key,
    })
}

/// The payout timings. In production the bounds that keep money safe
/// cannot be set below what the backends need.
fn policy<F: Fn(&str) -> Option<String>>(
    v: &Vars<F>,
    production: bool,
) -> Result<PayoutPolicy, ConfigError> {
    let d = PayoutPolicy::default();
    let floor = |prod: u64| if production { prod } else { 0 };
    let pay_timeout_ms = v.number("PAYOUT_PAY_TIMEOUT_MS", d.pay_timeout_ms, 1_000, 120_000)?;
    let retry_base = v.number("PAYOUT_RETRY_BASE_MS", d.retry.base_delay_ms, 1, 3_600_000)?;
    let lookup_base = v.number(
        "PAYOUT_LOOKUP_BASE_MS",
        d.lookup.base_delay_ms,
        1,
        3_600_000,
    )?;
    let lookup_max = v.number(
        "PAYOUT_LOOKUP_MAX_MS",
        d.lookup.max_delay_ms,
        1_000,
        3_600_000,
    )?;
    Ok(PayoutPolicy {
        pay_timeout_ms,
        late_execution_bound_ms: v.secs_as_ms(
            "PAYOUT_LATE_EXECUTION_BOUND_SECS",
            d.late_execution_bound_ms,
            floor(600),
            7 * 86_400,
        )?,
        late_execution_bound_set: v.get("PAYOUT_LATE_EXECUTION_BOUND_SECS").is_some(),
        clock_skew_ms: v.secs_as_ms("PAYOUT_CLOCK_SKEW_SECS", d.clock_skew_ms, floor(5), 3_600)?,
        // In production never below LND's largest total CLTV (2016 blocks,
        // about 14 days): a route's HTLCs may live that long.
        in_flight_bound_ms: v.secs_as_ms(
            "PAYOUT_IN_FLIGHT_BOUND_SECS",
            d.in_flight_bound_ms,
            floor(d.in_flight_bound_ms / 1000),
            60 * 86_400,
        )?,
        expiry_lookup_margin_secs: v.number(
            "PAYOUT_EXPIRY_LOOKUP_MARGIN_SECS",
            d.expiry_lookup_margin_secs,
            floor(60),
            86_400,
        )?,
        max_invoices: v.number("PAYOUT_MAX_INVOICES", u64::from(d.max_invoices), 1, 50)? as u32,
        max_attempts: v.number("PAYOUT_MAX_ATTEMPTS", u64::from(d.max_attempts), 1, 50)? as u32,
        max_age_ms: v.secs_as_ms("PAYOUT_MAX_AGE_SECS", d.max_age_ms, 60, 30 * 86_400)?,
        retry: RetryPolicy {
            base_delay_ms: retry_base,
            ..d.retry
        },
        lookup: RetryPolicy {
            base_delay_ms: lookup_base,
            max_delay_ms: lookup_max.max(lookup_base),
            ..d.lookup
        },
        // In production, "not found" is trusted (to re-send the same hash)
        // only well after a send can no longer be on its way.
        not_found_grace_ms: v.number(
            "PAYOUT_NOT_FOUND_GRACE_MS",
            d.not_found_grace_ms.max(3 * pay_timeout_ms),
            floor(3 * pay_timeout_ms),
            3_600_000,
        )?,
        sending_timeout_ms: d.sending_timeout_ms.max(3 * pay_timeout_ms),
        ..d
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_config as testing;

    fn payout(env: &str, extra: &[(&str, &str)]) -> Result<PayoutConfig, ConfigError> {
        let base_vars = [
            ("ENVIRONMENT", env),
            ("LNBITS_URL", "https://lnbits.example.com"),
            ("LNBITS_INVOICE_KEY", "k"),
        ];
        let base = testing::config(&base_vars);
        let mut all: Vec<(&str, &str)> = base_vars.to_vec();
        all.extend_from_slice(&[
            ("PAYOUT_API_KEY", "0123456789abcdef"),
            ("LNBITS_ADMIN_KEY", "admin"),
        ]);
        all.extend_from_slice(extra);
        PayoutConfig::from_lookup(
            |k| {
                all.iter()
                    .rev()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            },
            &base,
        )
    }

    #[test]
    fn lnbits_with_an_admin_key_is_the_default_payout_provider() {
        let c = payout("production", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(c.default_backend.kind, BackendKind::Lnbits);
        assert_eq!(c.default_backend.credential, "admin");
        assert_eq!(c.api_keys.len(), 1);
    }

    #[test]
    fn nwc_pays_when_chosen_and_is_pinned_by_wallet_relay_and_key() {
        use crate::payout::model::BackendId;
        let wallet = "b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4";
        let secret = "71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c";
        let uri =
            format!("nostr+walletconnect://{wallet}?relay=wss://relay.example/v1&secret={secret}");
        let vars = [
            ("ENVIRONMENT", "production"),
            ("NWC_URL", uri.as_str()),
            ("PAYOUT_API_KEY", "0123456789abcdef"),
            ("PAYOUT_PROVIDER", "nwc"),
        ];
        let base = testing::config(&vars);
        let c = PayoutConfig::from_lookup(
            |k| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            },
            &base,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(c.default_backend.kind, BackendKind::Nwc);
        let id = BackendId::of(&c.default_backend);
        assert!(id.base_url.contains(wallet) && id.base_url.contains("wss://relay.example/v1"));
        assert!(!id.label().contains(secret) && !format!("{id:?}").contains(secret));
        // Another secret for the same wallet and relay is another backend.
        let mut other = c.default_backend.clone();
        other.credential = "11".repeat(32);
        assert!(!id.matches(&other));
    }

    #[test]
    fn unsafe_settings_are_refused_in_production() {
        let var = |env: &str, extra: &[(&str, &str)]| payout(env, extra).err().map(|e| e.variable);
        assert_eq!(
            var("production", &[("PAYOUT_NOT_FOUND_GRACE_MS", "0")]),
            Some("PAYOUT_NOT_FOUND_GRACE_MS".into())
        );
        assert_eq!(
            var("development", &[("PAYOUT_NOT_FOUND_GRACE_MS", "0")]),
            None
        );
        assert_eq!(
            var("production", &[("LNURL_ALLOW_HTTP_HOSTS", "127.0.0.1")]),
            Some("LNURL_ALLOW_HTTP_HOSTS".into())
        );
        assert_eq!(
            var("production", &[("PAYOUT_PROVIDER", "mock")]),
            Some("PAYOUT_PROVIDER".into())
        );
        assert_eq!(
            var("production", &[("PAYOUT_API_KEY", "short")]),
            Some("PAYOUT_API_KEY".into())
        );
        assert_eq!(
            var("production", &[("PAYOUT_PROVIDER", "lnd")]),
            Some("PAYOUT_PROVIDER".into())
        );
        assert_eq!(
            var("production", &[("PAYOUT_PROVIDER", "cln")]),
            Some("PAYOUT_PROVIDER".into()),
            "cln is not configured here"
        );
    }

    #[test]
    fn payout_provider_alby_says_how_to_move_to_nwc() {
        let e = payout("production", &[("PAYOUT_PROVIDER", "alby")]).err();
        assert_eq!(
            e.as_ref().map(|e| e.variable.as_str()),
            Some("PAYOUT_PROVIDER")
        );
        assert!(e.is_some_and(|e| e.message.contains("NWC_URL")));
    }

    /// CLN and phoenixd pay with their own credential and stay available
    /// to the payouts pinned to them after `PAYOUT_PROVIDER` moves on.
    #[test]
    fn cln_and_phoenixd_can_pay_and_stay_pinnable() {
        let vars = [
            ("ENVIRONMENT", "production"),
            ("CLN_REST_URL", "https://cln.example.com"),
            ("CLN_RUNE", "rune"),
            ("PHOENIXD_URL", "https://phoenixd.example.com"),
            ("PHOENIXD_PASSWORD", "pw"),
            ("PAYOUT_API_KEY", "0123456789abcdef"),
        ];
        let base = testing::config(&vars);
        let with = |provider: Option<&str>| {
            let mut all = vars.to_vec();
            if let Some(p) = provider {
                all.push(("PAYOUT_PROVIDER", p));
            }
            PayoutConfig::from_lookup(
                |k| {
                    all.iter()
                        .find(|(n, _)| *n == k)
                        .map(|(_, v)| v.to_string())
                },
                &base,
            )
            .unwrap_or_else(|e| panic!("{e:?}"))
        };
        let auto = with(None);
        assert_eq!(
            auto.default_backend.kind,
            BackendKind::Cln,
            "the first configured"
        );
        let ph = with(Some("phoenixd"));
        assert_eq!(ph.default_backend.kind, BackendKind::Phoenixd);
        assert_eq!(ph.default_backend.credential, "pw");
        let kinds: Vec<BackendKind> = ph.backends.iter().map(|b| b.kind).collect();
        assert_eq!(kinds, vec![BackendKind::Phoenixd, BackendKind::Cln]);
        assert_eq!(with(Some("cln")).default_backend.credential, "rune");
    }

    #[test]
    fn payout_providers_is_an_ordered_chain_and_payout_provider_a_chain_of_one() {
        let c = payout(
            "development",
            &[
                ("PAYOUT_PROVIDERS", "lnbits:voltz, lnbits"),
                ("LNBITS_VOLTZ_URL", "https://voltz.example"),
                ("LNBITS_VOLTZ_ADMIN_KEY", "vk"),
            ],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let urls: Vec<&str> = c.chain.iter().map(|b| b.base_url.as_str()).collect();
        assert_eq!(
            urls,
            ["https://voltz.example", "https://lnbits.example.com"]
        );
        assert_eq!(c.default_backend, c.chain[0]);
        assert!(c.chain.iter().all(|b| c.backends.contains(b)));
        let one = payout("development", &[("PAYOUT_PROVIDER", "lnbits")])
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(one.chain.len(), 1);
        assert_eq!(one.breaker.failure_threshold, 3);
        assert_eq!(one.breaker.cooldown_ms, 60_000);
        let var = |extra: &[(&str, &str)]| payout("development", extra).err().map(|e| e.variable);
        assert_eq!(
            var(&[
                ("PAYOUT_PROVIDERS", "lnbits"),
                ("PAYOUT_PROVIDER", "lnbits")
            ]),
            Some("PAYOUT_PROVIDERS".into()),
            "both set is a configuration error"
        );
        assert_eq!(
            var(&[("PAYOUT_PROVIDERS", "lnbits,lnbits")]),
            Some("PAYOUT_PROVIDERS".into())
        );
        assert_eq!(
            var(&[("PAYOUT_PROVIDERS", "lnbits,,nwc")]),
            Some("PAYOUT_PROVIDERS".into())
        );
        assert_eq!(
            var(&[("PAYOUT_PROVIDERS", "lnbits,nope")]),
            Some("PAYOUT_PROVIDERS".into())
        );
        assert_eq!(
            var(&[("PAYOUT_PROVIDERS", "lnbits,nwc")]),
            Some("PAYOUT_PROVIDERS".into()),
            "nwc is not configured"
        );
        assert_eq!(
            var(&[("PAYOUT_PROVIDERS", "lnbits:Bad-Name")]),
            Some("PAYOUT_PROVIDERS".into())
        );
        assert_eq!(
            var(&[("PAYOUT_PROVIDERS", "lnbits:b")]),
            Some("PAYOUT_PROVIDERS".into()),
            "its settings are missing"
        );
        assert_eq!(
            var(&[
                ("PAYOUT_PROVIDERS", "lnbits:b"),
                ("LNBITS_B_URL", "ftp://x"),
                ("LNBITS_B_ADMIN_KEY", "k")
            ]),
            Some("LNBITS_B_URL".into())
        );
        assert_eq!(
            var(&[("PAYOUT_BREAKER_FAILURES", "0")]),
            Some("PAYOUT_BREAKER_FAILURES".into())
        );
    }
}
