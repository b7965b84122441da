//! The provider fallback chain for receiving: create an invoice on the first
//! provider that can, check it on the provider that issued it.
//!
//! Creating an invoice is safe to repeat and to fail over (an unpaid invoice
//! costs nothing), so every error moves on, and a slow provider gets the next
//! one started alongside it (hedging; see [`CreateRun`]). Transient errors
//! are retried on the same provider with backoff, within its time budget and
//! one total deadline. A provider whose breaker is open is skipped without
//! being called. Lookups are never hedged: only the issuer knows an invoice.

use std::rc::Rc;

use futures_util::future::{FutureExt, LocalBoxFuture};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use crate::config::{Config, Strategy};
use crate::health::breaker::Admission;
use crate::health::{HealthBook, Source};
use backends::bolt11::{self, Expectation};
use backends::exchange;
use backends::http::Runtime;
use backends::{
    self, BackendConfig, BackendError, BackendKind, CreatedInvoice, InvoiceParams, InvoiceState,
};

/// One try (or skip) of one provider, reported back to the client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub provider: String,
    /// 1-based try number on this provider.
    pub attempt: u32,
    /// `ok`, `error`, `skipped`, or `superseded` (still running when another
    /// provider's invoice won; its outcome is recorded in health later).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub latency_ms: u64,
    /// When the attempt started, in ms after the request began: shows
    /// which providers ran side by side.
    pub started_ms: u64,
    /// Set on a provider's first attempt when it was started because the
    /// provider before it was slower than its hedge delay.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hedge: bool,
}

/// Why one provider could not serve the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendFailure {
    pub provider: String,
    pub code: &'static str,
    pub message: String,
}

/// A verified invoice and who issued it.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    pub provider: BackendKind,
    pub payment_request: String,
    pub payment_hash: String,
    pub amount_sat: u64,
    pub created_at_secs: u64,
    pub expires_at_secs: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChainFailure {
    pub failures: Vec<BackendFailure>,
    pub attempts: Vec<Attempt>,
}

/// Counts against the provider's health: everything except a refusal of
/// this particular request (a 4xx that is not about our credentials or URL,
/// or a feature the backend lacks).
fn counts_against_health(e: &BackendError) -> bool {
    !matches!(
        e,
        BackendError::Rejected { .. } | BackendError::Unsupported(_)
    )
}

/// On a lookup, a 404 is an answer about the invoice, not about the provider.
pub(crate) fn lookup_counts_against_health(e: &BackendError) -> bool {
    counts_against_health(e) && !matches!(e, BackendError::NotFound { .. })
}

async fn call_create<R: Runtime>(
    rt: &R,
    p: &BackendConfig,
    params: &InvoiceParams,
    timeout_ms: u64,
) -> Result<CreatedInvoice, BackendError> {
    if let Some(why) = p.kind.adapter().unsupported(params) {
        return Err(BackendError::Unsupported(why));
    }
    let req = p
        .adapter()
        .create_request_unique(p, params, rt.random_u64())
        .ok_or_else(|| cannot(p, "create invoices"))?;
    let resp = exchange::send(rt, req, timeout_ms).await?;
    p.kind.adapter().parse_create(&resp)
}

/// A backend without that operation (a retired one).
pub(crate) fn cannot(p: &BackendConfig, what: &str) -> BackendError {
    BackendError::Unsupported(format!("{} cannot {what}", p.kind.descriptor().label))
}

/// Checks that the provider made the invoice we asked for.
fn verify_created(
    cfg: &Config,
    p: &BackendConfig,
    params: &InvoiceParams,
    created: CreatedInvoice,
    now_secs: u64,
) -> Result<Issued, BackendError> {
    let want = Expectation {
        network: cfg.network,
        amount_msat: params.amount_msat(),
        payment_hash: created.payment_hash.as_deref(),
        now_secs,
    };
    let inv = bolt11::verify(&created.payment_request, &want)
        .map_err(|e| BackendError::InvalidResponse(e.to_string()))?;
    if let Some(h) = &params.description_hash {
        if inv.description_hash.as_deref() != Some(h.as_str()) {
            return Err(BackendError::InvalidResponse(
                "invoice does not commit to the requested description_hash".into(),
            ));
        }
    }
    Ok(Issued {
        provider: p.kind,
        payment_request: created.payment_request,
        payment_hash: inv.payment_hash.clone(),
        amount_sat: params.amount_sat,
        created_at_secs: now_secs,
        expires_at_secs: inv.expires_at_secs(),
    })
}

/// One creation attempt on one provider, verified; no retries, no health.
pub async fn create_once<R: Runtime>(
    rt: &R,
    cfg: &Config,
    p: &BackendConfig,
    params: &InvoiceParams,
    timeout_ms: u64,
) -> Result<Issued, BackendError> {
    let created = call_create(rt, p, params, timeout_ms).await?;
    verify_created(cfg, p, params, created, rt.now_ms() / 1000)
}

/// How a provider came to be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    First,
    /// The provider before it failed, was skipped or used up its budget.
    Failover,
    /// The provider before it had produced no invoice within its hedge delay.
    Hedge,
}

/// One provider's progress within one request.
#[derive(Debug, Default)]
struct Lane {
    done: bool,
    /// Attempts started so far, and the most this provider may get.
    tries: u32,
    max_tries: u32,
    /// No attempt of this provider runs past this instant (its budget).
    end_ms: u64,
    hedged: bool,
    /// `(attempt number, start)` of the attempt in flight.
    in_flight: Option<(u32, u64)>,
    /// The error a pending retry would replace.
    last_error: Option<BackendError>,
}

/// What the run waits for: an attempt's answer, a retry's backoff, or a
/// provider's hedge delay.
enum Event {
    Attempt {
        lane: usize,
        result: Result<Issued, BackendError>,
    },
    Retry {
        lane: usize,
    },
    Hedge {
        lane: usize,
    },
}

/// One invoice creation across the provider chain.
///
/// Every provider gets a time budget (`provider_budget_ms`, never past the
/// request's deadline) for its attempts and retries. With the hedged
/// strategy, a provider that has produced no valid invoice within its hedge
/// delay (its recent p95 latency, clamped) gets the next provider started
/// alongside it; one whose attempt fails, or that is skipped or runs out of
/// budget, gets it started at once (its own retries go on alongside). The
/// first valid invoice wins.
///
/// Two phases, so a caller can answer before slow losers finish:
/// [`CreateRun::outcome`] resolves with the winner (or the failure), and
/// [`CreateRun::settle`] then waits for the attempts still in flight and
/// records them in health. It owns everything it uses (`Rc`s) so that the
/// edge can hand the second phase to `wait_until`.
pub struct CreateRun<R: Runtime + 'static> {
    rt: Rc<R>,
    cfg: Rc<Config>,
    params: Rc<InvoiceParams>,
    started_ms: u64,
    deadline_ms: u64,
    lanes: Vec<Lane>,
    /// The first provider not yet started (or skipped).
    next: usize,
    pending: FuturesUnordered<LocalBoxFuture<'static, Event>>,
    attempts: Vec<(usize, Attempt)>,
    failures: Vec<(usize, BackendFailure)>,
    winner: Option<Issued>,
}

impl<R: Runtime + 'static> CreateRun<R> {
    pub fn new(rt: Rc<R>, cfg: Rc<Config>, params: InvoiceParams) -> Self {
        let now = rt.now_ms();
        CreateRun {
            started_ms: now,
            deadline_ms: now.saturating_add(cfg.retry.total_timeout_ms),
            lanes: cfg.backends.iter().map(|_| Lane::default()).collect(),
            next: 0,
            pending: FuturesUnordered::new(),
            attempts: Vec::new(),
            failures: Vec::new(),
            winner: None,
            params: Rc::new(params),
            rt,
            cfg,
        }
    }

    /// Runs until the first valid invoice, or until every provider failed.
    /// Attempts still running when another provider won are listed as
    /// `superseded`; call [`CreateRun::settle`] to let them finish.
    pub async fn outcome(
        &mut self,
        health: &mut HealthBook,
    ) -> Result<(Issued, Vec<Attempt>), ChainFailure> {
        if self.next == 0 {
            self.start_next(health, Start::First);
        }
        while self.winner.is_none() && !self.lanes.iter().all(|l| l.done) {
            match self.pending.next().await {
                Some(event) => self.handle(event, health),
                None => break, // nothing left to wait for (never expected)
            }
        }
        let now = self.rt.now_ms();
        match self.winner.clone() {
            Some(issued) => {
                let winner = issued.provider.as_str();
                for (i, lane) in self.lanes.iter().enumerate() {
                    if let Some((n, start)) = lane.in_flight {
                        let waited = now.saturating_sub(start);
                        self.attempts.push((
                            i,
                            Attempt {
                                provider: name_of(&self.cfg, i).into(),
                                attempt: n,
                                outcome: "superseded",
                                code: Some("hedged"),
                                message: Some(format!(
                                    "no answer after {waited} ms when {winner} answered first; \
                                     its outcome still counts toward this provider's health"
                                )),
                                latency_ms: waited,
                                started_ms: start.saturating_sub(self.started_ms),
                                hedge: n == 1 && lane.hedged,
                            },
                        ));
                    }
                }
                Ok((issued, self.sorted_attempts()))
            }
            None => {
                for i in 0..self.lanes.len() {
                    if !self.lanes[i].done {
                        let e = self.lanes[i]
                            .last_error
                            .take()
                            .unwrap_or(BackendError::Timeout);
                        self.lanes[i].done = true;
                        self.failures.push((i, failure(name_of(&self.cfg, i), &e)));
                    }
                }
                let mut failures = std::mem::take(&mut self.failures);
                crate::small_sort::sort_by_key(&mut failures, |(i, _)| *i);
                Err(ChainFailure {
                    failures: failures.into_iter().map(|(_, f)| f).collect(),
                    attempts: self.sorted_attempts(),
                })
            }
        }
    }

    /// Attempts still waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.lanes.iter().filter(|l| l.in_flight.is_some()).count()
    }

    /// After [`CreateRun::outcome`]: waits for the attempts still in flight
    /// (each ends by its own timeout) and records their outcomes in health.
    /// Nothing new is started.
    pub async fn settle(mut self, health: &mut HealthBook) {
        while self.in_flight() > 0 {
            match self.pending.next().await {
                Some(event @ Event::Attempt { .. }) => self.handle(event, health),
                Some(_) => {} // a retry or hedge timer: nothing new starts now
                None => break,
            }
        }
    }

    fn sorted_attempts(&self) -> Vec<Attempt> {
        let mut v = self.attempts.clone();
        crate::small_sort::sort_by_key(&mut v, |(i, a)| (a.started_ms, *i, a.attempt));
        v.into_iter().map(|(_, a)| a).collect()
    }

    fn handle(&mut self, event: Event, health: &mut HealthBook) {
        match event {
            Event::Attempt { lane, result } => self.on_answer(lane, result, health),
            Event::Retry { lane } => self.on_retry(lane, health),
            Event::Hedge { lane } => {
                let still_waiting = self.winner.is_none()
                    && self.lanes.get(lane).is_some_and(|l| !l.done)
                    && lane + 1 == self.next;
                if still_waiting {
                    self.start_next(health, Start::Hedge);
                }
            }
        }
    }

    /// Starts the next provider the breaker lets through, skipping (and
    /// reporting) those it holds open and those the deadline left no time for.
    fn start_next(&mut self, health: &mut HealthBook, how: Start) {
        let hedged = self.cfg.strategy == Strategy::Hedged;
        while self.next < self.lanes.len() {
            let i = self.next;
            self.next += 1;
            let name = name_of(&self.cfg, i);
            let now = self.rt.now_ms();
            if now >= self.deadline_ms {
                self.skip(
                    i,
                    1,
                    "deadline_exceeded",
                    "the request's total deadline was used up".into(),
                    BackendError::Timeout,
                );
                continue;
            }
            let full = 1 + self.cfg.retry.max_retries;
            let max_tries = if !hedged {
                full // the baseline has no breaker
            } else {
                match health.admit(name, now, &self.cfg.breaker) {
                    Admission::Allow => full,
                    Admission::Probe => 1,
                    Admission::Reject { retry_at_ms } => {
                        let secs = retry_at_ms.saturating_sub(now).div_ceil(1000);
                        let message = format!("circuit breaker open; next probe in {secs}s");
                        self.attempts.push((
                            i,
                            Attempt {
                                provider: name.into(),
                                attempt: 0,
                                outcome: "skipped",
                                code: Some("circuit_open"),
                                message: Some(message.clone()),
                                latency_ms: 0,
                                started_ms: now.saturating_sub(self.started_ms),
                                hedge: false,
                            },
                        ));
                        self.failures.push((
                            i,
                            BackendFailure {
                                provider: name.into(),
                                code: "circuit_open",
                                message,
                            },
                        ));
                        self.lanes[i].done = true;
                        continue;
                    }
                }
            };
            let end_ms = if hedged {
                now.saturating_add(self.cfg.hedge.provider_budget_ms)
                    .min(self.deadline_ms)
            } else {
                self.deadline_ms
            };
            let lane = &mut self.lanes[i];
            lane.max_tries = max_tries;
            lane.end_ms = end_ms;
            lane.hedged = how == Start::Hedge;
            self.spawn_attempt(i, self.cfg.retry.attempt_timeout(end_ms - now));
            if hedged && i + 1 < self.lanes.len() {
                let delay = self.cfg.hedge.delay_ms(
                    health.get(name).hedge_basis_ms(),
                    self.cfg.retry.attempt_timeout_ms,
                );
                self.spawn_timer(delay, Event::Hedge { lane: i });
            }
            return;
        }
    }

    fn skip(&mut self, i: usize, n: u32, code: &'static str, message: String, e: BackendError) {
        let name = name_of(&self.cfg, i);
        self.attempts.push((
            i,
            Attempt {
                provider: name.into(),
                attempt: n,
                outcome: "skipped",
                code: Some(code),
                message: Some(message),
                latency_ms: 0,
                started_ms: self.rt.now_ms().saturating_sub(self.started_ms),
                hedge: false,
            },
        ));
        self.failures.push((i, failure(name, &e)));
        self.lanes[i].done = true;
    }

    fn on_answer(
        &mut self,
        i: usize,
        result: Result<Issued, BackendError>,
        health: &mut HealthBook,
    ) {
        let now = self.rt.now_ms();
        let name = name_of(&self.cfg, i);
        let Some(lane) = self.lanes.get_mut(i) else {
            return;
        };
        let Some((n, start)) = lane.in_flight.take() else {
            return;
        };
        let latency = now.saturating_sub(start);
        let record = Attempt {
            provider: name.into(),
            attempt: n,
            outcome: "ok",
            code: None,
            message: None,
            latency_ms: latency,
            started_ms: start.saturating_sub(self.started_ms),
            hedge: n == 1 && lane.hedged,
        };
        match result {
            Ok(issued) => {
                // A late success, after another provider won, counts as a
                // success too: the provider works, it is only slow, and
                // slowness is the hedge delay's business (the latency raises
                // its p95), not the breaker's. Opening breakers on slowness
                // would shed every provider when all of them slow down.
                // The unused invoice costs nothing.
                health.record_success(name, latency, now, Source::Request);
                lane.done = true;
                if self.winner.is_none() {
                    self.attempts.push((i, record));
                    self.winner = Some(issued);
                }
            }
            Err(e) => {
                if counts_against_health(&e) {
                    health.record_failure(
                        name,
                        &e.to_string(),
                        latency,
                        now,
                        Source::Request,
                        &self.cfg.breaker,
                    );
                }
                if self.winner.is_some() {
                    lane.done = true;
                    return;
                }
                self.attempts.push((
                    i,
                    Attempt {
                        outcome: "error",
                        code: Some(e.code()),
                        message: Some(e.to_string()),
                        ..record
                    },
                ));
                match self.retry_delay(i, &e, now, health) {
                    Some(delay) => {
                        self.lanes[i].last_error = Some(e);
                        self.spawn_timer(delay, Event::Retry { lane: i });
                        // A provider that just failed is not waited for: the
                        // next one starts now, alongside its retries (the
                        // first valid invoice wins, as with a hedge).
                        if self.cfg.strategy == Strategy::Hedged && i + 1 == self.next {
                            self.start_next(health, Start::Failover);
                        }
                    }
                    None => self.lane_failed(i, e, health),
                }
            }
        }
    }

    /// The backoff before the next try on provider `i`, or `None` when it
    /// gets no more tries: a permanent error, no tries left, an opened
    /// breaker (hedged only), or no room left in its budget.
    fn retry_delay(
        &self,
        i: usize,
        e: &BackendError,
        now: u64,
        health: &HealthBook,
    ) -> Option<u64> {
        let lane = self.lanes.get(i)?;
        if !e.is_transient() || lane.tries >= lane.max_tries {
            return None;
        }
        let retry = lane.tries.saturating_sub(1);
        let (delay, limit) = match self.cfg.strategy {
            Strategy::Sequential => (self.cfg.retry.linear_delay_ms(retry), self.deadline_ms),
            Strategy::Hedged => {
                if !health.get(name_of(&self.cfg, i)).breaker_closed() {
                    return None;
                }
                (
                    self.cfg.retry.delay_ms(retry, self.rt.random_u64()),
                    lane.end_ms,
                )
            }
        };
        (now.saturating_add(delay) < limit).then_some(delay)
    }

    fn on_retry(&mut self, i: usize, health: &mut HealthBook) {
        if self.winner.is_some() || self.lanes.get(i).is_none_or(|l| l.done) {
            return;
        }
        let now = self.rt.now_ms();
        let end = self.lanes[i].end_ms.min(self.deadline_ms);
        let timeout = self.cfg.retry.attempt_timeout(end.saturating_sub(now));
        if timeout == 0 {
            let e = self.lanes[i]
                .last_error
                .take()
                .unwrap_or(BackendError::Timeout);
            self.lane_failed(i, e, health);
        } else {
            self.lanes[i].last_error = None;
            self.spawn_attempt(i, timeout);
        }
    }

    /// Provider `i` is out; the next one starts unless a hedge already did.
    fn lane_failed(&mut self, i: usize, e: BackendError, health: &mut HealthBook) {
        self.lanes[i].done = true;
        self.failures.push((i, failure(name_of(&self.cfg, i), &e)));
        if i + 1 == self.next {
            self.start_next(health, Start::Failover);
        }
    }

    fn spawn_attempt(&mut self, i: usize, timeout_ms: u64) {
        let now = self.rt.now_ms();
        let lane = &mut self.lanes[i];
        lane.tries += 1;
        lane.in_flight = Some((lane.tries, now));
        let (rt, cfg, params) = (self.rt.clone(), self.cfg.clone(), self.params.clone());
        self.pending.push(
            async move {
                let result = match cfg.backends.get(i) {
                    Some(p) => create_once(&*rt, &cfg, p, &params, timeout_ms).await,
                    None => Err(BackendError::InvalidResponse("no such provider".into())),
                };
                Event::Attempt { lane: i, result }
            }
            .boxed_local(),
        );
    }

    fn spawn_timer(&mut self, ms: u64, event: Event) {
        let rt = self.rt.clone();
        self.pending.push(
            async move {
                rt.sleep(ms).await;
                event
            }
            .boxed_local(),
        );
    }
}

fn name_of(cfg: &Config, i: usize) -> &'static str {
    cfg.backends.get(i).map_or("unknown", |p| p.name())
}

fn failure(provider: &str, e: &BackendError) -> BackendFailure {
    BackendFailure {
        provider: provider.into(),
        code: e.code(),
        message: e.to_string(),
    }
}

/// Creates an invoice on the first provider that can, and waits for any
/// hedged-away attempts too before returning, recording every outcome in
/// `health`. Callers that can answer early use [`CreateRun`] directly.
pub async fn create_invoice<R: Runtime + 'static>(
    rt: Rc<R>,
    cfg: Rc<Config>,
    health: &mut HealthBook,
    params: InvoiceParams,
) -> Result<(Issued, Vec<Attempt>), ChainFailure> {
    let mut run = CreateRun::new(rt, cfg, params);
    let result = run.outcome(health).await;
    run.settle(health).await;
    result
}

/// Why an invoice's status could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckUnavailable {
    pub retry_after_secs: u64,
    pub reason: String,
}

/// Asks the issuing provider, and only it, for an invoice's state.
pub async fn check_invoice<R: Runtime>(
    rt: &R,
    cfg: &Config,
    health: &mut HealthBook,
    p: &BackendConfig,
    payment_hash: &str,
) -> Result<InvoiceState, CheckUnavailable> {
    let Some(req) = p.adapter().check_request(p, payment_hash) else {
        return Err(CheckUnavailable {
            retry_after_secs: 60,
            reason: cannot(p, "look invoices up").to_string(),
        });
    };
    let name = p.name();
    let max_tries = match health.admit(name, rt.now_ms(), &cfg.breaker) {
        Admission::Allow => 1 + cfg.retry.max_retries,
        Admission::Probe => 1,
        Admission::Reject { retry_at_ms } => {
            return Err(CheckUnavailable {
                retry_after_secs: retry_at_ms
                    .saturating_sub(rt.now_ms())
                    .div_ceil(1000)
                    .max(1),
                reason: "circuit breaker open".into(),
            })
        }
    };
    let deadline = rt.now_ms().saturating_add(cfg.retry.total_timeout_ms);
    let mut last = BackendError::Timeout;
    for n in 0..max_tries {
        let start = rt.now_ms();
        let remaining = deadline.saturating_sub(start);
        if remaining == 0 {
            break;
        }
        let result =
            match exchange::send(rt, req.clone(), cfg.retry.attempt_timeout(remaining)).await {
                Ok(resp) => p.kind.adapter().parse_check(&resp),
                Err(e) => Err(e.into()),
            };
        let latency = rt.now_ms().saturating_sub(start);
        match result {
            Ok(state) => {
                health.record_success(name, latency, rt.now_ms(), Source::Request);
                return Ok(state);
            }
            Err(e) => {
                if lookup_counts_against_health(&e) {
                    health.record_failure(
                        name,
                        &e.to_string(),
                        latency,
                        rt.now_ms(),
                        Source::Request,
                        &cfg.breaker,
                    );
                }
                let retry =
                    e.is_transient() && n + 1 < max_tries && health.get(name).breaker_closed();
                last = e;
                if !retry {
                    break;
                }
                let delay = cfg.retry.delay_ms(n, rt.random_u64());
                if rt.now_ms().saturating_add(delay) >= deadline {
                    break;
                }
                rt.sleep(delay).await;
            }
        }
    }
    Err(CheckUnavailable {
        retry_after_secs: retry_after_secs(health, name, rt.now_ms()),
        reason: last.to_string(),
    })
}

/// When a check that failed may be asked again: when the breaker lets it
/// through, or in a few seconds.
fn retry_after_secs(health: &HealthBook, name: &str, now_ms: u64) -> u64 {
    match health.get(name).breaker {
        crate::health::breaker::BreakerState::Open { until_ms } => {
            until_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
        }
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::health::breaker::BreakerState;
    use backends::bolt11::Network;
    use backends::http::{HttpResponse, TransportError};
    use futures_executor::block_on;
    use serde_json::json;
    use testkit::{self, invoice_reply, FakeRuntime, Reply, VirtualRuntime};

    const PHOENIXD: &str = "http://phoenixd.test";
    const LND: &str = "http://lnd.test";
    const LNBITS: &str = "http://lnbits.test";

    fn config(extra: &[(&str, &str)]) -> Config {
        let base = [
            ("LIGHTNING_PROVIDERS", "phoenixd,lnd,lnbits"),
            ("PHOENIXD_URL", PHOENIXD),
            ("PHOENIXD_PASSWORD", "k"),
            ("LND_REST_URL", LND),
            ("LND_ADMIN_MACAROON", "abcd"),
            ("LNBITS_URL", LNBITS),
            ("LNBITS_INVOICE_KEY", "k"),
            ("LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS", "1000"),
            ("LIGHTNING_FALLBACK_TOTAL_TIMEOUT_MS", "20000"),
            ("LIGHTNING_FALLBACK_MAX_RETRIES", "2"),
            ("LIGHTNING_FALLBACK_RETRY_DELAY", "100"),
        ];
        crate::test_config::config(&[&base[..], extra].concat())
    }

    /// The production defaults for timing (5 s attempts, 15 s deadline).
    fn defaults(extra: &[(&str, &str)]) -> Config {
        let base = [
            ("LIGHTNING_FALLBACK_ATTEMPT_TIMEOUT_MS", "5000"),
            ("LIGHTNING_FALLBACK_TOTAL_TIMEOUT_MS", "15000"),
            ("LIGHTNING_FALLBACK_RETRY_DELAY", "250"),
        ];
        config(&[&base[..], extra].concat())
    }

    fn params() -> InvoiceParams {
        InvoiceParams {
            amount_sat: 1_000,
            description: Some("test".into()),
            description_hash: None,
            expiry_secs: 3600,
            network: backends::bolt11::Network::Bitcoin,
            notify_url: None,
        }
    }

    fn err(status: u16) -> Reply {
        Reply::Respond(HttpResponse::json(status, &json!({"detail": "boom"})), 10)
    }

    const T0: u64 = 1_700_000_000_000;

    fn vrt() -> Rc<VirtualRuntime> {
        Rc::new(VirtualRuntime::new(T0))
    }

    type Created = Result<(Issued, Vec<Attempt>), ChainFailure>;

    /// Creates an invoice and lets the losers finish, as the edge does.
    /// Returns the answer and how long (virtual ms) the client waited for it.
    fn create(rt: &Rc<VirtualRuntime>, cfg: &Config, h: &mut HealthBook) -> (Created, u64) {
        let start = rt.now_ms();
        let mut run = CreateRun::new(rt.clone(), Rc::new(cfg.clone()), params());
        let result = rt.run(run.outcome(h));
        let took = rt.now_ms() - start;
        rt.run(run.settle(h));
        (result, took)
    }

    fn ok(r: Created) -> (Issued, Vec<Attempt>) {
        r.unwrap_or_else(|f| panic!("{f:?}"))
    }

    fn steps(attempts: &[Attempt]) -> Vec<String> {
        attempts
            .iter()
            .map(|a| {
                format!(
                    "{}#{}@{}:{}:{}{}",
                    a.provider,
                    a.attempt,
                    a.started_ms,
                    a.outcome,
                    a.code.unwrap_or(""),
                    if a.hedge { ":hedge" } else { "" }
                )
            })
            .collect()
    }

    /// A provider history of `n` successful calls at `latency_ms`.
    fn seasoned(h: &mut HealthBook, name: &str, latency_ms: u64, n: usize) {
        for i in 0..n {
            h.record_success(name, latency_ms, T0 - 60_000 + i as u64, Source::Request);
        }
    }

    #[test]
    fn first_healthy_provider_wins() {
        let rt = vrt();
        rt.on(
            PHOENIXD,
            vec![invoice_reply("phoenixd", Network::Bitcoin, 20)],
        );
        let mut h = HealthBook::default();
        let (r, took) = create(&rt, &config(&[]), &mut h);
        let (issued, attempts) = ok(r);
        assert_eq!(issued.provider, BackendKind::Phoenixd);
        assert_eq!(steps(&attempts), vec!["phoenixd#1@0:ok:"]);
        assert_eq!(took, 20);
        assert_eq!(rt.calls_to(LND), 0, "no hedge before the hedge delay");
        assert!(h.get("phoenixd").online());
    }

    #[test]
    fn a_failing_provider_is_not_waited_for_the_next_starts_at_once() {
        let rt = vrt();
        rt.on(PHOENIXD, vec![err(520)]);
        rt.on(
            LND,
            vec![Reply::Fail(TransportError::Network("refused".into()))],
        );
        rt.on(LNBITS, vec![invoice_reply("lnbits", Network::Bitcoin, 5)]);
        let mut h = HealthBook::default();
        let cfg = config(&[("BREAKER_FAILURE_THRESHOLD", "10")]);
        let (r, took) = create(&rt, &cfg, &mut h);
        let (issued, attempts) = ok(r);
        assert_eq!(issued.provider, BackendKind::Lnbits);
        assert_eq!(
            steps(&attempts),
            vec![
                "phoenixd#1@0:error:upstream_520",
                "lnd#1@10:error:network_error",
                "lnbits#1@10:ok:"
            ]
        );
        assert_eq!(took, 15, "no backoff was waited before the next provider");
    }

    #[test]
    fn the_first_providers_retries_go_on_and_can_still_win() {
        let rt = vrt();
        let fine = invoice_reply("phoenixd", Network::Bitcoin, 5);
        rt.on(PHOENIXD, vec![err(520), err(520), fine]);
        rt.on(LND, vec![Reply::Hang]);
        rt.on(LNBITS, vec![err(503)]);
        let mut h = HealthBook::default();
        let cfg = config(&[("BREAKER_FAILURE_THRESHOLD", "10")]);
        let (issued, attempts) = ok(create(&rt, &cfg, &mut h).0);
        assert_eq!(issued.provider, BackendKind::Phoenixd);
        let phoenixd: Vec<u32> = attempts
            .iter()
            .filter(|a| a.provider == "phoenixd")
            .map(|a| a.attempt)
            .collect();
        assert_eq!(
            phoenixd,
            vec![1, 2, 3],
            "retried with backoff: {attempts:?}"
        );
        // Between phoenixd's tries: the retries slept within their jitter ceilings.
        let slept: Vec<u64> = rt
            .slept
            .borrow()
            .iter()
            .copied()
            .filter(|&d| d != 1000)
            .collect();
        assert!(slept.iter().all(|&d| d <= 200), "{slept:?}");
    }

    #[test]
    fn client_errors_fail_over_without_retry() {
        let rt = vrt();
        rt.on(PHOENIXD, vec![err(401)]);
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 5)]);
        let mut h = HealthBook::default();
        let (issued, _) = ok(create(&rt, &config(&[]), &mut h).0);
        assert_eq!(issued.provider, BackendKind::Lnd);
        assert_eq!(rt.calls_to(PHOENIXD), 1);
    }

    #[test]
    fn hanging_provider_is_cut_by_the_attempt_timeout() {
        let rt = vrt();
        rt.on(PHOENIXD, vec![Reply::Hang]);
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 5)]);
        let mut h = HealthBook::default();
        let cfg = config(&[("LIGHTNING_FALLBACK_MAX_RETRIES", "0")]);
        let (r, took) = create(&rt, &cfg, &mut h);
        let (issued, attempts) = ok(r);
        assert_eq!(issued.provider, BackendKind::Lnd);
        assert_eq!(attempts[0].code, Some("timeout"));
        assert_eq!(rt.sent.borrow()[0].1, 1000);
        assert_eq!(took, 1005);
    }

    #[test]
    fn invalid_invoices_are_rejected_and_fail_over() {
        let rt = vrt();
        // Wrong network, then garbage JSON.
        rt.on(
            PHOENIXD,
            vec![invoice_reply("phoenixd", Network::Testnet, 5)],
        );
        rt.on(
            LND,
            vec![Reply::Respond(
                HttpResponse {
                    status: 200,
                    content_type: None,
                    body: "<<garbage>>".into(),
                },
                5,
            )],
        );
        rt.on(LNBITS, vec![invoice_reply("lnbits", Network::Bitcoin, 5)]);
        let mut h = HealthBook::default();
        let (issued, attempts) = ok(create(&rt, &config(&[]), &mut h).0);
        assert_eq!(issued.provider, BackendKind::Lnbits);
        assert_eq!(attempts[0].code, Some("invalid_response"));
        assert!(attempts[0]
            .message
            .as_deref()
            .unwrap_or("")
            .contains("testnet"));
        assert_eq!(attempts[1].code, Some("invalid_response"));
    }

    #[test]
    fn all_failing_reports_each_provider() {
        let rt = vrt();
        rt.on(PHOENIXD, vec![err(503)]);
        rt.on(LND, vec![err(500)]);
        rt.on(LNBITS, vec![Reply::Hang]);
        let mut h = HealthBook::default();
        let f = create(&rt, &config(&[]), &mut h).0.err();
        let f = f.unwrap_or_else(|| panic!("expected failure"));
        let names: Vec<&str> = f.failures.iter().map(|x| x.provider.as_str()).collect();
        assert_eq!(names, vec!["phoenixd", "lnd", "lnbits"]);
        assert_eq!(f.failures[2].code, "timeout");
    }

    #[test]
    fn total_deadline_bounds_the_whole_request() {
        let rt = vrt();
        rt.on(PHOENIXD, vec![Reply::Hang]);
        rt.on(LND, vec![Reply::Hang]);
        rt.on(LNBITS, vec![Reply::Hang]);
        let mut h = HealthBook::default();
        let cfg = config(&[
            ("LIGHTNING_FALLBACK_TOTAL_TIMEOUT_MS", "2500"),
            ("BREAKER_FAILURE_THRESHOLD", "50"),
        ]);
        let (r, took) = create(&rt, &cfg, &mut h);
        assert!(r.is_err());
        assert!(took <= 2500, "took {took}");
        assert!(
            rt.now_ms() - T0 <= 2500,
            "the losers end by the deadline too"
        );
    }

    #[test]
    fn a_hanging_primary_costs_the_hedge_delay_on_every_request_until_its_breaker_opens() {
        let rt = vrt();
        rt.on(PHOENIXD, vec![Reply::Hang]);
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 40)]);
        let cfg = defaults(&[]);
        let mut h = HealthBook::default();
        // No latency history yet: the hedge delay is the cap (2 s), not the
        // three 5 s attempts the 15 s deadline used to allow.
        for request in 1..=3 {
            let (r, took) = create(&rt, &cfg, &mut h);
            let (issued, attempts) = ok(r);
            assert_eq!(issued.provider, BackendKind::Lnd);
            assert_eq!(took, 2_040, "request {request}");
            assert_eq!(
                steps(&attempts),
                vec!["phoenixd#1@0:superseded:hedged", "lnd#1@2000:ok::hedge"]
            );
            // The hedged-away attempt ran to its timeout after the answer
            // and counted as a failure.
            assert_eq!(h.get("phoenixd").consecutive_failures, request);
        }
        assert_eq!(
            rt.calls_to(PHOENIXD),
            3,
            "one attempt per request: its budget is one timeout"
        );
        assert!(matches!(
            h.get("phoenixd").breaker,
            BreakerState::Open { .. }
        ));
        // Known down: skipped at once.
        let calls = rt.calls_to(PHOENIXD);
        let (r, took) = create(&rt, &cfg, &mut h);
        let (_, attempts) = ok(r);
        assert_eq!(took, 40);
        assert_eq!(rt.calls_to(PHOENIXD), calls);
        assert_eq!(
            steps(&attempts),
            vec!["phoenixd#0@0:skipped:circuit_open", "lnd#1@0:ok:"]
        );
    }

    #[test]
    fn the_hedge_delay_follows_the_providers_p95() {
        let rt = vrt();
        rt.on(PHOENIXD, vec![Reply::Hang]);
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 40)]);
        let cfg = defaults(&[]);
        let mut h = HealthBook::default();
        seasoned(&mut h, "phoenixd", 600, 10);
        let (r, took) = create(&rt, &cfg, &mut h);
        let (_, attempts) = ok(r);
        assert_eq!(took, 640);
        assert_eq!(steps(&attempts)[1], "lnd#1@600:ok::hedge");
        // A fast provider is hedged at the floor, not at its 30 ms p95.
        let mut h = HealthBook::default();
        seasoned(&mut h, "phoenixd", 30, 10);
        let (_, took) = create(&rt, &cfg, &mut h);
        assert_eq!(took, 290);
        // The floor and cap are settings.
        let tight = defaults(&[
            ("LIGHTNING_FALLBACK_HEDGE_MIN_MS", "100"),
            ("LIGHTNING_FALLBACK_HEDGE_MAX_MS", "150"),
        ]);
        let mut h = HealthBook::default();
        seasoned(&mut h, "phoenixd", 600, 10);
        let (_, took) = create(&rt, &tight, &mut h);
        assert_eq!(took, 190);
    }

    #[test]
    fn hedges_chain_through_several_slow_providers() {
        let rt = vrt();
        rt.on(PHOENIXD, vec![Reply::Hang]);
        rt.on(LND, vec![Reply::Hang]);
        rt.on(LNBITS, vec![invoice_reply("lnbits", Network::Bitcoin, 40)]);
        let mut h = HealthBook::default();
        seasoned(&mut h, "phoenixd", 300, 5);
        seasoned(&mut h, "lnd", 500, 5);
        let (r, took) = create(&rt, &defaults(&[]), &mut h);
        let (issued, attempts) = ok(r);
        assert_eq!(issued.provider, BackendKind::Lnbits);
        assert_eq!(took, 840);
        assert_eq!(
            steps(&attempts),
            vec![
                "phoenixd#1@0:superseded:hedged",
                "lnd#1@300:superseded:hedged:hedge",
                "lnbits#1@800:ok::hedge"
            ]
        );
    }

    #[test]
    fn the_first_valid_invoice_wins_and_a_late_success_still_counts() {
        let rt = vrt();
        // phoenixd answers at 2.5 s: after its hedge (2 s) but before lnd (2 s + 1 s).
        rt.on(
            PHOENIXD,
            vec![invoice_reply("phoenixd", Network::Bitcoin, 2_500)],
        );
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 1_000)]);
        let cfg = defaults(&[("BREAKER_FAILURE_THRESHOLD", "5")]);
        let mut h = HealthBook::default();
        let (r, took) = create(&rt, &cfg, &mut h);
        let (issued, attempts) = ok(r);
        assert_eq!(issued.provider, BackendKind::Phoenixd);
        assert_eq!(took, 2_500);
        assert_eq!(
            steps(&attempts),
            vec!["phoenixd#1@0:ok:", "lnd#1@2000:superseded:hedged:hedge"]
        );
        assert_eq!(
            h.get("lnd").last_latency_ms,
            Some(1_000),
            "settled after the answer"
        );
        assert!(h.get("lnd").online());

        // Now lnd wins while phoenixd is still working; phoenixd's late invoice is
        // dropped but its success resets its failure streak.
        let rt = vrt();
        rt.on(
            PHOENIXD,
            vec![invoice_reply("phoenixd", Network::Bitcoin, 3_000)],
        );
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 40)]);
        let mut h = HealthBook::default();
        for _ in 0..2 {
            h.record_failure(
                "phoenixd",
                "HTTP 500",
                10,
                T0 - 1,
                Source::Request,
                &cfg.breaker,
            );
        }
        let (r, took) = create(&rt, &cfg, &mut h);
        assert_eq!(ok(r).0.provider, BackendKind::Lnd);
        assert_eq!(took, 2_040);
        let phoenixd = h.get("phoenixd");
        assert_eq!(phoenixd.consecutive_failures, 0);
        assert_eq!(phoenixd.last_latency_ms, Some(3_000));
        assert!(phoenixd.online());
    }

    #[test]
    fn a_provider_budget_bounds_its_own_retries() {
        let rt = vrt();
        // Slow failures, retried at once: without a budget phoenixd would spend
        // 11 × 400 ms retrying.
        let slow_503 = || {
            vec![Reply::Respond(
                HttpResponse::json(503, &json!({"detail": "busy"})),
                400,
            )]
        };
        rt.on(PHOENIXD, slow_503());
        rt.on(LND, slow_503());
        rt.on(LNBITS, vec![invoice_reply("lnbits", Network::Bitcoin, 40)]);
        let cfg = defaults(&[
            ("LIGHTNING_FALLBACK_MAX_RETRIES", "10"),
            ("LIGHTNING_FALLBACK_RETRY_DELAY", "0"),
            ("LIGHTNING_FALLBACK_PROVIDER_BUDGET_MS", "1000"),
            ("BREAKER_FAILURE_THRESHOLD", "50"),
        ]);
        let mut h = HealthBook::default();
        let (r, took) = create(&rt, &cfg, &mut h);
        let (issued, _) = ok(r);
        assert_eq!(issued.provider, BackendKind::Lnbits);
        // phoenixd failed at 400, so lnd started then; lnd failed at 800, so lnbits.
        assert_eq!(took, 840);
        // phoenixd's tries stayed within its budget: the third attempt's timeout
        // was cut to what was left of it.
        let phoenixd: Vec<u64> = rt
            .sent
            .borrow()
            .iter()
            .filter(|(url, _)| url.starts_with(PHOENIXD))
            .map(|(_, t)| *t)
            .collect();
        assert_eq!(phoenixd, vec![1000, 600, 200]);
    }

    #[test]
    fn open_breaker_skips_the_provider_without_calling_it() {
        let rt = vrt();
        rt.on(PHOENIXD, vec![Reply::Hang]);
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 5)]);
        let cfg = config(&[
            ("BREAKER_FAILURE_THRESHOLD", "3"),
            ("BREAKER_COOLDOWN_SECS", "30"),
        ]);
        let mut h = HealthBook::default();
        for _ in 0..3 {
            let _ = create(&rt, &cfg, &mut h);
        }
        assert!(matches!(
            h.get("phoenixd").breaker,
            BreakerState::Open { .. }
        ));
        let calls = rt.calls_to(PHOENIXD);
        let (r, took) = create(&rt, &cfg, &mut h);
        let (issued, attempts) = ok(r);
        assert_eq!(issued.provider, BackendKind::Lnd);
        assert_eq!(
            rt.calls_to(PHOENIXD),
            calls,
            "open breaker must not call the provider"
        );
        assert_eq!(attempts[0].outcome, "skipped");
        assert_eq!(attempts[0].code, Some("circuit_open"));
        assert_eq!(took, 5, "no waiting for a known-down provider");
    }

    #[test]
    fn half_open_probe_closes_the_breaker() {
        let rt = vrt();
        rt.on(
            PHOENIXD,
            vec![
                Reply::Hang,
                Reply::Hang,
                Reply::Hang,
                invoice_reply("phoenixd", Network::Bitcoin, 5),
            ],
        );
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 5)]);
        let cfg = config(&[("BREAKER_COOLDOWN_SECS", "10")]);
        let mut h = HealthBook::default();
        for _ in 0..3 {
            let _ = create(&rt, &cfg, &mut h);
        }
        assert!(matches!(
            h.get("phoenixd").breaker,
            BreakerState::Open { .. }
        ));
        rt.advance(10_000);
        let (issued, _) = ok(create(&rt, &cfg, &mut h).0);
        assert_eq!(issued.provider, BackendKind::Phoenixd);
        assert_eq!(h.get("phoenixd").breaker, BreakerState::Closed);
    }

    #[test]
    fn a_hanging_half_open_probe_costs_only_the_hedge_delay() {
        let rt = vrt();
        rt.on(PHOENIXD, vec![Reply::Hang]);
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 40)]);
        let cfg = defaults(&[]);
        let mut h = HealthBook::default();
        seasoned(&mut h, "phoenixd", 100, 10);
        for _ in 0..3 {
            h.record_failure(
                "phoenixd",
                "timeout",
                5_000,
                T0 - 60_000,
                Source::Request,
                &cfg.breaker,
            );
        }
        assert!(matches!(
            h.get("phoenixd").breaker,
            BreakerState::Open { .. }
        ));
        // The cooldown (30 s) has passed: this request carries the probe.
        let mut run = CreateRun::new(rt.clone(), Rc::new(cfg.clone()), params());
        let (issued, attempts) = ok(rt.run(run.outcome(&mut h)));
        assert_eq!(issued.provider, BackendKind::Lnd);
        assert_eq!(
            rt.now_ms() - T0,
            290,
            "the floor (250 ms), not a 5 s timeout"
        );
        assert_eq!(attempts[0].outcome, "superseded");
        assert!(matches!(
            h.get("phoenixd").breaker,
            BreakerState::HalfOpen { .. }
        ));
        rt.run(run.settle(&mut h));
        assert!(
            matches!(h.get("phoenixd").breaker, BreakerState::Open { .. }),
            "the probe's own timeout reopened it"
        );
    }

    #[test]
    fn sequential_strategy_is_the_seed_baseline() {
        let cfg = defaults(&[
            ("LIGHTNING_FALLBACK_STRATEGY", "sequential"),
            ("LIGHTNING_FALLBACK_RETRY_DELAY", "2000"),
            ("BREAKER_FAILURE_THRESHOLD", "1"),
        ]);
        // A 520 primary: three attempts, waiting 2 s then 4 s, then lnd.
        let rt = vrt();
        rt.on(PHOENIXD, vec![err(520)]);
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 40)]);
        let mut h = HealthBook::default();
        let (r, took) = create(&rt, &cfg, &mut h);
        let (issued, attempts) = ok(r);
        assert_eq!(issued.provider, BackendKind::Lnd);
        assert_eq!(
            steps(&attempts),
            vec![
                "phoenixd#1@0:error:upstream_520",
                "phoenixd#2@2010:error:upstream_520",
                "phoenixd#3@6020:error:upstream_520",
                "lnd#1@6030:ok:"
            ]
        );
        assert_eq!(took, 6_070);
        assert_eq!(
            *rt.slept.borrow(),
            vec![2_000, 4_000],
            "no jitter, no hedge timers"
        );
        // No breaker: phoenixd's is open now (threshold 1), yet it is called again.
        assert!(matches!(
            h.get("phoenixd").breaker,
            BreakerState::Open { .. }
        ));
        let calls = rt.calls_to(PHOENIXD);
        let _ = create(&rt, &cfg, &mut h);
        assert_eq!(rt.calls_to(PHOENIXD), calls + 3);

        // A hanging primary: 5 s timeouts and no hedge, as measured in issue 9.
        let rt = vrt();
        rt.on(PHOENIXD, vec![Reply::Hang]);
        rt.on(LND, vec![invoice_reply("lnd", Network::Bitcoin, 40)]);
        let mut h = HealthBook::default();
        let (r, took) = create(&rt, &cfg, &mut h);
        let (_, attempts) = ok(r);
        assert_eq!(
            steps(&attempts),
            vec![
                "phoenixd#1@0:error:timeout",
                "phoenixd#2@7000:error:timeout",
                "lnd#1@12000:ok:"
            ]
        );
        assert_eq!(took, 12_040, "the next 4 s wait would pass the deadline");
    }

    #[test]
    fn check_asks_only_the_issuer_and_reports_unavailable() {
        let rt = FakeRuntime::new(T0);
        rt.on(LND, vec![err(502)]);
        rt.on(
            PHOENIXD,
            vec![Reply::Respond(
                HttpResponse::json(200, &json!({"isPaid": true, "isExpired": false})),
                5,
            )],
        );
        let cfg = config(&[]);
        let mut h = HealthBook::default();
        let lnd = cfg.backend("lnd").cloned().unwrap_or_else(|| panic!("lnd"));
        let r = block_on(check_invoice(&rt, &cfg, &mut h, &lnd, &"ab".repeat(32)));
        assert!(matches!(r, Err(CheckUnavailable { .. })), "{r:?}");
        assert_eq!(rt.calls_to(PHOENIXD), 0, "never ask another provider");
        assert_eq!(rt.calls_to(LND), 3);
        let phoenixd = cfg
            .backend("phoenixd")
            .cloned()
            .unwrap_or_else(|| panic!("phoenixd"));
        let r = block_on(check_invoice(
            &rt,
            &cfg,
            &mut h,
            &phoenixd,
            &"ab".repeat(32),
        ));
        assert_eq!(
            r,
            Ok(InvoiceState::Paid {
                settled_at_secs: None
            })
        );
    }
}
