//! `POST /api/create-invoice` and `GET /api/check-invoice`.

use std::rc::Rc;

use worker::{Context, Env, Request};

use crate::body::read_json_body;
use crate::checkout;
use crate::health_sync::HealthSession;
use crate::reply::Reply;
use crate::request::{header, public_origin, query};
use crate::runtime::WorkerRuntime;
use crate::store::Store;
use crate::watch_link;
use backends::http::Runtime;
use backends::identity::BackendId;
use gateway::api::error::ApiError;
use gateway::api::rate_limit::Limited;
use gateway::api::server_timing::ServerTiming;
use gateway::config::Config;
use gateway::payout::queue_call::REPLAYED_HEADER;
use gateway::receive::admit::{self, CreateInvoice};
use gateway::receive::chain;
use gateway::receive::invoice::{self, InvoiceRecord};
use gateway::receive::invoice_lookup::{self, Verdict};
use gateway::receive::notice;
use gateway::receive::watch::call::KeyBegin;
use gateway::receive::watch::record::WatchedInvoice;
use gateway::receive::watch::schedule::demand_gap_ms;
use serde_json::Value;

/// `POST /api/create-invoice`. With an `Idempotency-Key` (and the invoice
/// key), the key is taken first and answered last, so a retried order
/// gets the one invoice made for it.
pub async fn create(
    req: &mut Request,
    env: &Env,
    ctx: &Context,
    cfg: &Config,
) -> Result<Reply, ApiError> {
    let started = WorkerRuntime.now_ms();
    let mut timing = ServerTiming::default();
    let reply = create_timed(req, env, ctx, cfg, &mut timing).await?;
    Ok(with_timing(reply, cfg, timing, started))
}

/// `Server-Timing` on an answer, where `SERVER_TIMING` is on: the steps,
/// then the `total` since `started_ms`.
pub(crate) fn with_timing(
    reply: Reply,
    cfg: &Config,
    mut timing: ServerTiming,
    started_ms: u64,
) -> Reply {
    if !cfg.server_timing {
        return reply;
    }
    timing.add("total", WorkerRuntime.now_ms().saturating_sub(started_ms));
    match timing.header() {
        Some(v) => reply.header("server-timing", v),
        None => reply,
    }
}

async fn create_timed(
    req: &mut Request,
    env: &Env,
    ctx: &Context,
    cfg: &Config,
    timing: &mut ServerTiming,
) -> Result<Reply, ApiError> {
    let body = read_json_body(req).await?;
    let mut ask = admit::admit(
        &body,
        header(req, "authorization").as_deref(),
        header(req, "idempotency-key").as_deref(),
        cfg,
    )?;
    // Backends that push a paid notice post it back here, to this origin.
    ask.params.notify_url = req
        .url()
        .ok()
        .and_then(|u| notice::notify_url(&u.origin().ascii_serialization(), cfg.invoices.notices));
    let (origin, _) = public_origin(req, cfg)?;
    let issue = |ask, timing| async move {
        let mut answer = issue(env, ctx, cfg, ask, timing).await?;
        if let Some(hash) = answer["payment_hash"].as_str() {
            answer["checkout_url"] = Value::from(checkout::url(&origin, hash));
        }
        Ok::<Value, ApiError>(answer)
    };
    let Some((key, fp)) = &ask.idempotency else {
        return issue(&ask, timing).await.map(|v| Reply::json(201, v));
    };
    match watch_link::begin_key(env, key, fp).await? {
        KeyBegin::Proceed => {}
        KeyBegin::Replay { answer } => {
            return Ok(Reply::json(201, answer).header(REPLAYED_HEADER, "true"))
        }
        KeyBegin::Conflict => return Err(ApiError::IdempotencyConflict),
        KeyBegin::InProgress => return Err(ApiError::IdempotencyInProgress),
    }
    match issue(&ask, timing).await {
        Ok(answer) => {
            // If the answer cannot be kept, the invoice is not handed out:
            // the watch drops it, and the key frees itself after its lease.
            if let Err(e) = watch_link::finish_key(env, key, fp, &answer).await {
                if let Some(hash) = answer["payment_hash"].as_str() {
                    watch_link::abandon(env, hash).await;
                }
                return Err(e);
            }
            Ok(Reply::json(201, answer))
        }
        Err(e) => {
            if let Err(d) = watch_link::drop_key(env, key, fp).await {
                worker::console_warn!("could not free the idempotency key: {}", d.message());
            }
            Err(e)
        }
    }
}

/// Makes the invoice through the chain, indexes it and puts it under
/// watch; the 201 body. Nothing is handed out that the watch does not hold.
/// Each step's wait goes into `timing` (workerd's clock stands still while
/// code runs, so a step's figure is its I/O, not its CPU).
pub(crate) async fn issue(
    env: &Env,
    ctx: &Context,
    cfg: &Config,
    ask: &CreateInvoice,
    timing: &mut ServerTiming,
) -> Result<Value, ApiError> {
    let store = Store::open(env)?;
    let rt = Rc::new(WorkerRuntime);
    let (mut session, ms) = timed(HealthSession::load(&store)).await;
    timing.add("health", ms);
    let mut run = chain::CreateRun::new(rt.clone(), Rc::new(cfg.clone()), ask.params.clone());
    let (result, ms) = timed(run.outcome(&mut session.book)).await;
    timing.add("provider", ms);
    let ((), ms) = timed(session.flush_urgent(&store)).await;
    timing.add("health-write", ms);
    // Providers hedged away are still running: let them finish after the
    // answer so their real outcome (a timeout, or a late success) reaches
    // the breaker and the latency history.
    let tail_store = Store::open(env)?;
    ctx.wait_until(async move {
        run.settle(&mut session.book).await;
        session.flush_rest(&tail_store).await;
    });
    let (issued, attempts) = result.map_err(|f| ApiError::AllBackendsFailed {
        failures: f.failures,
        attempts: f.attempts,
    })?;
    let backend = cfg
        .backend(issued.provider.as_str())
        .ok_or_else(|| ApiError::Internal("the issuing backend is not configured".into()))?;
    let watched = WatchedInvoice::new(
        issued.payment_hash.clone(),
        issued.payment_request.clone(),
        BackendId::of(backend),
        issued.amount_sat,
        rt.now_ms(),
        issued.expires_at_secs * 1000,
        ask.context.clone(),
    );
    // The index and the watch must both hold the invoice before the client
    // can ask about it or pay it.
    let ((indexed, kv_ms), (registered, watch_ms)) = futures_util::future::join(
        timed(store.put_invoice(&InvoiceRecord::from_issued(&issued), rt.now_ms() / 1000)),
        timed(watch_link::register(env, watched)),
    )
    .await;
    timing.add("kv", kv_ms);
    timing.add("watch", watch_ms);
    registered?;
    if let Err(e) = indexed {
        watch_link::abandon(env, &issued.payment_hash).await;
        return Err(e);
    }
    let mut answer = invoice::create_response(&issued, &attempts);
    ask.context.extend(&mut answer);
    Ok(answer)
}

/// A future's output and the wall time it waited, in milliseconds.
async fn timed<F: std::future::Future>(f: F) -> (F::Output, u64) {
    let start = WorkerRuntime.now_ms();
    let out = f.await;
    (out, WorkerRuntime.now_ms().saturating_sub(start))
}

/// The watch's state of `hash` (after a lookup on demand when one is due),
/// or `None` when the watch does not hold it or does not answer:
/// check-invoice then asks the issuing backend itself.
async fn watched(env: &Env, hash: &str) -> Option<WatchedInvoice> {
    match watch_link::checked(env, hash).await {
        Ok(w) => w,
        Err(e) => {
            worker::console_warn!("check-invoice without the watch: {}", e.message());
            None
        }
    }
}

/// `GET /api/check-invoice`: from the watch, which looks the invoice up
/// at its issuing backend at most once per demand gap however many
/// callers poll (the checkout page does); an invoice the watch does not
/// hold is asked of its issuing backend, and a paid state seen there is
/// handed to the watch. The shop's context is shown to a keyed caller only.
pub async fn check(
    req: &Request,
    env: &Env,
    ctx: &Context,
    cfg: &Config,
) -> Result<Reply, ApiError> {
    let hash = invoice::parse_payment_hash(query(req, "payment_hash")?.as_deref())?;
    let keyed = admit::keyed(
        header(req, "authorization").as_deref(),
        &cfg.invoices.keys(),
    )?;
    let now = WorkerRuntime.now_ms() / 1000;
    if let Some(w) = watched(env, &hash).await {
        // The issuer did not answer the last lookup: the state is not known
        // now, as when check-invoice asked it itself.
        if let (true, Some(reason)) = (w.is_open(), &w.last_error) {
            return Err(ApiError::BackendUnavailable {
                provider: w.backend.kind.as_str().into(),
                retry_after_secs: demand_gap_ms(w.created_at_ms, w.expires_at_ms, now * 1000)
                    .div_ceil(1000),
                reason: reason.clone(),
            });
        }
        let mut answer = w.index_record().check_response(None, now);
        // How fresh the answer is: a caller polling faster than the demand
        // gap, or past a spent budget, sees the state as of this lookup.
        if let Some(t) = w.last_lookup_at_ms {
            answer["checked_at"] = Value::from(gateway::time::iso8601_ms(t));
        }
        if keyed {
            w.context.extend(&mut answer);
        }
        return Ok(Reply::json(200, answer));
    }
    check_at_backend(req, env, ctx, cfg, &hash, now).await
}

/// check-invoice of an invoice the watch does not hold (made before the
/// watch existed, or the watch did not answer): the KV index names its
/// backend, which is asked.
async fn check_at_backend(
    req: &Request,
    env: &Env,
    ctx: &Context,
    cfg: &Config,
    hash: &str,
    now: u64,
) -> Result<Reply, ApiError> {
    let store = Store::open(env)?;
    let rt = WorkerRuntime;
    let (record, session) =
        futures_util::future::join(store.invoice(hash), HealthSession::load(&store)).await;
    let Some(mut record) = record? else {
        // Neither the watch nor the index knows it: the search of every
        // backend has its own, lower limit.
        crate::rate_limit::check(req, env, cfg, Limited::IndexMiss).await?;
        return check_missing(cfg, &store, hash).await;
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
    let result = chain::check_invoice(&rt, cfg, &mut session.book, provider, hash).await;
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
        hand_over_paid(env, ctx, &record);
    }
    Ok(Reply::json(200, record.check_response(Some(state), now)))
}

/// Tells the watch, after the answer, that the invoice was seen paid; if
/// this is lost, the watch's own lookup finds it.
fn hand_over_paid(env: &Env, ctx: &Context, record: &InvoiceRecord) {
    let env = env.clone();
    let hash = record.payment_hash.clone();
    let settled_ms = record.settled_at.unwrap_or(0) * 1000;
    ctx.wait_until(async move {
        if let Err(e) = watch_link::seen_paid(&env, &hash, settled_ms).await {
            worker::console_warn!(
                "could not hand the paid state to the watch: {}",
                e.message()
            );
        }
    });
}

/// The index has no entry for `hash`: KV may not have it here yet (another
/// location wrote it a moment ago). Every provider that can look it up is
/// asked; one that knows it repairs the entry, so later checks go straight to it.
async fn check_missing(cfg: &Config, store: &Store, hash: &str) -> Result<Reply, ApiError> {
    let rt = WorkerRuntime;
    // Read for the breakers only: this search never changes health.
    let session = HealthSession::load(store).await;
    let verdict = invoice_lookup::locate(&rt, cfg, &session.book, hash).await;
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
