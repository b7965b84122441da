//! Backend kinds whose API no longer exists (the Alby wallet API, closed in
//! January 2026). Stored invoice records and payouts may still name them, so
//! the kind stays readable; configuration refuses it (in the gateway crate),
//! so no request is ever built for it. Should one be asked anyway, every
//! operation refuses without sending anything: a payout pinned to a retired
//! backend waits as `blocked`, it is never sent elsewhere.

use super::{
    Backend, BackendConfig, BackendError, CreatedInvoice, InvoiceParams, InvoiceState, PaymentFacts,
};
use crate::descriptor::{Descriptor, Setting, SettingError, Values};
use crate::http::{HttpRequest, HttpResponse};
use crate::outcome::{LookupOutcome, PayOutcome};
use crate::BackendKind;

const WHY: &str = "this backend's API no longer exists (the Alby wallet API closed in January 2026; connect Alby Hub through Nostr Wallet Connect: NWC_URL)";

pub struct Retired;

/// Nothing is ever sent or looked up.
pub const DESCRIPTOR: Descriptor = Descriptor {
    kind: BackendKind::Alby,
    label: "Alby wallet API (retired)",
    location: None,
    credential: None,
    other: &[Setting::secret(&["ALBY_API_KEY", "DAZNODE_API_KEY"])],
    facts: PaymentFacts {
        preimage_on_pay: false,
        preimage_on_lookup: false,
        lookup_may_be_blind: true,
        late_execution_floor_ms: 0,
        not_found_may_hide_in_flight: false,
    },
    finds_invoices_by_hash: false,
};

impl Backend for Retired {
    fn create_request(&self, _cfg: &BackendConfig, _p: &InvoiceParams) -> Option<HttpRequest> {
        None
    }
    fn unsupported(&self, _p: &InvoiceParams) -> Option<String> {
        Some(WHY.into())
    }
    fn parse_create(&self, _r: &HttpResponse) -> Result<CreatedInvoice, BackendError> {
        Err(BackendError::Unsupported(WHY.into()))
    }
    fn check_request(&self, _cfg: &BackendConfig, _payment_hash: &str) -> Option<HttpRequest> {
        None
    }
    fn parse_check(&self, _r: &HttpResponse) -> Result<InvoiceState, BackendError> {
        Err(BackendError::Unsupported(WHY.into()))
    }
    fn probe_request(&self, _cfg: &BackendConfig) -> Option<HttpRequest> {
        None
    }
    fn parse_probe(&self, _r: &HttpResponse) -> Result<(), BackendError> {
        Err(BackendError::Unsupported(WHY.into()))
    }
    fn pay_request(
        &self,
        _cfg: &BackendConfig,
        _invoice: &str,
        _amount_sat: u64,
    ) -> Option<HttpRequest> {
        None
    }
    /// Nothing was sent: refused before acting.
    fn classify_pay(&self, _r: &HttpResponse) -> PayOutcome {
        PayOutcome::NotSent(WHY.into())
    }
    fn lookup_request(&self, _cfg: &BackendConfig, _payment_hash: &str) -> Option<HttpRequest> {
        None
    }
    /// Nothing is known: never "not found", which would let a hash be left.
    fn classify_lookup(&self, _r: &HttpResponse) -> LookupOutcome {
        LookupOutcome::Error(WHY.into())
    }
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    /// Never configurable.
    fn configure(&self, _v: &Values) -> Result<BackendConfig, SettingError> {
        Err(SettingError::new("LIGHTNING_PROVIDERS", WHY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackendKind;

    #[test]
    fn a_retired_kind_is_readable_but_never_acts() {
        let k: BackendKind = serde_json::from_str("\"alby\"").unwrap_or(BackendKind::Mock);
        assert_eq!(k, BackendKind::Alby);
        assert!(k.is_retired());
        assert_eq!(BackendKind::parse("alby"), None, "not configurable");
        let b = k.adapter();
        assert!(b.unsupported(&crate::test_support::params()).is_some());
        let any = HttpResponse::json(200, &serde_json::json!({}));
        assert!(matches!(b.classify_pay(&any), PayOutcome::NotSent(_)));
        assert!(matches!(b.classify_lookup(&any), LookupOutcome::Error(_)));
        assert!(b.parse_check(&any).is_err());
        assert!(b.parse_probe(&any).is_err());
    }
}
