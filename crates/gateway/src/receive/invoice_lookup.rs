//! Finding an invoice by payment hash when the KV index has no entry for
//! it. KV is eventually consistent: an entry written in one location can be
//! missing in another for up to about a minute, so a miss is not proof that
//! the gateway never issued the invoice. Every configured provider that can
//! look an invoice up by hash is asked at once, within the check deadline;
//! one that knows it gives back the index entry to repair. A provider that
//! errors is not a "not found": if nobody knows the hash and someone could
//! not answer, the lookup is unavailable, never a false 404.
//!
//! Anyone can ask for a random hash, so this search must not be a lever on
//! the backends: it runs only after the watch and the index both missed, it
//! has its own lower rate limit (the Worker's `INDEX_MISS_LIMITER`), it
//! stops at the first provider that knows the hash, it is not retried on a
//! 429, it skips a provider whose breaker is not closed (no probe slot is
//! spent on it), and its outcomes never count against a provider's health.

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::config::Config;
use crate::health::breaker::Admission;
use crate::health::HealthBook;
use crate::receive::chain::BackendFailure;
use crate::receive::invoice::InvoiceRecord;
use backends::bolt11;
use backends::exchange;
use backends::http::{HttpResponse, Runtime, TransportError};
use backends::{self, BackendConfig, BackendError, InvoiceState, LookedUp};

/// One provider's answer about the hash.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// It issued the invoice: its state, and the index entry it implies.
    Known(InvoiceState, InvoiceRecord),
    NotFound,
    /// It could not say (error, timeout, breaker open, or an answer that
    /// does not hold together).
    Failed(BackendFailure),
}

/// What the lookup concludes.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Found(InvoiceState, InvoiceRecord),
    /// Every asked provider said it does not know the hash (or none can be asked).
    NotFound,
    /// Nobody knows it and some could not answer.
    Unavailable {
        failures: Vec<BackendFailure>,
        retry_after_secs: u64,
    },
}

/// Backends that can find an invoice they issued by its hash (the mock,
/// whose invoices are signed locally, keeps no record of them).
pub fn askable(cfg: &Config) -> Vec<&BackendConfig> {
    cfg.backends
        .iter()
        .filter(|p| p.kind.descriptor().finds_invoices_by_hash)
        .collect()
}

fn failed(p: &BackendConfig, e: &BackendError) -> Answer {
    Answer::Failed(BackendFailure {
        provider: p.name().into(),
        code: e.code(),
        message: e.to_string(),
    })
}

/// Reads one provider's answer to the lookup of `hash`. A "known" answer
/// must carry the provider's own BOLT11 for exactly this hash: the index
/// entry is rebuilt from it (amount, creation, expiry).
pub fn interpret(
    p: &BackendConfig,
    hash: &str,
    result: Result<HttpResponse, TransportError>,
) -> Answer {
    let resp = match result {
        Ok(r) => r,
        Err(e) => return failed(p, &e.into()),
    };
    let state = match p.kind.adapter().parse_check(&resp) {
        Ok(s) => s,
        Err(BackendError::NotFound { .. }) => return Answer::NotFound,
        Err(e) => return failed(p, &e),
    };
    let bad = |m: &str| failed(p, &BackendError::InvalidResponse(m.into()));
    let pr = match backends::lookup_invoice(p.kind, &resp) {
        LookedUp::Incoming(pr) => pr,
        // A payment this wallet made, not an invoice it issued.
        LookedUp::Outgoing => return Answer::NotFound,
        LookedUp::NoInvoice => return bad("the lookup answer does not include the invoice"),
    };
    let inv = match bolt11::parse(&pr) {
        Ok(i) => i,
        Err(e) => {
            return bad(&format!(
                "the invoice in the lookup answer is unreadable: {e}"
            ))
        }
    };
    if !inv.payment_hash.eq_ignore_ascii_case(hash) {
        return bad("the lookup answered with an invoice for another payment hash");
    }
    let record = InvoiceRecord {
        payment_hash: hash.to_string(),
        provider: p.kind,
        amount_sat: inv.amount_msat.unwrap_or(0) / 1000,
        created_at: inv.timestamp_secs,
        expires_at: inv.expires_at_secs(),
        settled_at: None,
        paid: false,
    };
    Answer::Known(state, record)
}

/// Merges the answers, given in chain order: the first provider that knows
/// the hash wins; otherwise any failure makes the lookup unavailable.
pub fn merge(answers: Vec<Answer>, retry_after_secs: u64) -> Verdict {
    let mut failures = Vec::new();
    for a in answers {
        match a {
            Answer::Known(state, record) => return Verdict::Found(state, record),
            Answer::Failed(f) => failures.push(f),
            Answer::NotFound => {}
        }
    }
    if failures.is_empty() {
        Verdict::NotFound
    } else {
        Verdict::Unavailable {
            failures,
            retry_after_secs,
        }
    }
}

/// One provider's answer, retried on transient errors until `deadline_ms`.
async fn ask<R: Runtime>(
    rt: &R,
    cfg: &Config,
    p: &BackendConfig,
    hash: &str,
    max_tries: u32,
    deadline_ms: u64,
) -> Answer {
    let Some(req) = p.adapter().check_request(p, hash) else {
        return Answer::NotFound;
    };
    let mut answer = failed(p, &BackendError::Timeout);
    for n in 0..max_tries {
        let remaining = deadline_ms.saturating_sub(rt.now_ms());
        if remaining == 0 {
            break;
        }
        let result = exchange::send(rt, req.clone(), cfg.retry.attempt_timeout(remaining)).await;
        // A 429 is the backend asking for less: never asked again here.
        let transient = match &result {
            Err(e) => BackendError::from(e.clone()).is_transient(),
            Ok(r) => {
                !r.is_success() && r.status != 429 && BackendError::from_status(r).is_transient()
            }
        };
        answer = interpret(p, hash, result);
        let delay = cfg.retry.delay_ms(n, rt.random_u64());
        if !transient || n + 1 >= max_tries || rt.now_ms().saturating_add(delay) >= deadline_ms {
            break;
        }
        rt.sleep(delay).await;
    }
    answer
}

/// Asks every askable provider whose breaker is closed about `hash` at
/// once, within the check deadline, and stops at the first that knows it.
/// `health` is read for the breakers and never written (see the module note).
pub async fn locate<R: Runtime>(rt: &R, cfg: &Config, health: &HealthBook, hash: &str) -> Verdict {
    let now = rt.now_ms();
    let deadline = now.saturating_add(cfg.retry.total_timeout_ms);
    let mut retry_after_secs = 5;
    let mut skipped = Vec::new();
    let mut runs = FuturesUnordered::new();
    for (i, p) in askable(cfg).into_iter().enumerate() {
        match health.peek_admit(p.name(), now, &cfg.breaker) {
            Admission::Allow => {
                let tries = 1 + cfg.retry.max_retries;
                runs.push(async move { (i, ask(rt, cfg, p, hash, tries, deadline).await) });
            }
            not_closed => {
                if let Admission::Reject { retry_at_ms } = not_closed {
                    retry_after_secs =
                        retry_after_secs.min(retry_at_ms.saturating_sub(now).div_ceil(1000).max(1));
                }
                skipped.push((
                    i,
                    Answer::Failed(BackendFailure {
                        provider: p.name().into(),
                        code: "circuit_open",
                        message: "circuit breaker open".into(),
                    }),
                ));
            }
        }
    }
    let mut answers = skipped;
    while let Some((i, answer)) = runs.next().await {
        if let Answer::Known(state, record) = answer {
            // The rest are dropped unanswered: this one issued the invoice.
            return Verdict::Found(state, record);
        }
        answers.push((i, answer));
    }
    crate::small_sort::sort_by_key(&mut answers, |(i, _)| *i);
    merge(
        answers.into_iter().map(|(_, a)| a).collect(),
        retry_after_secs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Source;
    use backends::bolt11::Network;
    use backends::mock::sign_invoice;
    use backends::BackendKind;
    use serde_json::json;
    use testkit::{self, Reply, VirtualRuntime};

    const PHOENIXD: &str = "http://phoenixd.test";
    const LND: &str = "http://lnd.test";
    const LNBITS: &str = "http://lnbits.test";
    const T0: u64 = 1_800_000_000_000;

    fn config(extra: &[(&str, &str)]) -> Config {
        let base = [
            ("LIGHTNING_PROVIDERS", "phoenixd,lnd,lnbits"),
            ("PHOENIXD_URL", PHOENIXD),
            ("PHOENIXD_PASSWORD", "k"),
            ("LND_REST_URL", LND),
            ("LND_ADMIN_MACAROON", "abcd"),
            ("LNBITS_URL", LNBITS),
            ("LNBITS_INVOICE_KEY", "k"),
            ("LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS", "1000"),
            ("LIGHTNING_FALLBACK_TOTAL_TIMEOUT_MS", "3000"),
            ("LIGHTNING_FALLBACK_MAX_RETRIES", "2"),
            ("LIGHTNING_FALLBACK_RETRY_DELAY", "100"),
        ];
        crate::test_config::config(&[&base[..], extra].concat())
    }

    /// A real invoice for 2,100 sat and its payment hash.
    fn invoice() -> (String, String) {
        let inv = sign_invoice(
            Network::Bitcoin,
            2_100_000,
            "x",
            None,
            600,
            T0 / 1000,
            [7u8; 32],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        (inv.payment_request, inv.payment_hash)
    }

    fn ok(v: serde_json::Value) -> Reply {
        Reply::Respond(HttpResponse::json(200, &v), 20)
    }

    fn not_found() -> Reply {
        Reply::Respond(
            HttpResponse::json(404, &json!({"detail": "Payment does not exist."})),
            20,
        )
    }

    fn run(rt: &VirtualRuntime, cfg: &Config, h: &mut HealthBook, hash: &str) -> Verdict {
        rt.run(locate(rt, cfg, h, hash))
    }

    #[test]
    fn the_provider_that_knows_the_hash_gives_back_the_index_entry() {
        let (pr, hash) = invoice();
        let rt = VirtualRuntime::new(T0);
        rt.on(PHOENIXD, vec![not_found()]);
        rt.on(
            LND,
            vec![ok(
                json!({"state": "SETTLED", "settle_date": "1800000100", "payment_request": pr}),
            )],
        );
        rt.on(LNBITS, vec![not_found()]);
        let cfg = config(&[]);
        let mut h = HealthBook::default();
        match run(&rt, &cfg, &mut h, &hash) {
            Verdict::Found(state, record) => {
                assert_eq!(
                    state,
                    InvoiceState::Paid {
                        settled_at_secs: Some(1_800_000_100)
                    }
                );
                assert_eq!(record.provider, BackendKind::Lnd);
                assert_eq!(record.amount_sat, 2_100);
                assert_eq!(record.created_at, T0 / 1000);
                assert_eq!(record.expires_at, T0 / 1000 + 600);
                assert_eq!(record.payment_hash, hash);
            }
            v => panic!("{v:?}"),
        }
        for p in [PHOENIXD, LND, LNBITS] {
            assert_eq!(rt.calls_to(p), 1, "{p} asked once");
        }
        assert_eq!(h.get("lnd").consecutive_failures, 0);
    }

    #[test]
    fn nobody_knowing_it_is_not_found_but_an_error_is_never_a_not_found() {
        let (_, hash) = invoice();
        let cfg = config(&[]);
        let rt = VirtualRuntime::new(T0);
        for p in [PHOENIXD, LND, LNBITS] {
            rt.on(p, vec![not_found()]);
        }
        assert_eq!(
            run(&rt, &cfg, &mut HealthBook::default(), &hash),
            Verdict::NotFound
        );

        let rt = VirtualRuntime::new(T0);
        rt.on(PHOENIXD, vec![not_found()]);
        rt.on(
            LND,
            vec![Reply::Respond(
                HttpResponse::json(500, &json!({"detail": "db"})),
                10,
            )],
        );
        rt.on(LNBITS, vec![not_found()]);
        match run(&rt, &cfg, &mut HealthBook::default(), &hash) {
            Verdict::Unavailable { failures, .. } => {
                assert_eq!(failures.len(), 1);
                assert_eq!(failures[0].provider, "lnd");
                assert_eq!(failures[0].code, "upstream_error");
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(
            rt.calls_to(LND),
            3,
            "transient errors are retried within the deadline"
        );
    }

    #[test]
    fn providers_are_asked_in_parallel_within_the_deadline() {
        let (pr, hash) = invoice();
        let rt = VirtualRuntime::new(T0);
        rt.on(PHOENIXD, vec![Reply::Hang]);
        rt.on(LND, vec![Reply::Hang]);
        rt.on(
            LNBITS,
            vec![Reply::Respond(
                HttpResponse::json(
                    200,
                    &json!({"paid": false, "details": {"amount": 2_100_000, "bolt11": pr}}),
                ),
                900,
            )],
        );
        let cfg = config(&[]);
        let mut h = HealthBook::default();
        let v = run(&rt, &cfg, &mut h, &hash);
        assert!(
            matches!(v, Verdict::Found(InvoiceState::Pending, ref r) if r.provider == BackendKind::Lnbits),
            "{v:?}"
        );
        let took = rt.now_ms() - T0;
        assert!(
            took < 1_000,
            "stops at the first provider that knows it, not at the hangs' timeout: {took} ms"
        );
        assert_eq!(
            h.get("phoenixd").consecutive_failures,
            0,
            "an index-miss search never counts against health"
        );
    }

    /// Anyone can send random hashes: a 429 is not asked again, and nothing
    /// the search meets moves a breaker.
    #[test]
    fn a_429_is_not_retried_and_failures_leave_health_alone() {
        let (_, hash) = invoice();
        let cfg = config(&[("BREAKER_FAILURE_THRESHOLD", "1")]);
        let rt = VirtualRuntime::new(T0);
        rt.on(PHOENIXD, vec![not_found()]);
        rt.on(
            LND,
            vec![Reply::Respond(
                HttpResponse::json(429, &json!({"message": "slow down"})),
                5,
            )],
        );
        rt.on(
            LNBITS,
            vec![Reply::Respond(
                HttpResponse::json(500, &json!({"detail": "db"})),
                5,
            )],
        );
        let mut h = HealthBook::default();
        assert!(matches!(
            run(&rt, &cfg, &mut h, &hash),
            Verdict::Unavailable { .. }
        ));
        assert_eq!(rt.calls_to(LND), 1, "a 429 is not retried");
        for p in ["phoenixd", "lnd", "lnbits"] {
            assert_eq!(h.get(p).consecutive_failures, 0, "{p}");
            assert_eq!(
                h.admit(p, rt.now_ms(), &cfg.breaker),
                Admission::Allow,
                "{p}"
            );
        }
    }

    #[test]
    fn a_breaker_open_provider_is_not_asked_and_makes_a_miss_unavailable() {
        let (_, hash) = invoice();
        let cfg = config(&[("BREAKER_FAILURE_THRESHOLD", "1")]);
        let mut h = HealthBook::default();
        h.record_failure("lnd", "down", 1, T0, Source::Probe, &cfg.breaker);
        let rt = VirtualRuntime::new(T0);
        rt.on(PHOENIXD, vec![not_found()]);
        rt.on(LNBITS, vec![not_found()]);
        match run(&rt, &cfg, &mut h, &hash) {
            Verdict::Unavailable {
                failures,
                retry_after_secs,
            } => {
                assert_eq!(failures[0].code, "circuit_open");
                assert!(retry_after_secs >= 1);
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(rt.calls_to(LND), 0);
    }

    #[test]
    fn answers_that_do_not_hold_together_are_failures_not_findings() {
        let (pr, hash) = invoice();
        let lnbits = BackendConfig {
            kind: BackendKind::Lnbits,
            base_url: LNBITS.into(),
            credential: "k".into(),
        };
        let phoenixd = BackendConfig {
            kind: BackendKind::Phoenixd,
            base_url: PHOENIXD.into(),
            credential: "k".into(),
        };
        let ans = |p: &BackendConfig, v: serde_json::Value, h: &str| {
            interpret(p, h, Ok(HttpResponse::json(200, &v)))
        };
        // Another hash's invoice.
        assert!(matches!(
            ans(
                &phoenixd,
                json!({"isPaid": false, "invoice": pr}),
                &"ab".repeat(32)
            ),
            Answer::Failed(_)
        ));
        // No invoice in the answer.
        assert!(matches!(
            ans(&phoenixd, json!({"isPaid": false}), &hash),
            Answer::Failed(_)
        ));
        // An outgoing payment of the wallet is not its invoice.
        assert_eq!(
            ans(
                &lnbits,
                json!({"paid": true, "details": {"amount": -2_100_000, "bolt11": pr}}),
                &hash
            ),
            Answer::NotFound
        );
        // Garbage from a 200 is a failure.
        assert!(matches!(
            interpret(&phoenixd, &hash, Ok(HttpResponse::json(200, &json!("x")))),
            Answer::Failed(_)
        ));
        assert!(matches!(
            interpret(&phoenixd, &hash, Err(TransportError::Timeout)),
            Answer::Failed(_)
        ));
    }

    #[test]
    fn the_mock_is_never_asked_and_a_mock_only_chain_misses_at_once() {
        let cfg = crate::test_config::config(&[
            ("LIGHTNING_PROVIDERS", "mock"),
            ("ENVIRONMENT", "development"),
        ]);
        assert!(askable(&cfg).is_empty());
        let rt = VirtualRuntime::new(T0);
        assert_eq!(
            run(&rt, &cfg, &mut HealthBook::default(), &"ab".repeat(32)),
            Verdict::NotFound
        );
        assert!(rt.sent.borrow().is_empty());
    }

    #[test]
    fn merge_prefers_the_first_that_knows_it() {
        let rec = |k| InvoiceRecord {
            payment_hash: "h".into(),
            provider: k,
            amount_sat: 1,
            created_at: 0,
            expires_at: 1,
            settled_at: None,
            paid: false,
        };
        let f = BackendFailure {
            provider: "phoenixd".into(),
            code: "timeout",
            message: "timed out".into(),
        };
        let v = merge(
            vec![
                Answer::Failed(f.clone()),
                Answer::NotFound,
                Answer::Known(InvoiceState::Pending, rec(BackendKind::Lnbits)),
            ],
            5,
        );
        assert_eq!(
            v,
            Verdict::Found(InvoiceState::Pending, rec(BackendKind::Lnbits))
        );
        assert_eq!(merge(vec![], 5), Verdict::NotFound);
        assert_eq!(
            merge(vec![Answer::NotFound, Answer::Failed(f.clone())], 7),
            Verdict::Unavailable {
                failures: vec![f],
                retry_after_secs: 7
            }
        );
    }
}
