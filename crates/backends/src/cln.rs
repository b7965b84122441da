//! Core Lightning through CLNRest, its built-in REST server (CLN v23.08 and
//! later). Every method is `POST /v1/<method>` with a JSON body and a
//! `Rune` header; a result answers 201, a JSON-RPC error 500 with
//! `{"code", "message", "data"}`, an unknown method 404 (code -32601), a
//! missing or refused rune 401/403.
//!
//! References: <https://docs.corelightning.org/docs/rest> and the method
//! pages `lightning-invoice(7)`, `lightning-listinvoices(7)`,
//! `lightning-xpay(7)`, `lightning-pay(7)`, `lightning-listpays(7)`,
//! `lightning-getinfo(7)` (docs.corelightning.org/reference; their schemas
//! are `doc/schemas/*.json` in ElementsProject/lightning). Payouts use
//! `xpay` (CLN v24.11 and later; `pay` is deprecated since v26.06).

use crate::descriptor::{Descriptor, Setting, NODE_FACTS};
use crate::BackendKind;
use serde_json::{json, Value};

use super::error::snippet;
use super::{
    json_body, str_field, Backend, BackendConfig, BackendError, CreatedInvoice, InvoiceParams,
    InvoiceState, LookedUp,
};
use crate::http::{HttpRequest, HttpResponse};
use crate::outcome::{Covers, LookupOutcome, PayOutcome};
use crate::payment::fee_limit_sat;

/// How long `xpay` keeps retrying routes before it gives up (its default).
const XPAY_RETRY_FOR_SECS: u64 = 60;

fn rpc(cfg: &BackendConfig, method: &str, body: &Value) -> HttpRequest {
    HttpRequest::post_json(cfg.url(&format!("/v1/{method}")), body).header("rune", &cfg.credential)
}

/// `invoice` needs a `label` unique on the node (error 900 otherwise); one
/// per attempt, from the attempt's fresh `nonce`.
pub fn create_request(cfg: &BackendConfig, p: &InvoiceParams, nonce: u64) -> HttpRequest {
    rpc(
        cfg,
        "invoice",
        &json!({
            "amount_msat": p.amount_msat(),
            "label": format!("lightning-fallback-{nonce:016x}"),
            "description": p.description.clone().unwrap_or_default(),
            "expiry": p.expiry_secs,
        }),
    )
}

/// `{"bolt11", "payment_hash", "payment_secret", "expires_at", "created_index", "warning_*"?}`.
pub fn parse_create(r: &HttpResponse) -> Result<CreatedInvoice, BackendError> {
    let v = json_body(r)?;
    let bolt11 = str_field(&v, "bolt11")
        .ok_or_else(|| BackendError::InvalidResponse("missing `bolt11`".into()))?;
    Ok(CreatedInvoice {
        payment_request: bolt11.to_string(),
        payment_hash: str_field(&v, "payment_hash").map(str::to_ascii_lowercase),
    })
}

pub fn check_request(cfg: &BackendConfig, payment_hash: &str) -> HttpRequest {
    rpc(
        cfg,
        "listinvoices",
        &json!({ "payment_hash": payment_hash }),
    )
}

/// `{"invoices": [{"status": "unpaid" | "paid" | "expired", "paid_at"?, ...}]}`;
/// an empty list is CLN saying it has no such invoice.
pub fn parse_check(r: &HttpResponse) -> Result<InvoiceState, BackendError> {
    let v = json_body(r)?;
    let invoices = v
        .get("invoices")
        .and_then(Value::as_array)
        .ok_or_else(|| BackendError::InvalidResponse("missing `invoices`".into()))?;
    let Some(inv) = invoices.first() else {
        return Err(BackendError::NotFound {
            detail: "CLN lists no invoice with this payment hash".into(),
        });
    };
    match str_field(inv, "status") {
        Some("paid") => Ok(InvoiceState::Paid {
            settled_at_secs: inv.get("paid_at").and_then(Value::as_u64),
        }),
        Some("unpaid") => Ok(InvoiceState::Pending),
        Some("expired") => Ok(InvoiceState::Cancelled),
        Some(other) => Err(BackendError::InvalidResponse(format!(
            "unknown invoice status `{other}`"
        ))),
        None => Err(BackendError::InvalidResponse("missing `status`".into())),
    }
}

pub fn probe_request(cfg: &BackendConfig) -> HttpRequest {
    rpc(cfg, "getinfo", &json!({}))
}

/// `getinfo` answers with the node `id`; `warning_bitcoind_sync` or
/// `warning_lightningd_sync` say the node is still catching up with the
/// chain (LND's `synced_to_chain: false`): unfit to serve.
pub fn parse_probe(r: &HttpResponse) -> Result<(), BackendError> {
    let v = json_body(r)?;
    if str_field(&v, "id").is_none() {
        return Err(BackendError::InvalidResponse("missing `id`".into()));
    }
    match str_field(&v, "warning_lightningd_sync")
        .or_else(|| str_field(&v, "warning_bitcoind_sync"))
    {
        Some(w) => Err(BackendError::Unhealthy(w.to_string())),
        None => Ok(()),
    }
}

pub struct Cln;

/// CLN v26.06: xpay's success carries `payment_preimage`
/// (`plugins/xpay/xpay.c:payment_succeeded`); a `complete` listpays
/// entry carries `preimage` (`plugins/xpay/listpays.c`). listpays reads
/// the node's own sendpay table: a rune without permission is refused
/// (401/403), never an empty list.
pub const DESCRIPTOR: Descriptor = Descriptor {
    kind: BackendKind::Cln,
    label: "Core Lightning (CLNRest)",
    location: Some(Setting::public(&["CLN_REST_URL"])),
    credential: Some(Setting::secret(&["CLN_RUNE"])),
    other: &[],
    facts: NODE_FACTS,
    finds_invoices_by_hash: true,
};

impl Backend for Cln {
    /// `listinvoices` lists only this node's own invoices, with their BOLT11.
    fn lookup_invoice(&self, v: &Value) -> LookedUp {
        v.get("invoices")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|i| str_field(i, "bolt11"))
            .map_or(LookedUp::NoInvoice, |s| LookedUp::Incoming(s.into()))
    }
    /// The chain uses `create_request_unique`; this one derives the label
    /// from the parameters alone, so two identical calls would collide.
    fn create_request(&self, cfg: &BackendConfig, p: &InvoiceParams) -> Option<HttpRequest> {
        let seed = p.amount_msat() ^ u64::from(p.expiry_secs).rotate_left(40);
        Some(create_request(cfg, p, seed))
    }
    fn create_request_unique(
        &self,
        cfg: &BackendConfig,
        p: &InvoiceParams,
        nonce: u64,
    ) -> Option<HttpRequest> {
        Some(create_request(cfg, p, nonce))
    }
    /// CLNRest's `invoice` commits to its own `description` (hashed with
    /// `deschashonly`); it cannot commit to a hash given without the text.
    fn unsupported(&self, p: &InvoiceParams) -> Option<String> {
        p.description_hash.as_ref().map(|_| {
            "CLN's `invoice` cannot commit to a given description_hash (it hashes its own description)".to_string()
        })
    }
    fn parse_create(&self, r: &HttpResponse) -> Result<CreatedInvoice, BackendError> {
        parse_create(r)
    }
    fn check_request(&self, cfg: &BackendConfig, payment_hash: &str) -> Option<HttpRequest> {
        Some(check_request(cfg, payment_hash))
    }
    fn parse_check(&self, r: &HttpResponse) -> Result<InvoiceState, BackendError> {
        parse_check(r)
    }
    /// `listinvoices`: a paid invoice has `payment_preimage` (hex).
    fn check_preimage(&self, r: &HttpResponse) -> Option<String> {
        let v = json_body(r).ok()?;
        let inv = v.get("invoices")?.as_array()?.first()?;
        crate::hex_preimage(str_field(inv, "payment_preimage"))
    }
    fn probe_request(&self, cfg: &BackendConfig) -> Option<HttpRequest> {
        Some(probe_request(cfg))
    }
    fn parse_probe(&self, r: &HttpResponse) -> Result<(), BackendError> {
        parse_probe(r)
    }
    /// `xpay` with an absolute fee cap (`maxfee`, msat). The amount is the
    /// invoice's own: `amount_msat` is only for invoices without one.
    fn pay_request(
        &self,
        cfg: &BackendConfig,
        invoice: &str,
        amount_sat: u64,
    ) -> Option<HttpRequest> {
        Some(rpc(
            cfg,
            "xpay",
            &json!({
                "invstring": invoice,
                "maxfee": fee_limit_sat(amount_sat).saturating_mul(1_000),
                "retry_for": XPAY_RETRY_FOR_SECS,
            }),
        ))
    }
    fn classify_pay(&self, resp: &HttpResponse) -> PayOutcome {
        pay_outcome(resp)
    }
    fn lookup_request(&self, cfg: &BackendConfig, payment_hash: &str) -> Option<HttpRequest> {
        Some(rpc(
            cfg,
            "listpays",
            &json!({ "payment_hash": payment_hash }),
        ))
    }
    fn classify_lookup(&self, resp: &HttpResponse) -> LookupOutcome {
        lookup_outcome(resp)
    }
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
}

/// xpay/pay error codes (`common/jsonrpc_errors.h`; the `errors` sections
/// of lightning-xpay(7) and lightning-pay(7)) that mean the payment ended
/// failed, or was refused before any part left:
/// 203 permanent failure at the destination, 205 no route, 206 route too
/// expensive (over `maxfee`), 207 invoice expired, 210 stopped retrying
/// without a payment in progress, 212 invalid invoice request, 213 invoice
/// preapproval declined, 215 insufficient funds, 216 destination
/// unreachable, 217 excluded by the user, 220 destination lacks capacity
/// (215/216/217/220 come from route finding: xpay reports them only when
/// no attempt was made, later failures come as 209), and -32602 invalid
/// parameters (an unreadable invoice). The machine still confirms each with
/// a lookup.
const FAILED_CODES: &[i64] = &[
    203, 205, 206, 207, 210, 212, 213, 215, 216, 217, 220, -32602,
];

/// Codes that do not prove anything about the money, kept explicit for
/// readers: 200 a payment for this hash is in progress, 201 already paid
/// with another amount or destination, 209 "other payment error" (xpay
/// gives up with this code while parts may still be in flight: see its
/// `getroutes_done_err`), 219 already paid, -1 catch-all. They, and every
/// code not listed in [`FAILED_CODES`], are unknown: a lookup decides.
const AMBIGUOUS_CODES: &[i64] = &[200, 201, 209, 219, -1];

fn rpc_error(v: &Value) -> Option<(i64, String)> {
    let code = v.get("code").and_then(Value::as_i64)?;
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Some((code, message))
}

fn pay_outcome(resp: &HttpResponse) -> PayOutcome {
    let json: Option<Value> = serde_json::from_str(&resp.body).ok();
    if resp.is_success() {
        let Some(v) = json else {
            return PayOutcome::Unknown("CLN answered a payment with an unreadable body".into());
        };
        return match str_field(&v, "payment_preimage") {
            Some(pre) => PayOutcome::Succeeded {
                preimage: Some(pre.to_string()),
                fee_msat: fee_msat(&v),
            },
            None => PayOutcome::Unknown("CLN answered a payment without a preimage".into()),
        };
    }
    let err = json.as_ref().and_then(rpc_error);
    match (resp.status, err) {
        (_, Some((code, msg))) if FAILED_CODES.contains(&code) => {
            PayOutcome::Failed(format!("CLN error {code}: {msg}"))
        }
        (_, Some((code, msg))) if AMBIGUOUS_CODES.contains(&code) => {
            PayOutcome::Unknown(format!("CLN error {code}: {msg}"))
        }
        // -32601: no such method (xpay needs CLN 24.11); nothing was sent.
        (404, Some((-32601, msg))) => PayOutcome::NotSent(format!(
            "CLN has no `xpay` method (CLN 24.11 or later is needed): {msg}"
        )),
        (_, Some((code, msg))) => PayOutcome::Unknown(format!("CLN error {code}: {msg}")),
        // A 404 without CLN's error: the REST path is wrong; xpay never ran.
        (404, None) => PayOutcome::NotSent(format!(
            "HTTP 404: {} (wrong CLN_REST_URL?)",
            snippet(&resp.body)
        )),
        // Refused by CLNRest before the call (bad content type, duplicate key).
        (400..=499, None) => PayOutcome::Failed(BackendError::from_status(resp).to_string()),
        _ => PayOutcome::Unknown(BackendError::from_status(resp).to_string()),
    }
}

/// Routing fee: what was sent minus what the recipient got.
fn fee_msat(v: &Value) -> Option<u64> {
    let sent = v.get("amount_sent_msat").and_then(Value::as_u64)?;
    let got = v.get("amount_msat").and_then(Value::as_u64)?;
    sent.checked_sub(got)
}

/// `listpays` for one hash: `{"pays": [{"status": "pending" | "complete" |
/// "failed", "preimage"?, "amount_msat"?, "amount_sent_msat", ...}]}`, one
/// entry per payment attempt group. Any complete entry means paid; any
/// pending one means still in flight, however long it stays so; failed only
/// when every entry failed. `{"pays": []}` is CLN's own word that no
/// payment for this hash exists.
fn lookup_outcome(resp: &HttpResponse) -> LookupOutcome {
    if !resp.is_success() {
        return LookupOutcome::Error(BackendError::from_status(resp).to_string());
    }
    let Some(pays) = serde_json::from_str::<Value>(&resp.body)
        .ok()
        .and_then(|v| v.get("pays").and_then(Value::as_array).cloned())
    else {
        return LookupOutcome::Error(format!(
            "listpays answer without `pays`: {}",
            snippet(&resp.body)
        ));
    };
    if pays.is_empty() {
        return LookupOutcome::NotFound;
    }
    let status = |p: &Value| str_field(p, "status").map(str::to_string);
    if let Some(done) = pays
        .iter()
        .find(|p| status(p).as_deref() == Some("complete"))
    {
        return LookupOutcome::Paid {
            preimage: str_field(done, "preimage").map(str::to_string),
            fee_msat: fee_msat(done),
        };
    }
    if pays.iter().any(|p| status(p).as_deref() == Some("pending")) {
        return LookupOutcome::Pending;
    }
    // One entry per xpay call (its own group), each failed with no part
    // in flight and no attempt ongoing: every attempt is over. The newest
    // entry's `created_at` (node clock, s) dates the last one recorded.
    if pays.iter().all(|p| status(p).as_deref() == Some("failed")) {
        let newest = pays
            .iter()
            .filter_map(|p| p.get("created_at").and_then(Value::as_u64))
            .max()
            .map(|s| s.saturating_mul(1000));
        return LookupOutcome::failed(
            "CLN lists the payment as failed",
            Covers::EveryAttempt,
            newest,
        );
    }
    LookupOutcome::Error(format!(
        "listpays has a payment in an unknown state: {}",
        snippet(&resp.body)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;
    use crate::test_support::{cfg, html_520, params};
    use crate::BackendKind;

    fn body(r: &HttpRequest) -> Value {
        serde_json::from_str(r.body.as_deref().unwrap_or("")).unwrap_or_default()
    }

    fn rpc_err(code: i64, message: &str) -> HttpResponse {
        HttpResponse::json(
            500,
            &json!({"code": code, "message": message, "data": null}),
        )
    }

    #[test]
    fn requests_are_posts_with_the_rune() {
        let c = cfg(BackendKind::Cln);
        let r = Cln
            .create_request_unique(&c, &params(), 0xabc)
            .unwrap_or_else(|| panic!("request"));
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.url, "https://example.test/v1/invoice");
        assert!(r.headers.contains(&("rune".into(), "secret".into())));
        assert_eq!(
            body(&r),
            json!({"amount_msat": 1_000_000, "label": "lightning-fallback-0000000000000abc", "description": "coffee", "expiry": 600})
        );
        let other = Cln
            .create_request_unique(&c, &params(), 0xabd)
            .unwrap_or_else(|| panic!("request"));
        assert_ne!(
            body(&r)["label"],
            body(&other)["label"],
            "a label per attempt"
        );
        assert_eq!(
            body(&check_request(&c, &"ab".repeat(32))),
            json!({"payment_hash": "ab".repeat(32)})
        );
        assert_eq!(probe_request(&c).url, "https://example.test/v1/getinfo");
        let pay = Cln
            .pay_request(&c, "lnbc1x", 50_000)
            .unwrap_or_else(|| panic!("request"));
        assert_eq!(pay.url, "https://example.test/v1/xpay");
        assert_eq!(
            body(&pay),
            json!({"invstring": "lnbc1x", "maxfee": 500_000, "retry_for": 60})
        );
        let look = Cln
            .lookup_request(&c, &"cd".repeat(32))
            .unwrap_or_else(|| panic!("request"));
        assert_eq!(look.url, "https://example.test/v1/listpays");
        assert_eq!(body(&look), json!({"payment_hash": "cd".repeat(32)}));
    }

    #[test]
    fn a_description_hash_is_refused_before_sending() {
        let mut p = params();
        assert!(Cln.unsupported(&p).is_none());
        p.description_hash = Some("00".repeat(32));
        assert!(Cln.unsupported(&p).is_some());
    }

    #[test]
    fn create_check_and_probe_answers() {
        let created = HttpResponse::json(
            201,
            &json!({"bolt11": "lnbc1x", "payment_hash": "AB", "payment_secret": "00", "expires_at": 1, "created_index": 1}),
        );
        let c = parse_create(&created).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.payment_request.as_str(), c.payment_hash.as_deref()),
            ("lnbc1x", Some("ab"))
        );
        assert!(matches!(
            parse_create(&rpc_err(900, "Duplicate label")),
            Err(BackendError::Upstream { status: 500, .. })
        ));
        let inv = |v: Value| parse_check(&HttpResponse::json(201, &json!({"invoices": [v]})));
        assert_eq!(
            inv(json!({"status": "paid", "paid_at": 1_700_000_000})),
            Ok(InvoiceState::Paid {
                settled_at_secs: Some(1_700_000_000)
            })
        );
        assert_eq!(inv(json!({"status": "unpaid"})), Ok(InvoiceState::Pending));
        assert_eq!(
            inv(json!({"status": "expired"})),
            Ok(InvoiceState::Cancelled)
        );
        assert!(inv(json!({"status": "odd"})).is_err());
        assert!(matches!(
            parse_check(&HttpResponse::json(201, &json!({"invoices": []}))),
            Err(BackendError::NotFound { .. })
        ));
        assert!(matches!(
            parse_check(&html_520()),
            Err(BackendError::Upstream { html: true, .. })
        ));
        assert!(parse_probe(&HttpResponse::json(
            201,
            &json!({"id": "02ab", "blockheight": 1})
        ))
        .is_ok());
        assert!(matches!(
            parse_probe(&HttpResponse::json(
                201,
                &json!({"id": "02ab", "warning_lightningd_sync": "Still loading latest blocks from bitcoind."})
            )),
            Err(BackendError::Unhealthy(_))
        ));
        assert!(parse_probe(&HttpResponse::json(201, &json!({}))).is_err());
    }

    #[test]
    fn pay_answers_are_classified_by_code() {
        let ok = HttpResponse::json(
            201,
            &json!({"payment_preimage": "pp", "amount_msat": 10_000, "amount_sent_msat": 10_002, "failed_parts": 0, "successful_parts": 1}),
        );
        assert_eq!(
            pay_outcome(&ok),
            PayOutcome::Succeeded {
                preimage: Some("pp".into()),
                fee_msat: Some(2)
            }
        );
        for code in [203, 205, 206, 207, 210, 215, 216, 220, -32602] {
            assert!(
                matches!(pay_outcome(&rpc_err(code, "nope")), PayOutcome::Failed(_)),
                "{code}"
            );
        }
        // In progress, already paid, "other" (parts may be in flight),
        // catch-all, and codes nobody documented: a lookup decides.
        for code in [200, 201, 202, 204, 208, 209, 211, 218, 219, -1, 1234] {
            assert!(
                matches!(pay_outcome(&rpc_err(code, "hmm")), PayOutcome::Unknown(_)),
                "{code}"
            );
        }
        assert!(matches!(
            pay_outcome(&HttpResponse::json(
                404,
                &json!({"code": -32601, "message": "Unknown command 'xpay'"})
            )),
            PayOutcome::NotSent(_)
        ));
        assert!(matches!(pay_outcome(&html_520()), PayOutcome::Unknown(_)));
        assert!(matches!(
            pay_outcome(&HttpResponse::json(500, &json!({"message": "no code"}))),
            PayOutcome::Unknown(_)
        ));
        assert!(matches!(
            pay_outcome(&HttpResponse::json(201, &json!({"status": "pending"}))),
            PayOutcome::Unknown(_)
        ));
        let garbage = HttpResponse {
            status: 201,
            content_type: None,
            body: "}{".into(),
        };
        assert!(matches!(pay_outcome(&garbage), PayOutcome::Unknown(_)));
    }

    #[test]
    fn listpays_pending_stays_pending_and_empty_is_not_found() {
        let pays = |v: Value| lookup_outcome(&HttpResponse::json(201, &json!({ "pays": v })));
        assert_eq!(pays(json!([])), LookupOutcome::NotFound);
        assert_eq!(
            pays(json!([{"status": "pending", "created_at": 1}])),
            LookupOutcome::Pending
        );
        assert_eq!(
            pays(json!([{"status": "failed"}, {"status": "pending"}])),
            LookupOutcome::Pending
        );
        assert_eq!(
            pays(
                json!([{"status": "failed"}, {"status": "complete", "preimage": "pp", "amount_msat": 1000, "amount_sent_msat": 1001}])
            ),
            LookupOutcome::Paid {
                preimage: Some("pp".into()),
                fee_msat: Some(1)
            }
        );
        assert!(matches!(
            pays(json!([{"status": "failed"}, {"status": "failed"}])),
            LookupOutcome::Failed(_)
        ));
        assert!(matches!(
            pays(json!([{"status": "weird"}])),
            LookupOutcome::Error(_)
        ));
        // Only CLN's own answer proves absence: not an error, a 404 or garbage.
        assert!(matches!(
            lookup_outcome(&rpc_err(-32602, "bad hash")),
            LookupOutcome::Error(_)
        ));
        assert!(matches!(
            lookup_outcome(&HttpResponse::json(
                404,
                &json!({"code": -32601, "message": "Unknown command"})
            )),
            LookupOutcome::Error(_)
        ));
        assert!(matches!(
            lookup_outcome(&HttpResponse::json(201, &json!({}))),
            LookupOutcome::Error(_)
        ));
        assert!(matches!(
            lookup_outcome(&html_520()),
            LookupOutcome::Error(_)
        ));
    }
}
