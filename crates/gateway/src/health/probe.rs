//! Active health checks. The regular probe is one cheap read per provider
//! (cron, every 5 minutes). The deep check adds a write and a lookup, to
//! catch what a read alone hides: a provider that answers GET but whose POST
//! fails (the 520-on-POST case).

use crate::join::join_all;
use serde::Serialize;

use crate::config::Config;
use crate::health::{HealthBook, Source};
use crate::receive::chain;
use backends::exchange;
use backends::http::Runtime;
use backends::{self, BackendConfig, BackendError, InvoiceParams};

/// A provider not checked for this long is probed live when health is read.
pub const STALE_AFTER_MS: u64 = 15 * 60 * 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutcome {
    pub provider: &'static str,
    pub latency_ms: u64,
    pub result: Result<(), BackendError>,
}

/// One cheap read of `p`.
pub async fn probe<R: Runtime>(rt: &R, cfg: &Config, p: &BackendConfig) -> ProbeOutcome {
    let start = rt.now_ms();
    let result = match p.adapter().probe_request(p) {
        None => Err(chain::cannot(p, "be probed")),
        Some(req) => match exchange::send(rt, req, cfg.retry.attempt_timeout_ms).await {
            Ok(resp) => p.kind.adapter().parse_probe(&resp),
            Err(e) => Err(e.into()),
        },
    };
    ProbeOutcome {
        provider: p.name(),
        latency_ms: rt.now_ms().saturating_sub(start),
        result,
    }
}

/// Probes `which` providers concurrently and records the outcomes.
pub async fn probe_into<R: Runtime>(
    rt: &R,
    cfg: &Config,
    book: &mut HealthBook,
    which: &[&BackendConfig],
) -> Vec<ProbeOutcome> {
    let outcomes = join_all(which.iter().map(|p| probe(rt, cfg, p))).await;
    let now = rt.now_ms();
    for o in &outcomes {
        match &o.result {
            Ok(()) => book.record_success(o.provider, o.latency_ms, now, Source::Probe),
            Err(e) => book.record_failure(
                o.provider,
                &e.to_string(),
                o.latency_ms,
                now,
                Source::Probe,
                &cfg.breaker,
            ),
        }
    }
    outcomes
}

/// Providers with no check, or only an old one.
pub fn stale<'a>(cfg: &'a Config, book: &HealthBook, now_ms: u64) -> Vec<&'a BackendConfig> {
    cfg.backends
        .iter()
        .filter(|p| match book.get(p.name()).last_check_ms {
            None => true,
            Some(t) => now_ms.saturating_sub(t) >= STALE_AFTER_MS,
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// `read`, `write` or `lookup`.
    pub step: &'static str,
    pub ok: bool,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeepReport {
    pub provider: &'static str,
    pub ok: bool,
    pub steps: Vec<Step>,
    /// A plain-words reading of the steps.
    pub diagnosis: String,
}

fn step(name: &'static str, latency_ms: u64, r: &Result<(), BackendError>) -> Step {
    Step {
        step: name,
        ok: r.is_ok(),
        latency_ms,
        code: r.as_ref().err().map(|e| e.code()),
        message: r.as_ref().err().map(|e| e.to_string()),
    }
}

/// Read, then write (a 1-sat invoice that expires in a minute), then look it up.
pub async fn deep_check<R: Runtime>(rt: &R, cfg: &Config, p: &BackendConfig) -> DeepReport {
    let read = probe(rt, cfg, p).await;
    let mut steps = vec![step("read", read.latency_ms, &read.result)];

    let params = InvoiceParams {
        amount_sat: 1,
        description: Some("lightning-fallback deep health check".into()),
        description_hash: None,
        expiry_secs: 60,
        network: cfg.network,
        notify_url: None,
    };
    let start = rt.now_ms();
    let written = chain::create_once(rt, cfg, p, &params, cfg.retry.attempt_timeout_ms).await;
    let write_result = written.as_ref().map(|_| ()).map_err(Clone::clone);
    steps.push(step(
        "write",
        rt.now_ms().saturating_sub(start),
        &write_result,
    ));

    let lookup_result = match &written {
        Ok(issued) => {
            let start = rt.now_ms();
            let r = match p.adapter().check_request(p, &issued.payment_hash) {
                None => Err(chain::cannot(p, "look invoices up")),
                Some(req) => match exchange::send(rt, req, cfg.retry.attempt_timeout_ms).await {
                    Ok(resp) => p.kind.adapter().parse_check(&resp).map(|_| ()),
                    Err(e) => Err(e.into()),
                },
            };
            steps.push(step("lookup", rt.now_ms().saturating_sub(start), &r));
            Some(r)
        }
        Err(_) => None,
    };

    let diagnosis = match (&read.result, &write_result, &lookup_result) {
        (Ok(()), Ok(()), Some(Ok(()))) => "reads, writes and lookups work".to_string(),
        (Ok(()), Err(e), _) => format!(
            "reads succeed but writes fail: the provider answers GET but its POST returned {e}; invoices cannot be created here"
        ),
        (Err(e), Ok(()), _) => format!("writes work but the health read fails ({e}); check the key's permissions"),
        (Err(r), Err(w), _) => format!("unreachable or refusing: read {r}; write {w}"),
        (_, Ok(()), Some(Err(e))) => format!("invoices can be created but not looked up ({e}); check-invoice will fail"),
        (_, Ok(()), None) => "writes work".to_string(),
    };
    DeepReport {
        provider: p.name(),
        ok: steps.iter().all(|s| s.ok),
        steps,
        diagnosis,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backends::bolt11::Network;
    use backends::http::HttpResponse;
    use futures_executor::block_on;
    use serde_json::json;
    use testkit::html_520;
    use testkit::{invoice_reply, FakeRuntime, Reply};

    fn cfg() -> Config {
        crate::test_config::config(&[
            ("LIGHTNING_PROVIDERS", "phoenixd,lnd,cln"),
            ("PHOENIXD_URL", "http://phoenixd.test"),
            ("PHOENIXD_PASSWORD", "k"),
            ("CLN_REST_URL", "http://cln.test"),
            ("CLN_RUNE", "r"),
            ("LND_REST_URL", "http://lnd.test"),
            ("LND_ADMIN_MACAROON", "ab"),
        ])
    }

    #[test]
    fn deep_check_sees_reads_working_while_writes_fail() {
        let rt = FakeRuntime::new(1_700_000_000_000);
        rt.on(
            "http://phoenixd.test/getinfo",
            vec![Reply::Respond(
                HttpResponse::json(200, &json!({"nodeId": "02ab", "channels": []})),
                5,
            )],
        );
        rt.on(
            "http://phoenixd.test/createinvoice",
            vec![Reply::Respond(html_520(), 5)],
        );
        let c = cfg();
        let r = block_on(deep_check(&rt, &c, &c.backends[0]));
        assert!(!r.ok);
        let steps: Vec<(&str, bool)> = r.steps.iter().map(|s| (s.step, s.ok)).collect();
        assert_eq!(steps, vec![("read", true), ("write", false)]);
        assert_eq!(r.steps[1].code, Some("upstream_520"));
        assert!(
            r.diagnosis.starts_with("reads succeed but writes fail"),
            "{}",
            r.diagnosis
        );
    }

    #[test]
    fn deep_check_passes_all_three_steps() {
        let rt = FakeRuntime::new(1_700_000_000_000);
        rt.on(
            "http://phoenixd.test/getinfo",
            vec![Reply::Respond(
                HttpResponse::json(200, &json!({"nodeId": "02ab", "channels": []})),
                5,
            )],
        );
        rt.on(
            "http://phoenixd.test/payments/incoming/",
            vec![Reply::Respond(
                HttpResponse::json(200, &json!({"isPaid": false, "isExpired": false})),
                5,
            )],
        );
        rt.on(
            "http://phoenixd.test/createinvoice",
            vec![invoice_reply("phoenixd", Network::Bitcoin, 5)],
        );
        let c = cfg();
        let r = block_on(deep_check(&rt, &c, &c.backends[0]));
        assert!(r.ok, "{r:?}");
        assert_eq!(r.steps.len(), 3);
    }

    #[test]
    fn probes_record_history_and_unsynced_lnd_is_offline() {
        let rt = FakeRuntime::new(1_000);
        rt.on(
            "http://phoenixd.test/getinfo",
            vec![Reply::Respond(
                HttpResponse::json(200, &json!({"nodeId": "02ab", "channels": []})),
                7,
            )],
        );
        rt.on(
            "http://lnd.test/v1/getinfo",
            vec![Reply::Respond(
                HttpResponse::json(200, &json!({"synced_to_chain": false})),
                3,
            )],
        );
        let c = cfg();
        let mut book = HealthBook::default();
        let all: Vec<&BackendConfig> = c.backends.iter().take(2).collect();
        assert_eq!(stale(&c, &book, 1_000).len(), 3);
        block_on(probe_into(&rt, &c, &mut book, &all));
        assert!(book.get("phoenixd").online());
        assert_eq!(book.get("phoenixd").history.len(), 1);
        assert!(!book.get("lnd").online());
        assert!(book
            .get("lnd")
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("not synced"));
        assert_eq!(stale(&c, &book, rt.now_ms()).len(), 1, "cln not probed yet");
        assert_eq!(stale(&c, &book, rt.now_ms() + STALE_AFTER_MS).len(), 3);
    }

    /// CLNRest answers every method on POST, so its read and write differ
    /// by path: `getinfo` works while `invoice` answers an HTML 520.
    #[test]
    fn cln_deep_check_reads_writes_and_looks_up() {
        let rt = FakeRuntime::new(1_700_000_000_000);
        rt.on(
            "http://cln.test/v1/getinfo",
            vec![Reply::Respond(
                HttpResponse::json(201, &json!({"id": "02ab", "blockheight": 900_000})),
                5,
            )],
        );
        rt.on(
            "http://cln.test/v1/invoice",
            vec![
                Reply::Respond(html_520(), 5),
                invoice_reply("cln", Network::Bitcoin, 5),
            ],
        );
        rt.on(
            "http://cln.test/v1/listinvoices",
            vec![Reply::Respond(
                HttpResponse::json(201, &json!({"invoices": [{"status": "unpaid"}]})),
                5,
            )],
        );
        let c = cfg();
        let cln = &c.backends[2];
        let r = block_on(deep_check(&rt, &c, cln));
        let steps: Vec<(&str, bool)> = r.steps.iter().map(|s| (s.step, s.ok)).collect();
        assert_eq!(steps, vec![("read", true), ("write", false)]);
        assert!(
            r.diagnosis.starts_with("reads succeed but writes fail"),
            "{}",
            r.diagnosis
        );
        let r = block_on(deep_check(&rt, &c, cln));
        assert!(r.ok, "{r:?}");
        assert_eq!(r.steps.len(), 3);
    }
}
