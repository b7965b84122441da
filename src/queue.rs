//! The payout queue: one SQLite-backed Durable Object holds every payout,
//! so limits and idempotency are exact. The Worker and the cron trigger
//! call it over internal HTTP; its alarm wakes it for the next due retry.

use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Request, Response, ScheduledTime, State};

use crate::claims_link::ClaimsObject;
use crate::reply::Reply;
use crate::request::query;
use crate::runtime::WorkerRuntime;
use crate::sql_store::SqlStore;
use crate::{env, log};
use backends::http::Runtime;
use gateway::api::cors::AllowedOrigins;
use gateway::api::error::ApiError;
use gateway::log::{Event, Level, WakeLog};
use gateway::payout::config::PayoutConfig;
use gateway::payout::engine::{self, Created, Drain, PayoutStore};
use gateway::payout::invoice_claims::{Answer, Takeover};
use gateway::payout::{request, shard};
use gateway::time::iso8601_ms;

pub use crate::objects::{IDEMPOTENCY_HEADER, REPLAYED_HEADER, SHARD_HEADER};
/// After a wake-up that failed as a whole (configuration, storage).
const ALARM_ERROR_DELAY_MS: u64 = 30_000;

#[durable_object]
pub struct PayoutQueue {
    state: State,
    env: Env,
    /// New on every start of this object: leases and `Sending` marks of an
    /// earlier instance are known to be dead.
    instance: String,
}

fn store_err(e: engine::StoreError) -> ApiError {
    ApiError::StorageUnavailable(e.to_string())
}

pub fn payout_config(env: &Env) -> Result<PayoutConfig, ApiError> {
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

/// 201 when paid at once, 202 while it goes on, 422 when it already ended
/// failed (the payout is stored; the body says why).
fn created_reply(p: &gateway::payout::model::Payout) -> Reply {
    let mut view = p.view();
    match &p.state {
        gateway::payout::model::PayoutState::Succeeded { .. } => Reply::json(201, view),
        gateway::payout::model::PayoutState::Failed { reason, .. } => {
            view["error"] = json!({"code": "payout_failed", "message": reason});
            Reply::json(422, view)
        }
        _ => Reply::json(202, view),
    }
}

impl PayoutQueue {
    fn store(&self) -> Result<SqlStore, ApiError> {
        let store =
            SqlStore::open(self.state.storage().sql(), &self.instance).map_err(store_err)?;
        // The claims object itself never claims; queue shards do when there are several.
        let shards = payout_config(&self.env).map_or(1, |c| c.shards);
        Ok(store.with_claims((shards > 1).then(|| ClaimsObject {
            env: self.env.clone(),
            shards,
        })))
    }

    /// Arms the alarm for the next due payout or webhook (never in the past).
    async fn arm(&self, store: &SqlStore) {
        if let Ok(Some(wake)) = store.next_wake() {
            self.set_alarm_at(wake).await;
        }
    }

    /// Sets the alarm at `at_ms` (absolute), never in the past.
    async fn set_alarm_at(&self, at_ms: u64) {
        let at = at_ms.max(WorkerRuntime.now_ms() + 1);
        let when = ScheduledTime::new(js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(
            at as f64,
        )));
        if let Err(e) = self.state.storage().set_alarm(when).await {
            log::notice(
                &self.env,
                Level::Error,
                "payout_queue",
                format!("could not arm the payout alarm: {e}"),
            );
        }
    }

    /// Before work that may send: an alarm no later than the moment a send
    /// must have ended, so that if this instance dies mid-request the next
    /// one wakes and recovers it (a `Sending` of a dead instance is looked up).
    async fn ensure_wake_by(&self, cfg: &PayoutConfig) {
        let by = WorkerRuntime.now_ms() + cfg.policy.pay_timeout_ms + engine::SENDING_RECHECK_MS;
        let current = self.state.storage().get_alarm().await.ok().flatten();
        if current.is_none_or(|t| t < 0 || t as u64 > by) {
            self.set_alarm_at(by).await;
        }
    }

    /// One wake-up (`who` is `alarm` or `cron`), logged as one line.
    async fn drain(&self, who: &str) -> Result<Value, ApiError> {
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
        Ok(match result? {
            Drain::Busy => json!({"drained": false, "reason": "another wake-up holds the lease"}),
            Drain::Done {
                processed,
                errors,
                next_wake_ms,
            } => {
                json!({"drained": true, "processed": processed, "errors": errors, "next_wake": next_wake_ms.map(iso8601_ms)})
            }
        })
    }

    async fn drain_once(&self, who: &str) -> Result<Drain, ApiError> {
        let cfg = payout_config(&self.env)?;
        let store = self.store()?;
        let rt = WorkerRuntime;
        self.ensure_wake_by(&cfg).await;
        let result = engine::drain(&rt, &store, &cfg, &holder(&self.instance, &rt, who))
            .await
            .map_err(store_err)?;
        if result == Drain::Busy {
            // The other wake-up re-arms when it ends; check back in case it died.
            self.set_alarm_at(rt.now_ms() + 5_000).await;
        } else {
            self.arm(&store).await;
        }
        Ok(result)
    }

    /// The configuration as this shard applies it: its share of the daily limit.
    fn shard_config(&self, req: &Request) -> Result<PayoutConfig, ApiError> {
        let mut cfg = payout_config(&self.env)?;
        let header = req.headers().get(SHARD_HEADER).ok().flatten();
        let (shard, shards) = header
            .as_deref()
            .and_then(|h| h.split_once('/'))
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .unwrap_or((0, 1));
        if shards > 1 {
            cfg.daily_limit_sat = shard::daily_share(cfg.daily_limit_sat, shards, shard);
        }
        if shard == 0 {
            self.check_shards(shards)?;
        }
        Ok(cfg)
    }

    /// Claims-object role: before its first decision, the claims object records the
    /// live hashes of every shard, so that payouts stored before shards
    /// claimed through it (an upgrade) hold their invoices too. Until every
    /// shard has answered, no claim is decided.
    async fn backfill_claims(&self, store: &SqlStore) -> Result<(), ApiError> {
        let shards = payout_config(&self.env).map_or(1, |c| c.shards);
        if store.backfilled(shards).map_err(store_err)? {
            return Ok(());
        }
        let mut pairs = Vec::new();
        for shard in 0..shards {
            let reply = crate::objects::call_peer(
                &self.env,
                &shard::object_name(shard),
                worker::Method::Get,
                "/live-hashes",
                None,
            )
            .await?;
            if reply.status != 200 {
                return Err(ApiError::StorageUnavailable(format!(
                    "invoice claims: shard {shard} could not list its invoices (HTTP {})",
                    reply.status
                )));
            }
            let body = reply.into_json();
            for pair in body["hashes"].as_array().into_iter().flatten() {
                if let (Some(h), Some(id)) = (pair[0].as_str(), pair[1].as_str()) {
                    pairs.push((h.to_string(), id.to_string()));
                }
            }
        }
        store
            .backfill(&pairs, shards, WorkerRuntime.now_ms())
            .map_err(store_err)
    }

    /// The payouts a listing query asks for, one more than its page (to
    /// tell whether another page follows), and the page size.
    fn listed(
        &self,
        req: &Request,
    ) -> Result<(Vec<gateway::payout::model::Payout>, u32), ApiError> {
        let list = gateway::payout::listing::ListQuery::parse(
            query(req, "status")?.as_deref(),
            query(req, "limit")?.as_deref(),
            query(req, "cursor")?.as_deref(),
        )?;
        let items = self
            .store()?
            .list(list.status, list.limit + 1, list.after)
            .map_err(store_err)?;
        Ok((items, list.limit))
    }

    fn check_shards(&self, shards: u32) -> Result<(), ApiError> {
        match self.store()?.check_shards(shards).map_err(store_err)? {
            Ok(()) => Ok(()),
            Err(was) => Err(ApiError::Configuration {
                variable: "PAYOUT_QUEUE_SHARDS".into(),
                message: format!(
                    "is {shards}, but payouts were placed with {was}: a changed count would send retries of existing idempotency keys to another shard; set it back to {was}"
                ),
            }),
        }
    }

    async fn handle(&self, req: &mut Request) -> Result<Reply, ApiError> {
        let path = req.path();
        let method = req.method().to_string();
        let rt = WorkerRuntime;
        match (method.as_str(), path.as_str()) {
            ("POST", "/create") => {
                let cfg = self.shard_config(req)?;
                let key = request::parse_idempotency_key(
                    req.headers()
                        .get(IDEMPOTENCY_HEADER)
                        .ok()
                        .flatten()
                        .as_deref(),
                )?;
                let body = req
                    .bytes()
                    .await
                    .map_err(|e| ApiError::InvalidJson(e.to_string()))?;
                let parsed = request::parse(&body)?;
                let store = self.store()?;
                self.ensure_wake_by(&cfg).await;
                let created = engine::create(&rt, &store, &cfg, parsed, &key).await;
                self.arm(&store).await;
                match created? {
                    Created::New(p) => Ok(created_reply(&p)),
                    Created::Replayed(p) => {
                        Ok(Reply::json(200, p.view()).header(REPLAYED_HEADER, "true"))
                    }
                }
            }
            ("GET", "/list") => {
                let (items, limit) = self.listed(req)?;
                Ok(Reply::json(
                    200,
                    gateway::payout::listing::page(items, limit),
                ))
            }
            ("GET", "/list-shard") => {
                let (items, _) = self.listed(req)?;
                Ok(Reply::json(
                    200,
                    gateway::payout::listing::shard_page(&items),
                ))
            }
            ("POST", "/shards") => {
                self.shard_config(req)?;
                Ok(Reply::json(200, json!({"ok": true})))
            }
            ("POST", "/claim") => {
                let body = req
                    .json::<Value>()
                    .await
                    .map_err(|e| ApiError::InvalidJson(e.to_string()))?;
                let (Some(hash), Some(id)) = (body["hash"].as_str(), body["id"].as_str()) else {
                    return Err(ApiError::InvalidJson("hash and id are required".into()));
                };
                let takeover = match (body["replace"].as_str(), body["seen_at_ms"].as_u64()) {
                    (Some(owner), Some(seen_at_ms)) => Some(Takeover {
                        owner: owner.to_string(),
                        seen_at_ms,
                    }),
                    _ => None,
                };
                let store = self.store()?;
                self.backfill_claims(&store).await?;
                Ok(
                    match store
                        .claim(hash, id, takeover.as_ref(), rt.now_ms())
                        .map_err(store_err)?
                    {
                        Answer::Granted { claimed_at_ms } => Reply::json(
                            200,
                            json!({"granted": true, "claimed_at_ms": claimed_at_ms}),
                        ),
                        Answer::HeldBy { owner, seen_at_ms } => {
                            Reply::json(200, json!({"owner": owner, "seen_at_ms": seen_at_ms}))
                        }
                    },
                )
            }
            ("POST", "/release") => {
                let body = req
                    .json::<Value>()
                    .await
                    .map_err(|e| ApiError::InvalidJson(e.to_string()))?;
                let (Some(hash), Some(id), Some(at)) = (
                    body["hash"].as_str(),
                    body["id"].as_str(),
                    body["claimed_at_ms"].as_u64(),
                ) else {
                    return Err(ApiError::InvalidJson(
                        "hash, id and claimed_at_ms are required".into(),
                    ));
                };
                self.store()?
                    .release_claim(hash, id, at)
                    .map_err(store_err)?;
                Ok(Reply::json(200, json!({"released": true})))
            }
            ("GET", "/live-hashes") => {
                let store = self.store()?;
                let pairs = store.live_hashes(rt.now_ms() / 1000).map_err(store_err)?;
                Ok(Reply::json(200, json!({ "hashes": pairs })))
            }
            ("GET", "/stats") => {
                let store = self.store()?;
                let counts = store.counts().map_err(store_err)?;
                let (blocked, overpaid) = store.attention().map_err(store_err)?;
                let mut stats = gateway::payout::listing::stats(
                    counts
                        .iter()
                        .map(|c| (c.status.as_str(), c.n as u64, c.oldest.map(|o| o as u64))),
                );
                stats["waiting_for_backend"] = json!(blocked);
                stats["overpaid"] = json!(overpaid);
                Ok(Reply::json(200, stats))
            }
            ("POST", "/drain") => Ok(Reply::json(200, self.drain("cron").await?)),
            ("GET", "/attention") => {
                let q = gateway::payout::attention::AttentionQuery::parse(
                    query(req, "unknown_older_than_secs")?.as_deref(),
                    query(req, "limit")?.as_deref(),
                    query(req, "cursor")?.as_deref(),
                )?;
                let cutoff = q.unknown_since_cutoff_ms(rt.now_ms());
                let items = self
                    .store()?
                    .attention_list(cutoff, q.page.limit + 1, q.page.after.clone())
                    .map_err(store_err)?;
                Ok(Reply::json(
                    200,
                    gateway::payout::attention::shard_page(&items, cutoff),
                ))
            }
            _ => {
                if let Some(id) = path.strip_prefix("/payout/") {
                    let store = self.store()?;
                    let p = store
                        .get(id)
                        .map_err(store_err)?
                        .ok_or(ApiError::PayoutNotFound)?;
                    return Ok(Reply::json(200, p.view()));
                }
                if let Some(id) = path.strip_prefix("/cancel/") {
                    let cfg = payout_config(&self.env)?;
                    let store = self.store()?;
                    let result = engine::cancel(&rt, &store, &cfg, id).await;
                    self.arm(&store).await;
                    return Ok(Reply::json(200, result?.view()));
                }
                if let Some(id) = path.strip_prefix("/redeliver-webhook/") {
                    let cfg = payout_config(&self.env)?;
                    let store = self.store()?;
                    let result = engine::redeliver_webhook(&rt, &store, &cfg, id).await;
                    self.arm(&store).await;
                    return Ok(Reply::json(200, result?.view()));
                }
                if let Some(id) = path.strip_prefix("/retry/") {
                    let cfg = self.shard_config(req)?;
                    let store = self.store()?;
                    self.ensure_wake_by(&cfg).await;
                    let result = engine::retry(&rt, &store, &cfg, id).await;
                    self.arm(&store).await;
                    let p = result?;
                    return Ok(created_reply(&p));
                }
                Err(ApiError::RouteNotFound)
            }
        }
    }
}

impl DurableObject for PayoutQueue {
    fn new(state: State, env: Env) -> Self {
        PayoutQueue {
            state,
            env,
            instance: format!("i{:016x}", WorkerRuntime.random_u64()),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let reply = self
            .handle(&mut req)
            .await
            .unwrap_or_else(|e| Reply::error(&e));
        reply.into_response(&AllowedOrigins::Any, None)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        match self.drain("alarm").await {
            Ok(v) => Response::from_json(&v),
            Err(e) => {
                // Logged by `drain`. Retry later, never at a time already past (that fires at
                // once, again and again), and not let the runtime retry at once.
                let retry_at = WorkerRuntime.now_ms() + ALARM_ERROR_DELAY_MS;
                let next = self
                    .store()
                    .ok()
                    .and_then(|s| s.next_wake().ok().flatten())
                    .map_or(retry_at, |w| w.max(retry_at));
                self.set_alarm_at(next).await;
                Response::from_json(&e.to_json())
            }
        }
    }
}
