//! Paying and looking up through the runtime seam, with a scripted runtime.

use lightning_fallback_backends as backends;

use backends::http::{HttpRequest, HttpResponse, ReadLimits};
use backends::outcome::{LookupOutcome, PayOutcome};
use backends::payment::{lookup, pay};
use backends::{BackendConfig, BackendKind};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use testkit::{FakeRuntime, Reply};

/// A payout pinned to a retired kind (old rows pinned to alby) can never
/// be sent or resolved by it: nothing is sent, nothing is "not found".
#[test]
fn a_retired_backend_never_sends_or_proves_absence() {
    let cfg = BackendConfig {
        kind: BackendKind::Alby,
        base_url: "https://api.getalby.com".into(),
        credential: "old".into(),
    };
    assert!(cfg.adapter().pay_request(&cfg, "lnbc1x", 10).is_none());
    let rt = FakeRuntime::new(0);
    assert!(matches!(
        futures_executor::block_on(pay(&rt, &cfg, "lnbc1x", &"ab".repeat(32), 10, 1_000)),
        PayOutcome::NotSent(_)
    ));
    assert!(matches!(
        futures_executor::block_on(lookup(&rt, &cfg, &"ab".repeat(32))),
        LookupOutcome::Error(_)
    ));
    assert_eq!(rt.sent.borrow().len(), 0);
}

/// Like real LND: with `no_inflight_updates` an in-flight payment's track
/// stream sends nothing until the payment ends; without it the first
/// line (the current state) comes at once and the stream stays open.
#[test]
fn lnd_lookup_of_an_in_flight_payment_answers_pending_at_once() {
    use std::rc::Rc;
    let cfg = BackendConfig {
        kind: BackendKind::Lnd,
        base_url: "https://lnd.example".into(),
        credential: "ab".into(),
    };
    let rt = FakeRuntime::new(1_700_000_000_000);
    let track = format!(
        "https://lnd.example/v2/router/track/{}",
        B64URL.encode([0xabu8; 32])
    );
    // Nothing arrives before the lookup timeout.
    rt.on(
        &format!("{track}?no_inflight_updates=true"),
        vec![Reply::Hang],
    );
    rt.on(
        &track,
        vec![Reply::Func(
            Rc::new(|_: &HttpRequest, _| HttpResponse {
                status: 200,
                content_type: Some("application/json".into()),
                // The current state, then more of a stream that a
                // first-line read never waits for (here: 2 MB of it).
                body: "{\"result\":{\"status\":\"IN_FLIGHT\"}}\n".to_string()
                    + &"{\"result\":{\"status\":\"IN_FLIGHT\",\"htlcs\":[]}}\n".repeat(50_000),
            }),
            20,
        )],
    );
    let r = futures_executor::block_on(lookup(&rt, &cfg, &"ab".repeat(32)));
    assert_eq!(r, LookupOutcome::Pending);
    let limits = rt.limits.borrow();
    assert_eq!(limits.len(), 1);
    assert!(limits[0].1.first_line_only, "{:?}", limits[0]);
    assert!(
        !limits[0].0.contains("no_inflight_updates"),
        "{}",
        limits[0].0
    );
    assert_eq!(
        BackendKind::Lnbits.adapter().lookup_read_limits(),
        ReadLimits::default()
    );
}
