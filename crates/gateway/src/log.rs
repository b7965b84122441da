//! Structured log lines: one JSON object per request, cron run, queue
//! wake-up, breaker transition and payout state change, so `wrangler tail`
//! and Workers Logs can be filtered by field. Built here as plain values
//! (host-tested); the edge only prints them. Every line passes through the
//! [`Redactor`] on its way out.

use serde::Serialize;
use serde_json::Value;

use crate::api::routes::Route;
use crate::health::HealthBook;
use crate::redact::Redactor;
use crate::time::iso8601_secs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    /// `LOG_LEVEL`: the least level written. `info` (the default) writes a
    /// line per request; `warn` keeps 5xx answers, 403s naming a setting the
    /// deployment lacks, failures, breaker openings and the like, and saves
    /// the cost of a line on every other request. Anything else is `info`: a
    /// typo never hides logs.
    pub fn threshold(setting: Option<&str>) -> Level {
        match setting.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            Some("warn") | Some("warning") => Level::Warn,
            Some("error") => Level::Error,
            _ => Level::Info,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Request(RequestLog),
    Cron(CronLog),
    QueueWake(WakeLog),
    Breaker(BreakerLog),
    Payout(PayoutLog),
    /// Something worth an operator's eye that is none of the above.
    Notice {
        what: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    pub ts: String,
    pub level: Level,
    #[serde(flatten)]
    pub event: Event,
}

impl LogLine {
    pub fn new(now_ms: u64, level: Level, event: Event) -> LogLine {
        LogLine {
            ts: ts(now_ms),
            level,
            event,
        }
    }

    /// The line as printed: compact JSON, redacted.
    pub fn render(&self, redactor: &Redactor) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        redactor.redact(&mut v);
        v.to_string()
    }
}

/// RFC 3339 with milliseconds.
fn ts(now_ms: u64) -> String {
    let secs = iso8601_secs(now_ms / 1000);
    format!("{}.{:03}Z", secs.trim_end_matches('Z'), now_ms % 1000)
}

/// One provider attempt, as the invoice routes report it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptLog {
    pub provider: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub latency_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RequestLog {
    pub method: String,
    /// The route's path template (`/api/payouts/{id}`), or `unmatched`.
    pub route: String,
    /// Only for unmatched paths (cut to 128 bytes): the template says the rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub status: u16,
    pub duration_ms: u64,
    /// The error's stable code, for any 4xx/5xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error's message, for 5xx only (4xx say enough by their code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptLog>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_hash: Option<String>,
    /// check-invoice: `pending`, `paid` or `expired`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout_id: Option<String>,
    /// The payout's status after the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout_status: Option<String>,
    /// Its status before, when this request changed it (`new` for a create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<bool>,
    /// Cloudflare's ray id, to find the request in Cloudflare's own views.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ray: Option<String>,
}

/// The route's path template: ids are not part of the route.
pub fn route_label(route: Option<&Route>, path: &str) -> String {
    let Some(route) = route else {
        return "unmatched".into();
    };
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    match route {
        Route::Preflight => "preflight".into(),
        Route::GetPayout(id)
        | Route::RetryPayout(id)
        | Route::CancelPayout(id)
        | Route::RedeliverWebhook(id) => path.replacen(&format!("/{id}"), "/{id}", 1),
        Route::LnurlPay(_) => "/.well-known/lnurlp/{name}".into(),
        Route::LnurlCallback(_) => "/lnurlp/{name}/callback".into(),
        Route::LnurlVerify(_) => "/lnurlp/verify/{payment_hash}".into(),
        Route::CheckoutPage(_) => "/pay/{payment_hash}".into(),
        Route::RedeliverInvoiceWebhook(_) => {
            "/api/invoices/{payment_hash}/redeliver-webhook".into()
        }
        _ => path.into(),
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn attempts(v: &Value) -> Option<Vec<AttemptLog>> {
    let list = v.as_array()?;
    Some(
        list.iter()
            .map(|a| AttemptLog {
                provider: text(a, "provider").unwrap_or_default(),
                outcome: text(a, "outcome").unwrap_or_default(),
                code: text(a, "code"),
                message: text(a, "message").map(|m| cut(&m, 200)),
                latency_ms: a["latency_ms"].as_u64().unwrap_or(0),
            })
            .collect(),
    )
}

/// What a request did, as the log line shows it.
pub struct Answered<'a> {
    pub method: &'a str,
    pub route: Option<&'a Route>,
    pub path: &'a str,
    pub status: u16,
    /// The JSON body of the answer, if it has one.
    pub body: Option<&'a Value>,
    /// The answer replays an earlier payout create (`Idempotent-Replayed`).
    pub replayed: bool,
    pub duration_ms: u64,
    pub ray: Option<String>,
}

impl RequestLog {
    /// Reads the facts from the answer itself, so handlers need no logging code.
    pub fn from_answer(a: &Answered) -> RequestLog {
        let mut log = RequestLog {
            method: a.method.to_string(),
            route: route_label(a.route, a.path),
            path: a.route.is_none().then(|| cut(a.path, 128)),
            status: a.status,
            duration_ms: a.duration_ms,
            ray: a.ray.clone(),
            ..RequestLog::default()
        };
        let Some(body) = a.body else { return log };
        let err = body.get("error").filter(|e| e.is_object());
        if let Some(e) = err {
            log.error = text(e, "code");
            if a.status >= 500 {
                log.message = text(e, "message").map(|m| cut(&m, 300));
            }
            log.attempts = e.get("attempts").and_then(attempts);
            log.provider = text(e, "provider");
        }
        match a.route {
            Some(Route::CreateInvoice | Route::CheckInvoice) if err.is_none() => {
                log.provider = text(body, "provider");
                log.payment_hash = text(body, "payment_hash");
                log.attempts = body.get("attempts").and_then(attempts);
                if matches!(a.route, Some(Route::CheckInvoice)) {
                    log.invoice_status = text(body, "status");
                }
            }
            Some(
                route @ (Route::CreatePayout
                | Route::GetPayout(_)
                | Route::RetryPayout(_)
                | Route::CancelPayout(_)
                | Route::RedeliverWebhook(_)),
            ) => {
                log.payout_id = text(body, "id").or_else(|| match route {
                    Route::GetPayout(id)
                    | Route::RetryPayout(id)
                    | Route::CancelPayout(id)
                    | Route::RedeliverWebhook(id) => Some(id.clone()),
                    _ => None,
                });
                log.payout_status = text(body, "status");
                log.payment_hash = text(body, "payment_hash");
                let stored = log.payout_status.is_some();
                log.payout_from = match route {
                    Route::CreatePayout if stored && !a.replayed => Some("new".into()),
                    Route::RetryPayout(_) if stored => Some("failed".into()),
                    // Only a queued payout can be cancelled (it ends failed).
                    Route::CancelPayout(_) if stored && err.is_none() => Some("queued".into()),
                    _ => None,
                };
                if a.replayed {
                    log.replayed = Some(true);
                }
            }
            _ => {}
        }
        log
    }

    /// 5xx: error. A 403 saying the deployment lacks a setting the client
    /// asked for (`webhooks_disabled`, `payouts_disabled`, ...): warn, so an
    /// operator at `LOG_LEVEL=warn` still sees what to configure. Other
    /// answers: info.
    pub fn level(&self) -> Level {
        match self.status {
            500.. => Level::Error,
            403 if self
                .error
                .as_deref()
                .is_some_and(|c| c.ends_with("_disabled")) =>
            {
                Level::Warn
            }
            _ => Level::Info,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CronLog {
    pub cron: String,
    pub duration_ms: u64,
    /// `healthy`, `degraded` or `down` after the probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Queue shards woken, and how many of them answered an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_shards: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_errors: Option<usize>,
    /// Invoice watch shards that answered an error when woken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_errors: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl CronLog {
    pub fn level(&self) -> Level {
        if self.error.is_some() || self.health.as_deref() == Some("down") {
            Level::Error
        } else if self.queue_errors.unwrap_or(0) > 0
            || self.watch_errors.unwrap_or(0) > 0
            || self.health.as_deref() == Some("degraded")
        {
            Level::Warn
        } else {
            Level::Info
        }
    }
}

/// One wake-up of a payout queue shard (its alarm, or cron's drain call).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct WakeLog {
    /// `alarm` or `cron`.
    pub trigger: String,
    pub duration_ms: u64,
    /// False when another wake-up held the lease, or the wake-up failed.
    pub drained: bool,
    pub processed: usize,
    pub errors: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_wake: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl WakeLog {
    pub fn level(&self) -> Level {
        if self.error.is_some() {
            Level::Error
        } else if self.errors > 0 {
            Level::Warn
        } else {
            Level::Info
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerLog {
    pub provider: String,
    pub from: String,
    pub to: String,
    pub consecutive_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `request` or `probe`: what saw the outcome.
    pub source: String,
}

impl BreakerLog {
    pub fn level(&self) -> Level {
        if self.to == "open" {
            Level::Warn
        } else {
            Level::Info
        }
    }
}

/// The breakers that changed state between two copies of the health book.
pub fn breaker_transitions(
    before: &HealthBook,
    after: &HealthBook,
    source: &str,
) -> Vec<BreakerLog> {
    after
        .providers
        .iter()
        .filter_map(|(name, h)| {
            let old = before.get(name);
            (old.breaker.name() != h.breaker.name()).then(|| BreakerLog {
                provider: name.clone(),
                from: old.breaker.name().into(),
                to: h.breaker.name().into(),
                consecutive_failures: h.consecutive_failures,
                last_error: h.last_error.as_deref().map(|e| cut(e, 200)),
                source: source.into(),
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PayoutLog {
    pub payout_id: String,
    /// `new` for a payout just stored.
    pub from: String,
    pub to: String,
    pub payment_hash: String,
}

impl PayoutLog {
    pub fn level(&self) -> Level {
        match self.to.as_str() {
            "failed" | "unknown" => Level::Warn,
            _ => Level::Info,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_level_threshold_never_hides_logs_on_a_typo() {
        assert_eq!(Level::threshold(None), Level::Info);
        assert_eq!(Level::threshold(Some(" WARN ")), Level::Warn);
        assert_eq!(Level::threshold(Some("error")), Level::Error);
        assert_eq!(Level::threshold(Some("eror")), Level::Info);
        assert!(Level::Info < Level::Warn && Level::Warn < Level::Error);
    }
    use crate::health::breaker::{BreakerPolicy, BreakerState};
    use crate::health::Source;
    use serde_json::json;

    fn answered<'a>(
        route: Option<&'a Route>,
        path: &'a str,
        status: u16,
        body: &'a Value,
    ) -> Answered<'a> {
        Answered {
            method: "POST",
            route,
            path,
            status,
            body: Some(body),
            replayed: false,
            duration_ms: 12,
            ray: None,
        }
    }

    #[test]
    fn create_invoice_line_has_provider_and_attempts() {
        let body = json!({"payment_request": "lnbc1...", "payment_hash": "ab".repeat(32), "provider": "lnd",
            "attempts": [{"provider": "alby", "attempt": 1, "outcome": "error", "code": "upstream_520", "message": "HTTP 520", "latency_ms": 40, "started_ms": 0},
                         {"provider": "lnd", "attempt": 1, "outcome": "ok", "latency_ms": 20, "started_ms": 41}]});
        let log = RequestLog::from_answer(&answered(
            Some(&Route::CreateInvoice),
            "/api/create-invoice",
            201,
            &body,
        ));
        let line = LogLine::new(1_700_000_000_123, log.level(), Event::Request(log));
        let v: Value = serde_json::from_str(&line.render(&Redactor::default())).unwrap();
        assert_eq!(v["ts"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["event"], "request");
        assert_eq!(v["level"], "info");
        assert_eq!(v["route"], "/api/create-invoice");
        assert_eq!(v["status"], 201);
        assert_eq!(v["duration_ms"], 12);
        assert_eq!(v["provider"], "lnd");
        assert_eq!(v["attempts"][0]["code"], "upstream_520");
        assert_eq!(v["attempts"][1]["outcome"], "ok");
        assert!(v.get("error").is_none() && v.get("path").is_none());
        // The invoice itself is not logged.
        assert!(!v.to_string().contains("lnbc1"));
    }

    #[test]
    fn errors_carry_their_code_and_5xx_their_message() {
        let body = json!({"error": {"code": "all_providers_failed", "message": "every provider failed: alby",
            "attempts": [{"provider": "alby", "outcome": "error", "code": "timeout", "latency_ms": 5000}]}});
        let log = RequestLog::from_answer(&answered(
            Some(&Route::CreateInvoice),
            "/api/create-invoice",
            503,
            &body,
        ));
        assert_eq!(log.error.as_deref(), Some("all_providers_failed"));
        assert_eq!(log.message.as_deref(), Some("every provider failed: alby"));
        assert_eq!(log.attempts.as_ref().map(Vec::len), Some(1));
        assert_eq!(log.level(), Level::Error);
        // A 403 naming a setting the deployment lacks is a warning; other
        // 4xx answers are info.
        let level = |status, code: &str| {
            let body = json!({"error": {"code": code, "message": "m"}});
            RequestLog::from_answer(&answered(
                Some(&Route::CreatePayout),
                "/api/payouts",
                status,
                &body,
            ))
            .level()
        };
        assert_eq!(level(403, "webhooks_disabled"), Level::Warn);
        assert_eq!(level(403, "payouts_disabled"), Level::Warn);
        assert_eq!(level(401, "unauthorized"), Level::Info);
        assert_eq!(level(400, "invalid_webhook_url"), Level::Info);

        let body = json!({"error": {"code": "invalid_amount", "message": "`amount`: bad"}});
        let log = RequestLog::from_answer(&answered(None, "/x?y", 404, &body));
        assert_eq!(
            (log.error.as_deref(), log.message),
            (Some("invalid_amount"), None)
        );
        assert_eq!(log.route, "unmatched");
        assert_eq!(log.path.as_deref(), Some("/x?y"));
    }

    #[test]
    fn payout_lines_have_id_and_state_change_never_the_preimage() {
        let preimage = "5c1e0c3c2bd5a1e8f37b0d6c9e4a2f1b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f";
        let body = json!({"id": "po_abc", "status": "succeeded", "payment_hash": "cd".repeat(32), "preimage": preimage});
        let route = Route::CreatePayout;
        let log = RequestLog::from_answer(&answered(Some(&route), "/api/payouts", 201, &body));
        assert_eq!(log.payout_id.as_deref(), Some("po_abc"));
        assert_eq!(log.payout_from.as_deref(), Some("new"));
        assert_eq!(log.payout_status.as_deref(), Some("succeeded"));
        let out = LogLine::new(0, Level::Info, Event::Request(log)).render(&Redactor::default());
        assert!(!out.contains(preimage), "{out}");

        let mut a = answered(Some(&route), "/api/payouts", 200, &body);
        a.replayed = true;
        let log = RequestLog::from_answer(&a);
        assert_eq!((log.payout_from, log.replayed), (None, Some(true)));

        let route = Route::RetryPayout("po_abc".into());
        let log = RequestLog::from_answer(&answered(
            Some(&route),
            "/api/payouts/po_abc/retry/",
            202,
            &json!({"id": "po_abc", "status": "queued"}),
        ));
        assert_eq!(log.route, "/api/payouts/{id}/retry");
        assert_eq!(log.payout_from.as_deref(), Some("failed"));

        let route = Route::CancelPayout("po_abc".into());
        let log = RequestLog::from_answer(&answered(
            Some(&route),
            "/api/payouts/po_abc/cancel",
            200,
            &json!({"id": "po_abc", "status": "failed"}),
        ));
        assert_eq!(log.route, "/api/payouts/{id}/cancel");
        assert_eq!(
            (log.payout_from.as_deref(), log.payout_status.as_deref()),
            (Some("queued"), Some("failed"))
        );
        let refused = json!({"error": {"code": "cancel_not_allowed", "message": "in flight"}});
        let log = RequestLog::from_answer(&answered(
            Some(&route),
            "/api/payouts/po_abc/cancel",
            409,
            &refused,
        ));
        assert_eq!(
            (
                log.payout_id.as_deref(),
                log.payout_from,
                log.error.as_deref()
            ),
            (Some("po_abc"), None, Some("cancel_not_allowed"))
        );
        let log = RequestLog::from_answer(&answered(
            Some(&Route::PayoutAttention),
            "/api/payouts/attention",
            200,
            &json!({"payouts": []}),
        ));
        assert_eq!(
            (log.route.as_str(), log.payout_id),
            ("/api/payouts/attention", None)
        );

        let route = Route::GetPayout("po_x".into());
        let log = RequestLog::from_answer(&answered(
            Some(&route),
            "/api/payouts/po_x",
            404,
            &json!({"error": {"code": "payout_not_found", "message": "no"}}),
        ));
        assert_eq!(log.route, "/api/payouts/{id}");
        assert_eq!(log.payout_id.as_deref(), Some("po_x"));
        assert_eq!(log.payout_from, None);
    }

    #[test]
    fn breaker_transitions_are_listed_once_per_change() {
        let policy = BreakerPolicy {
            failure_threshold: 2,
            cooldown_ms: 1_000,
        };
        let before = HealthBook::default();
        let mut after = before.clone();
        after.record_failure("lnd", "HTTP 500", 10, 1_000, Source::Request, &policy);
        assert!(breaker_transitions(&before, &after, "request").is_empty());
        let mid = after.clone();
        after.record_failure("lnd", "HTTP 500", 10, 1_010, Source::Request, &policy);
        let lines = breaker_transitions(&mid, &after, "request");
        assert_eq!(lines.len(), 1);
        let b = &lines[0];
        assert_eq!(b.level(), Level::Warn);
        assert_eq!(
            (b.from.as_str(), b.to.as_str(), b.consecutive_failures),
            ("closed", "open", 2)
        );
        assert_eq!(
            after.get("lnd").breaker,
            BreakerState::Open { until_ms: 2_010 }
        );
    }
}
