//! The preimage each backend's invoice lookup shows once paid, read from the
//! answer shapes of their APIs: LND's `r_preimage` (base64 bytes,
//! lnrpc.Invoice), CLN's `payment_preimage` (listinvoices), phoenixd's and
//! LNbits' `preimage` (hex).

use lightning_fallback_backends::http::HttpResponse;
use lightning_fallback_backends::BackendKind;
use serde_json::json;

#[test]
fn each_backend_shows_the_preimage_of_a_paid_invoice() {
    let hex = "5e".repeat(32);
    let b64 = "Xl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl4=";
    let read = |kind: BackendKind, v: serde_json::Value| {
        kind.adapter().check_preimage(&HttpResponse::json(200, &v))
    };
    assert_eq!(
        read(
            BackendKind::Lnd,
            json!({"state": "SETTLED", "r_preimage": b64})
        ),
        Some(hex.clone())
    );
    assert_eq!(
        read(
            BackendKind::Lnd,
            json!({"state": "OPEN", "r_preimage": "AAAA"})
        ),
        None,
        "not 32 bytes"
    );
    assert_eq!(
        read(
            BackendKind::Cln,
            json!({"invoices": [{"status": "paid", "payment_preimage": hex}]})
        ),
        Some(hex.clone())
    );
    assert_eq!(
        read(
            BackendKind::Cln,
            json!({"invoices": [{"status": "unpaid"}]})
        ),
        None
    );
    assert_eq!(
        read(
            BackendKind::Phoenixd,
            json!({"isPaid": true, "preimage": hex.to_uppercase()})
        ),
        Some(hex.clone())
    );
    assert_eq!(
        read(BackendKind::Lnbits, json!({"paid": true, "preimage": hex})),
        Some(hex.clone())
    );
    assert_eq!(
        read(
            BackendKind::Lnbits,
            json!({"paid": true, "preimage": "xyz"})
        ),
        None
    );
    assert_eq!(read(BackendKind::Mock, json!({"paid": true})), None);
}
