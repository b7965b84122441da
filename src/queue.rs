//! The payout queue: one SQLite-backed Durable Object holds every payout,
//! so limits and idempotency are exact. The Worker and the cron trigger
//! call it over internal HTTP; its alarm wakes it for the next due retry.

use worker::{durable_object, DurableObject, Env, Method, Request, Response, State};

use crate::claims_link::ClaimsObject;
use crate::reply::Reply;
use crate::runtime::WorkerRuntime;
use crate::sql_store::SqlStore;
use crate::{env, log};
use backends::http::Runtime;
use gateway::api::error::ApiError;
use gateway::log::{Event, WakeLog};
use gateway::payout::attention::{self, AttentionQuery};
use gateway::payout::breaker;
use gateway::payout::config::PayoutConfig;
use gateway::payout::engine::{self, Created, Drain, PayoutStore};
use gateway::payout::invoice_claims::gather_live_hashes;
use gateway::payout::listing::{self, ListQuery};
use gateway::payout::model::Payout;
use gateway::payout::queue_call::{
    ClaimReply, ClaimRequest, DrainReply, KnownPaid, LiveHashes, QueueCall, ReleaseReply,
    ShardsChecked, Verb, REPLAYED_HEADER,
};
use gateway::payout::request;
use gateway::payout::shard::{self, ShardSlot};
use gateway::time::iso8601_ms;

/// After a wake-up that failed as a whole (configuration, storage).
const ALARM_ERROR_DELAY_MS: u64 = 30_000;

#[durable_object]
pub struct PayoutQueue {
    state: State,
    env: Env,
    /// New on every start of this object: leases and `Sending` marks of an
    /// earlier instance are known to be dead.
    instance: String,
    /// The last statistics and when they were counted: health and `/status`
    /// count them at most every `STATS_MAX_AGE_MS` while nothing changes,
    /// whatever their traffic. Every call that may change a payout drops them.
    stats: std::cell::RefCell<Option<(u64, serde_json::Value)>>,
    /// This object applied its schema: later opens skip the DDL.
    schema_ready: std::cell::Cell<bool>,
    /// Requests of this object that may send (between `ensure_wake_by` and
    /// their own `arm`), and the earliest moment one of their sends must
    /// have ended: `arm` keeps an alarm by then while any is running.
    in_flight: std::cell::Cell<u32>,
    in_flight_by: std::cell::Cell<u64>,
}

/// Marks one request of the object as possibly sending until dropped.
struct InFlight<'a>(&'a std::cell::Cell<u32>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// How old the statistics a shard answers with may be.
const STATS_MAX_AGE_MS: u64 = 15_000;

fn store_err(e: engine::StoreError) -> ApiError {
    ApiError::StorageUnavailable(e.to_string())
}

pub fn payout_config(env: &Env) -> Result<std::rc::Rc<PayoutConfig>, ApiError> {
    let cfg = env::config(env)?;
    env::payout_config(env, &cfg).map_err(|e| {
        if e.variable == "PAYOUT_API_KEY" {
            ApiError::PayoutsDisabled("set the PAYOUT_API_KEY secret".into())
        } else {
            e.into()
        }
    })
}

fn holder(instance: &str, rt: &WorkerRuntime, who: &str) -> String {
    format!("{instance}/{who}-{:016x}", rt.random_u64())
}

fn json<T: serde::Serialize>(value: &T) -> Result<Reply, ApiError> {
    serde_json::to_value(value)
        .map(|v| Reply::json(200, v))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn created(p: &Payout) -> Reply {
    let (status, body) = p.created_answer();
    Reply::json(status, body)
}

impl PayoutQueue {
    fn store(&self) -> Result<SqlStore, ApiError> {
        let store = SqlStore::open(
            self.state.storage().sql(),
            &self.instance,
            self.schema_ready.get(),
        )
        .map_err(store_err)?;
        self.schema_ready.set(true);
        // The claims object itself never claims; queue shards do when there are several.
        let shards = payout_config(&self.env).map_or(1, |c| c.shards);
        Ok(store.with_claims((shards > 1).then(|| self.claims_object(shards))))
    }

    fn claims_object(&self, shards: u32) -> ClaimsObject {
        ClaimsObject {
            env: self.env.clone(),
            shards,
        }
    }

    /// Arms the alarm for the next due payout or webhook (never in the past),
    /// or clears it when nothing is due: every payout that is not final has a
    /// wake-up time (a `Sending` one too, stored before its request goes
    /// out), so an empty answer means nothing can need this shard. Without
    /// the clear, the alarm `ensure_wake_by` sets inside an alarm (where
    /// `getAlarm()` reads null) re-armed itself every pay timeout forever:
    /// about 3,900 wake-ups a day per idle shard.
    ///
    /// Another request of this object that may be about to send (it set its
    /// recovery alarm, its payout may not be stored yet) keeps an alarm no
    /// later than its deadline. The caller drops its own [`InFlight`] first:
    /// its sends are stored by then.
    async fn arm(&self, store: &SqlStore) {
        let others = (self.in_flight.get() > 0).then(|| self.in_flight_by.get());
        match (store.next_wake(), others) {
            (Ok(Some(wake)), by) => self.set_alarm_at(by.map_or(wake, |b| wake.min(b))).await,
            (Ok(None), Some(by)) => self.set_alarm_at(by).await,
            (Ok(None), None) => self.clear_alarm().await,
            (Err(_), _) => {}
        }
    }

    async fn clear_alarm(&self) {
        if let Err(e) = self.state.storage().delete_alarm().await {
            worker::console_warn!("payout_queue: could not clear the alarm: {e}");
        }
    }

    /// Sets the alarm at `at_ms` (absolute), never in the past.
    async fn set_alarm_at(&self, at_ms: u64) {
        crate::durable::set_alarm_at(&self.state, &self.env, "payout_queue", at_ms).await;
    }

    /// Before work that may send: an alarm no later than the moment a send
    /// must have ended, so that if this instance dies mid-request the next
    /// one wakes and recovers it (a `Sending` of a dead instance is looked up).
    /// The request counts as in flight until the returned mark is dropped.
    async fn ensure_wake_by(&self, cfg: &PayoutConfig) -> InFlight<'_> {
        let by = WorkerRuntime.now_ms() + cfg.policy.pay_timeout_ms + engine::SENDING_RECHECK_MS;
        let n = self.in_flight.get();
        self.in_flight_by.set(if n == 0 {
            by
        } else {
            self.in_flight_by.get().min(by)
        });
        self.in_flight.set(n + 1);
        let mark = InFlight(&self.in_flight);
        let current = self.state.storage().get_alarm().await.ok().flatten();
        if current.is_none_or(|t| t < 0 || t as u64 > by) {
            self.set_alarm_at(by).await;
        }
        mark
    }

    /// One wake-up (`who` is `alarm` or `cron`), logged as one line.
    async fn drain(&self, who: &str) -> Result<DrainReply, ApiError> {
        let started_ms = log::now_ms();
        let result = self.drain_once(who).await;
        let mut line = WakeLog {
            trigger: who.into(),
            ..WakeLog::default()
        };
        match &result {
            Ok(Drain::Done {
                processed,
                errors,
                next_wake_ms,
            }) => {
                line.drained = true;
                line.processed = *processed;
                line.errors = *errors;
                line.next_wake = next_wake_ms.map(iso8601_ms);
            }
            Ok(Drain::Busy) => line.message = Some("another wake-up holds the lease".into()),
            Err(e) => {
                line.error = Some(e.code().into());
                line.message = Some(e.message());
            }
        }
        line.duration_ms = log::now_ms().saturating_sub(started_ms);
        log::emit(&self.env, line.level(), Event::QueueWake(line));
        Ok(DrainReply::from(&result?))
    }

    async fn drain_once(&self, who: &str) -> Result<Drain, ApiError> {
        let cfg = payout_config(&self.env)?;
        let store = self.store()?;
        let rt = WorkerRuntime;
        let mark = self.ensure_wake_by(&cfg).await;
        let result = engine::drain(&rt, &store, &cfg, &holder(&self.instance, &rt, who)).await;
        drop(mark);
        let result = result.map_err(store_err)?;
        if result == Drain::Busy {
            // The other wake-up re-arms when it ends; check back in case it died.
            self.set_alarm_at(rt.now_ms() + 5_000).await;
        } else {
            self.arm(&store).await;
        }
        Ok(result)
    }

    /// The configuration as shard `slot` applies it; shard 0 also refuses a
    /// shard count other than the one payouts were placed with.
    fn shard_config(&self, slot: ShardSlot) -> Result<PayoutConfig, ApiError> {
        if slot.shard == 0 {
            if let Err(was) = self.store()?.check_shards(slot.shards).map_err(store_err)? {
                return Err(shard::count_changed(slot.shards, was));
            }
        }
        Ok(PayoutConfig::clone(&*payout_config(&self.env)?).for_shard(slot))
    }

    /// Claims-object role: no claim is decided before the live hashes of
    /// every shard are recorded (see `invoice_claims::gather_live_hashes`).
    async fn backfill_claims(&self, store: &SqlStore) -> Result<(), ApiError> {
        let shards = payout_config(&self.env).map_or(1, |c| c.shards);
        if store.backfilled(shards).map_err(store_err)? {
            return Ok(());
        }
        let pairs = gather_live_hashes(&self.claims_object(shards), shards)
            .await
            .map_err(store_err)?;
        store
            .backfill(&pairs, shards, WorkerRuntime.now_ms())
            .map_err(store_err)
    }

    /// The payouts of one page, one more than its size (to tell whether
    /// another page follows).
    fn listed(&self, list: &ListQuery) -> Result<Vec<Payout>, ApiError> {
        self.store()?
            .list(list.status, list.limit + 1, list.after.clone())
            .map_err(store_err)
    }

    async fn create(&self, slot: ShardSlot, key: &str, body: &[u8]) -> Result<Reply, ApiError> {
        let cfg = self.shard_config(slot)?;
        let key = request::parse_idempotency_key(Some(key).filter(|k| !k.is_empty()))?;
        let parsed = request::parse(body)?;
        let store = self.store()?;
        let mark = self.ensure_wake_by(&cfg).await;
        let result = engine::create(&WorkerRuntime, &store, &cfg, parsed, &key).await;
        drop(mark);
        self.arm(&store).await;
        Ok(match result? {
            Created::New(p) => created(&p),
            Created::Replayed(p) => Reply::json(200, p.view()).header(REPLAYED_HEADER, "true"),
        })
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Reply, ApiError> {
        let store = self.store()?;
        self.backfill_claims(&store).await?;
        let takeover = req.takeover();
        let answer = store
            .claim(
                &req.hash,
                &req.id,
                takeover.as_ref(),
                WorkerRuntime.now_ms(),
            )
            .map_err(store_err)?;
        json(&ClaimReply::from(&answer))
    }

    fn stats(&self) -> Result<Reply, ApiError> {
        let now = WorkerRuntime.now_ms();
        let cached = self
            .stats
            .borrow()
            .as_ref()
            .filter(|(at, _)| now.saturating_sub(*at) < STATS_MAX_AGE_MS)
            .map(|(_, v)| v.clone());
        if let Some(v) = cached {
            return Ok(Reply::json(200, v));
        }
        let store = self.store()?;
        let counts = store.counts().map_err(store_err)?;
        let (blocked, overpaid) = store.attention().map_err(store_err)?;
        let mut stats = listing::stats(
            counts
                .iter()
                .map(|c| (c.status.as_str(), c.n as u64, c.oldest.map(|o| o as u64))),
        );
        stats["waiting_for_backend"] = blocked.into();
        stats["overpaid"] = overpaid.into();
        stats["failed_last_day"] = store
            .failed_since(now.saturating_sub(listing::RECENT_FAILURES_MS))
            .map_err(store_err)?
            .into();
        if let Ok(cfg) = payout_config(&self.env) {
            let breakers = store.payout_breakers().map_err(store_err)?;
            stats["payout_backends"] = breaker::chain_view(&cfg.chain, &breakers, now);
        }
        *self.stats.borrow_mut() = Some((now, stats.clone()));
        Ok(Reply::json(200, stats))
    }

    fn attention(&self, q: &AttentionQuery) -> Result<Reply, ApiError> {
        let now = WorkerRuntime.now_ms();
        let cutoff = q.unknown_since_cutoff_ms(now);
        let moved_since = now.saturating_sub(attention::MOVED_SHOWN_MS);
        let items = self
            .store()?
            .attention_list(cutoff, moved_since, q.page.limit + 1, q.page.after.clone())
            .map_err(store_err)?;
        Ok(Reply::json(
            200,
            attention::shard_page(&items, cutoff, moved_since),
        ))
    }

    /// An admin action on one payout, then the alarm re-armed.
    async fn act(&self, call: &QueueCall) -> Result<Reply, ApiError> {
        let rt = WorkerRuntime;
        let store = self.store()?;
        let result = match call {
            QueueCall::Cancel { id } => {
                engine::cancel(&rt, &store, &*payout_config(&self.env)?, id).await
            }
            QueueCall::RedeliverWebhook { id } => {
                engine::redeliver_webhook(&rt, &store, &*payout_config(&self.env)?, id).await
            }
            QueueCall::Retry { id, slot } => {
                let cfg = self.shard_config(*slot)?;
                let mark = self.ensure_wake_by(&cfg).await;
                let result = engine::retry(&rt, &store, &cfg, id).await;
                drop(mark);
                self.arm(&store).await;
                return Ok(created(&result?));
            }
            _ => return Err(ApiError::RouteNotFound),
        };
        self.arm(&store).await;
        Ok(Reply::json(200, result?.view()))
    }

    async fn handle(&self, call: QueueCall) -> Result<Reply, ApiError> {
        // Anything but a read may change a figure: the statistics are
        // dropped before it (a Stats call while it waits counts afresh) and
        // after it (so figures counted in between are not kept).
        let changes = !matches!(
            call,
            QueueCall::Stats
                | QueueCall::Get { .. }
                | QueueCall::List(_)
                | QueueCall::LiveHashes
                | QueueCall::KnownPaid(_)
        );
        if changes {
            self.stats.replace(None);
        }
        let result = self.dispatch(call).await;
        if changes {
            self.stats.replace(None);
        }
        result
    }

    async fn dispatch(&self, call: QueueCall) -> Result<Reply, ApiError> {
        match call {
            QueueCall::Create {
                slot,
                idempotency_key,
                body,
            } => self.create(slot, &idempotency_key, &body).await,
            QueueCall::Get { id } => {
                let store = self.store()?;
                let p = store.get(&id).map_err(store_err)?;
                Ok(Reply::json(200, p.ok_or(ApiError::PayoutNotFound)?.view()))
            }
            QueueCall::List(q) => Ok(Reply::json(200, listing::page(self.listed(&q)?, q.limit))),
            QueueCall::ListShard(q) => Ok(Reply::json(200, listing::shard_page(&self.listed(&q)?))),
            QueueCall::CheckShards(slot) => {
                self.shard_config(slot)?;
                json(&ShardsChecked { ok: true })
            }
            QueueCall::Claim(req) => self.claim(&req).await,
            QueueCall::Release(r) => {
                let store = self.store()?;
                store
                    .release_claim(&r.hash, &r.id, r.claimed_at_ms)
                    .map_err(store_err)?;
                json(&ReleaseReply { released: true })
            }
            QueueCall::LiveHashes => {
                let store = self.store()?;
                let hashes = store
                    .live_hashes(WorkerRuntime.now_ms() / 1000)
                    .map_err(store_err)?;
                json(&LiveHashes { hashes })
            }
            QueueCall::KnownPaid(backend) => {
                let store = self.store()?;
                let hashes = store.known_paid(&backend).map_err(store_err)?;
                json(&KnownPaid { hashes })
            }
            QueueCall::Stats => self.stats(),
            QueueCall::Drain => json(&self.drain("cron").await?),
            QueueCall::Attention(q) => self.attention(&q),
            call @ (QueueCall::Cancel { .. }
            | QueueCall::RedeliverWebhook { .. }
            | QueueCall::Retry { .. }) => self.act(&call).await,
        }
    }

    /// The call a request carries.
    async fn call_of(req: &mut Request) -> Result<QueueCall, ApiError> {
        let verb = match req.method() {
            Method::Get => Verb::Get,
            Method::Post => Verb::Post,
            _ => return Err(ApiError::RouteNotFound),
        };
        let url = req.url().map_err(|e| ApiError::Internal(e.to_string()))?;
        let body = match verb {
            Verb::Post => req
                .bytes()
                .await
                .map_err(|e| ApiError::InvalidJson(e.to_string()))?,
            Verb::Get => Vec::new(),
        };
        let headers = req.headers();
        QueueCall::from_wire(
            verb,
            url.path(),
            url.query(),
            |name| headers.get(name).ok().flatten(),
            body,
        )
    }
}

impl DurableObject for PayoutQueue {
    fn new(state: State, env: Env) -> Self {
        PayoutQueue {
            state,
            env,
            instance: format!("i{:016x}", WorkerRuntime.random_u64()),
            stats: std::cell::RefCell::new(None),
            schema_ready: std::cell::Cell::new(false),
            in_flight: std::cell::Cell::new(0),
            in_flight_by: std::cell::Cell::new(0),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let reply = match Self::call_of(&mut req).await {
            Ok(call) => self.handle(call).await,
            Err(e) => Err(e),
        }
        .unwrap_or_else(|e| Reply::error(&e));
        reply.into_response(None, None, false)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.stats.replace(None);
        let drained = self.drain("alarm").await;
        self.stats.replace(None);
        match drained {
            Ok(v) => Response::from_json(&v),
            Err(e) => {
                // Logged by `drain`. Retry later, never at a time already past (that fires at
                // once, again and again), and not let the runtime retry at once.
                // Nothing due (a broken configuration, say): no alarm at all,
                // not one every ALARM_ERROR_DELAY_MS for as long as it lasts.
                let retry_at = WorkerRuntime.now_ms() + ALARM_ERROR_DELAY_MS;
                match self.store().map(|s| s.next_wake()) {
                    Ok(Ok(None)) if self.in_flight.get() == 0 => self.clear_alarm().await,
                    Ok(Ok(Some(w))) => self.set_alarm_at(w.max(retry_at)).await,
                    _ => self.set_alarm_at(retry_at).await,
                }
                Response::from_json(&e.to_json())
            }
        }
    }
}
