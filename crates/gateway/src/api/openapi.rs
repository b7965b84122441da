//! The API contract: an OpenAPI 3.1 document, written by hand in
//! `openapi.json` and served at `GET /openapi.json` without its indentation
//! (`build.rs`). The tests below keep it in step with the router and with
//! every error code; schemathesis (`make contract`) checks the running
//! gateway against it.

/// The document, byte for byte as served.
pub const DOCUMENT: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.min.json"));

#[cfg(test)]
mod tests {
    use super::DOCUMENT;
    use crate::api::error::ApiError;
    use crate::api::routes::{self, Route};
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// Codes in the document that `ApiError::code()` does not produce:
    /// `payout_failed` is set on a stored failed payout by the queue.
    const EXTRA_CODES: &[&str] = &["payout_failed"];

    fn doc() -> Value {
        serde_json::from_str(DOCUMENT).unwrap_or_else(|e| panic!("openapi.json: {e}"))
    }

    #[test]
    fn the_served_document_is_the_repositorys_without_its_layout() {
        let written: Value = serde_json::from_str(include_str!("openapi.json"))
            .unwrap_or_else(|e| panic!("openapi.json: {e}"));
        assert_eq!(doc(), written);
        assert!(!DOCUMENT.contains('\n'));
        assert!(DOCUMENT.len() < include_str!("openapi.json").len() * 2 / 3);
    }

    /// The method and path template each route is documented under.
    /// Exhaustive on purpose: a new route does not compile until it is
    /// placed here, and then the test requires it in the document.
    fn documented_as(r: &Route) -> Option<(&'static str, &'static str)> {
        Some(match r {
            Route::Index => ("get", "/"),
            Route::OpenApi => ("get", "/openapi.json"),
            Route::CreateInvoice => ("post", "/api/create-invoice"),
            Route::CheckInvoice => ("get", "/api/check-invoice"),
            Route::Health => ("get", "/api/lightning/health"),
            Route::StatusPage => ("get", "/status"),
            Route::CreatePayout => ("post", "/api/payouts"),
            Route::ListPayouts => ("get", "/api/payouts"),
            Route::GetPayout(_) => ("get", "/api/payouts/{id}"),
            Route::RetryPayout(_) => ("post", "/api/payouts/{id}/retry"),
            Route::CancelPayout(_) => ("post", "/api/payouts/{id}/cancel"),
            Route::RedeliverWebhook(_) => ("post", "/api/payouts/{id}/redeliver-webhook"),
            Route::PayoutAttention => ("get", "/api/payouts/attention"),
            Route::InvoiceEvents => ("get", "/api/invoices/events"),
            Route::InvoiceNotice => ("post", "/api/invoices/notify"),
            Route::LnurlPay(_) => ("get", "/.well-known/lnurlp/{name}"),
            Route::LnurlCallback(_) => ("get", "/lnurlp/{name}/callback"),
            Route::LnurlVerify(_) => ("get", "/lnurlp/verify/{payment_hash}"),
            Route::CheckoutPage(_) => ("get", "/pay/{payment_hash}"),
            Route::RedeliverInvoiceWebhook(_) => {
                ("post", "/api/invoices/{payment_hash}/redeliver-webhook")
            }
            Route::Preflight => return None,
        })
    }

    /// One route of each kind, so every arm above is checked against the document.
    fn every_route() -> Vec<Route> {
        let mut all: Vec<Route> = routes::TABLE.iter().map(|(_, _, r)| r.clone()).collect();
        all.push(Route::GetPayout("po_x".into()));
        all.push(Route::CheckoutPage("x".into()));
        all.push(Route::RetryPayout("po_x".into()));
        all.push(Route::CancelPayout("po_x".into()));
        all.push(Route::RedeliverWebhook("po_x".into()));
        all.push(Route::RedeliverInvoiceWebhook("ab".repeat(32)));
        all.push(Route::LnurlPay("shop".into()));
        all.push(Route::LnurlCallback("shop".into()));
        all.push(Route::LnurlVerify("ab".repeat(32)));
        all
    }

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    /// Every `(method, path template)` the document describes.
    fn operations(d: &Value) -> Vec<(String, String)> {
        let mut ops = Vec::new();
        for (path, item) in d["paths"].as_object().into_iter().flatten() {
            for m in METHODS {
                if item.get(m).is_some() {
                    ops.push((m.to_string(), path.clone()));
                }
            }
        }
        ops
    }

    /// The string literals `ApiError::code()` returns, read from its source,
    /// so a code added there is required here without listing it twice.
    fn codes_in_error_rs() -> BTreeSet<String> {
        let src = include_str!("error.rs");
        let start = src.find("pub fn code(&self)").unwrap_or(0);
        let body = &src[start..];
        let body = &body[..body.find("pub fn status(&self)").unwrap_or(body.len())];
        body.split("=> \"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn is_openapi_3_1_and_names_this_version() {
        let d = doc();
        assert!(
            d["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")),
            "{}",
            d["openapi"]
        );
        assert_eq!(d["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn every_ref_resolves() {
        fn walk(v: &Value, root: &Value, bad: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        let found = r.strip_prefix('#').and_then(|p| root.pointer(p)).is_some();
                        if !found {
                            bad.push(r.clone());
                        }
                    }
                    m.values().for_each(|x| walk(x, root, bad));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, root, bad)),
                _ => {}
            }
        }
        let d = doc();
        let mut bad = Vec::new();
        walk(&d, &d, &mut bad);
        assert!(bad.is_empty(), "unresolved $ref: {bad:?}");
    }

    #[test]
    fn every_route_the_router_knows_is_documented() {
        let d = doc();
        let ops = operations(&d);
        for r in every_route() {
            let Some((method, path)) = documented_as(&r) else {
                continue;
            };
            assert!(
                ops.contains(&(method.to_string(), path.to_string())),
                "{method} {path} ({r:?}) is missing from openapi.json"
            );
        }
    }

    #[test]
    fn every_documented_operation_is_routed_there() {
        for (method, path) in operations(&doc()) {
            let concrete = path
                .replace("{id}", "po_0123456789abcdef01234567")
                .replace("{payment_hash}", &"ab".repeat(32))
                .replace("{name}", "shop");
            let routed = routes::route(&method.to_ascii_uppercase(), &concrete);
            // HEAD is served as GET.
            let as_method = if method == "head" {
                "get"
            } else {
                method.as_str()
            };
            match (&routed, method.as_str()) {
                (Ok(Route::Preflight), "options") => {}
                (Ok(r), _) => assert_eq!(
                    documented_as(r),
                    Some((as_method, path.as_str())),
                    "{method} {path} routes to {r:?}"
                ),
                (Err(e), _) => panic!("{method} {path} is documented but the router answers {e:?}"),
            }
        }
    }

    #[test]
    fn every_error_code_is_documented_and_no_other() {
        let d = doc();
        let documented: BTreeSet<String> = d["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let codes = codes_in_error_rs();
        // The scan of error.rs found the codes (a sample of what code() returns).
        assert!(codes.len() >= 30, "{codes:?}");
        for e in [
            ApiError::RouteNotFound,
            ApiError::invalid_field("idempotency_key", "x"),
            ApiError::invalid_field("something_else", "x"),
            ApiError::Internal("x".into()),
        ] {
            assert!(codes.contains(e.code()), "{}", e.code());
        }
        let missing: Vec<_> = codes.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "ApiError codes missing from ErrorCode in openapi.json: {missing:?}"
        );
        let unknown: Vec<_> = documented
            .iter()
            .filter(|c| !codes.contains(*c) && !EXTRA_CODES.contains(&c.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "codes in openapi.json that nothing answers: {unknown:?}"
        );
    }

    /// Every event a webhook can carry is in the `webhooks` object, and
    /// nothing else: the invoice watch's kinds (but the zap receipt, which
    /// goes to Nostr relays) and every answer of the payout's `event_type`.
    #[test]
    fn the_webhooks_object_covers_every_event() {
        use crate::receive::watch::record::EventKind;
        let d = doc();
        let documented: BTreeSet<String> = d["webhooks"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let payout_events = ["payout.succeeded", "payout.failed", "payout.overpaid"];
        // The payout events are read from webhook.rs's one function, so a new arm there fails this.
        let source = include_str!("../payout/webhook.rs");
        let body = source
            .split("pub fn event_type")
            .nth(1)
            .and_then(|b| b.split("\n}\n").next())
            .unwrap_or("");
        let in_code: BTreeSet<String> = body
            .split('"')
            .filter(|t| t.starts_with("payout."))
            .map(str::to_string)
            .collect();
        assert_eq!(
            in_code,
            payout_events.iter().map(|e| e.to_string()).collect(),
            "payout events in event_type"
        );
        let mut expected: BTreeSet<String> = payout_events.iter().map(|e| e.to_string()).collect();
        for k in [EventKind::Paid, EventKind::Expired] {
            expected.insert(k.as_str().to_string());
        }
        assert_eq!(documented, expected);
    }

    #[test]
    fn every_operation_has_an_operation_id() {
        let d = doc();
        let mut ids = BTreeSet::new();
        for (method, path) in operations(&d) {
            let id = d["paths"][&path][&method]["operationId"].as_str();
            let id = id.unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
        }
    }

    #[test]
    fn public_and_keyed_routes_document_the_rate_limit() {
        let d = doc();
        for (method, path) in operations(&d) {
            let op = &d["paths"][&path][&method];
            let keyed = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|x| x.as_object().is_some_and(|o| !o.is_empty()))
            });
            if keyed {
                assert!(
                    op["responses"]["429"].is_object(),
                    "{method} {path}: keyed, so wrong keys are throttled"
                );
            }
        }
        for (path, method) in [
            ("/api/create-invoice", "post"),
            ("/api/check-invoice", "get"),
            ("/api/lightning/health", "get"),
            ("/status", "get"),
        ] {
            let r = &d["paths"][path][method]["responses"]["429"]["$ref"];
            assert_eq!(r, "#/components/responses/RateLimited", "{method} {path}");
        }
        let limited = &d["components"]["responses"]["RateLimited"];
        assert!(limited["headers"]["Retry-After"].is_object());
    }
}
