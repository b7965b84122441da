//! Signing secrets: `whsec_<base64>`, the HMAC key being the decoded bytes
//! (24 to 64 of them, as Standard Webhooks asks), with a previous one kept
//! during a rotation.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::config::ConfigError;

/// The variables that hold the signing secrets.
pub const SECRET_VAR: &str = "WEBHOOK_SECRET";
pub const PREVIOUS_SECRET_VAR: &str = "WEBHOOK_SECRET_PREVIOUS";
pub const SECRET_PREFIX: &str = "whsec_";
/// Key size bounds of the spec: at least 192 bits, at most 512.
pub const MIN_SECRET_BYTES: usize = 24;
pub const MAX_SECRET_BYTES: usize = 64;
const HOW_TO_MAKE_ONE: &str =
    "make one with: echo \"whsec_$(openssl rand -base64 32)\" (and give the same value to the receiver)";

/// Why a secret was refused. The messages never contain the secret itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretError {
    MissingPrefix,
    NotBase64,
    TooShort,
    TooLong,
}

impl SecretError {
    pub fn message(self) -> String {
        let what = match self {
            SecretError::MissingPrefix => "must be written `whsec_<base64>` (Standard Webhooks)",
            SecretError::NotBase64 => {
                "must be `whsec_` followed by standard base64 (A-Z a-z 0-9 + /, `=` padding)"
            }
            SecretError::TooShort => "must decode to at least 24 random bytes after `whsec_`",
            SecretError::TooLong => "must decode to at most 64 bytes after `whsec_`",
        };
        format!("{what}; {HOW_TO_MAKE_ONE}")
    }
}

/// One HMAC key: the decoded bytes of a `whsec_<base64>` secret.
/// `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(pub(crate) Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl WebhookSecret {
    pub fn parse(written: &str) -> Result<WebhookSecret, SecretError> {
        let b64 = written
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = B64.decode(b64).map_err(|_| SecretError::NotBase64)?;
        if key.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort);
        }
        if key.len() > MAX_SECRET_BYTES {
            return Err(SecretError::TooLong);
        }
        Ok(WebhookSecret(key))
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, msg_id: &str, timestamp_secs: u64, body: &str) -> String {
        let mac = backends::sha256::hmac(
            &self.0,
            &[
                msg_id.as_bytes(),
                b".",
                timestamp_secs.to_string().as_bytes(),
                b".",
                body.as_bytes(),
            ],
        );
        format!("v1,{}", B64.encode(mac))
    }
}

/// The configured signing secrets: never empty. The current one comes first,
/// then, during a rotation, the previous one. Derefs to a slice, so
/// `cfg.webhook_secret.as_deref()` gives `Option<&[WebhookSecret]>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSecrets(Vec<WebhookSecret>);

impl std::ops::Deref for WebhookSecrets {
    type Target = [WebhookSecret];
    fn deref(&self) -> &[WebhookSecret] {
        &self.0
    }
}

impl WebhookSecrets {
    /// Parses `WEBHOOK_SECRET` and the optional `WEBHOOK_SECRET_PREVIOUS`
    /// (values already trimmed; `None` when unset or empty). Both unset means
    /// webhooks are off (`Ok(None)`).
    pub fn from_vars(
        current: Option<String>,
        previous: Option<String>,
    ) -> Result<Option<WebhookSecrets>, ConfigError> {
        let parse = |var: &str, v: &str| {
            WebhookSecret::parse(v).map_err(|e| ConfigError {
                variable: var.into(),
                message: e.message(),
            })
        };
        let Some(current) = current else {
            return match previous {
                None => Ok(None),
                Some(_) => Err(ConfigError {
                    variable: SECRET_VAR.into(),
                    message: format!(
                        "is required when {PREVIOUS_SECRET_VAR} is set (it holds the new secret during a rotation); {HOW_TO_MAKE_ONE}"
                    ),
                }),
            };
        };
        let mut keys = vec![parse(SECRET_VAR, &current)?];
        if let Some(prev) = previous {
            let prev = parse(PREVIOUS_SECRET_VAR, &prev)?;
            if !keys.contains(&prev) {
                keys.push(prev);
            }
        }
        Ok(Some(WebhookSecrets(keys)))
    }
}
