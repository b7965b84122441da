//! Micro-benchmarks of the core's hot paths, printed as figures (not tests):
//! `make bench` (`cargo bench -p lightning-fallback-gateway --bench core`). Each runs a fixed number of iterations and reports the mean.

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
}
