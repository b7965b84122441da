//! The invoice watch: one SQLite-backed Durable Object per shard, woken by
//! its alarm (the cron trigger is the safety net). It answers one typed
//! call per request (`gateway::receive::watch::call`); what it decides is
//! `gateway::receive::watch`.

use std::cell::{Cell, RefCell};

use worker::{durable_object, DurableObject, Env, Request, Response, State};

use crate::runtime::WorkerRuntime;
use crate::store::Store;
use crate::watch_store::SqlWatchStore;
use crate::{env, log};
use backends::http::Runtime;
use backends::BackendKind;
use gateway::api::error::ApiError;
use gateway::config::Config;
use gateway::health::breaker::{admit, Admission};
use gateway::log::Level;
use gateway::receive::watch::budget::LookupBudget;
use gateway::receive::watch::call::{WatchCall, WatchReply, SHARDS};
use gateway::receive::watch::engine::{Delivering, Looking, WatchStore};
use gateway::receive::watch::serve::{self, Shard};

/// After a wake-up that failed as a whole (configuration, storage).
const ALARM_ERROR_DELAY_MS: u64 = 30_000;

#[durable_object]
pub struct InvoiceWatch {
    state: State,
    env: Env,
    budget: RefCell<LookupBudget>,
    /// A wake-up is running: the alarm and the cron trigger must not run
    /// two at once (both would send the same deliveries).
    waking: Cell<bool>,
    /// When the last wake-up asked to wake again: work that is due but was
    /// put off (budget, breaker) must not pull the alarm back to now.
    planned_wake_ms: Cell<Option<u64>>,
    /// This object applied its schema: later opens skip the DDL.
    schema_ready: Cell<bool>,
}

/// Clears the `waking` flag however the wake-up ends.
struct Waking<'a>(&'a Cell<bool>);

impl Drop for Waking<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::InvoiceWatchUnavailable(e.to_string())
}

impl InvoiceWatch {
    fn store(&self) -> Result<SqlWatchStore, ApiError> {
        let store = SqlWatchStore::open(self.state.storage().sql(), self.schema_ready.get())
            .map_err(internal)?;
        self.schema_ready.set(true);
        Ok(store)
    }

    /// Sets the alarm at `at_ms`, never in the past, unless one is set earlier.
    async fn arm_by(&self, at_ms: u64) {
        let at = at_ms.max(WorkerRuntime.now_ms() + 1);
        let current = self.state.storage().get_alarm().await.ok().flatten();
        if current.is_some_and(|t| t > 0 && (t as u64) <= at) {
            return;
        }
        crate::durable::set_alarm_at(&self.state, &self.env, "invoice_watch", at).await;
    }

    /// Runs one call with this shard's settings.
    async fn run(&self, cfg: &Config, call: WatchCall) -> Result<WatchReply, ApiError> {
        let store = self.store()?;
        let woke = matches!(call, WatchCall::Wake);
        // Calls that make work due now (an event to deliver, a lookup to make).
        let urgent = matches!(
            call,
            WatchCall::SeenPaid { .. } | WatchCall::Redeliver { .. } | WatchCall::Nudge { .. }
        );
        if woke && self.waking.get() {
            return Ok(WatchReply::Woke {
                looked: 0,
                delivered: 0,
            });
        }
        // Read-only, and only for the calls that look up (a wake-up, a
        // caller's check): the watch never feeds the breaker. It stays off a
        // backend whose breaker is open, and looks again once the breaker
        // would let a probe through (with no traffic, nobody else would
        // close it).
        let looks = woke || matches!(call, WatchCall::Check { .. });
        let book = if looks {
            Store::open(&self.env)?.health().await
        } else {
            gateway::health::HealthBook::default()
        };
        let now = WorkerRuntime.now_ms();
        let breaker_closed = |kind: BackendKind| {
            let state = book.get(kind.as_str()).breaker;
            !matches!(admit(state, now, &cfg.breaker).0, Admission::Reject { .. })
        };
        let s = &cfg.invoices;
        let shard = Shard {
            looking: Looking {
                backends: &cfg.backends,
                breaker_closed: &breaker_closed,
                timeout_ms: cfg.retry.attempt_timeout_ms,
            },
            delivering: Delivering {
                secrets: s.webhook_secret.as_deref(),
                operator_url: s.operator_webhook_url.as_deref(),
                url_policy: &s.url_policy,
                zap_secret: s.zap_secret.as_ref(),
            },
            budget: &self.budget,
        };
        let reply = if woke {
            self.waking.set(true);
            let _clear = Waking(&self.waking);
            let w = serve::wake(&WorkerRuntime, &store, &shard)
                .await
                .map_err(internal)?;
            self.planned_wake_ms.set(w.next_wake_ms);
            if let Some(next) = w.next_wake_ms {
                self.arm_by(next).await;
            }
            WatchReply::Woke {
                looked: w.looked,
                delivered: w.delivered,
            }
        } else {
            serve::handle(&WorkerRuntime, &store, &shard, call)
                .await
                .map_err(internal)?
        };
        // A caller's check whose lookup found the invoice paid: its events
        // are due now, like a hand-over's.
        let urgent = urgent
            || matches!(
                (looks && !woke, &reply),
                (true, WatchReply::Invoice { invoice: Some(i) }) if i.is_paid()
            );
        if !woke {
            if let Ok(Some(next)) = store.next_wake() {
                // Work already due was put off until the planned wake-up.
                let now = WorkerRuntime.now_ms();
                let planned = self.planned_wake_ms.get().filter(|p| *p > now);
                let at = match planned {
                    Some(p) if next <= now && !urgent => p,
                    _ => next,
                };
                self.arm_by(at).await;
            }
        }
        Ok(reply)
    }

    async fn answer(&self, mut req: Request) -> Result<WatchReply, ApiError> {
        let cfg = env::config(&self.env)?;
        // Read as text, then JSON: `Request::json` would read it through
        // serde-wasm-bindgen, a second copy of every call type's reader.
        let text = req
            .text()
            .await
            .map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        let call: WatchCall =
            serde_json::from_str(&text).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        self.run(&cfg, call).await
    }
}

impl DurableObject for InvoiceWatch {
    fn new(state: State, env: Env) -> Self {
        let per_minute = env::config(&env).map_or(
            gateway::receive::settings::DEFAULT_LOOKUPS_PER_MINUTE as u32,
            |c| c.invoices.lookups_per_minute,
        );
        InvoiceWatch {
            state,
            env,
            budget: RefCell::new(LookupBudget::new(per_minute, SHARDS)),
            waking: Cell::new(false),
            planned_wake_ms: Cell::new(None),
            schema_ready: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        match self.answer(req).await {
            Ok(reply) => Response::from_json(&reply),
            Err(e) => Ok(Response::from_json(&e.to_json())?.with_status(e.status())),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let result = match env::config(&self.env) {
            Ok(cfg) => self.run(&cfg, WatchCall::Wake).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = &result {
            log::notice(
                &self.env,
                Level::Error,
                "invoice_watch",
                format!("watch wake-up failed: {}", e.message()),
            );
            self.arm_by(WorkerRuntime.now_ms() + ALARM_ERROR_DELAY_MS)
                .await;
        }
        Response::ok("")
    }
}
