//! The receiving side's own settings: the invoice key, where every
//! invoice's events go, and what the watch may spend on lookups.

use crate::payout::safe_url::UrlPolicy;
use crate::receive::address::settings::{self, Address};
use crate::receive::address::zap_key::ZapSecret;
use crate::receive::checkout::settings::CheckoutSettings;
use crate::vars::{ConfigError, Vars};
use crate::webhooks::WebhookSecrets;

/// Default cap of the watch's scheduled lookups per backend per minute,
/// across all of its shards; lookups on demand have as much again, at least
/// one polling page's 20 per shard (`budget::ONE_PAGE_PER_MINUTE`). Both
/// together, 140 at most, stay below LNbits' 200 requests a minute per client.
pub const DEFAULT_LOOKUPS_PER_MINUTE: u64 = 60;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct InvoiceSettings {
    /// `INVOICE_API_KEY` and, during a rotation, `INVOICE_API_KEY_PREVIOUS`.
    /// Empty: the fields and routes that need the key answer 403.
    pub api_keys: Vec<String>,
    /// `INVOICE_WEBHOOK_URL`: every invoice's events.
    pub operator_webhook_url: Option<String>,
    /// `WEBHOOK_SECRET` (and the previous one), shared with payouts.
    pub webhook_secret: Option<WebhookSecrets>,
    pub url_policy: UrlPolicy,
    /// `INVOICE_WATCH_LOOKUPS_PER_MINUTE`, per backend, all shards together.
    pub lookups_per_minute: u32,
    /// `INVOICE_BACKEND_NOTICES`: auto (default), on or off.
    pub notices: NoticeMode,
    /// `PUBLIC_BASE_URL`: the origin the gateway hands out in absolute URLs
    /// (LNURL callbacks); `None`: each request's own origin.
    pub public_base_url: Option<String>,
    /// `LIGHTNING_ADDRESS_NAMES` with `LIGHTNING_ADDRESS_SETTINGS`.
    pub addresses: Vec<Address>,
    /// `CHECKOUT_SHOP_NAME`, `CHECKOUT_REDIRECT_HOSTS`, `CHECKOUT_FRAME_ANCESTORS`.
    pub checkout: CheckoutSettings,
    /// `NOSTR_ZAP_SECRET`: zaps (NIP-57) for every served address.
    pub zap_secret: Option<ZapSecret>,
}

impl InvoiceSettings {
    pub(crate) fn from_vars<F: Fn(&str) -> Option<String>>(
        v: &Vars<F>,
        production: bool,
        max_invoice_sat: u64,
    ) -> Result<InvoiceSettings, ConfigError> {
        let api_keys = crate::api_keys::with_previous(v, "INVOICE_API_KEY", production)?;
        if api_keys.is_empty() && v.get("INVOICE_API_KEY_PREVIOUS").is_some() {
            return Err(ConfigError::new(
                "INVOICE_API_KEY",
                "is required when INVOICE_API_KEY_PREVIOUS is set",
            ));
        }
        let s = InvoiceSettings {
            api_keys,
            operator_webhook_url: v.get("INVOICE_WEBHOOK_URL"),
            webhook_secret: WebhookSecrets::from_vars(
                v.get("WEBHOOK_SECRET"),
                v.get("WEBHOOK_SECRET_PREVIOUS"),
            )?,
            url_policy: UrlPolicy::from_vars(v, production)?,
            lookups_per_minute: v.number(
                "INVOICE_WATCH_LOOKUPS_PER_MINUTE",
                DEFAULT_LOOKUPS_PER_MINUTE,
                1,
                10_000,
            )? as u32,
            notices: NoticeMode::parse(v.get("INVOICE_BACKEND_NOTICES").as_deref())
                .map_err(|e| ConfigError::new("INVOICE_BACKEND_NOTICES", e))?,
            public_base_url: public_base_url(v.get("PUBLIC_BASE_URL"))?,
            addresses: settings::parse(
                v.get("LIGHTNING_ADDRESS_NAMES").as_deref(),
                v.get("LIGHTNING_ADDRESS_SETTINGS").as_deref(),
                max_invoice_sat,
            )
            .map_err(|(var, m)| ConfigError::new(var, m))?,
            checkout: CheckoutSettings::parse(
                v.get("CHECKOUT_SHOP_NAME").as_deref(),
                v.get("CHECKOUT_REDIRECT_HOSTS").as_deref(),
                v.get("CHECKOUT_FRAME_ANCESTORS").as_deref(),
            )
            .map_err(|(var, m)| ConfigError::new(var, m))?,
            zap_secret: v
                .get("NOSTR_ZAP_SECRET")
                .map(|raw| ZapSecret::parse(&raw))
                .transpose()
                .map_err(|m| ConfigError::new("NOSTR_ZAP_SECRET", m))?,
        };
        // Plain http (http://localhost) is for a shop page under development.
        if production
            && s.checkout
                .frame_ancestors
                .iter()
                .any(|o| o.starts_with("http:"))
        {
            return Err(ConfigError::new(
                "CHECKOUT_FRAME_ANCESTORS",
                "may list http://localhost only outside production; list https origins",
            ));
        }
        if let Some(url) = &s.operator_webhook_url {
            s.url_policy
                .check(url)
                .map_err(|e| ConfigError::new("INVOICE_WEBHOOK_URL", e))?;
            if s.webhook_secret.is_none() {
                return Err(ConfigError::new(
                    "INVOICE_WEBHOOK_URL",
                    "needs WEBHOOK_SECRET to sign the events",
                ));
            }
        }
        Ok(s)
    }

    pub fn keys(&self) -> Vec<&str> {
        self.api_keys.iter().map(String::as_str).collect()
    }
}

/// `INVOICE_BACKEND_NOTICES`: whether create-invoice asks backends to push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoticeMode {
    /// Only when the gateway is reached by a domain name: LNbits refuses to
    /// create an invoice whose `webhook` origin fails its callback rules,
    /// which by default admit `https?://<name>.<tld>` only
    /// (`lnbits_callback_url_rules`, settings.py).
    #[default]
    Auto,
    On,
    Off,
}

impl NoticeMode {
    pub fn parse(v: Option<&str>) -> Result<NoticeMode, String> {
        match v.map(str::trim) {
            None | Some("") | Some("auto") => Ok(NoticeMode::Auto),
            Some("on") | Some("true") => Ok(NoticeMode::On),
            Some("off") | Some("false") => Ok(NoticeMode::Off),
            Some(_) => Err("must be auto, on or off".into()),
        }
    }
}

/// `PUBLIC_BASE_URL`: an origin only (`https://pay.example.com`), kept
/// without a trailing slash.
fn public_base_url(raw: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let bad = |m: &str| ConfigError::new("PUBLIC_BASE_URL", m);
    let url = url::Url::parse(raw.trim())
        .map_err(|_| bad("must be a URL such as https://pay.example.com"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(bad(
            "must be an http(s) origin such as https://pay.example.com",
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must be an origin only, without a path"));
    }
    Ok(Some(url.origin().ascii_serialization()))
}
