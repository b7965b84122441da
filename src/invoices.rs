//! `POST /api/create-invoice` and `GET /api/check-invoice`.

use std::rc::Rc;

use worker::{Context, Env, Request};

use crate::body::read_json_body;
use crate::health_sync::HealthSession;
use crate::reply::Reply;
use crate::request::query;
use crate::runtime::WorkerRuntime;
use crate::store::Store;
use backends::http::Runtime;
use gateway::api::error::ApiError;
use gateway::config::Config;
use gateway::receive::chain;
use gateway::receive::invoice::{self, InvoiceRecord};
use gateway::receive::invoice_lookup::{self, Verdict};

pub async fn create(
    req: &mut Request,
    env: &Env,
    ctx: &Context,
    cfg: &Config,
) -> Result<Reply, ApiError> {
    let body = read_json_body(req).await?;
    let params = invoice::parse_create_request(&body, &cfg.limits, cfg.network)?;
    let store = Store::open(env)?;
    let rt = Rc::new(WorkerRuntime);
    let mut session = HealthSession::load(&store).await;
    let mut run = chain::CreateRun::new(rt.clone(), Rc::new(cfg.clone()), params);
    let result = run.outcome(&mut session.book).await;
    session.flush_urgent(&store).await;
    // Providers hedged away are still running: let them finish after the
    // answer so their real outcome (a timeout, or a late success) reaches
    // the breaker and the latency history.
    let tail_store = Store::open(env)?;
    ctx.wait_until(async move {
        run.settle(&mut session.book).await;
        session.flush_rest(&tail_store).await;
    });
    match result {
        Ok((issued, attempts)) => {
            // The index must exist before the client can ask about the invoice.
            store
                .put_invoice(&InvoiceRecord::from_issued(&issued), rt.now_ms() / 1000)
                .await?;
            Ok(Reply::json(
                201,
                invoice::create_response(&issued, &attempts),
            ))
        }
        Err(f) => Err(ApiError::AllBackendsFailed {
            failures: f.failures,
            attempts: f.attempts,
        }),
    }
}

pub async fn check(
    req: &Request,
    env: &Env,
    ctx: &Context,
    cfg: &Config,
) -> Result<Reply, ApiError> {
    let hash = invoice::parse_payment_hash(query(req, "payment_hash")?.as_deref())?;
    let store = Store::open(env)?;
    let rt = WorkerRuntime;
    let now = rt.now_ms() / 1000;
    // Both reads at once: one KV round trip instead of two.
    let (record, session) =
        futures_util::future::join(store.invoice(&hash), HealthSession::load(&store)).await;
    let Some(mut record) = record? else {
        return check_missing(env, ctx, cfg, &store, &hash).await;
    };
    if record.paid {
        return Ok(Reply::json(200, record.check_response(None, now)));
    }
    let provider =
        cfg.backend(record.provider.as_str())
            .ok_or_else(|| ApiError::BackendUnavailable {
                provider: record.provider.as_str().into(),
                retry_after_secs: 60,
                reason: "the provider is no longer configured on this gateway".into(),
            })?;
    let mut session = session;
    let result = chain::check_invoice(&rt, cfg, &mut session.book, provider, &hash).await;
    session.flush(env, ctx).await;
    let state = result.map_err(|u| ApiError::BackendUnavailable {
        provider: provider.name().into(),
        retry_after_secs: u.retry_after_secs,
        reason: u.reason,
    })?;
    if record.apply(state, now) {
        // Best effort: a lost write only means the next check asks again.
        if let Err(e) = store.put_invoice(&record, now).await {
            worker::console_warn!("could not cache paid state: {}", e.message());
        }
    }
    Ok(Reply::json(200, record.check_response(Some(state), now)))
}

/// The index has no entry for `hash`: KV may not have it here yet (another
/// location wrote it a moment ago). Every provider that can look it up is
/// asked; one that knows it repairs the entry, so later checks go straight to it.
async fn check_missing(
    env: &Env,
    ctx: &Context,
    cfg: &Config,
    store: &Store,
    hash: &str,
) -> Result<Reply, ApiError> {
    let rt = WorkerRuntime;
    let mut session = HealthSession::load(store).await;
    let verdict = invoice_lookup::locate(&rt, cfg, &mut session.book, hash).await;
    session.flush(env, ctx).await;
    let now = rt.now_ms() / 1000;
    match verdict {
        Verdict::Found(state, mut record) => {
            record.apply(state, now);
            // Best effort: a lost write only means the next check searches again.
            match store.put_invoice(&record, now).await {
                Ok(()) => worker::console_log!(
                    "check-invoice: index entry for {hash} repaired from {}",
                    record.provider.as_str()
                ),
                Err(e) => {
                    worker::console_warn!("could not repair the index entry: {}", e.message())
                }
            }
            Ok(Reply::json(200, record.check_response(Some(state), now)))
        }
        Verdict::NotFound => Err(ApiError::InvoiceNotFound),
        Verdict::Unavailable {
            failures,
            retry_after_secs,
        } => Err(ApiError::InvoiceLookupUnavailable {
            failures,
            retry_after_secs,
        }),
    }
}
