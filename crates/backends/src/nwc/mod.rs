//! Nostr Wallet Connect (NIP-47): Alby Hub and any other NWC wallet,
//! reached through a Nostr relay.
//!
//! Like every backend this module only builds requests and reads answers.
//! A request is an [`HttpRequest`] with a pseudo-URL `nwc://<wallet>/<method>`
//! whose body is the NIP-47 request (`{"method","params"}`); the relay and the
//! connection secret travel in headers that the transport consumes and never
//! sends anywhere. The transport (the Worker's runtime, with [`exchange`])
//! does the encrypted, signed round trip over the relay and returns the
//! wallet's NIP-47 response as a `200` with its JSON; no answer in time is a
//! timeout, a refused or dropped relay a network error.

pub mod crypto;
pub mod event;
pub mod exchange;
pub mod uri;

use crate::descriptor::{self, Descriptor, Setting, SettingError, Values};
use crate::BackendKind;
use serde_json::{json, Value};

use super::{
    Backend, BackendConfig, BackendError, CreatedInvoice, InvoiceParams, InvoiceState, PaymentFacts,
};
use crate::error::snippet;
use crate::http::{HttpRequest, HttpResponse, Method};
use crate::outcome::{Covers, FailedRecord, LookupOutcome, PayOutcome};

pub const SCHEME: &str = "nwc://";
/// The relay URL, read by the transport.
pub const HEADER_RELAY: &str = "x-nwc-relay";
/// The connection secret, read by the transport and never sent anywhere.
pub const HEADER_SECRET: &str = "x-nwc-secret";
/// A method the wallet may be asked instead when its info event does not
/// offer the first (the probe: `get_balance`, else `get_info`).
pub const HEADER_ALT_METHOD: &str = "x-nwc-alt-method";

/// Whether a request is for the NWC transport.
pub fn is_nwc(req: &HttpRequest) -> bool {
    req.url.starts_with(SCHEME)
}

fn call(cfg: &BackendConfig, method: &str, params: Value) -> HttpRequest {
    let (wallet, relay) = uri::split_public_form(&cfg.base_url);
    HttpRequest {
        method: Method::Post,
        url: format!("{SCHEME}{wallet}/{method}"),
        headers: vec![
            (HEADER_RELAY.to_string(), relay.to_string()),
            (HEADER_SECRET.to_string(), cfg.credential.clone()),
        ],
        body: Some(json!({"method": method, "params": params}).to_string()),
    }
}

/// A NIP-47 response, read.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Result(Value),
    Error {
        code: String,
        message: String,
    },
    /// Not a NIP-47 response for this method.
    Garbage(String),
}

fn reply(r: &HttpResponse, methods: &[&str]) -> Reply {
    if r.status != 200 {
        return Reply::Garbage(BackendError::from_status(r).to_string());
    }
    let Ok(v) = serde_json::from_str::<Value>(&r.body) else {
        return Reply::Garbage(format!(
            "the wallet's answer is not JSON: {}",
            snippet(&r.body)
        ));
    };
    if let Some(t) = v.get("result_type").and_then(Value::as_str) {
        if !methods.contains(&t) {
            return Reply::Garbage(format!(
                "the wallet answered `{}` to `{}`",
                snippet(t),
                methods[0]
            ));
        }
    }
    if let Some(e) = v.get("error").filter(|e| e.is_object()) {
        return Reply::Error {
            code: e
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("OTHER")
                .to_ascii_uppercase(),
            message: snippet(e.get("message").and_then(Value::as_str).unwrap_or("")),
        };
    }
    match v.get("result") {
        Some(res) if res.is_object() => Reply::Result(res.clone()),
        _ => Reply::Garbage("the wallet's answer has neither result nor error".into()),
    }
}

/// A NIP-47 error as a provider error, for receiving and the probe.
fn provider_error(code: &str, message: &str) -> BackendError {
    let detail = format!("NWC {code}: {message}");
    match code {
        "NOT_FOUND" => BackendError::NotFound { detail },
        "RATE_LIMITED" => BackendError::Upstream {
            status: 429,
            detail,
            html: false,
            payment_status: None,
        },
        "UNAUTHORIZED" | "RESTRICTED" => BackendError::Unauthorized {
            status: 401,
            detail,
        },
        "INTERNAL" | "OTHER" => BackendError::Unhealthy(detail),
        _ => BackendError::Rejected {
            status: 400,
            detail,
        },
    }
}

fn result_of(r: &HttpResponse, methods: &[&str]) -> Result<Value, BackendError> {
    match reply(r, methods) {
        Reply::Result(v) => Ok(v),
        Reply::Error { code, message } => Err(provider_error(&code, &message)),
        Reply::Garbage(m) => Err(BackendError::InvalidResponse(m)),
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A transaction's settlement (NIP-47 `state`; wallets from before that
/// field say `settled_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxState {
    Settled,
    Pending,
    Expired,
    Failed,
    Unreadable,
}

fn tx_state(tx: &Value) -> TxState {
    match str_at(tx, "state").map(str::to_ascii_lowercase).as_deref() {
        Some("settled") => TxState::Settled,
        Some("pending") | Some("accepted") => TxState::Pending,
        Some("expired") => TxState::Expired,
        Some("failed") => TxState::Failed,
        Some(_) => TxState::Unreadable,
        None if tx
            .get("settled_at")
            .and_then(Value::as_u64)
            .is_some_and(|t| t > 0) =>
        {
            TxState::Settled
        }
        None => TxState::Pending,
    }
}

pub struct Nwc;

/// NIP-47: `pay_invoice` answers `preimage`; `lookup_invoice` carries it
/// once paid ("optional if unpaid"). Nothing in NIP-47 makes a lookup
/// cover the wallet's outgoing payments. Alby Hub drops a request only
/// once its event is over 6 hours old (`nip47/event_handler.go`; it
/// ignores NIP-47's `expiration` tag), so a request the gateway gave up
/// on may run that much later.
pub const DESCRIPTOR: Descriptor = Descriptor {
    kind: BackendKind::Nwc,
    label: "Nostr Wallet Connect",
    location: Some(Setting::secret(&["NWC_URL", "NWC_CONNECTION_URI"])),
    credential: None,
    other: &[],
    facts: PaymentFacts {
        preimage_on_pay: true,
        preimage_on_lookup: true,
        lookup_may_be_blind: true,
        late_execution_floor_ms: 6 * 3600 * 1000 + 10 * 60 * 1000,
        not_found_may_hide_in_flight: true,
    },
    finds_invoices_by_hash: true,
};

impl Backend for Nwc {
    fn create_request(&self, cfg: &BackendConfig, p: &InvoiceParams) -> Option<HttpRequest> {
        let mut params = json!({
            "amount": p.amount_msat(),
            "description": p.description.clone().unwrap_or_default(),
            "expiry": p.expiry_secs,
        });
        if let Some(h) = &p.description_hash {
            params["description_hash"] = Value::from(h.as_str());
        }
        Some(call(cfg, "make_invoice", params))
    }

    fn parse_create(&self, r: &HttpResponse) -> Result<CreatedInvoice, BackendError> {
        let tx = result_of(r, &["make_invoice"])?;
        let invoice = str_at(&tx, "invoice")
            .ok_or_else(|| BackendError::InvalidResponse("missing `invoice`".into()))?;
        Ok(CreatedInvoice {
            payment_request: invoice.to_string(),
            payment_hash: str_at(&tx, "payment_hash").map(str::to_ascii_lowercase),
        })
    }

    fn check_request(&self, cfg: &BackendConfig, payment_hash: &str) -> Option<HttpRequest> {
        Some(call(
            cfg,
            "lookup_invoice",
            json!({"payment_hash": payment_hash}),
        ))
    }

    fn parse_check(&self, r: &HttpResponse) -> Result<InvoiceState, BackendError> {
        let tx = result_of(r, &["lookup_invoice"])?;
        match tx_state(&tx) {
            TxState::Settled => Ok(InvoiceState::Paid {
                settled_at_secs: tx
                    .get("settled_at")
                    .and_then(Value::as_u64)
                    .filter(|t| *t > 0),
            }),
            TxState::Pending => Ok(InvoiceState::Pending),
            TxState::Expired | TxState::Failed => Ok(InvoiceState::Cancelled),
            TxState::Unreadable => Err(BackendError::InvalidResponse(
                "unknown transaction state".into(),
            )),
        }
    }

    fn probe_request(&self, cfg: &BackendConfig) -> Option<HttpRequest> {
        Some(call(cfg, "get_balance", json!({})).header(HEADER_ALT_METHOD, "get_info"))
    }

    fn parse_probe(&self, r: &HttpResponse) -> Result<(), BackendError> {
        result_of(r, &["get_balance", "get_info"]).map(|_| ())
    }

    fn pay_request(
        &self,
        cfg: &BackendConfig,
        invoice: &str,
        _amount_sat: u64,
    ) -> Option<HttpRequest> {
        Some(call(cfg, "pay_invoice", json!({"invoice": invoice})))
    }

    fn classify_pay(&self, r: &HttpResponse) -> PayOutcome {
        match reply(r, &["pay_invoice"]) {
            Reply::Result(res) => match str_at(&res, "preimage") {
                Some(preimage) => PayOutcome::Succeeded {
                    preimage: Some(preimage.to_string()),
                    fee_msat: res.get("fees_paid").and_then(Value::as_u64),
                },
                None => PayOutcome::Unknown("the wallet answered without a preimage".into()),
            },
            Reply::Error { code, message } => pay_error(&code, &message),
            // An answer we cannot read may still have paid.
            Reply::Garbage(m) => PayOutcome::Unknown(m),
        }
    }

    fn lookup_request(&self, cfg: &BackendConfig, payment_hash: &str) -> Option<HttpRequest> {
        self.check_request(cfg, payment_hash)
    }

    fn classify_lookup(&self, r: &HttpResponse) -> LookupOutcome {
        let tx = match reply(r, &["lookup_invoice"]) {
            Reply::Result(tx) => tx,
            // The wallet's own word that it has no such payment; the payout
            // machine's timing rules decide when that proves anything.
            Reply::Error { code, .. } if code == "NOT_FOUND" => return LookupOutcome::NotFound,
            Reply::Error { code, message } => {
                return LookupOutcome::Error(format!("NWC {code}: {message}"))
            }
            Reply::Garbage(m) => return LookupOutcome::Error(m),
        };
        // A payout looks up what it paid: the wallet's incoming invoice with
        // this hash says nothing about that.
        if str_at(&tx, "type") == Some("incoming") {
            return LookupOutcome::Error(
                "the wallet's record of this hash is an incoming invoice".into(),
            );
        }
        match tx_state(&tx) {
            TxState::Settled => LookupOutcome::Paid {
                preimage: str_at(&tx, "preimage").map(str::to_string),
                fee_msat: tx.get("fees_paid").and_then(Value::as_u64),
            },
            // NIP-47 says `expired` of invoices. Alby Hub says it of any
            // unsettled record past its `ExpiresAt`, outgoing payments still
            // in flight included (`nip47/models/transactions.go:
            // ToNip47Transaction`), and a pending record whose node event it
            // missed stays so for good: of a payment it means "not settled"
            // and nothing more. Pending, never failed.
            TxState::Pending | TxState::Expired => LookupOutcome::Pending,
            // Alby Hub marks a payment failed when its own call to its node
            // errors, and settles that record if the node later reports it
            // sent: it may still settle while any part can be in flight. It
            // keeps one record per attempt and answers one of them
            // (`transactions_service.go:LookupTransaction`).
            TxState::Failed => LookupOutcome::Failed(FailedRecord {
                reason: "the wallet reports the payment failed".into(),
                covers: Covers::OneAttempt,
                created_at_ms: tx
                    .get("created_at")
                    .and_then(Value::as_u64)
                    .filter(|t| *t > 0)
                    .map(|t| t.saturating_mul(1000)),
                may_still_settle: true,
                resendable: false,
            }),
            TxState::Unreadable => LookupOutcome::Error("unknown transaction state".into()),
        }
    }

    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    /// The connection URI holds the secret: the base URL is its public form
    /// (wallet and relay), the credential its secret. The error never
    /// repeats the value.
    fn configure(&self, v: &Values) -> Result<BackendConfig, SettingError> {
        let (var, raw) = v
            .location
            .clone()
            .ok_or_else(|| descriptor::missing(BackendKind::Nwc, "location"))?;
        let c = uri::parse(&raw, v.allow_http)
            .map_err(|m| SettingError::new(var, format!("the NWC connection URI {m}")))?;
        Ok(BackendConfig {
            kind: BackendKind::Nwc,
            base_url: uri::public_form(&c.wallet, &c.relay),
            credential: c.secret,
        })
    }
}

/// A NIP-47 error answering `pay_invoice`. Only refusals that cannot have
/// moved money are `NotSent`; the wallet's explicit failures are `Failed`
/// (the payout machine confirms them with a lookup); anything else,
/// including an internal error or rate limiting mid-payment, is `Unknown`.
fn pay_error(code: &str, message: &str) -> PayOutcome {
    let detail = format!("NWC {code}: {message}");
    match code {
        "PAYMENT_FAILED" | "INSUFFICIENT_BALANCE" => PayOutcome::Failed(detail),
        "UNAUTHORIZED"
        | "RESTRICTED"
        | "QUOTA_EXCEEDED"
        | "NOT_IMPLEMENTED"
        | "UNSUPPORTED_ENCRYPTION" => PayOutcome::NotSent(detail),
        _ => PayOutcome::Unknown(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::TransportError;
    use crate::payment::{classify_lookup, classify_pay};
    use crate::test_support::params;
    use crate::BackendKind;

    const WALLET: &str = "b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4";
    const SECRET: &str = "71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c";

    fn cfg() -> BackendConfig {
        BackendConfig {
            kind: BackendKind::Nwc,
            base_url: uri::public_form(WALLET, "wss://relay.example/"),
            credential: SECRET.into(),
        }
    }

    fn answer(v: Value) -> Result<HttpResponse, TransportError> {
        Ok(HttpResponse::json(200, &v))
    }

    fn err(method: &str, code: &str) -> Result<HttpResponse, TransportError> {
        answer(json!({"result_type": method, "error": {"code": code, "message": "m"}}))
    }

    #[test]
    fn requests_are_nwc_calls_with_the_secret_in_a_header_only() {
        let r = Nwc
            .create_request(&cfg(), &params())
            .unwrap_or_else(|| panic!("request"));
        assert_eq!(r.url, format!("nwc://{WALLET}/make_invoice"));
        assert!(is_nwc(&r));
        assert!(!r.url.contains(SECRET) && !r.body.as_deref().unwrap_or("").contains(SECRET));
        assert!(r.headers.contains(&(HEADER_SECRET.into(), SECRET.into())));
        assert!(r
            .headers
            .contains(&(HEADER_RELAY.into(), "wss://relay.example/".into())));
        let body: Value = serde_json::from_str(r.body.as_deref().unwrap_or("")).unwrap_or_default();
        assert_eq!(
            body,
            json!({"method": "make_invoice", "params": {"amount": 1_000_000, "description": "coffee", "expiry": 600}})
        );
        let probe = Nwc.probe_request(&cfg()).unwrap_or_else(|| panic!("probe"));
        assert!(probe.url.ends_with("/get_balance"));
        assert!(probe
            .headers
            .contains(&(HEADER_ALT_METHOD.into(), "get_info".into())));
        let pay = Nwc
            .pay_request(&cfg(), "lnbc1x", 1)
            .unwrap_or_else(|| panic!("pay"));
        assert_eq!(
            pay.body.as_deref(),
            Some(r#"{"method":"pay_invoice","params":{"invoice":"lnbc1x"}}"#)
        );
    }

    #[test]
    fn create_and_check() {
        let created = HttpResponse::json(
            200,
            &json!({"result_type": "make_invoice", "result": {"type": "incoming", "invoice": "lnbc1", "payment_hash": "AB", "state": "pending"}}),
        );
        assert_eq!(
            Nwc.parse_create(&created),
            Ok(CreatedInvoice {
                payment_request: "lnbc1".into(),
                payment_hash: Some("ab".into())
            })
        );
        let check = |tx: Value| {
            Nwc.parse_check(&HttpResponse::json(
                200,
                &json!({"result_type": "lookup_invoice", "result": tx}),
            ))
        };
        assert_eq!(
            check(json!({"state": "settled", "settled_at": 5})),
            Ok(InvoiceState::Paid {
                settled_at_secs: Some(5)
            })
        );
        assert_eq!(
            check(json!({"settled_at": 7})),
            Ok(InvoiceState::Paid {
                settled_at_secs: Some(7)
            }),
            "a wallet from before `state`"
        );
        // An unpaid incoming invoice may carry its preimage: that is not payment.
        assert_eq!(
            check(json!({"state": "pending", "preimage": "aa"})),
            Ok(InvoiceState::Pending)
        );
        assert_eq!(
            check(json!({"state": "expired"})),
            Ok(InvoiceState::Cancelled)
        );
        let nf = Nwc.parse_check(&HttpResponse::json(200, &json!({"result_type": "lookup_invoice", "error": {"code": "NOT_FOUND", "message": "no"}})));
        assert!(matches!(nf, Err(BackendError::NotFound { .. })));
        let rl = Nwc.parse_create(&HttpResponse::json(200, &json!({"result_type": "make_invoice", "error": {"code": "RATE_LIMITED", "message": "slow"}})));
        assert!(matches!(&rl, Err(e) if e.is_transient() && e.code() == "rate_limited"));
        let wrong = Nwc.parse_create(&HttpResponse::json(
            200,
            &json!({"result_type": "pay_invoice", "result": {"invoice": "lnbc1"}}),
        ));
        assert!(matches!(wrong, Err(BackendError::InvalidResponse(_))));
        assert!(Nwc
            .parse_probe(&HttpResponse::json(
                200,
                &json!({"result_type": "get_info", "result": {"alias": "x"}})
            ))
            .is_ok());
        assert!(Nwc.parse_probe(&HttpResponse::json(200, &json!({"result_type": "get_balance", "error": {"code": "UNAUTHORIZED", "message": "x"}}))).is_err());
    }

    #[test]
    fn pay_outcomes() {
        let k = BackendKind::Nwc;
        assert_eq!(
            classify_pay(
                k,
                &answer(
                    json!({"result_type": "pay_invoice", "result": {"preimage": "pp", "fees_paid": 2000}})
                )
            ),
            PayOutcome::Succeeded {
                preimage: Some("pp".into()),
                fee_msat: Some(2000)
            }
        );
        assert!(matches!(
            classify_pay(k, &err("pay_invoice", "PAYMENT_FAILED")),
            PayOutcome::Failed(_)
        ));
        assert!(matches!(
            classify_pay(k, &err("pay_invoice", "INSUFFICIENT_BALANCE")),
            PayOutcome::Failed(_)
        ));
        for code in [
            "UNAUTHORIZED",
            "RESTRICTED",
            "QUOTA_EXCEEDED",
            "NOT_IMPLEMENTED",
            "UNSUPPORTED_ENCRYPTION",
        ] {
            assert!(
                matches!(
                    classify_pay(k, &err("pay_invoice", code)),
                    PayOutcome::NotSent(_)
                ),
                "{code}"
            );
        }
        for code in [
            "INTERNAL",
            "OTHER",
            "RATE_LIMITED",
            "NOT_FOUND",
            "SOMETHING_NEW",
        ] {
            assert!(
                matches!(
                    classify_pay(k, &err("pay_invoice", code)),
                    PayOutcome::Unknown(_)
                ),
                "{code}"
            );
        }
        // No answer in time, a dropped relay, garbage: unknown, never failed.
        assert!(matches!(
            classify_pay(k, &Err(TransportError::Timeout)),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_pay(k, &Err(TransportError::Network("relay closed".into()))),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_pay(
                k,
                &answer(json!({"result_type": "pay_invoice", "result": {}}))
            ),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_pay(
                k,
                &answer(json!({"result_type": "make_invoice", "result": {"preimage": "p"}}))
            ),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify_pay(
                k,
                &Ok(HttpResponse {
                    status: 200,
                    content_type: None,
                    body: "}{".into()
                })
            ),
            PayOutcome::Unknown(_)
        ));
    }

    #[test]
    fn lookup_outcomes() {
        let k = BackendKind::Nwc;
        let tx = |v: Value| answer(json!({"result_type": "lookup_invoice", "result": v}));
        assert_eq!(
            classify_lookup(
                k,
                &tx(
                    json!({"type": "outgoing", "state": "settled", "preimage": "pp", "fees_paid": 1000})
                )
            ),
            LookupOutcome::Paid {
                preimage: Some("pp".into()),
                fee_msat: Some(1000)
            }
        );
        assert!(matches!(
            classify_lookup(k, &tx(json!({"type": "outgoing", "settled_at": 9}))),
            LookupOutcome::Paid { .. }
        ));
        assert_eq!(
            classify_lookup(k, &tx(json!({"type": "outgoing", "state": "pending"}))),
            LookupOutcome::Pending
        );
        assert_eq!(
            classify_lookup(k, &tx(json!({"type": "outgoing"}))),
            LookupOutcome::Pending
        );
        // Alby Hub's "failed" may still settle, and describes one attempt of several.
        assert_eq!(
            classify_lookup(
                k,
                &tx(json!({"type": "outgoing", "state": "failed", "created_at": 1_700_000_000}))
            ),
            LookupOutcome::Failed(FailedRecord {
                reason: "the wallet reports the payment failed".into(),
                covers: Covers::OneAttempt,
                created_at_ms: Some(1_700_000_000_000),
                may_still_settle: true,
                resendable: false,
            })
        );
        // `expired` of an outgoing payment is only "not settled": pending, never failed.
        assert_eq!(
            classify_lookup(k, &tx(json!({"type": "outgoing", "state": "expired"}))),
            LookupOutcome::Pending
        );
        assert!(matches!(
            classify_lookup(k, &tx(json!({"type": "incoming", "state": "settled"}))),
            LookupOutcome::Error(_)
        ));
        assert_eq!(
            classify_lookup(k, &err("lookup_invoice", "NOT_FOUND")),
            LookupOutcome::NotFound
        );
        for code in ["INTERNAL", "OTHER", "RATE_LIMITED", "UNAUTHORIZED"] {
            assert!(
                matches!(
                    classify_lookup(k, &err("lookup_invoice", code)),
                    LookupOutcome::Error(_)
                ),
                "{code}"
            );
        }
        assert!(matches!(
            classify_lookup(k, &Err(TransportError::Timeout)),
            LookupOutcome::Error(_)
        ));
        assert!(
            matches!(
                classify_lookup(
                    k,
                    &answer(json!({"result_type": "pay_invoice", "error": {"code": "NOT_FOUND"}}))
                ),
                LookupOutcome::Error(_)
            ),
            "an answer to another method"
        );
    }
}
