//! `GET /api/lightning/health` (JSON, optionally a deep check) and
//! `GET /status` (HTML), plus the cron probe.

use gateway::join::join_all;
use serde_json::Value;
use worker::{Context, Env, Request};

use crate::health_sync::HealthSession;
use crate::reply::Reply;
use crate::request::{header, query, require_admin};
use crate::runtime::WorkerRuntime;
use crate::store::Store;
use backends::http::Runtime;
use gateway::api::error::ApiError;
use gateway::config::Config;
use gateway::health::attention as health_attention;
use gateway::health::probe;
use gateway::health::report::{self, HealthReport, Overall};
use gateway::health::status_page;
use gateway::health::{HealthBook, Source};
use gateway::receive::watch::engine::WatchStats;

/// The current report: probes providers with no recent check first, so a
/// fresh deployment reports facts rather than guesses.
async fn current(
    env: &Env,
    ctx: &Context,
    cfg: &Config,
    deep: bool,
) -> Result<(HealthReport, Option<Value>), ApiError> {
    let store = Store::open(env)?;
    let rt = WorkerRuntime;
    let mut session = HealthSession::load(&store).await;
    let stale = probe::stale(cfg, &session.book, rt.now_ms());
    if !deep && !stale.is_empty() {
        probe::probe_into(&rt, cfg, &mut session.book, &stale).await;
    }
    let deep_reports = if deep {
        let reports = join_all(cfg.backends.iter().map(|p| probe::deep_check(&rt, cfg, p))).await;
        let now = rt.now_ms();
        for r in &reports {
            let latency = r.steps.iter().map(|s| s.latency_ms).max().unwrap_or(0);
            if r.ok {
                session
                    .book
                    .record_success(r.provider, latency, now, Source::Probe);
            } else {
                session.book.record_failure(
                    r.provider,
                    &r.diagnosis,
                    latency,
                    now,
                    Source::Probe,
                    &cfg.breaker,
                );
            }
        }
        Some(serde_json::to_value(&reports).map_err(|e| ApiError::Internal(e.to_string()))?)
    } else {
        None
    };
    let report = report::report(cfg, &session.book, rt.now_ms());
    session.flush(env, ctx).await;
    Ok((report, deep_reports))
}

/// Who asks: the admin (its key checked) or anyone.
#[derive(Clone, Copy)]
struct Caller {
    /// Sees the queue and watch figures: the admin, or anyone with
    /// `STATUS_DETAILS_PUBLIC=true`.
    details: bool,
    /// Reads fresh figures. Everyone else reads the isolate's copy, at most
    /// `FIGURES_MAX_AGE_MS` old, so anonymous load reaches the queue's
    /// shards at most that often per isolate.
    admin: bool,
}

/// A wrong key is refused (and counted), not quietly served the public view.
fn caller(req: &Request, cfg: &Config) -> Result<Caller, ApiError> {
    if header(req, "authorization").is_some() {
        require_admin(req, cfg)?;
        return Ok(Caller {
            details: true,
            admin: true,
        });
    }
    Ok(Caller {
        details: cfg.status_details_public,
        admin: false,
    })
}

pub async fn health(
    req: &Request,
    env: &Env,
    ctx: &Context,
    cfg: &Config,
) -> Result<Reply, ApiError> {
    let deep = match query(req, "deep")?.as_deref() {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") => true,
        Some(_) => {
            return Err(ApiError::InvalidQuery {
                param: "deep",
                message: "must be 1 or 0".into(),
            })
        }
    };
    if deep {
        require_admin(req, cfg)?;
    }
    let caller = caller(req, cfg)?;
    let (report, deep_reports) = current(env, ctx, cfg, deep).await?;
    let figures = figures(env, caller.admin).await;
    let attention = health_attention::reasons(
        figures.queue.as_ref(),
        figures.watch.as_ref().ok(),
        WorkerRuntime.now_ms(),
    );
    let mut v = serde_json::to_value(&report).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(obj) = v.as_object_mut() {
        if !attention.is_empty() {
            if report.status == Overall::Healthy {
                obj.insert("status".into(), Overall::Degraded.as_str().into());
            }
            obj.insert("attention".into(), serde_json::json!(attention));
        }
        if let Some(d) = deep_reports {
            obj.insert("deep".into(), d);
        }
        if caller.details {
            if let Some(q) = figures.queue {
                obj.insert("queue".into(), q);
            }
            obj.insert("invoice_watch".into(), watch_view(&figures.watch));
        }
    }
    Ok(Reply::json(report.http_status(), v))
}

pub async fn status_page(
    req: &Request,
    env: &Env,
    ctx: &Context,
    cfg: &Config,
) -> Result<Reply, ApiError> {
    let caller = caller(req, cfg)?;
    let (mut report, _) = current(env, ctx, cfg, false).await?;
    let figures = figures(env, caller.admin).await;
    let attention = health_attention::reasons(
        figures.queue.as_ref(),
        figures.watch.as_ref().ok(),
        WorkerRuntime.now_ms(),
    );
    if !attention.is_empty() && report.status == Overall::Healthy {
        report.status = Overall::Degraded;
    }
    Ok(Reply::html(
        200,
        if caller.details {
            status_page::render_with(
                &report,
                figures.queue.as_ref(),
                Some(&watch_view(&figures.watch)),
                &attention,
            )
        } else {
            status_page::render_with(&report, None, None, &attention)
        },
    ))
}

/// The queue's and the watch's figures.
#[derive(Clone)]
struct Figures {
    queue: Option<Value>,
    watch: Result<WatchStats, ApiError>,
}

/// Per isolate: how old the figures an anonymous caller is shown may be.
/// Each shard keeps its own figures for as long again, so a figure is at
/// most twice this old (30 s).
const FIGURES_MAX_AGE_MS: u64 = 15_000;

thread_local! {
    static FIGURES: std::cell::RefCell<Option<(u64, Figures)>> = const { std::cell::RefCell::new(None) };
}

async fn figures(env: &Env, fresh: bool) -> Figures {
    let now = WorkerRuntime.now_ms();
    if !fresh {
        let cached = FIGURES.with(|f| {
            f.borrow()
                .as_ref()
                .filter(|(at, _)| now.saturating_sub(*at) < FIGURES_MAX_AGE_MS)
                .map(|(_, v)| v.clone())
        });
        if let Some(f) = cached {
            return f;
        }
    }
    let (queue, watch) = futures_util::future::join(queue_stats(env), watch_stats(env)).await;
    let f = Figures { queue, watch };
    FIGURES.with(|c| *c.borrow_mut() = Some((now, f.clone())));
    f
}

/// Queue depth, unknown, oldest, dead letters, payouts waiting for their
/// backend and overpaid ones, when payouts are enabled.
async fn queue_stats(env: &Env) -> Option<serde_json::Value> {
    crate::queue::payout_config(env).ok()?;
    Some(
        crate::payouts::stats(env)
            .await
            .unwrap_or_else(|e| e.to_json()),
    )
}

/// Invoices watched, paid in the last hour, events waiting for delivery
/// and the oldest undelivered one; the error instead if the watch is down.
async fn watch_stats(env: &Env) -> Result<WatchStats, ApiError> {
    crate::invoice_events::stats(env).await
}

fn watch_view(w: &Result<WatchStats, ApiError>) -> Value {
    match w {
        Ok(s) => s.view(),
        Err(e) => e.to_json(),
    }
}

/// The cron tick: one probe per provider, written as one KV update.
pub async fn cron_probe(env: &Env, cfg: &Config) -> Result<HealthBook, ApiError> {
    let store = Store::open(env)?;
    let rt = WorkerRuntime;
    let mut book = store.health().await;
    let all: Vec<_> = cfg.backends.iter().collect();
    probe::probe_into(&rt, cfg, &mut book, &all).await;
    // Written only on a change that matters (a breaker or a provider's
    // state), or when the stored copy is older than the flush interval: a
    // steady deployment's cron costs at most 96 KV writes a day, not 288.
    if let Some(w) = store.commit_health(&book.take_journal(), "probe") {
        store.write_health(w).await;
    }
    Ok(store.health().await)
}
