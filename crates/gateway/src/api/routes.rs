//! The route table: which handler serves a method and path. Unknown paths
//! are 404 and known paths with the wrong method 405, both as JSON.

use crate::api::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Index,
    /// `GET /openapi.json`: the API contract.
    OpenApi,
    CreateInvoice,
    CheckInvoice,
    Health,
    StatusPage,
    CreatePayout,
    ListPayouts,
    GetPayout(String),
    RetryPayout(String),
    CancelPayout(String),
    RedeliverWebhook(String),
    PayoutAttention,
    /// `GET /api/invoices/events`: the invoice events history.
    InvoiceEvents,
    /// `POST /api/invoices/notify`: a backend's paid notice (a hint).
    InvoiceNotice,
    /// `POST /api/invoices/{payment_hash}/redeliver-webhook` (admin).
    RedeliverInvoiceWebhook(String),
    /// `GET /.well-known/lnurlp/{name}`: a served Lightning Address (LUD-16).
    LnurlPay(String),
    /// `GET /lnurlp/{name}/callback`: its invoice (LUD-06).
    LnurlCallback(String),
    /// `GET /lnurlp/verify/{payment_hash}` (LUD-21).
    LnurlVerify(String),
    /// `GET /pay/{payment_hash}`: the checkout page (the handler checks the
    /// hash, and answers a bad one with its friendly 404 page).
    CheckoutPage(String),
    /// CORS preflight for a known path.
    Preflight,
}

/// Paths without parameters; `/api/payouts/{id}...` is matched by `payout_route`.
pub(crate) const TABLE: &[(&str, &str, Route)] = &[
    ("/", "GET", Route::Index),
    ("/openapi.json", "GET", Route::OpenApi),
    ("/api/create-invoice", "POST", Route::CreateInvoice),
    ("/api/check-invoice", "GET", Route::CheckInvoice),
    ("/api/lightning/health", "GET", Route::Health),
    ("/status", "GET", Route::StatusPage),
    ("/api/payouts", "POST", Route::CreatePayout),
    ("/api/payouts", "GET", Route::ListPayouts),
    ("/api/payouts/attention", "GET", Route::PayoutAttention),
    ("/api/invoices/events", "GET", Route::InvoiceEvents),
    ("/api/invoices/notify", "POST", Route::InvoiceNotice),
];

const GET: &[&str] = &["GET", "HEAD", "OPTIONS"];
const POST: &[&str] = &["POST", "OPTIONS"];
const BOTH: &[&str] = &["GET", "HEAD", "POST", "OPTIONS"];

/// `/api/payouts/{id}` and its admin actions (`/retry`, `/cancel`,
/// `/redeliver-webhook`). `attention` is no id (ids are `po_<hex>`): the table has it.
fn payout_route(method: &str, path: &str) -> Option<Result<Route, ApiError>> {
    let rest = path
        .strip_prefix("/api/payouts/")
        .filter(|r| *r != "attention")?;
    let (id, tail) = match rest.split_once('/') {
        Some((id, tail)) => (id, Some(tail)),
        None => (rest, None),
    };
    let valid_id = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let (allowed, route) = match tail {
        None => (GET, Route::GetPayout(id.to_string())),
        Some("retry") => (POST, Route::RetryPayout(id.to_string())),
        Some("cancel") => (POST, Route::CancelPayout(id.to_string())),
        Some("redeliver-webhook") => (POST, Route::RedeliverWebhook(id.to_string())),
        Some(_) => return Some(Err(ApiError::RouteNotFound)),
    };
    Some(if !valid_id {
        Err(ApiError::PayoutNotFound)
    } else if method.eq_ignore_ascii_case("OPTIONS") {
        Ok(Route::Preflight)
    } else if method.eq_ignore_ascii_case(allowed[0]) {
        Ok(route)
    } else {
        Err(ApiError::MethodNotAllowed { allowed })
    })
}

/// `/api/invoices/{payment_hash}/redeliver-webhook`; `events` is the table's.
fn invoice_route(method: &str, path: &str) -> Option<Result<Route, ApiError>> {
    let rest = path
        .strip_prefix("/api/invoices/")
        .filter(|r| *r != "events" && *r != "notify")?;
    let (hash, tail) = rest.split_once('/')?;
    if tail != "redeliver-webhook" {
        return Some(Err(ApiError::RouteNotFound));
    }
    Some(
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            Err(ApiError::InvalidQuery {
                param: "payment_hash",
                message: "the path must hold the payment hash as 64 hex digits".into(),
            })
        } else if method.eq_ignore_ascii_case("OPTIONS") {
            Ok(Route::Preflight)
        } else if method.eq_ignore_ascii_case("POST") {
            Ok(Route::RedeliverInvoiceWebhook(hash.to_ascii_lowercase()))
        } else {
            Err(ApiError::MethodNotAllowed { allowed: POST })
        },
    )
}

/// The Lightning Address routes; names are checked by the handler (an
/// unknown one is LUD-06's 404).
fn lnurl_route(method: &str, path: &str) -> Option<Result<Route, ApiError>> {
    let route = if let Some(name) = path.strip_prefix("/.well-known/lnurlp/") {
        Route::LnurlPay(name.to_string())
    } else if let Some(hash) = path.strip_prefix("/lnurlp/verify/") {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(Err(ApiError::InvalidQuery {
                param: "payment_hash",
                message: "the path must hold the payment hash as 64 hex digits".into(),
            }));
        }
        Route::LnurlVerify(hash.to_ascii_lowercase())
    } else {
        let rest = path.strip_prefix("/lnurlp/")?;
        let (name, tail) = rest.split_once('/')?;
        if tail != "callback" {
            return Some(Err(ApiError::RouteNotFound));
        }
        Route::LnurlCallback(name.to_string())
    };
    if let Route::LnurlPay(n) | Route::LnurlCallback(n) = &route {
        if n.is_empty() || n.contains('/') {
            return Some(Err(ApiError::RouteNotFound));
        }
    }
    Some(if method.eq_ignore_ascii_case("OPTIONS") {
        // No served name is longer than 64 (openapi.json): a preflight for a
        // longer one is 404 (GET answers it with LUD-06's own 404).
        match &route {
            Route::LnurlPay(n) | Route::LnurlCallback(n) if n.len() > 64 => {
                Err(ApiError::RouteNotFound)
            }
            _ => Ok(Route::Preflight),
        }
    } else if method.eq_ignore_ascii_case("GET") {
        Ok(route)
    } else {
        Err(ApiError::MethodNotAllowed { allowed: GET })
    })
}

/// `/pay/{payment_hash}`: a page, so no preflight.
fn checkout_route(method: &str, path: &str) -> Option<Result<Route, ApiError>> {
    let hash = path.strip_prefix("/pay/")?;
    if hash.is_empty() || hash.contains('/') {
        return Some(Err(ApiError::RouteNotFound));
    }
    Some(if method.eq_ignore_ascii_case("GET") {
        Ok(Route::CheckoutPage(hash.to_string()))
    } else {
        Err(ApiError::MethodNotAllowed {
            allowed: &["GET", "HEAD"],
        })
    })
}

/// `HEAD` is served as `GET` (the caller drops the body, RFC 9110 §9.3.2).
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let method = if method.eq_ignore_ascii_case("HEAD") {
        "GET"
    } else {
        method
    };
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    if let Some(r) = payout_route(method, path)
        .or_else(|| invoice_route(method, path))
        .or_else(|| lnurl_route(method, path))
        .or_else(|| checkout_route(method, path))
    {
        return r;
    }
    let known: Vec<&(&str, &str, Route)> = TABLE.iter().filter(|(p, _, _)| *p == path).collect();
    if known.is_empty() {
        return Err(ApiError::RouteNotFound);
    }
    if method.eq_ignore_ascii_case("OPTIONS") {
        return Ok(Route::Preflight);
    }
    let allowed = match known.as_slice() {
        [_, _, ..] => BOTH,
        [(_, "POST", _)] => POST,
        _ => GET,
    };
    known
        .iter()
        .find(|(_, m, _)| m.eq_ignore_ascii_case(method))
        .map(|(_, _, r)| r.clone())
        .ok_or(ApiError::MethodNotAllowed { allowed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(method: &str, path: &str) -> Result<Route, u16> {
        route(method, path).map_err(|e| e.status())
    }

    #[test]
    fn routes_methods_and_unknowns() {
        assert_eq!(
            route("POST", "/api/create-invoice"),
            Ok(Route::CreateInvoice)
        );
        assert_eq!(
            route("POST", "/api/create-invoice/"),
            Ok(Route::CreateInvoice)
        );
        assert_eq!(route("GET", "/api/check-invoice"), Ok(Route::CheckInvoice));
        assert_eq!(route("GET", "/openapi.json"), Ok(Route::OpenApi));
        assert_eq!(route("HEAD", "/api/lightning/health"), Ok(Route::Health));
        assert_eq!(
            route("HEAD", "/api/payouts/po_1"),
            Ok(Route::GetPayout("po_1".into()))
        );
        assert_eq!(status("HEAD", "/api/create-invoice"), Err(405));
        assert_eq!(
            route("OPTIONS", "/api/create-invoice"),
            Ok(Route::Preflight)
        );
        assert_eq!(route("GET", "/nope"), Err(ApiError::RouteNotFound));
        assert_eq!(route("OPTIONS", "/nope"), Err(ApiError::RouteNotFound));
        let e = route("GET", "/api/create-invoice").err();
        assert_eq!(e.as_ref().map(|e| e.code()), Some("method_not_allowed"));
        assert_eq!(status("GET", "/api/create-invoice"), Err(405));
        assert_eq!(status("DELETE", "/api/check-invoice"), Err(405));
    }

    #[test]
    fn the_checkout_page_takes_any_one_segment() {
        let h = "ab".repeat(32);
        assert_eq!(
            route("GET", &format!("/pay/{h}")),
            Ok(Route::CheckoutPage(h))
        );
        assert_eq!(route("GET", "/pay/x"), Ok(Route::CheckoutPage("x".into())));
        assert_eq!(status("POST", "/pay/x"), Err(405));
        assert_eq!(status("GET", "/pay/a/b"), Err(404));
        assert_eq!(status("GET", "/pay/"), Err(404));
    }

    #[test]
    fn lightning_address_routes() {
        let h = "ab".repeat(32);
        assert_eq!(
            route("GET", "/.well-known/lnurlp/shop"),
            Ok(Route::LnurlPay("shop".into()))
        );
        assert_eq!(
            route("GET", "/lnurlp/shop/callback"),
            Ok(Route::LnurlCallback("shop".into()))
        );
        assert_eq!(
            route("GET", &format!("/lnurlp/verify/{h}")),
            Ok(Route::LnurlVerify(h))
        );
        assert_eq!(status("POST", "/.well-known/lnurlp/shop"), Err(405));
        assert_eq!(status("GET", "/lnurlp/verify/xyz"), Err(400));
        assert_eq!(status("GET", "/lnurlp/shop/other"), Err(404));
        assert_eq!(status("GET", "/.well-known/lnurlp/a/b"), Err(404));
        assert_eq!(status("GET", "/.well-known/lnurlp/"), Err(404));
    }

    #[test]
    fn invoice_event_routes() {
        let h = "ab".repeat(32);
        assert_eq!(
            route("GET", "/api/invoices/events"),
            Ok(Route::InvoiceEvents)
        );
        assert_eq!(
            route("POST", &format!("/api/invoices/{h}/redeliver-webhook")),
            Ok(Route::RedeliverInvoiceWebhook(h.clone()))
        );
        assert_eq!(
            status("GET", &format!("/api/invoices/{h}/redeliver-webhook")),
            Err(405)
        );
        assert_eq!(
            status("POST", "/api/invoices/xyz/redeliver-webhook"),
            Err(400)
        );
        assert_eq!(
            status("POST", &format!("/api/invoices/{h}/other")),
            Err(404)
        );
        assert_eq!(status("POST", "/api/invoices/events"), Err(405));
        assert_eq!(status("GET", "/api/invoices"), Err(404));
    }

    #[test]
    fn payout_routes() {
        assert_eq!(route("POST", "/api/payouts"), Ok(Route::CreatePayout));
        assert_eq!(route("GET", "/api/payouts"), Ok(Route::ListPayouts));
        assert_eq!(
            route("GET", "/api/payouts/po_abc"),
            Ok(Route::GetPayout("po_abc".into()))
        );
        assert_eq!(
            route("POST", "/api/payouts/po_abc/retry"),
            Ok(Route::RetryPayout("po_abc".into()))
        );
        assert_eq!(
            route("OPTIONS", "/api/payouts/po_abc/retry"),
            Ok(Route::Preflight)
        );
        assert_eq!(status("GET", "/api/payouts/po_abc/retry"), Err(405));
        assert_eq!(
            route("POST", "/api/payouts/po_abc/cancel"),
            Ok(Route::CancelPayout("po_abc".into()))
        );
        assert_eq!(
            route("POST", "/api/payouts/po_abc/redeliver-webhook/"),
            Ok(Route::RedeliverWebhook("po_abc".into()))
        );
        assert_eq!(status("GET", "/api/payouts/po_abc/cancel"), Err(405));
        assert_eq!(
            route("GET", "/api/payouts/attention"),
            Ok(Route::PayoutAttention)
        );
        assert_eq!(status("POST", "/api/payouts/attention"), Err(405));
        assert_eq!(
            route("OPTIONS", "/api/payouts/attention"),
            Ok(Route::Preflight)
        );
        assert_eq!(status("GET", "/api/payouts/po_abc/other"), Err(404));
        assert_eq!(
            route("GET", "/api/payouts/bad$id").err().map(|e| e.code()),
            Some("payout_not_found")
        );
        assert_eq!(
            route("DELETE", "/api/payouts").err(),
            Some(ApiError::MethodNotAllowed { allowed: BOTH })
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Any method and path: a route, or a 404/405 JSON error; never a panic.
        #[test]
        fn any_request_is_routed_or_refused(
            method in prop_oneof![
                prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", ""]).prop_map(String::from),
                "\\PC{0,10}",
            ],
            path in prop_oneof![
                "/api/payouts/\\PC{0,80}",
                "/api/payouts/[a-z_0-9]{1,8}/(cancel|redeliver-webhook|retry|attention)/?",
                "/[a-z/_.%0-9-]{0,80}",
                "\\PC{0,80}",
            ],
        ) {
            match route(&method, &path) {
                Ok(Route::GetPayout(id)) | Ok(Route::RetryPayout(id)) | Ok(Route::CancelPayout(id)) | Ok(Route::RedeliverWebhook(id)) => {
                    prop_assert!(!id.is_empty() && id.len() <= 64);
                    prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{id}");
                }
                Ok(_) => {}
                Err(e) => prop_assert!(matches!(e.status(), 404 | 405), "{e:?}"),
            }
        }
    }
}
