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
use crate::http::{HttpRequest, HttpResponse, Method};
use crate::outcome::{LookupOutcome, PayOutcome};
use serde_json::json;

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

/// Local development only: invoices are signed with a throwaway key,
/// payments "succeed" at once, and nothing leaves the process. An ordinary
/// backend all the same: it builds requests and reads answers like the
/// others, and its "server" is [`answer`], which `exchange` calls for
/// `mock:` URLs instead of the network.
pub struct Mock;

/// The scheme of the mock's requests: they never reach a network.
pub const SCHEME: &str = "mock:";

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
    // It keeps no record: an invoice it signed is known to nobody.
    finds_invoices_by_hash: false,
};

/// Whether `req` is for the mock (answered in process by [`answer`]).
pub fn is_mock(req: &HttpRequest) -> bool {
    req.url.starts_with(SCHEME)
}

/// The mock's "server": its answer to one of its own requests, with the
/// clock (`now_secs`) and fresh randomness (`preimage`) of the runtime.
pub fn answer(req: &HttpRequest, now_secs: u64, preimage: [u8; 32]) -> HttpResponse {
    let path = req.url.trim_start_matches(SCHEME);
    let body: serde_json::Value = req
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or_default();
    match (req.method, path) {
        (Method::Post, "invoice") => {
            let signed = Network::parse(body["network"].as_str().unwrap_or(""))
                .ok_or_else(|| "no network".to_string())
                .and_then(|network| {
                    sign_invoice(
                        network,
                        body["amount_msat"].as_u64().unwrap_or(0),
                        body["description"].as_str().unwrap_or(""),
                        body["description_hash"].as_str(),
                        body["expiry_secs"].as_u64().unwrap_or(0),
                        now_secs,
                        preimage,
                    )
                });
            match signed {
                Ok(inv) => HttpResponse::json(
                    200,
                    &json!({"payment_request": inv.payment_request, "payment_hash": inv.payment_hash}),
                ),
                Err(e) => HttpResponse::json(400, &json!({"error": e})),
            }
        }
        // It never sees a payment of its invoices, and every payment it makes succeeds.
        (Method::Get, p) if p.starts_with("invoice/") => {
            HttpResponse::json(200, &json!({"paid": false}))
        }
        (Method::Get, "info") => HttpResponse::json(200, &json!({})),
        (Method::Post, "pay") => HttpResponse::json(200, &json!({"status": "succeeded"})),
        (Method::Get, p) if p.starts_with("pay/") => {
            HttpResponse::json(200, &json!({"status": "succeeded"}))
        }
        _ => HttpResponse::json(404, &json!({"error": "unknown mock route"})),
    }
}

fn url(path: &str) -> String {
    format!("{SCHEME}{path}")
}

impl Backend for Mock {
    fn create_request(&self, _cfg: &BackendConfig, p: &InvoiceParams) -> Option<HttpRequest> {
        Some(HttpRequest::post_json(
            url("invoice"),
            &json!({
                "network": p.network.as_str(),
                "amount_msat": p.amount_msat(),
                "description": p.description,
                "description_hash": p.description_hash,
                "expiry_secs": p.expiry_secs,
            }),
        ))
    }
    fn parse_create(&self, r: &HttpResponse) -> Result<CreatedInvoice, BackendError> {
        let v: serde_json::Value = serde_json::from_str(&r.body)
            .map_err(|e| BackendError::InvalidResponse(e.to_string()))?;
        match (r.status, v["payment_request"].as_str()) {
            (200, Some(pr)) => Ok(CreatedInvoice {
                payment_request: pr.to_string(),
                payment_hash: v["payment_hash"].as_str().map(str::to_string),
            }),
            _ => Err(BackendError::InvalidResponse(format!(
                "mock: {}",
                v["error"].as_str().unwrap_or("no invoice")
            ))),
        }
    }
    fn check_request(&self, _cfg: &BackendConfig, payment_hash: &str) -> Option<HttpRequest> {
        Some(HttpRequest::get(url(&format!("invoice/{payment_hash}"))))
    }
    fn parse_check(&self, r: &HttpResponse) -> Result<InvoiceState, BackendError> {
        match r.status {
            200 => Ok(InvoiceState::Pending),
            s => Err(BackendError::InvalidResponse(format!("mock: HTTP {s}"))),
        }
    }
    fn probe_request(&self, _cfg: &BackendConfig) -> Option<HttpRequest> {
        Some(HttpRequest::get(url("info")))
    }
    fn parse_probe(&self, r: &HttpResponse) -> Result<(), BackendError> {
        match r.status {
            200 => Ok(()),
            s => Err(BackendError::InvalidResponse(format!("mock: HTTP {s}"))),
        }
    }
    fn pay_request(
        &self,
        _cfg: &BackendConfig,
        invoice: &str,
        _amount_sat: u64,
    ) -> Option<HttpRequest> {
        Some(HttpRequest::post_json(
            url("pay"),
            &json!({"invoice": invoice}),
        ))
    }
    fn classify_pay(&self, r: &HttpResponse) -> PayOutcome {
        match r.status {
            200 => PayOutcome::Succeeded {
                preimage: None,
                fee_msat: Some(0),
            },
            s => PayOutcome::Unknown(format!("mock: HTTP {s}")),
        }
    }
    fn lookup_request(&self, _cfg: &BackendConfig, payment_hash: &str) -> Option<HttpRequest> {
        Some(HttpRequest::get(url(&format!("pay/{payment_hash}"))))
    }
    fn classify_lookup(&self, r: &HttpResponse) -> LookupOutcome {
        match r.status {
            200 => LookupOutcome::Paid {
                preimage: None,
                fee_msat: Some(0),
            },
            s => LookupOutcome::Error(format!("mock: HTTP {s}")),
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

    #[test]
    fn the_mock_answers_its_own_requests_as_a_server_would() {
        let cfg = Mock
            .configure(&Values::default())
            .unwrap_or_else(|e| panic!("{e:?}"));
        let params = InvoiceParams {
            amount_sat: 21,
            description: Some("tea".into()),
            description_hash: None,
            expiry_secs: 600,
            network: Network::Signet,
            notify_url: None,
        };
        let ask = |req: Option<HttpRequest>| {
            let req = req.unwrap_or_else(|| panic!("the mock builds every request"));
            assert!(is_mock(&req), "{}", req.url);
            answer(&req, 1_700_000_000, [7; 32])
        };
        let created = Mock
            .parse_create(&ask(Mock.create_request(&cfg, &params)))
            .unwrap_or_else(|e| panic!("{e}"));
        let inv = bolt11::parse(&created.payment_request).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.network, Some(Network::Signet));
        assert_eq!(inv.amount_msat, Some(21_000));
        assert_eq!(inv.timestamp_secs, 1_700_000_000);
        assert_eq!(
            created.payment_hash.as_deref(),
            Some(inv.payment_hash.as_str())
        );
        assert_eq!(
            inv.payment_hash,
            sha256::Hash::hash(&[7; 32]).to_string(),
            "the preimage is the runtime's randomness"
        );
        let hash = inv.payment_hash;
        assert_eq!(
            Mock.parse_check(&ask(Mock.check_request(&cfg, &hash))),
            Ok(InvoiceState::Pending)
        );
        assert_eq!(Mock.parse_probe(&ask(Mock.probe_request(&cfg))), Ok(()));
        assert!(matches!(
            Mock.classify_pay(&ask(Mock.pay_request(&cfg, &created.payment_request, 21))),
            PayOutcome::Succeeded { .. }
        ));
        assert!(matches!(
            Mock.classify_lookup(&ask(Mock.lookup_request(&cfg, &hash))),
            LookupOutcome::Paid { .. }
        ));
    }
}
