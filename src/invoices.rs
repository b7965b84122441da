//! `POST /api/create-invoice` and `GET /api/check-invoice`.

use std::rc::Rc;

use worker::{Context, Env, Request};

use crate::body::read_json_body;
use crate::health_sync::HealthSession;
use crate::reply::Reply;
use crate::request::{header, query};
use crate::runtime::WorkerRuntime;
use crate::store::Store;
use crate::watch_link;
use backends::http::Runtime;
use backends::identity::BackendId;
use gateway::api::error::ApiError;
use gateway::config::Config;
use gateway::payout::queue_call::REPLAYED_HEADER;
use gateway::receive::admit::{self, CreateInvoice};
use gateway::receive::chain;
use gateway::receive::invoice::{self, InvoiceRecord};
use gateway::receive::invoice_lookup::{self, Verdict};
use gateway::receive::notice;
use gateway::receive::watch::call::KeyBegin;
use gateway::receive::watch::record::WatchedInvoice;
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
    let Some((key, fp)) = &ask.idempotency else {
        return issue(env, ctx, cfg, &ask)
            .await
            .map(|v| Reply::json(201, v));
    };
    match watch_link::begin_key(env, key, fp).await? {
        KeyBegin::Proceed => {}
        KeyBegin::Replay { answer } => {
            return Ok(Reply::json(201, answer).header(REPLAYED_HEADER, "true"))
        }
        KeyBegin::Conflict => return Err(ApiError::IdempotencyConflict),
        KeyBegin::InProgress => return Err(ApiError::IdempotencyInProgress),
    }
    match issue(env, ctx, cfg, &ask).await {
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
pub(crate) async fn issue(
    env: &Env,
    ctx: &Context,
    cfg: &Config,
    ask: &CreateInvoice,
) -> Result<Value, ApiError> {
    let store = Store::open(env)?;
    let rt = Rc::new(WorkerRuntime);
    let mut session = HealthSession::load(&store).await;
    let mut run = chain::CreateRun::new(rt.clone(), Rc::new(cfg.clone()), ask.params.clone());
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
    let (indexed, registered) = futures_util::future::join(
        store.put_invoice(&InvoiceRecord::from_issued(&issued), rt.now_ms() / 1000),
        watch_link::register(env, watched),
    )
    .await;
    registered?;
    if let Err(e) = indexed {
        watch_link::abandon(env, &issued.payment_hash).await;
        return Err(e);
    }
    let mut answer = invoice::create_response(&issued, &attempts);
    ask.context.extend(&mut answer);
    Ok(answer)
}

/// The watch's state of `hash`, or `None` when the watch does not answer:
/// check-invoice then works as it did without one.
async fn watched(env: &Env, hash: &str) -> Option<WatchedInvoice> {
    match watch_link::watched(env, hash).await {
        Ok(w) => w,
        Err(e) => {
            worker::console_warn!("check-invoice without the watch: {}", e.message());
            None
        }
    }
}

/// The shop's context, for a caller with the invoice key only.
fn with_context(mut answer: Value, w: Option<&WatchedInvoice>, keyed: bool) -> Value {
    if let (Some(w), true) = (w, keyed) {
        w.context.extend(&mut answer);
    }
    answer
}

/// `GET /api/check-invoice`: from the watch when it already knows the
/// invoice is paid, else from the issuing backend; a paid state seen there
/// is handed to the watch.
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
    let store = Store::open(env)?;
    let rt = WorkerRuntime;
    let now = rt.now_ms() / 1000;
    // All three reads at once.
    let (record, session, w) = futures_util::future::join3(
        store.invoice(&hash),
        HealthSession::load(&store),
        watched(env, &hash),
    )
    .await;
    if let Some(w) = w.as_ref().filter(|w| w.is_paid()) {
        let answer = w.index_record().check_response(None, now);
        return Ok(Reply::json(200, with_context(answer, Some(w), keyed)));
    }
    // The watch is consistent where KV may not be yet: its record answers,
    // and rebuilds the index entry.
    let indexed = record?;
    let from_watch = indexed.is_none();
    let Some(mut record) = indexed.or_else(|| w.as_ref().map(WatchedInvoice::index_record)) else {
        return check_missing(env, ctx, cfg, &store, &hash).await;
    };
    if from_watch {
        if let Err(e) = store.put_invoice(&record, now).await {
            worker::console_warn!("could not rebuild the index entry: {}", e.message());
        }
    }
    if record.paid {
        let answer = record.check_response(None, now);
        return Ok(Reply::json(200, with_context(answer, w.as_ref(), keyed)));
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
        if w.is_some() {
            hand_over_paid(env, ctx, &record);
        }
    }
    let answer = record.check_response(Some(state), now);
    Ok(Reply::json(200, with_context(answer, w.as_ref(), keyed)))
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
