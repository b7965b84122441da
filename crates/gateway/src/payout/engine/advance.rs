//! Moving a payout through the state machine as far as it can go now: one
//! step per due action, each acting only through version-checked writes.

use crate::payout::config::PayoutConfig;
use crate::payout::machine::{self, Action, LookupOutcome, PayOutcome, PayoutPolicy};
use crate::payout::model::{BackendId, Payout, PayoutState, WatchedHash};
use crate::payout::webhook;
use backends::http::Runtime;
use backends::{payment, BackendConfig};

use super::refresh::new_invoice;
use super::route::{self, Routed};
use super::{deliver_webhook, save, PayoutStore, StoreError};

/// What a step leaves the loop to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Look at the payout again: it may have more to do now.
    Again,
    /// Nothing more to do now.
    Stop,
}

/// Moves one payout as far as it can go now, then delivers its webhook if
/// one is due. Safe to call at any time from any wake-up: it acts only on
/// what is due, and only through version-checked writes.
pub async fn advance<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    id: &str,
) -> Result<(), StoreError> {
    advance_state(rt, store, cfg, id).await?;
    deliver_webhook(rt, store, cfg, id).await
}

/// Finds the backend `p` is pinned to. A payout none of whose hashes
/// ever reached a backend may move to the current one; rows stored before
/// pinning are pinned to the configured backend of their kind. `Err` names
/// what is missing.
fn pinned_backend(
    p: &mut Payout,
    cfg: &PayoutConfig,
    now_ms: u64,
) -> Result<(backends::BackendConfig, bool), String> {
    let sending = matches!(p.state, PayoutState::Sending { .. });
    match p.backend.clone() {
        Some(id) => {
            if let Some(b) = cfg.backends.iter().find(|b| id.matches(b)) {
                return Ok((b.clone(), false));
            }
            if !sending && !p.hash_spent && (!p.ever_sent || machine::movable(p)) {
                let to = BackendId::of(&cfg.default_backend);
                let why = format!("never sent; {} is no longer configured", id.label());
                if machine::move_to(p, to.clone(), why.clone(), now_ms).is_err() {
                    p.note(now_ms, format!("moved to {} ({why})", to.label()));
                    p.backend = Some(to);
                    p.provider = cfg.default_backend.kind;
                }
                return Ok((cfg.default_backend.clone(), true));
            }
            Err(format!(
                "its payout backend {} is no longer configured; configure it again to finish this payout",
                id.label()
            ))
        }
        None => match cfg
            .backends
            .iter()
            .filter(|b| b.kind == p.provider)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [_, _, ..] => Err(format!(
                "it was stored before payouts were pinned, and several {} payout backends are configured: which one it was sent through is unknown; configure only the one it used to finish this payout",
                p.provider.as_str()
            )),
            [b] => {
                // Stored before pinning: an earlier rule left hashes after a
                // "not found". Treat every earlier hash as possibly paid.
                let id = BackendId::of(b);
                p.ever_sent |= p.hash_spent || p.send_attempts > 0 || !p.previous_hashes.is_empty();
                for h in p.previous_hashes.clone() {
                    if !p.watched.iter().any(|w| w.hash == h) {
                        p.watched.push(WatchedHash {
                            hash: h,
                            since_ms: now_ms,
                            next_check_ms: Some(now_ms),
                            checks: 0,
                            backend: Some(id.clone()),
                        });
                    }
                }
                p.note(
                    now_ms,
                    format!(
                        "pinned to {} (stored before pinning; assumed to be the backend it was sent through)",
                        id.label()
                    ),
                );
                p.backend = Some(id);
                Ok(((*b).clone(), true))
            }
            [] => Err(format!(
                "no {} payout backend is configured; configure it again to finish this payout",
                p.provider.as_str()
            )),
        },
    }
}

/// The payout policy for `p`'s backend (see [`machine::PayoutPolicy::for_backend`]),
/// and whether another backend of the chain may still take it.
fn policy_for(cfg: &PayoutConfig, p: &Payout) -> machine::PayoutPolicy {
    let kind = p.backend.as_ref().map_or(p.provider, |b| b.kind);
    let mut policy = cfg.policy.for_backend(&kind.descriptor().facts);
    policy.may_move = route::untried_backend(cfg, p);
    policy
}

/// Moves one payout through the state machine as far as it can go now.
pub async fn advance_state<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    id: &str,
) -> Result<(), StoreError> {
    let instance = store.instance();
    for _ in 0..8 {
        let Some(mut p) = store.get(id)? else {
            return Ok(());
        };
        let now = rt.now_ms();
        let policy = policy_for(cfg, &p);
        let action = machine::next_action(&p, now, &policy, &instance);
        let next = match action {
            Action::Nothing => Next::Stop,
            Action::RecoverSending => {
                if machine::recover_sending(&mut p, now).is_ok() {
                    save(store, &mut p, cfg)?;
                }
                Next::Again
            }
            action => match pin(rt, store, cfg, &mut p, &policy)? {
                Pinned::Saved(next) => next,
                // Only a payout nothing has reached yet may choose its backend.
                Pinned::To(_)
                    if action == Action::Send
                        && machine::movable(&p)
                        && matches!(route::route(store, cfg, &mut p, now)?, Routed::Saved) =>
                {
                    Next::Again
                }
                Pinned::To(backend) => {
                    let ctx = Step {
                        rt,
                        store,
                        cfg,
                        policy: &policy,
                        backend: &backend,
                        instance: &instance,
                    };
                    ctx.run(p, action).await?
                }
            },
        };
        if next == Next::Stop {
            return Ok(());
        }
    }
    Ok(())
}

/// Where a payout that acts now goes.
enum Pinned {
    /// Through this backend.
    To(BackendConfig),
    /// Its pin or its blocked state changed and was saved.
    Saved(Next),
}

/// Resolves the payout's backend: unblocks, repins or blocks it (saved),
/// or names the backend it acts through.
fn pin<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    cfg: &PayoutConfig,
    p: &mut Payout,
    policy: &PayoutPolicy,
) -> Result<Pinned, StoreError> {
    let now = rt.now_ms();
    match pinned_backend(p, cfg, now) {
        Ok((b, changed)) if !changed && p.blocked.is_none() => Ok(Pinned::To(b)),
        Ok(_) => {
            machine::unblock(p, now);
            save(store, p, cfg)?;
            Ok(Pinned::Saved(Next::Again))
        }
        Err(reason) => {
            machine::block(p, reason, now, policy, rt.random_u64());
            save(store, p, cfg)?;
            Ok(Pinned::Saved(Next::Stop))
        }
    }
}

/// One step's context: the runtime, the store, the policy for the
/// payout's backend, and that backend.
pub(super) struct Step<'a, R: Runtime, S: PayoutStore> {
    pub rt: &'a R,
    pub store: &'a S,
    pub cfg: &'a PayoutConfig,
    pub policy: &'a PayoutPolicy,
    pub backend: &'a BackendConfig,
    pub instance: &'a str,
}

impl<R: Runtime, S: PayoutStore> Step<'_, R, S> {
    async fn run(&self, mut p: Payout, action: Action) -> Result<Next, StoreError> {
        let now = self.rt.now_ms();
        match action {
            Action::Send => self.send(p).await,
            Action::Lookup => {
                let hash = p.payment_hash.clone();
                self.lookup(p, hash, false).await
            }
            Action::Watch(hash) => self.watch(p, hash).await,
            Action::NewInvoice => new_invoice(self, p).await,
            Action::AwaitExpiry => {
                if machine::await_expiry(&mut p, now, self.policy).is_ok() {
                    save(self.store, &mut p, self.cfg)?;
                }
                Ok(Next::Again)
            }
            Action::GiveUp(reason) => {
                if machine::give_up(&mut p, reason, now).is_ok() {
                    webhook::arm(&mut p, now);
                    save(self.store, &mut p, self.cfg)?;
                }
                Ok(Next::Again)
            }
            Action::Nothing | Action::RecoverSending => Ok(Next::Stop),
        }
    }

    /// `Sending` is saved first; from then on this hash is never sent
    /// again without a lookup.
    async fn send(&self, mut p: Payout) -> Result<Next, StoreError> {
        let (rt, store, cfg) = (self.rt, self.store, self.cfg);
        if machine::begin_send(&mut p, rt.now_ms(), self.instance).is_err()
            || !save(store, &mut p, cfg)?
        {
            return Ok(Next::Again);
        }
        let outcome = payment::pay(
            rt,
            self.backend,
            &p.invoice,
            &p.payment_hash,
            p.amount_sat,
            cfg.policy.pay_timeout_ms,
        )
        .await;
        let id = BackendId::of(self.backend);
        if matches!(outcome, PayOutcome::Succeeded { .. }) {
            store.remember_paid(&id, &p.payment_hash, rt.now_ms())?;
        }
        let refused = matches!(outcome, PayOutcome::NotSent(_));
        let alternative = refused && route::alternative_now(store, cfg, &p, rt.now_ms())?;
        apply_with_retry(store, cfg, &p.id, &p.payment_hash, rt.now_ms(), |cur| {
            let applied = machine::apply_pay(
                cur,
                outcome.clone(),
                rt.now_ms(),
                self.policy,
                rt.random_u64(),
            )
            .is_ok();
            // Refused before acting: the next backend of the chain may take
            // it at once.
            if applied && alternative {
                machine::due_now(cur, rt.now_ms());
            }
            applied
        })?;
        // The breaker only steers new payouts: its bookkeeping never keeps
        // the answer above from being saved.
        let _ = route::record_pay(store, cfg, &id, &outcome, rt.now_ms());
        Ok(Next::Again)
    }

    /// Looks up an earlier hash at the backend it was sent through, which
    /// may not be the payout's backend any more.
    async fn watch(&self, p: Payout, hash: String) -> Result<Next, StoreError> {
        let sent_through = p
            .watched
            .iter()
            .find(|w| w.hash == hash)
            .and_then(|w| w.backend.clone());
        match sent_through {
            Some(id) if !id.matches(self.backend) => {
                match self.cfg.backends.iter().find(|b| id.matches(b)) {
                    Some(b) => self.lookup_at(p, hash, true, b).await,
                    None => {
                        let why = format!(
                            "{} is no longer configured; this hash cannot be looked up",
                            id.label()
                        );
                        let now = self.rt.now_ms();
                        self.apply_lookup(p, hash, true, LookupOutcome::Error(why), now)
                    }
                }
            }
            _ => self.lookup(p, hash, true).await,
        }
    }

    /// Looks up the current hash, or (`watched`) an earlier one.
    async fn lookup(&self, p: Payout, hash: String, watched: bool) -> Result<Next, StoreError> {
        self.lookup_at(p, hash, watched, self.backend).await
    }

    async fn lookup_at(
        &self,
        p: Payout,
        hash: String,
        watched: bool,
        backend: &BackendConfig,
    ) -> Result<Next, StoreError> {
        let (rt, store) = (self.rt, self.store);
        // The answer is judged as of when it was asked: the checks after a
        // "not found" take time, and a later clock would make it look
        // fresher than it is.
        let asked_at = rt.now_ms();
        let outcome = payment::lookup(rt, backend, &hash).await;
        let outcome = match outcome {
            LookupOutcome::NotFound if !watched => {
                let first_sent = p.hash_first_sent_at_ms.unwrap_or(p.created_at_ms);
                let check = NotFoundCheck {
                    hash: &hash,
                    first_sent_ms: first_sent,
                    payout_id: &p.id,
                    other_clock_margin_ms: OTHER_SHARD_CLOCK_MARGIN_MS
                        .max(self.policy.clock_skew_ms),
                };
                confirm_not_found(rt, store, backend, check).await?
            }
            o => o,
        };
        if matches!(outcome, LookupOutcome::Paid { .. }) {
            let id = BackendId::of(backend);
            store.remember_paid(&id, &hash, rt.now_ms())?;
            if !p.paid_hashes.contains(&hash) {
                let _ = route::record_paid(store, self.cfg, &id, rt.now_ms());
            }
        }
        self.apply_lookup(p, hash, watched, outcome, asked_at)
    }

    /// Applies a lookup's answer, asked at `asked_at`, to the freshest copy,
    /// unless it moved meanwhile.
    fn apply_lookup(
        &self,
        p: Payout,
        hash: String,
        watched: bool,
        outcome: LookupOutcome,
        asked_at: u64,
    ) -> Result<Next, StoreError> {
        let (rt, store) = (self.rt, self.store);
        let Some(mut cur) = store.get(&p.id)? else {
            return Ok(Next::Stop);
        };
        if cur.version != p.version {
            return Ok(Next::Again); // someone else moved it meanwhile
        }
        let (now, random) = (asked_at, rt.random_u64());
        let applied = if watched {
            machine::apply_watch(&mut cur, &hash, outcome, now, self.policy, random)
        } else {
            machine::apply_lookup(&mut cur, outcome, now, self.policy, random)
        };
        if applied.is_ok() {
            webhook::arm(&mut cur, now);
            save(store, &mut cur, self.cfg)?;
        }
        Ok(Next::Again)
    }
}

/// Applies a pay outcome to the freshest copy, retrying on version conflicts.
fn apply_with_retry<S: PayoutStore>(
    store: &S,
    cfg: &PayoutConfig,
    id: &str,
    hash: &str,
    now_ms: u64,
    apply: impl Fn(&mut Payout) -> bool,
) -> Result<(), StoreError> {
    for _ in 0..3 {
        let Some(mut cur) = store.get(id)? else {
            return Ok(());
        };
        if cur.payment_hash != hash || !apply(&mut cur) {
            return Ok(()); // already resolved by another path
        }
        webhook::arm(&mut cur, now_ms);
        if save(store, &mut cur, cfg)? {
            return Ok(());
        }
    }
    Ok(())
}

/// What a blind backend's "not found" is checked with.
struct NotFoundCheck<'a> {
    hash: &'a str,
    /// The looked-up hash's first send.
    first_sent_ms: u64,
    /// The payout, naming this store's shard.
    payout_id: &'a str,
    /// How much earlier than the first send another shard must have seen a
    /// payment, where "not found" may hide one in flight.
    other_clock_margin_ms: u64,
}

/// A "not found" from a backend whose lookups may not see outgoing
/// payments counts only if, right now, the same backend shows as paid a
/// hash it is known to have paid (this store's own history of it, or else
/// another shard's). Where a "not found" may also hide a payment in flight,
/// that hash must have been paid before the looked-up hash's first send: a
/// wallet that shows an older payment shows a newer one. A history that
/// holds the looked-up hash itself contradicts the answer. Otherwise it
/// proves nothing: a lookup error, naming the backend.
async fn confirm_not_found<R: Runtime, S: PayoutStore>(
    rt: &R,
    store: &S,
    backend_cfg: &BackendConfig,
    check: NotFoundCheck<'_>,
) -> Result<LookupOutcome, StoreError> {
    let facts = backend_cfg.kind.descriptor().facts;
    if !facts.lookup_may_be_blind {
        return Ok(LookupOutcome::NotFound);
    }
    let (hash, first_sent_ms) = (check.hash, check.first_sent_ms);
    let id = BackendId::of(backend_cfg);
    let blind = |why: String| {
        LookupOutcome::Error(format!(
            "{} answered \"not found\", but its lookups may not see outgoing payments: {why}",
            id.label()
        ))
    };
    let older = |margin_ms: u64| {
        move |(_, at): &(String, u64)| {
            !facts.not_found_may_hide_in_flight || at.saturating_add(margin_ms) <= first_sent_ms
        }
    };
    let contradicted = |known: &[(String, u64)], whose: &str| {
        known
            .iter()
            .any(|(k, _)| k == hash)
            .then(|| blind(format!("{whose} saw it pay this very hash")))
    };
    let own = store.known_paid(&id)?;
    if let Some(e) = contradicted(&own, "this queue shard") {
        return Ok(e);
    }
    let mut candidates: Vec<(String, u64)> = own.into_iter().filter(older(0)).collect();
    let mut asked = String::new();
    if candidates.is_empty() {
        let others = store
            .known_paid_on_other_shards(&id, check.payout_id)
            .await?;
        if let Some(e) = contradicted(&others.hashes, "another queue shard") {
            return Ok(e);
        }
        candidates = others
            .hashes
            .into_iter()
            .filter(older(check.other_clock_margin_ms))
            .collect();
        crate::small_sort::sort_by_key(&mut candidates, |(_, at)| std::cmp::Reverse(*at));
        if others.asked > 0 {
            asked = format!(
                "; the other queue shards were asked, {} of {} answered",
                others.answered, others.asked
            );
        }
    }
    if candidates.is_empty() {
        let none = if facts.not_found_may_hide_in_flight {
            "no payment it made before this one was first sent is known, to check that they do"
        } else {
            "no payment it made is known yet to check that they do"
        };
        return Ok(blind(format!("{none}{asked}")));
    }
    // A known payment it does not show (not found, failed) breaks the rule
    // this check rests on: no older one may vouch for it. Only an answer
    // that says nothing (an error, in flight) lets the next one be tried.
    let mut why = String::new();
    for (known, _) in candidates.iter().take(KNOWN_PAID_TRIED) {
        let answer = payment::lookup(rt, backend_cfg, known).await;
        why = format!(
            "it did not show {known}, a payment it made, as paid ({})",
            lookup_summary(&answer)
        );
        match answer {
            LookupOutcome::Paid { .. } => return Ok(LookupOutcome::NotFound),
            LookupOutcome::Error(_) | LookupOutcome::Pending => continue,
            LookupOutcome::NotFound | LookupOutcome::Failed(_) => break,
        }
    }
    Ok(blind(why))
}

/// At least this much earlier than a hash's first send another shard must
/// have seen a payment, where "not found" may hide one in flight: the two
/// times come from two objects' clocks (`PAYOUT_CLOCK_SKEW_SECS` raises it).
const OTHER_SHARD_CLOCK_MARGIN_MS: u64 = 60_000;

/// Known payments looked up before a "not found" is left unproven, when
/// the first lookup of one says nothing (an error).
const KNOWN_PAID_TRIED: usize = 2;

fn lookup_summary(o: &LookupOutcome) -> String {
    match o {
        LookupOutcome::Paid { .. } => "paid".into(),
        LookupOutcome::Failed(r) => format!("failed: {}", r.reason),
        LookupOutcome::Pending => "pending".into(),
        LookupOutcome::NotFound => "not found".into(),
        LookupOutcome::Error(e) => format!("error: {e}"),
    }
}
