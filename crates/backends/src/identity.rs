//! Which configured backend, exactly: its kind, where it is, and a
//! fingerprint of its credential. Two wallets of one kind are two backends.

use serde::{Deserialize, Serialize};

use crate::{BackendConfig, BackendKind};

/// The exact backend a payout was pinned to, or an invoice was issued by.
/// Every send and lookup of its hashes goes there and nowhere else: "not
/// found" on another node or wallet says nothing about what this one did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendId {
    pub kind: BackendKind,
    pub base_url: String,
    /// A fingerprint of the wallet credential, never the credential itself.
    pub credential_fp: String,
}

impl BackendId {
    pub fn of(cfg: &BackendConfig) -> BackendId {
        let digest = crate::sha256::digest(
            format!(
                "lightning-fallback/backend-credential/v1:{}",
                cfg.credential
            )
            .as_bytes(),
        );
        BackendId {
            kind: cfg.kind,
            base_url: cfg.base_url.trim_end_matches('/').to_ascii_lowercase(),
            credential_fp: hex::encode(&digest[..8]),
        }
    }

    pub fn matches(&self, cfg: &BackendConfig) -> bool {
        *self == BackendId::of(cfg)
    }

    /// One string naming this identity (a storage key).
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.kind.as_str(),
            self.base_url,
            self.credential_fp
        )
    }

    /// What the API and logs show: kind, URL and fingerprint.
    pub fn label(&self) -> String {
        if self.base_url.is_empty() {
            format!("{} (key {})", self.kind.as_str(), self.credential_fp)
        } else {
            format!(
                "{} at {} (key {})",
                self.kind.as_str(),
                self.base_url,
                self.credential_fp
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint is stored with every payout and invoice record:
    /// pinned, so a change of hashing fails here and not on stored rows.
    #[test]
    fn the_credential_fingerprint_is_pinned() {
        let id = BackendId::of(&BackendConfig {
            kind: BackendKind::Lnbits,
            base_url: "https://Wallet.example/".into(),
            credential: "secret".into(),
        });
        assert_eq!(id.credential_fp, "530776dc66f8ae57");
        assert_eq!(id.base_url, "https://wallet.example");
    }
}
