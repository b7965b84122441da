//! Micro-benchmarks of the core's hot paths, printed as figures (not tests):
//! `make bench` (`cargo bench -p lightning-fallback-gateway --bench core`). Each runs a fixed number of iterations and reports the mean.

#[path = "../tests/invoice_watch/mem_store.rs"]
mod mem_store;

use std::cell::RefCell;
use std::hint::black_box;
use std::time::Instant;

use backends::bolt11::{self, Expectation, Network};
use backends::mock::sign_invoice;
use lightning_fallback_gateway::health::breaker::BreakerPolicy;
use lightning_fallback_gateway::health::{HealthBook, Source};
use lightning_fallback_gateway::payout::destination;

fn bench(name: &str, iterations: u32, mut f: impl FnMut(u32)) {
    // Warm up, then measure.
    for i in 0..iterations / 10 {
        f(i);
    }
    let start = Instant::now();
    for i in 0..iterations {
        f(i);
    }
    let per = start.elapsed().as_secs_f64() / f64::from(iterations);
    println!(
        "{name:<52} {:>10.2} µs/op {:>12.0} ops/s",
        per * 1e6,
        1.0 / per
    );
}

fn main() {
    let now = 1_700_000_000;
    let inv = match sign_invoice(
        Network::Bitcoin,
        21_000_000,
        "bench",
        None,
        3600,
        now,
        [9; 32],
    ) {
        Ok(i) => i,
        Err(e) => panic!("{e}"),
    };
    println!("lightning-fallback core benchmarks (release build, one core)\n");
    bench("bolt11::verify (parse + signature + checks)", 2_000, |_| {
        let want = Expectation {
            network: Network::Bitcoin,
            amount_msat: 21_000_000,
            payment_hash: Some(&inv.payment_hash),
            now_secs: now,
        };
        black_box(bolt11::verify(black_box(&inv.payment_request), &want).is_ok());
    });
    bench(
        "mock::sign_invoice (the mock provider's create)",
        2_000,
        |i| {
            let mut pre = [0u8; 32];
            pre[..4].copy_from_slice(&i.to_le_bytes());
            black_box(sign_invoice(Network::Bitcoin, 1_000, "x", None, 600, now, pre).is_ok());
        },
    );
    bench("destination::parse (Lightning Address)", 200_000, |_| {
        black_box(destination::parse(black_box("alice@getalby.com")).is_ok());
    });

    // The health document every request reads from KV and may write back.
    let mut book = HealthBook::default();
    let policy = BreakerPolicy::default();
    for i in 0..200u64 {
        for p in ["alby", "lnd", "lnbits"] {
            if i % 7 == 0 {
                book.record_failure(
                    p,
                    "HTTP 520: HTML error page",
                    40,
                    i * 300_000,
                    Source::Probe,
                    &policy,
                );
            } else {
                book.record_success(p, 35, i * 300_000, Source::Probe);
            }
        }
    }
    let json = serde_json::to_string(&book).unwrap_or_default();
    bench(
        "health book: parse from KV JSON (3 providers, full)",
        20_000,
        |_| {
            black_box(serde_json::from_str::<HealthBook>(black_box(&json)).is_ok());
        },
    );
    bench("health book: serialize for KV", 20_000, |_| {
        black_box(
            serde_json::to_string(black_box(&book))
                .map(|s| s.len())
                .unwrap_or(0),
        );
    });
    println!(
        "\nhealth book size in KV: {} bytes (3 providers, history full)",
        json.len()
    );
    watch();
}

/// The invoice watch: what an invoice costs in lookups, and the gateway's
/// own CPU for one wake-up (an in-memory store: SQLite and the network are
/// the runtime's, measured under workerd by bench/run.mjs).
fn watch() {
    use backends::http::HttpResponse;
    use backends::identity::BackendId;
    use backends::{BackendConfig, BackendKind};
    use lightning_fallback_gateway::payout::safe_url::UrlPolicy;
    use lightning_fallback_gateway::receive::context::InvoiceContext;
    use lightning_fallback_gateway::receive::watch::budget::LookupBudget;
    use lightning_fallback_gateway::receive::watch::engine::{self, Delivering, Looking};
    use lightning_fallback_gateway::receive::watch::record::WatchedInvoice;
    use lightning_fallback_gateway::receive::watch::schedule::lookups_for_lifetime;
    use lightning_fallback_gateway::receive::watch::serve::{self, Shard};
    use lightning_fallback_gateway::webhooks::WebhookSecret;
    use testkit::{FakeRuntime, Reply};

    println!("\ninvoice watch: lookups over the life of an invoice nobody pays");
    for (label, ms) in [
        ("10 min", 600_000u64),
        ("1 h", 3_600_000),
        ("24 h", 86_400_000),
        ("7 days", 604_800_000),
    ] {
        println!(
            "  expiry {label:<8} {:>4} lookups",
            lookups_for_lifetime(ms)
        );
    }
    let lnbits = BackendConfig {
        kind: BackendKind::Lnbits,
        base_url: "http://lnbits.bench".into(),
        credential: "k".into(),
    };
    let backends = vec![lnbits.clone()];
    let secrets = match WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") {
        Ok(s) => vec![s],
        Err(e) => panic!("{e:?}"),
    };
    let policy = UrlPolicy {
        allow_http_hosts: vec![],
        ..UrlPolicy::default()
    };
    let closed = |_: BackendKind| true;
    // One wake-up: 60 due invoices looked up (6 of them paid), then their
    // 6 events delivered. Each iteration starts from a fresh store.
    let mut total_ns = 0u128;
    let runs = 200u32;
    for run in 0..runs {
        let rt = FakeRuntime::new(1_700_000_000_000);
        rt.on(
            "http://lnbits.bench/api/v1/payments/",
            vec![Reply::Func(
                std::rc::Rc::new(|req: &backends::http::HttpRequest, _| {
                    let paid = req.url.ends_with('0');
                    HttpResponse::json(
                        200,
                        &serde_json::json!({"paid": paid, "preimage": "5e".repeat(32)}),
                    )
                }),
                0,
            )],
        );
        rt.on(
            "https://ops.example.com/",
            vec![Reply::Respond(
                HttpResponse::json(200, &serde_json::json!({})),
                0,
            )],
        );
        let store = mem_store::MemWatchStore::default();
        for n in 0..60u32 {
            let inv = WatchedInvoice::new(
                format!("{:063x}{}", u64::from(run) * 100 + u64::from(n), n % 10),
                "lnbc1".into(),
                BackendId::of(&lnbits),
                21,
                1_699_999_990_000,
                1_700_000_600_000,
                InvoiceContext {
                    external_id: Some(format!("order-{n}")),
                    metadata: None,
                    webhook_url: None,
                    ..InvoiceContext::default()
                },
            );
            if let Err(e) = engine::register(&store, &inv) {
                panic!("{e}");
            }
        }
        let budget = RefCell::new(LookupBudget::new(10_000, 1));
        let shard = Shard {
            looking: Looking {
                backends: &backends,
                breaker_closed: &closed,
                timeout_ms: 5_000,
            },
            delivering: Delivering {
                secrets: Some(&secrets),
                operator_url: Some("https://ops.example.com/hook"),
                url_policy: &policy,
                zap_secret: None,
            },
            budget: &budget,
        };
        let start = Instant::now();
        let woke = futures_executor::block_on(serve::wake(&rt, &store, &shard));
        total_ns += start.elapsed().as_nanos();
        match woke {
            Ok(w) if w.looked == 60 && w.delivered == 6 => {}
            other => panic!("unexpected wake-up: {other:?}"),
        }
    }
    println!(
        "  one wake-up, 60 lookups + 6 signed deliveries (gateway CPU, no I/O): {:.0} µs",
        total_ns as f64 / f64::from(runs) / 1e3
    );
}
