//! What the gateway needs to know about a backend without knowing its
//! protocol: its name and label, the settings that configure it (and which
//! of them are secret), and what its payment answers carry. Configuration,
//! the log redactor, health labels and the docs read them from here, so a
//! new backend brings its own.

use crate::{BackendConfig, BackendKind};

/// A variable that configures a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Its name, then older names still accepted for it.
    pub names: &'static [&'static str],
    /// Its value is a secret: never logged, never shown.
    pub secret: bool,
}

impl Setting {
    pub const fn public(names: &'static [&'static str]) -> Setting {
        Setting {
            names,
            secret: false,
        }
    }

    pub const fn secret(names: &'static [&'static str]) -> Setting {
        Setting {
            names,
            secret: true,
        }
    }

    /// The name the docs and errors use.
    pub fn name(&self) -> &'static str {
        self.names.first().copied().unwrap_or("")
    }
}

/// What a backend's pay and lookup answers carry, as its source shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentFacts {
    /// A successful pay answer carries the preimage: one without it, or
    /// with one that does not hash to the payment hash, is not success.
    pub preimage_on_pay: bool,
    /// A lookup that finds the payment paid carries the preimage.
    pub preimage_on_lookup: bool,
    /// Its lookup may answer "not found" for a payment it made (a key or
    /// wallet that cannot see outgoing payments): "not found" counts only
    /// once the same backend shows a payment it is known to have made.
    pub lookup_may_be_blind: bool,
    /// The longest this backend is known to hold a pay request before
    /// running it, beyond which it drops it. The payout's late-execution
    /// bound is at least this unless `PAYOUT_LATE_EXECUTION_BOUND_SECS` is
    /// set. 0: nothing known beyond the default.
    pub late_execution_floor_ms: u64,
    /// Its "not found" may hide a payment still in flight (a wallet whose
    /// lookup lists only some of its payments): the known-paid hash that
    /// confirms a "not found" must have been paid before the hash was first
    /// sent, and "not found" proves a hash dead only once nothing sent for
    /// it can still be in flight.
    pub not_found_may_hide_in_flight: bool,
}

/// What a backend's own answers prove, for a node backend that records a
/// payment before it sends and answers for every attempt (LND, CLN,
/// phoenixd each state why in their module).
pub const NODE_FACTS: PaymentFacts = PaymentFacts {
    preimage_on_pay: true,
    preimage_on_lookup: true,
    lookup_may_be_blind: false,
    late_execution_floor_ms: 0,
    not_found_may_hide_in_flight: false,
};

/// One backend, as the gateway sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub kind: BackendKind,
    /// How health, `/status` and the docs name it.
    pub label: &'static str,
    /// Where it is: a base URL, or for NWC the connection URI. Setting it
    /// selects the backend when `LIGHTNING_PROVIDERS` is not set.
    pub location: Option<Setting>,
    /// The credential that receives (an invoice key, a macaroon, a rune).
    pub credential: Option<Setting>,
    /// Other settings of its own (the key that pays, where it differs).
    pub other: &'static [Setting],
    pub facts: PaymentFacts,
    /// It can find an invoice it issued by its payment hash alone
    /// (check-invoice asks it when its own index misses a hash).
    pub finds_invoices_by_hash: bool,
}

impl Descriptor {
    /// Every setting of this backend.
    pub fn settings(&self) -> impl Iterator<Item = &Setting> {
        self.location
            .iter()
            .chain(self.credential.iter())
            .chain(self.other.iter())
    }

    /// The names (current and older) of its secret settings.
    pub fn secret_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.settings()
            .filter(|s| s.secret)
            .flat_map(|s| s.names.iter().copied())
    }
}

/// A setting's problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub variable: &'static str,
    pub message: String,
}

impl SettingError {
    pub fn new(variable: &'static str, message: impl Into<String>) -> Self {
        SettingError {
            variable,
            message: message.into(),
        }
    }
}

/// A backend's settings as read, each with the name it was found under.
#[derive(Debug, Clone, Default)]
pub struct Values {
    pub location: Option<(&'static str, String)>,
    pub credential: Option<(&'static str, String)>,
    /// `http://` is accepted (local development), not only `https://`.
    pub allow_http: bool,
}

/// A plain `https` base URL (or `http` in development), without
/// credentials, query or fragment, with no trailing slash.
pub fn base_url(name: &'static str, raw: &str, allow_http: bool) -> Result<String, SettingError> {
    let u = url::Url::parse(raw)
        .map_err(|e| SettingError::new(name, format!("`{raw}` is not a URL: {e}")))?;
    match u.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(SettingError::new(
                name,
                "must use https in production (a Worker cannot reach a node without a publicly trusted certificate anyway)",
            ))
        }
        other => {
            return Err(SettingError::new(
                name,
                format!("scheme `{other}` is not http(s)"),
            ))
        }
    }
    if u.host_str().is_none()
        || u.query().is_some()
        || u.fragment().is_some()
        || !u.username().is_empty()
    {
        return Err(SettingError::new(
            name,
            "must be a plain base URL without credentials, query or fragment",
        ));
    }
    Ok(u.as_str().trim_end_matches('/').to_string())
}

/// The usual configuration: a base URL and a credential, both required.
pub fn url_and_credential(kind: BackendKind, v: &Values) -> Result<BackendConfig, SettingError> {
    let (url_var, url) = v
        .location
        .clone()
        .ok_or_else(|| missing(kind, "location"))?;
    let (_, credential) = v
        .credential
        .clone()
        .ok_or_else(|| missing(kind, "credential"))?;
    Ok(BackendConfig {
        kind,
        base_url: base_url(url_var, &url, v.allow_http)?,
        credential,
    })
}

/// The error for a setting the backend needs and did not get.
pub fn missing(kind: BackendKind, which: &str) -> SettingError {
    let d = kind.adapter().descriptor();
    let setting = match which {
        "location" => d.location,
        _ => d.credential,
    };
    SettingError::new(
        setting.map_or("LIGHTNING_PROVIDERS", |s| s.name()),
        format!("is required for the `{}` provider", kind.as_str()),
    )
}
