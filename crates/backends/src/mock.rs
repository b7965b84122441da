//! The development provider: signs real BOLT11 invoices locally with a fixed,
//! publicly known key, so the whole flow works with no keys. It is refused in
//! production (see `config`), since nobody can pay these invoices.

use crate::descriptor::{Descriptor, SettingError, Values};
use crate::BackendKind;
use bitcoin_hashes::{sha256, Hash};
use lightning_invoice::{InvoiceBuilder, PaymentSecret};
use secp256k1::{Secp256k1, SecretKey};
use std::time::Duration;

use super::{
    Backend, BackendConfig, BackendError, CreatedInvoice, InvoiceParams, InvoiceState, PaymentFacts,
};
use crate::bolt11::Network;
use crate::http::{HttpRequest, HttpResponse};
use crate::outcome::{LookupOutcome, PayOutcome};

/// The mock node's secret key. Public on purpose: development only.
const MOCK_NODE_KEY: [u8; 32] = [0x11; 32];

#[derive(Debug, Clone, PartialEq)]
pub struct MockInvoice {
    pub payment_request: String,
    pub payment_hash: String,
    pub preimage: String,
}

/// Signs an invoice for `amount_msat` whose preimage is `preimage`.
pub fn sign_invoice(
    network: Network,
    amount_msat: u64,
    description: &str,
    description_hash: Option<&str>,
    expiry_secs: u64,
    now_secs: u64,
    preimage: [u8; 32],
) -> Result<MockInvoice, String> {
    let key = SecretKey::from_slice(&MOCK_NODE_KEY).map_err(|e| e.to_string())?;
    let payment_hash = sha256::Hash::hash(&preimage);
    let secret = sha256::Hash::hash(payment_hash.as_byte_array());
    let builder = InvoiceBuilder::new(network.currency());
    let builder = match description_hash {
        Some(h) => {
            let bytes: [u8; 32] = hex::decode(h)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| "description_hash must be 64 hex digits".to_string())?;
            builder.description_hash(sha256::Hash::from_byte_array(bytes))
        }
        None => builder.description(description.to_string()),
    };
    let secp = Secp256k1::signing_only();
    let invoice = builder
        .amount_milli_satoshis(amount_msat)
        .payment_hash(payment_hash)
        .payment_secret(PaymentSecret(secret.to_byte_array()))
        .duration_since_epoch(Duration::from_secs(now_secs))
        .expiry_time(Duration::from_secs(expiry_secs))
        .min_final_cltv_expiry_delta(144)
        .build_signed(|msg| secp.sign_ecdsa_recoverable(msg, &key))
        .map_err(|e| e.to_string())?;
    Ok(MockInvoice {
        payment_request: invoice.to_string(),
        payment_hash: payment_hash.to_string(),
        preimage: hex::encode(preimage),
    })
}

/// Local development only: invoices are signed here with a throwaway key
/// (see the chain), payments "succeed" at once, and nothing is sent.
pub struct Mock;

/// The mock pays without HTTP and answers without preimages.
pub const DESCRIPTOR: Descriptor = Descriptor {
    kind: BackendKind::Mock,
    label: "Mock (development)",
    location: None,
    credential: None,
    other: &[],
    facts: PaymentFacts {
        preimage_on_pay: false,
        preimage_on_lookup: false,
        lookup_may_be_blind: false,
        late_execution_floor_ms: 0,
        not_found_may_hide_in_flight: false,
    },
};

impl Backend for Mock {
    fn create_request(&self, _cfg: &BackendConfig, _p: &InvoiceParams) -> Option<HttpRequest> {
        None
    }
    fn parse_create(&self, _r: &HttpResponse) -> Result<CreatedInvoice, BackendError> {
        Err(BackendError::InvalidResponse("mock is not HTTP".into()))
    }
    fn check_request(&self, _cfg: &BackendConfig, _payment_hash: &str) -> Option<HttpRequest> {
        None
    }
    fn parse_check(&self, _r: &HttpResponse) -> Result<InvoiceState, BackendError> {
        Ok(InvoiceState::Pending)
    }
    fn probe_request(&self, _cfg: &BackendConfig) -> Option<HttpRequest> {
        None
    }
    fn parse_probe(&self, _r: &HttpResponse) -> Result<(), BackendError> {
        Ok(())
    }
    fn pay_request(
        &self,
        _cfg: &BackendConfig,
        _invoice: &str,
        _amount_sat: u64,
    ) -> Option<HttpRequest> {
        None
    }
    fn classify_pay(&self, _r: &HttpResponse) -> PayOutcome {
        PayOutcome::Succeeded {
            preimage: None,
            fee_msat: Some(0),
        }
    }
    fn lookup_request(&self, _cfg: &BackendConfig, _payment_hash: &str) -> Option<HttpRequest> {
        None
    }
    fn classify_lookup(&self, _r: &HttpResponse) -> LookupOutcome {
        LookupOutcome::Paid {
            preimage: None,
            fee_msat: Some(0),
        }
    }
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    /// Nothing to configure.
    fn configure(&self, _v: &Values) -> Result<BackendConfig, SettingError> {
        Ok(BackendConfig {
            kind: BackendKind::Mock,
            base_url: String::new(),
            credential: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bolt11;

    #[test]
    fn signs_parseable_invoices_with_description_hash() {
        let h = "aa".repeat(32);
        let inv = sign_invoice(
            Network::Signet,
            5_000,
            "",
            Some(&h),
            60,
            1_700_000_000,
            [1; 32],
        );
        let inv = inv.unwrap_or_else(|e| panic!("{e}"));
        let parsed = bolt11::parse(&inv.payment_request).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.description_hash.as_deref(), Some(h.as_str()));
        assert_eq!(parsed.network, Some(Network::Signet));
        assert_eq!(parsed.payment_hash, inv.payment_hash);
        assert!(sign_invoice(Network::Signet, 1, "", Some("zz"), 60, 0, [1; 32]).is_err());
    }
}
