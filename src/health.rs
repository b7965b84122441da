//! `GET /api/lightning/health` (JSON, optionally a deep check) and
//! `GET /status` (HTML), plus the cron probe.

use futures_util::future::join_all;
use serde_json::Value;
use worker::{Context, Env, Request};

use crate::health_sync::HealthSession;
use crate::reply::Reply;
use crate::request::{query, require_admin};
use crate::runtime::WorkerRuntime;
use crate::store::Store;
use backends::http::Runtime;
use gateway::api::error::ApiError;
use gateway::config::Config;
use gateway::health::probe;
use gateway::health::report::{self, HealthReport};
use gateway::health::status_page;
use gateway::health::{HealthBook, Source};

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
    let (report, deep_reports) = current(env, ctx, cfg, deep).await?;
    let mut v = serde_json::to_value(&report).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(obj) = v.as_object_mut() {
        if let Some(d) = deep_reports {
            obj.insert("deep".into(), d);
        }
        let (queue, watch) = futures_util::future::join(queue_stats(env), watch_stats(env)).await;
        if let Some(q) = queue {
            obj.insert("queue".into(), q);
        }
        obj.insert("invoice_watch".into(), watch);
    }
    Ok(Reply::json(report.http_status(), v))
}

pub async fn status_page(env: &Env, ctx: &Context, cfg: &Config) -> Result<Reply, ApiError> {
    let (report, _) = current(env, ctx, cfg, false).await?;
    let (queue, watch) = futures_util::future::join(queue_stats(env), watch_stats(env)).await;
    Ok(Reply::html(
        200,
        status_page::render_with(&report, queue.as_ref(), Some(&watch)),
    ))
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
async fn watch_stats(env: &Env) -> Value {
    match crate::invoice_events::stats(env).await {
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
    // One write per cron run: the probe history the status page charts.
    if let Some(w) = store.commit_health(&book.take_journal(), true, "probe") {
        store.write_health(w).await;
    }
    Ok(store.health().await)
}
