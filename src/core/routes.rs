//! The route table: which handler serves a method and path. Unknown paths
//! are 404 and known paths with the wrong method 405, both as JSON.

use crate::core::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Index,
    CreateInvoice,
    CheckInvoice,
    Health,
    StatusPage,
    /// CORS preflight for a known path.
    Preflight,
}

const TABLE: &[(&str, &str, Route)] = &[
    ("/", "GET", Route::Index),
    ("/api/create-invoice", "POST", Route::CreateInvoice),
    ("/api/check-invoice", "GET", Route::CheckInvoice),
    ("/api/lightning/health", "GET", Route::Health),
    ("/status", "GET", Route::StatusPage),
];

pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let known: Vec<&(&str, &str, Route)> = TABLE.iter().filter(|(p, _, _)| *p == path).collect();
    if known.is_empty() {
        return Err(ApiError::RouteNotFound);
    }
    if method.eq_ignore_ascii_case("OPTIONS") {
        return Ok(Route::Preflight);
    }
    known
        .iter()
        .find(|(_, m, _)| m.eq_ignore_ascii_case(method))
        .map(|(_, _, r)| *r)
        .ok_or(ApiError::MethodNotAllowed {
            allowed: match known[0].1 {
                "POST" => &["POST", "OPTIONS"],
                _ => &["GET", "OPTIONS"],
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            route("OPTIONS", "/api/create-invoice"),
            Ok(Route::Preflight)
        );
        assert_eq!(route("GET", "/nope"), Err(ApiError::RouteNotFound));
        assert_eq!(route("OPTIONS", "/nope"), Err(ApiError::RouteNotFound));
        let e = route("GET", "/api/create-invoice").err();
        assert_eq!(e.as_ref().map(|e| e.status()), Some(405));
        assert_eq!(e.map(|e| e.code()), Some("method_not_allowed"));
        assert_eq!(
            route("DELETE", "/api/check-invoice").map_err(|e| e.status()),
            Err(405)
        );
    }
}
