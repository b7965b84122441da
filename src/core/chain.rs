//! The provider fallback chain for receiving: create an invoice on the first
//! provider that can, check it on the provider that issued it.
//!
//! Creating an invoice is safe to repeat and to fail over (an unpaid invoice
//! costs nothing), so every error moves on. Transient errors are first retried
//! on the same provider with backoff, within one total deadline. A provider
//! whose breaker is open is skipped without being called.

use serde::Serialize;

use crate::core::bolt11::{self, Expectation};
use crate::core::breaker::Admission;
use crate::core::config::Config;
use crate::core::health::{HealthBook, Source};
use crate::core::http::Runtime;
use crate::core::providers::{
    self, mock, CreatedInvoice, InvoiceParams, InvoiceState, ProviderConfig, ProviderError,
    ProviderKind,
};

/// One try (or skip) of one provider, reported back to the client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub provider: String,
    /// 1-based try number on this provider.
    pub attempt: u32,
    /// `ok`, `error` or `skipped`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub latency_ms: u64,
}

/// Why one provider could not serve the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderFailure {
    pub provider: String,
    pub code: &'static str,
    pub message: String,
}

/// A verified invoice and who issued it.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    pub provider: ProviderKind,
    pub payment_request: String,
    pub payment_hash: String,
    pub amount_sat: u64,
    pub created_at_secs: u64,
    pub expires_at_secs: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChainFailure {
    pub failures: Vec<ProviderFailure>,
    pub attempts: Vec<Attempt>,
}

/// Counts against the provider's health: everything except a refusal of
/// this particular request (a 4xx that is not about our credentials or URL).
fn counts_against_health(e: &ProviderError) -> bool {
    !matches!(e, ProviderError::Rejected { .. })
}

/// On a lookup, a 404 is an answer about the invoice, not about the provider.
fn lookup_counts_against_health(e: &ProviderError) -> bool {
    counts_against_health(e) && !matches!(e, ProviderError::NotFound { .. })
}

async fn call_create<R: Runtime>(
    rt: &R,
    cfg: &Config,
    p: &ProviderConfig,
    params: &InvoiceParams,
    timeout_ms: u64,
) -> Result<CreatedInvoice, ProviderError> {
    match providers::create_request(p, params) {
        None => {
            let mut preimage = [0u8; 32];
            rt.random_bytes(&mut preimage);
            let inv = mock::sign_invoice(
                cfg.network,
                params.amount_msat(),
                params.description.as_deref().unwrap_or(""),
                params.description_hash.as_deref(),
                u64::from(params.expiry_secs),
                rt.now_ms() / 1000,
                preimage,
            )
            .map_err(ProviderError::InvalidResponse)?;
            Ok(CreatedInvoice {
                payment_request: inv.payment_request,
                payment_hash: Some(inv.payment_hash),
            })
        }
        Some(req) => {
            let resp = rt.send(req, timeout_ms).await?;
            providers::parse_create(p.kind, &resp)
        }
    }
}

/// Checks that the provider made the invoice we asked for.
fn verify_created(
    cfg: &Config,
    p: &ProviderConfig,
    params: &InvoiceParams,
    created: CreatedInvoice,
    now_secs: u64,
) -> Result<Issued, ProviderError> {
    let want = Expectation {
        network: cfg.network,
        amount_msat: params.amount_msat(),
        payment_hash: created.payment_hash.as_deref(),
        now_secs,
    };
    let inv = bolt11::verify(&created.payment_request, &want)
        .map_err(|e| ProviderError::InvalidResponse(e.to_string()))?;
    if let Some(h) = &params.description_hash {
        if inv.description_hash.as_deref() != Some(h.as_str()) {
            return Err(ProviderError::InvalidResponse(
                "invoice does not commit to the requested description_hash".into(),
            ));
        }
    }
    Ok(Issued {
        provider: p.kind,
        payment_request: created.payment_request,
        payment_hash: inv.payment_hash.clone(),
        amount_sat: params.amount_sat,
        created_at_secs: now_secs,
        expires_at_secs: inv.expires_at_secs(),
    })
}

/// One creation attempt on one provider, verified; no retries, no health.
pub async fn create_once<R: Runtime>(
    rt: &R,
    cfg: &Config,
    p: &ProviderConfig,
    params: &InvoiceParams,
    timeout_ms: u64,
) -> Result<Issued, ProviderError> {
    let created = call_create(rt, cfg, p, params, timeout_ms).await?;
    verify_created(cfg, p, params, created, rt.now_ms() / 1000)
}

/// Creates an invoice on the first provider that can, recording every
/// outcome in `health`.
pub async fn create_invoice<R: Runtime>(
    rt: &R,
    cfg: &Config,
    health: &mut HealthBook,
    params: &InvoiceParams,
) -> Result<(Issued, Vec<Attempt>), ChainFailure> {
    let deadline = rt.now_ms().saturating_add(cfg.retry.total_timeout_ms);
    let mut attempts = Vec::new();
    let mut failures = Vec::new();

    for p in &cfg.providers {
        let name = p.name();
        let max_tries = match health.admit(name, rt.now_ms(), &cfg.breaker) {
            Admission::Allow => 1 + cfg.retry.max_retries,
            Admission::Probe => 1,
            Admission::Reject { retry_at_ms } => {
                let secs = retry_at_ms.saturating_sub(rt.now_ms()).div_ceil(1000);
                let message = format!("circuit breaker open; next probe in {secs}s");
                attempts.push(Attempt {
                    provider: name.into(),
                    attempt: 0,
                    outcome: "skipped",
                    code: Some("circuit_open"),
                    message: Some(message.clone()),
                    latency_ms: 0,
                });
                failures.push(ProviderFailure {
                    provider: name.into(),
                    code: "circuit_open",
                    message,
                });
                continue;
            }
        };

        let mut last: Option<ProviderError> = None;
        for n in 0..max_tries {
            let start = rt.now_ms();
            let remaining = deadline.saturating_sub(start);
            if remaining == 0 {
                last = Some(ProviderError::Timeout);
                attempts.push(Attempt {
                    provider: name.into(),
                    attempt: n + 1,
                    outcome: "skipped",
                    code: Some("deadline_exceeded"),
                    message: Some("the request's total deadline was used up".into()),
                    latency_ms: 0,
                });
                break;
            }
            let result =
                create_once(rt, cfg, p, params, cfg.retry.attempt_timeout(remaining)).await;
            let latency = rt.now_ms().saturating_sub(start);
            match result {
                Ok(issued) => {
                    health.record_success(name, latency, rt.now_ms(), Source::Request);
                    attempts.push(Attempt {
                        provider: name.into(),
                        attempt: n + 1,
                        outcome: "ok",
                        code: None,
                        message: None,
                        latency_ms: latency,
                    });
                    return Ok((issued, attempts));
                }
                Err(e) => {
                    if counts_against_health(&e) {
                        health.record_failure(
                            name,
                            &e.to_string(),
                            latency,
                            rt.now_ms(),
                            Source::Request,
                            &cfg.breaker,
                        );
                    }
                    attempts.push(Attempt {
                        provider: name.into(),
                        attempt: n + 1,
                        outcome: "error",
                        code: Some(e.code()),
                        message: Some(e.to_string()),
                        latency_ms: latency,
                    });
                    let retry =
                        e.is_transient() && n + 1 < max_tries && health.get(name).breaker_closed();
                    last = Some(e);
                    if !retry {
                        break;
                    }
                    let delay = cfg.retry.delay_ms(n, rt.random_u64());
                    if rt.now_ms().saturating_add(delay) >= deadline {
                        break;
                    }
                    rt.sleep(delay).await;
                }
            }
        }
        if let Some(e) = last {
            failures.push(ProviderFailure {
                provider: name.into(),
                code: e.code(),
                message: e.to_string(),
            });
        }
    }
    Err(ChainFailure { failures, attempts })
}

/// Why an invoice's status could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckUnavailable {
    pub retry_after_secs: u64,
    pub reason: String,
}

/// Asks the issuing provider, and only it, for an invoice's state.
pub async fn check_invoice<R: Runtime>(
    rt: &R,
    cfg: &Config,
    health: &mut HealthBook,
    p: &ProviderConfig,
    payment_hash: &str,
) -> Result<InvoiceState, CheckUnavailable> {
    let Some(req) = providers::check_request(p, payment_hash) else {
        return Ok(InvoiceState::Pending); // the mock never sees a payment
    };
    let name = p.name();
    let max_tries = match health.admit(name, rt.now_ms(), &cfg.breaker) {
        Admission::Allow => 1 + cfg.retry.max_retries,
        Admission::Probe => 1,
        Admission::Reject { retry_at_ms } => {
            return Err(CheckUnavailable {
                retry_after_secs: retry_at_ms
                    .saturating_sub(rt.now_ms())
                    .div_ceil(1000)
                    .max(1),
                reason: "circuit breaker open".into(),
            })
        }
    };
    let deadline = rt.now_ms().saturating_add(cfg.retry.total_timeout_ms);
    let mut last = ProviderError::Timeout;
    for n in 0..max_tries {
        let start = rt.now_ms();
        let remaining = deadline.saturating_sub(start);
        if remaining == 0 {
            break;
        }
        let result = match rt
            .send(req.clone(), cfg.retry.attempt_timeout(remaining))
            .await
        {
            Ok(resp) => providers::parse_check(p.kind, &resp),
            Err(e) => Err(e.into()),
        };
        let latency = rt.now_ms().saturating_sub(start);
        match result {
            Ok(state) => {
                health.record_success(name, latency, rt.now_ms(), Source::Request);
                return Ok(state);
            }
            Err(e) => {
                if lookup_counts_against_health(&e) {
                    health.record_failure(
                        name,
                        &e.to_string(),
                        latency,
                        rt.now_ms(),
                        Source::Request,
                        &cfg.breaker,
                    );
                }
                let retry =
                    e.is_transient() && n + 1 < max_tries && health.get(name).breaker_closed();
                last = e;
                if !retry {
                    break;
                }
                let delay = cfg.retry.delay_ms(n, rt.random_u64());
                if rt.now_ms().saturating_add(delay) >= deadline {
                    break;
                }
                rt.sleep(delay).await;
            }
        }
    }
    let retry_after_secs = match health.get(name).breaker {
        crate::core::breaker::BreakerState::Open { until_ms } => {
            until_ms.saturating_sub(rt.now_ms()).div_ceil(1000).max(1)
        }
        _ => 5,
    };
    Err(CheckUnavailable {
        retry_after_secs,
        reason: last.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::bolt11::Network;
    use crate::core::breaker::BreakerState;
    use crate::core::config::Config;
    use crate::core::http::{HttpResponse, TransportError};
    use crate::core::testing::{self, invoice_reply, FakeRuntime, Reply};
    use futures_executor::block_on;
    use serde_json::json;

    const ALBY: &str = "http://alby.test";
    const LND: &str = "http://lnd.test";
    const LNBITS: &str = "http://lnbits.test";

    fn config(extra: &[(&str, &str)]) -> Config {
        let base = [
            ("LIGHTNING_PROVIDERS", "alby,lnd,lnbits"),
            ("ALBY_API_URL", ALBY),
            ("ALBY_API_KEY", "k"),
            ("LND_REST_URL", LND),
            ("LND_ADMIN_MACAROON", "abcd"),
            ("LNBITS_URL", LNBITS),
            ("LNBITS_INVOICE_KEY", "k"),
            ("LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS", "1000"),
            ("LIGHTNING_FALLBACK_TOTAL_TIMEOUT_MS", "20000"),
            ("LIGHTNING_FALLBACK_MAX_RETRIES", "2"),
            ("LIGHTNING_FALLBACK_RETRY_DELAY", "100"),
        ];
        testing::config(&[&base[..], extra].concat())
    }

    fn params() -> InvoiceParams {
        InvoiceParams {
            amount_sat: 1_000,
            description: Some("test".into()),
            description_hash: None,
            expiry_secs: 3600,
        }
    }

    fn err(status: u16) -> Reply {
        Reply::Respond(HttpResponse::json(status, &json!({"detail": "boom"})), 10)
    }

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn first_healthy_provider_wins() {
        let rt = FakeRuntime::new(T0);
        rt.on(ALBY, vec![invoice_reply("alby", Network::Bitcoin, 20)]);
        let mut h = HealthBook::default();
        let (issued, attempts) = block_on(create_invoice(&rt, &config(&[]), &mut h, &params()))
            .unwrap_or_else(|f| panic!("{f:?}"));
        assert_eq!(issued.provider, ProviderKind::Alby);
        assert_eq!(attempts.len(), 1);
        assert_eq!(rt.calls_to(LND), 0);
        assert!(h.get("alby").online());
    }

    #[test]
    fn transient_errors_retry_with_backoff_then_fail_over_in_order() {
        let rt = FakeRuntime::new(T0);
        rt.on(ALBY, vec![err(520)]);
        rt.on(
            LND,
            vec![Reply::Fail(TransportError::Network("refused".into()))],
        );
        rt.on(LNBITS, vec![invoice_reply("lnbits", Network::Bitcoin, 5)]);
        let mut h = HealthBook::default();
        let cfg = config(&[("BREAKER_FAILURE_THRESHOLD", "10")]);
        let (issued, attempts) = block_on(create_invoice(&rt, &cfg, &mut h, &params()))
            .unwrap_or_else(|f| panic!("{f:?}"));
        assert_eq!(issued.provider, ProviderKind::Lnbits);
        let order: Vec<(&str, u32)> = attempts
            .iter()
            .map(|a| (a.provider.as_str(), a.attempt))
            .collect();
        assert_eq!(
            order,
            vec![
                ("alby", 1),
                ("alby", 2),
                ("alby", 3),
                ("lnd", 1),
                ("lnd", 2),
                ("lnd", 3),
                ("lnbits", 1)
            ]
        );
        assert_eq!(attempts[0].code, Some("upstream_520"));
        // Four retries slept, each within its full-jitter ceiling.
        let slept = rt.slept.borrow().clone();
        assert_eq!(slept.len(), 4);
        assert!(
            slept[0] <= 100 && slept[1] <= 200 && slept[2] <= 100 && slept[3] <= 200,
            "{slept:?}"
        );
    }

    #[test]
    fn client_errors_fail_over_without_retry() {
        let rt = FakeRuntime::new(T0);
        rt.on(ALBY, vec![err(401)]);
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 5)]);
        let mut h = HealthBook::default();
        let (issued, _) = block_on(create_invoice(&rt, &config(&[]), &mut h, &params()))
            .unwrap_or_else(|f| panic!("{f:?}"));
        assert_eq!(issued.provider, ProviderKind::Lnd);
        assert_eq!(rt.calls_to(ALBY), 1);
    }

    #[test]
    fn hanging_provider_is_cut_by_the_attempt_timeout() {
        let rt = FakeRuntime::new(T0);
        rt.on(ALBY, vec![Reply::Hang]);
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 5)]);
        let mut h = HealthBook::default();
        let cfg = config(&[("LIGHTNING_FALLBACK_MAX_RETRIES", "0")]);
        let (issued, attempts) = block_on(create_invoice(&rt, &cfg, &mut h, &params()))
            .unwrap_or_else(|f| panic!("{f:?}"));
        assert_eq!(issued.provider, ProviderKind::Lnd);
        assert_eq!(attempts[0].code, Some("timeout"));
        assert_eq!(rt.sent.borrow()[0].1, 1000);
    }

    #[test]
    fn invalid_invoices_are_rejected_and_fail_over() {
        let rt = FakeRuntime::new(T0);
        // Wrong network, then garbage JSON.
        rt.on(ALBY, vec![invoice_reply("alby", Network::Testnet, 5)]);
        rt.on(
            LND,
            vec![Reply::Respond(
                HttpResponse {
                    status: 200,
                    content_type: None,
                    body: "<<garbage>>".into(),
                },
                5,
            )],
        );
        rt.on(LNBITS, vec![invoice_reply("lnbits", Network::Bitcoin, 5)]);
        let mut h = HealthBook::default();
        let (issued, attempts) = block_on(create_invoice(&rt, &config(&[]), &mut h, &params()))
            .unwrap_or_else(|f| panic!("{f:?}"));
        assert_eq!(issued.provider, ProviderKind::Lnbits);
        assert_eq!(attempts[0].code, Some("invalid_response"));
        assert!(attempts[0]
            .message
            .as_deref()
            .unwrap_or("")
            .contains("testnet"));
        assert_eq!(attempts[1].code, Some("invalid_response"));
    }

    #[test]
    fn all_failing_reports_each_provider() {
        let rt = FakeRuntime::new(T0);
        rt.on(ALBY, vec![err(503)]);
        rt.on(LND, vec![err(500)]);
        rt.on(LNBITS, vec![Reply::Hang]);
        let mut h = HealthBook::default();
        let f = block_on(create_invoice(&rt, &config(&[]), &mut h, &params())).err();
        let f = f.unwrap_or_else(|| panic!("expected failure"));
        let names: Vec<&str> = f.failures.iter().map(|x| x.provider.as_str()).collect();
        assert_eq!(names, vec!["alby", "lnd", "lnbits"]);
        assert_eq!(f.failures[2].code, "timeout");
    }

    #[test]
    fn total_deadline_bounds_the_whole_request() {
        let rt = FakeRuntime::new(T0);
        rt.on(ALBY, vec![Reply::Hang]);
        rt.on(LND, vec![Reply::Hang]);
        rt.on(LNBITS, vec![Reply::Hang]);
        let mut h = HealthBook::default();
        let cfg = config(&[
            ("LIGHTNING_FALLBACK_TOTAL_TIMEOUT_MS", "2500"),
            ("BREAKER_FAILURE_THRESHOLD", "50"),
        ]);
        let _ = block_on(create_invoice(&rt, &cfg, &mut h, &params()));
        assert!(rt.now_ms() - T0 <= 2500, "took {}", rt.now_ms() - T0);
    }

    #[test]
    fn open_breaker_skips_the_provider_without_calling_it() {
        let rt = FakeRuntime::new(T0);
        rt.on(ALBY, vec![Reply::Hang]);
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 5)]);
        let cfg = config(&[
            ("BREAKER_FAILURE_THRESHOLD", "3"),
            ("BREAKER_COOLDOWN_SECS", "30"),
        ]);
        let mut h = HealthBook::default();
        let _ = block_on(create_invoice(&rt, &cfg, &mut h, &params()));
        assert!(matches!(h.get("alby").breaker, BreakerState::Open { .. }));
        let calls = rt.calls_to(ALBY);
        let before = rt.now_ms();
        let (issued, attempts) = block_on(create_invoice(&rt, &cfg, &mut h, &params()))
            .unwrap_or_else(|f| panic!("{f:?}"));
        assert_eq!(issued.provider, ProviderKind::Lnd);
        assert_eq!(
            rt.calls_to(ALBY),
            calls,
            "open breaker must not call the provider"
        );
        assert_eq!(attempts[0].outcome, "skipped");
        assert_eq!(attempts[0].code, Some("circuit_open"));
        assert!(
            rt.now_ms() - before < 100,
            "no waiting for a known-down provider"
        );
    }

    #[test]
    fn half_open_probe_closes_the_breaker() {
        let rt = FakeRuntime::new(T0);
        rt.on(
            ALBY,
            vec![
                Reply::Hang,
                Reply::Hang,
                Reply::Hang,
                invoice_reply("alby", Network::Bitcoin, 5),
            ],
        );
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 5)]);
        let cfg = config(&[("BREAKER_COOLDOWN_SECS", "10")]);
        let mut h = HealthBook::default();
        let _ = block_on(create_invoice(&rt, &cfg, &mut h, &params()));
        assert!(matches!(h.get("alby").breaker, BreakerState::Open { .. }));
        rt.advance(10_000);
        let (issued, _) = block_on(create_invoice(&rt, &cfg, &mut h, &params()))
            .unwrap_or_else(|f| panic!("{f:?}"));
        assert_eq!(issued.provider, ProviderKind::Alby);
        assert_eq!(h.get("alby").breaker, BreakerState::Closed);
    }

    #[test]
    fn check_asks_only_the_issuer_and_reports_unavailable() {
        let rt = FakeRuntime::new(T0);
        rt.on(LND, vec![err(502)]);
        rt.on(
            ALBY,
            vec![Reply::Respond(
                HttpResponse::json(200, &json!({"state": "SETTLED"})),
                5,
            )],
        );
        let cfg = config(&[]);
        let mut h = HealthBook::default();
        let lnd = cfg
            .provider("lnd")
            .cloned()
            .unwrap_or_else(|| panic!("lnd"));
        let r = block_on(check_invoice(&rt, &cfg, &mut h, &lnd, &"ab".repeat(32)));
        assert!(matches!(r, Err(CheckUnavailable { .. })), "{r:?}");
        assert_eq!(rt.calls_to(ALBY), 0, "never ask another provider");
        assert_eq!(rt.calls_to(LND), 3);
        let alby = cfg
            .provider("alby")
            .cloned()
            .unwrap_or_else(|| panic!("alby"));
        let r = block_on(check_invoice(&rt, &cfg, &mut h, &alby, &"ab".repeat(32)));
        assert_eq!(
            r,
            Ok(InvoiceState::Paid {
                settled_at_secs: None
            })
        );
    }
}
