//! The payout state machine. Each function takes a payout in a given state
//! and an outcome, and gives the next state; none does I/O. The rules that
//! keep money safe live here:
//!
//! - only `Queued` without `verify_first` may send, and `Sending` is saved first;
//! - an ambiguous answer (timeout, 5xx, a 520 that does not say `failed`, a cut
//!   connection, "pending") makes the payout `Unknown`, resolved only by
//!   looking up that payment hash on the same backend;
//! - a hash that was sent is sent again only after a lookup confirms it unpaid;
//! - a hash that was sent is left (new invoice, or failed) only once it is
//!   proven dead: expired, then found absent or failed by a lookup made
//!   after expiry plus a margin. Backends execute requests late; nothing
//!   pays an expired invoice;
//! - a lookup's "failed" is proof only for the send it describes (see
//!   [`FailedRecord`]); a hash the backend called "already paid" is never
//!   proven dead;
//! - an explicit "failed" from a pay request is always checked by a lookup;
//! - earlier hashes keep being looked up: a payment is never hidden.

use crate::backoff::RetryPolicy;
use crate::payout::model::{
    BackendId, Blocked, Payout, PayoutState, RouteStep, SentBefore, WatchedHash,
};

pub use backends::outcome::{Covers, FailedRecord, LookupOutcome, PayOutcome};

#[derive(Debug, Clone, PartialEq)]
pub struct PayoutPolicy {
    /// Send attempts before a payout stops sending and ends once its hash is
    /// proven unpayable.
    pub max_attempts: u32,
    /// A payout older than this stops sending (never ends while its hash may pay).
    pub max_age_ms: u64,
    pub retry: RetryPolicy,
    /// Backoff of status lookups while unknown.
    pub lookup: RetryPolicy,
    /// A "not found" lookup this soon after a send is not trusted: the
    /// request may still be on its way. Re-sending the same hash after it is
    /// safe (a hash pays once); leaving the hash is not, see below.
    pub not_found_grace_ms: u64,
    /// A `Sending` older than this was cut off (the instance died): unknown.
    pub sending_timeout_ms: u64,
    /// An invoice this close to expiry is not sent.
    pub expiry_margin_secs: u64,
    /// A sent hash is left (new invoice, or failed) only when a lookup made
    /// this long after the invoice expired finds it absent or failed: a
    /// backend may execute a request it was sent long after the caller gave
    /// up, but nothing pays an expired invoice.
    pub expiry_lookup_margin_secs: u64,
    /// Invoices one address payout may go through before it gives up.
    pub max_invoices: u32,
    /// How long earlier hashes keep being looked up after they were left.
    pub watch_window_ms: u64,
    /// How long a pay request may take before its outcome is unknown.
    pub pay_timeout_ms: u64,
    /// The longest a backend may hold a pay request before running it. An
    /// LNbits wallet pays its own users' invoices even after they expired,
    /// so expiry alone proves nothing until this long after the last send.
    pub late_execution_bound_ms: u64,
    /// The operator set the bound (`PAYOUT_LATE_EXECUTION_BOUND_SECS`): it
    /// holds for every backend. Otherwise a backend known to hold requests
    /// longer raises it for its payouts ([`PayoutPolicy::for_backend`]).
    pub late_execution_bound_set: bool,
    /// How far a backend's clock may be from ours. A lookup's "failed"
    /// record created more than this before the last send describes an
    /// earlier send; and a hash is re-sent no sooner than twice this after
    /// its previous send, so records of the two sends cannot be confused.
    pub clock_skew_ms: u64,
    /// The longest a sent payment's parts may stay in flight: HTLCs expire
    /// by their CLTV, and 2016 blocks (LND's largest allowed total CLTV
    /// delta) is about 14 days. A "failed" that may still settle proves the
    /// hash unpaid only this long after its last send.
    pub in_flight_bound_ms: u64,
    /// "Not found" proves a hash dead only after the in-flight bound (set by
    /// [`PayoutPolicy::for_backend`] for backends whose "not found" may hide
    /// a payment in flight).
    pub not_found_waits_in_flight: bool,
    /// Another backend of the payout chain has not failed this payout yet
    /// (set per payout by the engine): a payout out of attempts on its
    /// backend tries it, if nothing it sent can still be paid, instead of
    /// ending.
    pub may_move: bool,
}

impl Default for PayoutPolicy {
    fn default() -> Self {
        PayoutPolicy {
            max_attempts: 5,
            max_age_ms: 24 * 3600 * 1000,
            retry: RetryPolicy {
                max_retries: 0,
                base_delay_ms: 30_000,
                max_delay_ms: 30 * 60_000,
                attempt_timeout_ms: 20_000,
                total_timeout_ms: 20_000,
            },
            lookup: RetryPolicy {
                max_retries: 0,
                base_delay_ms: 15_000,
                max_delay_ms: 15 * 60_000,
                attempt_timeout_ms: 10_000,
                total_timeout_ms: 10_000,
            },
            not_found_grace_ms: 120_000,
            sending_timeout_ms: 120_000,
            expiry_margin_secs: 30,
            expiry_lookup_margin_secs: 300,
            max_invoices: 10,
            watch_window_ms: 24 * 3600 * 1000,
            pay_timeout_ms: 20_000,
            late_execution_bound_ms: 3600 * 1000,
            late_execution_bound_set: false,
            clock_skew_ms: 60_000,
            in_flight_bound_ms: 14 * 24 * 3600 * 1000,
            not_found_waits_in_flight: false,
            may_move: false,
        }
    }
}

impl PayoutPolicy {
    /// The policy for payouts pinned to a backend with these facts: one
    /// that holds requests up to `late_execution_floor_ms` before dropping
    /// them raises the late-execution bound (unless the operator set it),
    /// and one whose "not found" may hide a payment in flight proves a hash
    /// dead by "not found" only after the in-flight bound.
    pub fn for_backend(&self, facts: &backends::PaymentFacts) -> PayoutPolicy {
        let mut p = self.clone();
        if !p.late_execution_bound_set {
            p.late_execution_bound_ms =
                p.late_execution_bound_ms.max(facts.late_execution_floor_ms);
        }
        p.not_found_waits_in_flight = facts.not_found_may_hide_in_flight;
        p
    }
}

/// The next thing the queue should do with a payout.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Nothing,
    Send,
    Lookup,
    /// Look up an earlier hash of this payout that is still watched.
    Watch(String),
    /// The current invoice is unpayable (never sent and expiring, or proven
    /// dead): fetch a new one (addresses and LNURLs only).
    NewInvoice,
    /// The current hash may have been sent and cannot be sent again (no
    /// attempts left, or expiring): wait for its expiry, then look it up.
    AwaitExpiry,
    /// End as failed: nothing of this payout can pay any more.
    GiveUp(String),
    /// A `Sending` that never reported back.
    RecoverSending,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongState(pub &'static str);

/// Backoff with full jitter, at least one millisecond (alarms need a future time).
fn later(now: u64, p: &RetryPolicy, n: u32, random: u64) -> u64 {
    now + p.delay_ms(n, random).max(1)
}

/// When to look the hash up next: never at once, the backend may still be settling.
fn next_lookup(now: u64, p: &RetryPolicy, n: u32, random: u64) -> u64 {
    now + p.equal_jitter_ms(n, random).max(1)
}

/// Out of sends through its current backend (each backend of the chain
/// gets `max_attempts`), or too old.
fn out_of_attempts(p: &Payout, now_ms: u64, policy: &PayoutPolicy) -> bool {
    p.send_attempts.saturating_sub(p.attempts_at_pin) >= policy.max_attempts
        || too_old(p, now_ms, policy)
}

fn too_old(p: &Payout, now_ms: u64, policy: &PayoutPolicy) -> bool {
    now_ms.saturating_sub(p.age_from_ms) >= policy.max_age_ms
}

/// Nothing of it can be sent any more: too old, or out of attempts with no
/// other backend of the chain left to try.
fn spent_all(p: &Payout, now_ms: u64, policy: &PayoutPolicy) -> bool {
    too_old(p, now_ms, policy) || (out_of_attempts(p, now_ms, policy) && !policy.may_move)
}

fn expiring(p: &Payout, now_ms: u64, policy: &PayoutPolicy) -> bool {
    now_ms / 1000 + policy.expiry_margin_secs >= p.invoice_expires_at_secs
}

/// When a lookup of the current hash can prove it dead: after the invoice
/// expired and after any send of it can no longer be run late, plus a margin.
fn dead_proof_at_ms(p: &Payout, policy: &PayoutPolicy) -> u64 {
    let expired = p.invoice_expires_at_secs.saturating_mul(1000);
    let late = p
        .last_sent_at_ms
        .map_or(0, |t| t.saturating_add(policy.late_execution_bound_ms));
    expired
        .max(late)
        .saturating_add(policy.expiry_lookup_margin_secs.saturating_mul(1000))
}

fn main_action(p: &Payout, now_ms: u64, policy: &PayoutPolicy, instance: &str) -> Action {
    match &p.state {
        PayoutState::Queued { next_at_ms, .. } if now_ms < *next_at_ms => Action::Nothing,
        PayoutState::Queued {
            verify_first: true, ..
        } => Action::Lookup,
        PayoutState::Queued { .. } if p.hash_spent && !p.hash_dead => {
            // This hash may be paid by a request still queued somewhere: it
            // may be re-sent (a hash pays once), never left, until proven dead.
            if out_of_attempts(p, now_ms, policy)
                || expiring(p, now_ms, policy)
                || p.no_resend
                || p.hash_said_paid
            {
                Action::AwaitExpiry
            } else {
                Action::Send
            }
        }
        PayoutState::Queued { .. } => {
            if spent_all(p, now_ms, policy) {
                return Action::GiveUp(format!(
                    "not paid after {} attempts or within {} s; nothing of it can pay any more",
                    p.send_attempts,
                    policy.max_age_ms / 1000
                ));
            }
            if p.hash_dead || expiring(p, now_ms, policy) {
                return match p.lnurl {
                    Some(_) if (p.previous_hashes.len() as u32) + 1 >= policy.max_invoices => {
                        Action::GiveUp(format!(
                            "the recipient's invoices expired unpaid {} times",
                            p.previous_hashes.len() + 1
                        ))
                    }
                    Some(_) => Action::NewInvoice,
                    None => Action::GiveUp("the invoice expired before it could be paid".into()),
                };
            }
            Action::Send
        }
        PayoutState::Sending {
            instance: Some(i), ..
        } if i != instance => Action::RecoverSending,
        PayoutState::Sending { since_ms, .. }
            if now_ms >= since_ms.saturating_add(policy.sending_timeout_ms) =>
        {
            Action::RecoverSending
        }
        PayoutState::Unknown { next_check_ms, .. } if now_ms >= *next_check_ms => Action::Lookup,
        _ => Action::Nothing,
    }
}

/// What to do now. `instance` names the running queue instance: a `Sending`
/// written by another one was cut off when that instance died.
pub fn next_action(p: &Payout, now_ms: u64, policy: &PayoutPolicy, instance: &str) -> Action {
    match main_action(p, now_ms, policy, instance) {
        Action::Nothing => p
            .watched
            .iter()
            .find(|w| w.next_check_ms.is_some_and(|t| t <= now_ms))
            .map(|w| Action::Watch(w.hash.clone()))
            .unwrap_or(Action::Nothing),
        a => a,
    }
}

/// Queued → Sending. Save the result before the pay request leaves.
pub fn begin_send(p: &mut Payout, now_ms: u64, instance: &str) -> Result<(), WrongState> {
    match p.state {
        PayoutState::Queued {
            verify_first: false,
            next_at_ms,
        } if now_ms >= next_at_ms && !p.hash_dead => {
            p.state = PayoutState::Sending {
                since_ms: now_ms,
                instance: Some(instance.to_string()),
                before: Some(SentBefore {
                    last_sent_at_ms: p.last_sent_at_ms,
                    hash_first_sent_at_ms: p.hash_first_sent_at_ms,
                }),
            };
            p.send_attempts += 1;
            p.hash_sends += 1;
            p.hash_first_sent_at_ms.get_or_insert(now_ms);
            p.lookups_since_send = 0;
            p.last_sent_at_ms = Some(now_ms);
            let (n, h) = (p.send_attempts, p.payment_hash.clone());
            p.note(now_ms, format!("sending attempt {n} for {h}"));
            Ok(())
        }
        _ => Err(WrongState("only a due, verified queued payout may send")),
    }
}

/// Takes back what [`begin_send`] recorded of a send the backend refused
/// before acting: it is a refusal, not a send of the hash.
fn unsend(p: &mut Payout) {
    p.hash_refusals = p.hash_refusals.saturating_add(1);
    if let PayoutState::Sending {
        before: Some(b), ..
    } = &p.state
    {
        p.hash_sends = p.hash_sends.saturating_sub(1);
        p.last_sent_at_ms = b.last_sent_at_ms;
        p.hash_first_sent_at_ms = b.hash_first_sent_at_ms;
    }
}

/// Records that the payout's backend failed it (see `Payout::failed_at`).
fn failed_here(p: &mut Payout) {
    if let Some(b) = p.backend.clone() {
        if !p.failed_at.contains(&b) {
            p.failed_at.push(b);
        }
    }
}

/// The current hash may have reached the backend.
fn spend(p: &mut Payout) {
    p.hash_spent = true;
    p.ever_sent = true;
}

/// Records that the backend paid `hash`. A second paid hash is an
/// overpayment: shown, counted and announced, never hidden.
fn record_paid(p: &mut Payout, hash: &str, now_ms: u64) {
    if !p.paid_hashes.iter().any(|h| h == hash) {
        p.paid_hashes.push(hash.to_string());
    }
    if p.paid_hashes.len() > 1 && !p.overpaid {
        p.overpaid = true;
        let all = p.paid_hashes.join(", ");
        p.note(
            now_ms,
            format!("OVERPAID: the backend paid more than one invoice of this payout ({all})"),
        );
    }
}

fn succeed(
    p: &mut Payout,
    now_ms: u64,
    preimage: Option<String>,
    fee_msat: Option<u64>,
    how: &str,
) {
    let hash = p.payment_hash.clone();
    record_paid(p, &hash, now_ms);
    if !matches!(p.state, PayoutState::Succeeded { .. }) {
        p.state = PayoutState::Succeeded { at_ms: now_ms };
        p.preimage = preimage;
        p.fee_msat = fee_msat;
        p.last_error = None;
        p.blocked = None;
        p.note(now_ms, format!("succeeded ({how})"));
    }
}

fn fail(p: &mut Payout, now_ms: u64, reason: String) {
    p.note(now_ms, format!("failed: {reason}"));
    p.state = PayoutState::Failed {
        at_ms: now_ms,
        reason,
    };
}

/// Applies the answer to a pay request. Accepted while `Sending`, and while
/// `Unknown` (a slow answer after the send was presumed cut off is still the
/// backend's word about this hash).
pub fn apply_pay(
    p: &mut Payout,
    outcome: PayOutcome,
    now_ms: u64,
    policy: &PayoutPolicy,
    random: u64,
) -> Result<(), WrongState> {
    let sending = match p.state {
        PayoutState::Sending { .. } => true,
        PayoutState::Unknown { .. } => false,
        _ => return Err(WrongState("a pay outcome needs a sending payout")),
    };
    match outcome {
        PayOutcome::Succeeded { preimage, fee_msat } => {
            spend(p);
            succeed(p, now_ms, preimage, fee_msat, "backend confirmed")
        }
        PayOutcome::Failed(reason) => {
            // "Failed" is also what LNbits answers a re-send of a hash it
            // already paid: only a lookup of the hash tells.
            spend(p);
            p.last_error = Some(reason.clone());
            p.note(
                now_ms,
                format!("backend says failed: {reason}; confirming with a status lookup"),
            );
            p.state = PayoutState::Queued {
                next_at_ms: next_lookup(now_ms, &policy.lookup, 0, random),
                verify_first: true,
            };
        }
        PayOutcome::NotSent(reason) if sending => {
            // Refused before acting: this send never reached the backend,
            // so it is not counted as a send of the hash (the proof rules
            // reason about the sends that may have reached a backend).
            unsend(p);
            if !p.hash_spent {
                failed_here(p);
            }
            p.last_error = Some(reason.clone());
            if spent_all(p, now_ms, policy) && !p.hash_spent {
                fail(
                    p,
                    now_ms,
                    format!("not sent after {} attempts: {reason}", p.send_attempts),
                );
            } else {
                p.note(now_ms, format!("not sent: {reason}; will retry"));
                p.state = PayoutState::Queued {
                    next_at_ms: later(
                        now_ms,
                        &policy.retry,
                        p.send_attempts.saturating_sub(1),
                        random,
                    ),
                    verify_first: false,
                };
            }
        }
        PayOutcome::AlreadyPaid(reason) => {
            p.hash_said_paid = true;
            let note = format!("the backend says the invoice is already paid ({reason}); it may be paid: only a lookup that finds it paid ends this");
            to_unknown(p, reason, note, sending, now_ms, policy, random);
        }
        // A refusal arriving after the send was presumed lost says nothing
        // about the earlier requests for this hash: keep looking it up.
        PayOutcome::NotSent(_) => {}
        PayOutcome::Unknown(reason) => {
            let note = format!("outcome unknown: {reason}; will look up the payment hash");
            to_unknown(p, reason, note, sending, now_ms, policy, random);
        }
    }
    Ok(())
}

/// The hash may have been paid: looked up soon, as `Unknown` (a pay answer
/// arriving after the send was presumed lost leaves the state as it is).
fn to_unknown(
    p: &mut Payout,
    reason: String,
    note: String,
    sending: bool,
    now_ms: u64,
    policy: &PayoutPolicy,
    random: u64,
) {
    spend(p);
    p.last_error = Some(reason);
    p.note(now_ms, note);
    if sending {
        p.state = PayoutState::Unknown {
            since_ms: now_ms,
            next_check_ms: next_lookup(now_ms, &policy.lookup, 0, random),
        };
    }
}

/// What a lookup that found no payment lets the payout do.
#[derive(Debug, Clone, PartialEq)]
enum Unpaid {
    /// Unpaid for now: the same hash may be sent again (a hash pays once).
    Resendable(String),
    /// Unpaid for now, but not sent again: the answer may describe another
    /// attempt than a later one would. Wait for the proof time.
    Final(String),
}

/// Whether a lookup's "failed" record proves the current hash unpaid, and
/// for which sends. `Err` says why it proves nothing.
fn judge_failed(
    p: &Payout,
    rec: &FailedRecord,
    now_ms: u64,
    policy: &PayoutPolicy,
) -> Result<Unpaid, String> {
    let earlier = match (rec.created_at_ms, p.last_sent_at_ms) {
        (Some(created), Some(sent)) => created.saturating_add(policy.clock_skew_ms) < sent,
        _ => false,
    };
    let proof_time = now_ms >= failed_proof_at_ms(p, rec, policy);
    let reason = rec.reason.clone();
    match rec.covers {
        // One record per hash: once no send can run any more, it is the
        // hash's final state, whichever send made it.
        Covers::EveryAttempt if earlier && !proof_time => Err(format!(
            "the backend's failed record ({reason}) was made before the last send: it describes an earlier one"
        )),
        Covers::EveryAttempt if rec.resendable => Ok(Unpaid::Resendable(reason)),
        Covers::EveryAttempt => Ok(Unpaid::Final(reason)),
        Covers::OneAttempt => match rec.created_at_ms {
            None => Err(format!(
                "the wallet's failed record ({reason}) does not say when it was made, and the wallet may keep one record per attempt"
            )),
            Some(_) if earlier => Err(format!(
                "the wallet's failed record ({reason}) was made before the last send: it describes an earlier attempt"
            )),
            // Any of several sends may be the one described, one of them
            // run late: only a hash sent once is proven by its record.
            Some(_) if proof_time && p.hash_spent && p.hash_sends != 1 => Err(format!(
                "the wallet says failed ({reason}), but this hash was sent more than once and the wallet's record may describe any one of the sends"
            )),
            Some(_) => Ok(Unpaid::Final(reason)),
        },
    }
}

/// Where a lookup of the current hash leaves the payout: unknown (it may
/// be paid), or queued waiting to verify, as it was.
struct LookupTurn<'a> {
    now_ms: u64,
    policy: &'a PayoutPolicy,
    random: u64,
    /// `Unknown` since then; `None` when the payout was queued.
    since: u64,
    queued: bool,
    /// Lookups since the last send (the backoff's step).
    n: u32,
}

impl LookupTurn<'_> {
    fn next(&self) -> u64 {
        next_lookup(self.now_ms, &self.policy.lookup, self.n, self.random)
    }

    /// Nothing decided: looked up again later, in the same state.
    fn keep_checking(&self, p: &mut Payout, why: String) {
        p.note(self.now_ms, why);
        p.state = if self.queued {
            PayoutState::Queued {
                next_at_ms: self.next(),
                verify_first: true,
            }
        } else {
            PayoutState::Unknown {
                since_ms: self.since,
                next_check_ms: self.next(),
            }
        };
    }

    /// A lookup that proves nothing: the payout waits, and the attention
    /// list shows it once that has lasted.
    fn unproven(&self, p: &mut Payout, why: String) {
        p.lookups_failing_since_ms.get_or_insert(self.now_ms);
        p.last_error = Some(why.clone());
        self.keep_checking(p, why);
    }

    /// In flight is never a failure to retry: wait for its end, as unknown.
    fn in_flight(&self, p: &mut Payout, note: String) {
        p.lookups_failing_since_ms = None;
        spend(p);
        p.note(self.now_ms, note);
        p.state = PayoutState::Unknown {
            since_ms: self.since,
            next_check_ms: self.next(),
        };
    }
}

/// What a lookup answer says about the current hash.
enum Reading {
    Paid {
        preimage: Option<String>,
        fee_msat: Option<u64>,
    },
    InFlight(String),
    /// Proves nothing: why (counted as a failing lookup).
    Unproven(String),
    /// Not trusted yet; nothing is counted.
    TooSoon,
    /// Unpaid for now, and when such an answer proves the hash dead.
    Unpaid(Unpaid, u64),
}

fn read_lookup(p: &Payout, outcome: LookupOutcome, now_ms: u64, policy: &PayoutPolicy) -> Reading {
    match outcome {
        LookupOutcome::Paid { preimage, fee_msat } => Reading::Paid { preimage, fee_msat },
        LookupOutcome::Pending => Reading::InFlight("status lookup: still in flight".into()),
        LookupOutcome::Error(e) => Reading::Unproven(format!("status lookup failed: {e}")),
        LookupOutcome::NotFound => {
            let recent = p
                .last_sent_at_ms
                .is_some_and(|t| now_ms.saturating_sub(t) < policy.not_found_grace_ms);
            if p.hash_spent && recent {
                return Reading::TooSoon;
            }
            Reading::Unpaid(
                Unpaid::Resendable("the backend has no payment with this hash".to_string()),
                not_found_proof_at_ms(p, policy),
            )
        }
        LookupOutcome::Failed(rec) => {
            let proof_at = failed_proof_at_ms(p, &rec, policy);
            if rec.may_still_settle && now_ms < proof_at {
                return Reading::InFlight(format!(
                    "status lookup: {}, which this backend also says of payments still in flight: unknown until {}",
                    rec.reason,
                    crate::time::iso8601_ms(proof_at)
                ));
            }
            match judge_failed(p, &rec, now_ms, policy) {
                Ok(u) => Reading::Unpaid(u, proof_at),
                Err(why) => Reading::Unproven(format!("status lookup proves nothing: {why}")),
            }
        }
    }
}

/// Applies a status lookup of the current hash, in `Unknown` or `Queued`.
pub fn apply_lookup(
    p: &mut Payout,
    outcome: LookupOutcome,
    now_ms: u64,
    policy: &PayoutPolicy,
    random: u64,
) -> Result<(), WrongState> {
    let (since, queued) = match p.state {
        PayoutState::Unknown { since_ms, .. } => (since_ms, false),
        PayoutState::Queued { .. } => (now_ms, true),
        _ => return Err(WrongState("a lookup needs an unknown or queued payout")),
    };
    p.lookups += 1;
    p.lookups_since_send += 1;
    let turn = LookupTurn {
        now_ms,
        policy,
        random,
        since,
        queued,
        n: p.lookups_since_send,
    };
    match read_lookup(p, outcome, now_ms, policy) {
        Reading::Paid { preimage, fee_msat } => {
            p.lookups_failing_since_ms = None;
            spend(p);
            succeed(p, now_ms, preimage, fee_msat, "status lookup");
        }
        Reading::InFlight(note) => turn.in_flight(p, note),
        Reading::Unproven(why) => turn.unproven(p, why),
        Reading::TooSoon => turn.keep_checking(
            p,
            "status lookup: not found yet; too soon after the send to trust".into(),
        ),
        Reading::Unpaid(u, _) if p.hash_said_paid && p.hash_spent => {
            let why = match u {
                Unpaid::Resendable(w) | Unpaid::Final(w) => w,
            };
            turn.unproven(
                p,
                format!("status lookup: {why}; but the backend said this invoice was already paid, so only a lookup that finds it paid ends this"),
            );
        }
        Reading::Unpaid(u, proof_at) => apply_unpaid(p, u, proof_at, &turn),
    }
    Ok(())
}

/// The backend says the current hash is unpaid for now: it was never sent,
/// it is proven dead, it may be sent again, or it waits for its proof time.
fn apply_unpaid(p: &mut Payout, unpaid: Unpaid, proof_at: u64, turn: &LookupTurn) {
    let (now_ms, policy) = (turn.now_ms, turn.policy);
    p.lookups_failing_since_ms = None;
    let (unpaid_now, resendable) = match unpaid {
        Unpaid::Resendable(w) => (w, true),
        Unpaid::Final(w) => (w, false),
    };
    p.last_error = Some(unpaid_now.clone());
    let queued_now = PayoutState::Queued {
        next_at_ms: now_ms,
        verify_first: false,
    };
    if !p.hash_spent {
        p.note(now_ms, format!("status lookup: {unpaid_now}; never sent"));
        p.state = queued_now;
    } else if now_ms >= proof_at {
        p.hash_dead = true;
        p.note(
            now_ms,
            format!(
                "the invoice expired and the backend says: {unpaid_now}; it can no longer be paid"
            ),
        );
        p.state = queued_now;
    } else if resendable && !p.no_resend && !out_of_attempts(p, now_ms, policy) {
        p.note(
            now_ms,
            format!("unpaid for now ({unpaid_now}); the same invoice may be sent again"),
        );
        let retry = later(
            now_ms,
            &policy.retry,
            p.send_attempts.saturating_sub(1),
            turn.random,
        );
        p.state = PayoutState::Queued {
            next_at_ms: retry.max(resend_gap_end(p, policy)),
            verify_first: false,
        };
    } else {
        let why = if resendable && !p.no_resend {
            "no attempts left"
        } else {
            p.no_resend = true;
            "the backend's record may describe one attempt of several, or it will not send a failed invoice again, so this invoice is not sent again"
        };
        p.note(
            now_ms,
            format!("unpaid for now ({unpaid_now}); {why}: waiting for the invoice to expire before ending"),
        );
        // Looked up again as usual, at the latest at the proof time: a
        // payment that settles meanwhile is seen.
        p.state = PayoutState::Queued {
            next_at_ms: turn.next().min(proof_at).max(now_ms + 1),
            verify_first: true,
        };
    }
}

/// When a lookup's "failed" can prove the current hash dead: the proof
/// time, and for a "failed" that may still settle, not before the last
/// send's parts can no longer be in flight.
fn failed_proof_at_ms(p: &Payout, rec: &FailedRecord, policy: &PayoutPolicy) -> u64 {
    let base = dead_proof_at_ms(p, policy);
    if !rec.may_still_settle {
        return base;
    }
    base.max(in_flight_over_ms(p, policy))
}

/// When nothing sent for the current hash can still be in flight: a send
/// may start as late as the late-execution bound, and its parts live at
/// most the in-flight bound after that.
fn in_flight_over_ms(p: &Payout, policy: &PayoutPolicy) -> u64 {
    p.last_sent_at_ms.map_or(0, |t| {
        t.saturating_add(policy.late_execution_bound_ms)
            .saturating_add(policy.in_flight_bound_ms)
    })
}

/// When a "not found" can prove the current hash dead.
fn not_found_proof_at_ms(p: &Payout, policy: &PayoutPolicy) -> u64 {
    let base = dead_proof_at_ms(p, policy);
    if policy.not_found_waits_in_flight {
        base.max(in_flight_over_ms(p, policy))
    } else {
        base
    }
}

/// A hash is sent again no sooner than this: twice the clock skew after
/// its previous send, so the backend's records of the two sends cannot be
/// taken for each other.
fn resend_gap_end(p: &Payout, policy: &PayoutPolicy) -> u64 {
    p.last_sent_at_ms.map_or(0, |t| {
        t.saturating_add(policy.clock_skew_ms.saturating_mul(2))
            .saturating_add(1)
    })
}

/// The current hash can no longer be sent: look it up once it has expired.
pub fn await_expiry(p: &mut Payout, now_ms: u64, policy: &PayoutPolicy) -> Result<(), WrongState> {
    match p.state {
        PayoutState::Queued {
            verify_first: false,
            ..
        } if p.hash_spent && !p.hash_dead => {
            let at = dead_proof_at_ms(p, policy).max(now_ms + 1);
            p.note(
                now_ms,
                format!(
                    "no more sends of {}; it will be looked up after it expires",
                    p.payment_hash
                ),
            );
            p.state = PayoutState::Queued {
                next_at_ms: at,
                verify_first: true,
            };
            Ok(())
        }
        _ => Err(WrongState("only a sent, queued hash waits for its expiry")),
    }
}

/// Applies a lookup of an earlier, watched hash of this payout.
pub fn apply_watch(
    p: &mut Payout,
    hash: &str,
    outcome: LookupOutcome,
    now_ms: u64,
    policy: &PayoutPolicy,
    random: u64,
) -> Result<(), WrongState> {
    let idx = p
        .watched
        .iter()
        .position(|w| w.hash == hash)
        .ok_or(WrongState("that hash is not watched"))?;
    p.watched[idx].checks += 1;
    let checks = p.watched[idx].checks;
    let since = p.watched[idx].since_ms;
    match outcome {
        LookupOutcome::Paid { preimage, fee_msat } => {
            p.watched[idx].next_check_ms = None;
            record_paid(p, hash, now_ms);
            match p.state {
                PayoutState::Succeeded { .. } => {}
                _ => {
                    let was = p.status();
                    // The current hash may still be paid too: watch it.
                    if p.hash_spent && !p.hash_dead
                        || matches!(p.state, PayoutState::Sending { .. })
                    {
                        let cur = p.payment_hash.clone();
                        watch(p, cur, now_ms, policy, random);
                    }
                    p.state = PayoutState::Succeeded { at_ms: now_ms };
                    p.preimage = preimage;
                    p.fee_msat = fee_msat;
                    p.last_error = None;
                    p.note(
                        now_ms,
                        format!(
                            "an earlier invoice ({hash}) was paid after all; succeeded (was {was})"
                        ),
                    );
                }
            }
        }
        LookupOutcome::Pending => {
            p.watched[idx].next_check_ms =
                Some(next_lookup(now_ms, &policy.lookup, checks, random));
        }
        LookupOutcome::NotFound | LookupOutcome::Failed(_) | LookupOutcome::Error(_) => {
            p.watched[idx].next_check_ms = if now_ms.saturating_sub(since) >= policy.watch_window_ms
            {
                None
            } else {
                Some(next_lookup(now_ms, &policy.lookup, checks, random))
            };
        }
    }
    Ok(())
}

fn watch(p: &mut Payout, hash: String, now_ms: u64, policy: &PayoutPolicy, random: u64) {
    if p.watched.iter().any(|w| w.hash == hash) {
        return;
    }
    let backend = p.backend.clone();
    p.watched.push(WatchedHash {
        hash,
        since_ms: now_ms,
        next_check_ms: Some(next_lookup(now_ms, &policy.lookup, 0, random)),
        checks: 0,
        backend,
    });
}

/// A `Sending` that outlived the timeout or its instance: its outcome is unknown.
pub fn recover_sending(p: &mut Payout, now_ms: u64) -> Result<(), WrongState> {
    match p.state {
        PayoutState::Sending { .. } => {
            spend(p);
            p.note(now_ms, "send never reported back; outcome unknown");
            p.state = PayoutState::Unknown {
                since_ms: now_ms,
                next_check_ms: now_ms,
            };
            Ok(())
        }
        _ => Err(WrongState("only a sending payout can be recovered")),
    }
}

/// Swaps in a fresh invoice. Allowed only when the current hash was never
/// sent or is proven dead; a hash that was sent stays watched.
pub fn replace_invoice(
    p: &mut Payout,
    invoice: String,
    payment_hash: String,
    expires_at_secs: u64,
    now_ms: u64,
    policy: &PayoutPolicy,
    random: u64,
) -> Result<(), WrongState> {
    match p.state {
        PayoutState::Queued {
            verify_first: false,
            ..
        } if !p.hash_spent || p.hash_dead => {
            let old = std::mem::replace(&mut p.payment_hash, payment_hash.clone());
            if p.hash_spent {
                // The backend where this invoice died unpaid is tried last
                // for the next one, and the dead hash stays watched there.
                failed_here(p);
                watch(p, old.clone(), now_ms, policy, random);
            }
            p.previous_hashes.push(old);
            p.invoice = invoice;
            p.invoice_expires_at_secs = expires_at_secs;
            p.hash_spent = false;
            p.hash_dead = false;
            p.hash_sends = 0;
            p.hash_first_sent_at_ms = None;
            p.hash_said_paid = false;
            p.no_resend = false;
            p.hash_refusals = 0;
            p.lookups_failing_since_ms = None;
            p.invoice_refreshes += 1;
            p.note(
                now_ms,
                format!("new invoice {payment_hash} (the previous one can no longer be paid)"),
            );
            Ok(())
        }
        _ => Err(WrongState(
            "a new invoice needs an unsent or proven-dead current invoice",
        )),
    }
}

/// Whether the payout may go to another backend: its current invoice has
/// reached no backend (every send of it was refused before acting), and
/// every earlier hash was proven dead before it was left (watched hashes
/// stay looked up where they were sent). Anything else stays pinned: a
/// hash that may have reached a backend is never sent anywhere else while
/// that backend might pay it.
pub fn movable(p: &Payout) -> bool {
    matches!(
        p.state,
        PayoutState::Queued {
            verify_first: false,
            ..
        }
    ) && !p.hash_spent
        && !p.hash_dead
        && p.hash_sends == 0
        && p.backend.is_some()
        && (p.move_safe || (!p.ever_sent && p.previous_hashes.is_empty() && p.watched.is_empty()))
}

/// Pins a movable payout to `to`. Before any send, this is the payout's
/// first choice (it went straight past backends whose breaker is open);
/// after one, a move, recorded and shown. True for a move.
pub fn move_to(
    p: &mut Payout,
    to: BackendId,
    why: String,
    now_ms: u64,
) -> Result<bool, WrongState> {
    if !movable(p) {
        return Err(WrongState(
            "only a payout none of whose sends may have reached a backend can move",
        ));
    }
    let from = p.backend.clone();
    // Hashes sent before stay with the backend they were sent through.
    for w in p.watched.iter_mut() {
        if w.backend.is_none() {
            w.backend = from.clone();
        }
    }
    let step = RouteStep {
        backend: to.clone(),
        at_ms: now_ms,
        why: why.clone(),
    };
    let tried =
        p.ever_sent || p.send_attempts > 0 || p.hash_refusals > 0 || !p.previous_hashes.is_empty();
    if tried {
        p.attempts_at_pin = p.send_attempts;
        let was = from
            .as_ref()
            .map_or_else(|| p.provider.as_str().to_string(), BackendId::label);
        p.note(now_ms, format!("moved from {was} to {}: {why}", to.label()));
        p.route.push(step);
        p.moved_at_ms = Some(now_ms);
    } else {
        p.note(now_ms, format!("goes to {}: {why}", to.label()));
        p.route.pop();
        p.route.push(step);
    }
    p.provider = to.kind;
    p.backend = Some(to);
    Ok(tried)
}

/// No backend of the chain may take this payout now (every payout breaker
/// open): it waits, unsent, until `until_ms`.
pub fn wait_for_backends(
    p: &mut Payout,
    until_ms: u64,
    why: String,
    now_ms: u64,
) -> Result<(), WrongState> {
    if !movable(p) {
        return Err(WrongState("only an unsent payout waits for a backend"));
    }
    if p.last_error.as_deref() != Some(why.as_str()) {
        p.note(
            now_ms,
            format!(
                "waiting: {why}, until {}",
                crate::time::iso8601_ms(until_ms)
            ),
        );
        p.last_error = Some(why);
    }
    p.state = PayoutState::Queued {
        next_at_ms: until_ms.max(now_ms + 1),
        verify_first: false,
    };
    Ok(())
}

/// A refused payout that another backend of the chain may take: due now,
/// not at the end of its backoff.
pub fn due_now(p: &mut Payout, now_ms: u64) {
    if movable(p) {
        if let PayoutState::Queued { next_at_ms, .. } = &mut p.state {
            *next_at_ms = (*next_at_ms).min(now_ms);
        }
    }
}

/// Fetching a new invoice failed (the recipient's server is down, refuses,
/// or hands out invoices too short-lived to pay): try again later, backing
/// off; max age ends it eventually.
pub fn refresh_failed(
    p: &mut Payout,
    reason: String,
    now_ms: u64,
    policy: &PayoutPolicy,
    random: u64,
) -> Result<(), WrongState> {
    match p.state {
        PayoutState::Queued {
            verify_first: false,
            ..
        } => {
            p.invoice_refreshes += 1;
            p.note(now_ms, reason.clone());
            p.last_error = Some(reason);
            p.state = PayoutState::Queued {
                next_at_ms: next_lookup(now_ms, &policy.retry, p.invoice_refreshes, random),
                verify_first: false,
            };
            Ok(())
        }
        _ => Err(WrongState(
            "only a confirmed-unpaid queued payout fetches invoices",
        )),
    }
}

/// Ends a payout none of whose hashes can pay: the current one was never
/// sent or is proven dead.
pub fn give_up(p: &mut Payout, reason: String, now_ms: u64) -> Result<(), WrongState> {
    match p.state {
        PayoutState::Queued {
            verify_first: false,
            ..
        } if !p.hash_spent || p.hash_dead => {
            fail(p, now_ms, reason);
            Ok(())
        }
        _ => Err(WrongState("only a payout that cannot pay can be given up")),
    }
}

/// The payout's backend is not configured: it waits, visibly, backing off,
/// and is never sent, looked up or ended through another backend.
pub fn block(p: &mut Payout, reason: String, now_ms: u64, policy: &PayoutPolicy, random: u64) {
    let checks = p.blocked.as_ref().map_or(0, |b| b.checks) + 1;
    let at = next_lookup(now_ms, &policy.lookup, checks, random);
    // Watches whose window is over end here, looked up or not.
    for w in p.watched.iter_mut() {
        if now_ms.saturating_sub(w.since_ms) >= policy.watch_window_ms {
            w.next_check_ms = None;
        }
    }
    if p.state.is_terminal() {
        // Nothing is owed: only the watches wait, and the payout is not
        // counted as waiting for its backend.
        for w in p.watched.iter_mut() {
            if let Some(t) = w.next_check_ms.as_mut() {
                *t = (*t).max(at);
            }
        }
        return;
    }
    let since = p.blocked.as_ref().map_or(now_ms, |b| b.since_ms);
    if p.blocked.is_none() {
        p.note(now_ms, format!("waiting: {reason}"));
    }
    p.blocked = Some(Blocked {
        since_ms: since,
        reason,
        checks,
    });
    match &mut p.state {
        PayoutState::Queued { next_at_ms, .. } => *next_at_ms = at,
        PayoutState::Unknown { next_check_ms, .. } => *next_check_ms = at,
        _ => {}
    }
    for w in p.watched.iter_mut() {
        if let Some(t) = w.next_check_ms.as_mut() {
            *t = (*t).max(at);
        }
    }
}

/// A blocked payout whose backend is configured again: no longer blocked,
/// and due now rather than at the end of its backoff. False if it was not
/// blocked.
pub fn resume(p: &mut Payout, now_ms: u64) -> bool {
    if p.blocked.is_none() {
        return false;
    }
    unblock(p, now_ms);
    match &mut p.state {
        PayoutState::Queued { next_at_ms, .. } => *next_at_ms = (*next_at_ms).min(now_ms),
        PayoutState::Unknown { next_check_ms, .. } => *next_check_ms = (*next_check_ms).min(now_ms),
        _ => {}
    }
    true
}

pub fn unblock(p: &mut Payout, now_ms: u64) {
    if p.blocked.take().is_some() {
        p.note(now_ms, "its backend is configured again");
    }
}

/// Re-opens a dead-lettered payout (admin retry). A payout only fails when
/// none of its hashes can pay; a hash that was sent is still looked up once
/// more before anything is sent.
pub fn reopen(p: &mut Payout, now_ms: u64) -> Result<(), WrongState> {
    match p.state {
        PayoutState::Failed { .. } => {
            p.state = PayoutState::Queued {
                next_at_ms: now_ms,
                verify_first: p.hash_spent && !p.hash_dead,
            };
            p.send_attempts = 0;
            p.attempts_at_pin = 0;
            p.invoice_refreshes = 0;
            p.age_from_ms = now_ms;
            p.reopened = p.reopened.saturating_add(1);
            p.note(now_ms, "re-opened by an admin");
            Ok(())
        }
        _ => Err(WrongState("only a failed payout can be retried")),
    }
}

/// The failure reason of a payout an admin cancelled.
pub const CANCEL_REASON: &str = "cancelled by admin";

/// Ends a queued payout on an admin's word, only when nothing of it can
/// still pay: the current hash was never sent (a refusal before acting is not
/// a send) or is proven dead, and every earlier hash was proven dead before
/// it was left. The same condition as [`give_up`]; refused while sending,
/// unknown, or while a sent hash still waits for its lookup. It ends
/// `Failed`, so listing, webhooks, the daily limit and admin retry treat it
/// like any other failed payout.
pub fn cancel(p: &mut Payout, now_ms: u64) -> Result<(), WrongState> {
    // A row stored before pinning left earlier hashes on a bare "not found";
    // they are watched only once the row is pinned on its next turn.
    let legacy_sent = p.backend.is_none()
        && (p.ever_sent || p.send_attempts > 0 || !p.previous_hashes.is_empty());
    if legacy_sent {
        return Err(WrongState(
            "it was stored before backends were pinned and has sent before; it can be cancelled once the queue has taken it up again",
        ));
    }
    match p.state {
        PayoutState::Queued {
            verify_first: false,
            ..
        } if !p.hash_spent || p.hash_dead => {
            p.blocked = None;
            fail(p, now_ms, CANCEL_REASON.to_string());
            Ok(())
        }
        PayoutState::Queued { .. } => Err(WrongState(
            "a sent invoice of this payout may still be paid; it can be cancelled only once a lookup after its expiry proves it unpaid",
        )),
        PayoutState::Sending { .. } => Err(WrongState(
            "a pay request is in flight; its outcome is not known yet",
        )),
        PayoutState::Unknown { .. } => Err(WrongState(
            "the backend may have paid it; only a status lookup can tell",
        )),
        PayoutState::Succeeded { .. } => Err(WrongState("it has already been paid")),
        PayoutState::Failed { .. } => Err(WrongState("it has already ended failed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payout::destination::DestinationKind;
    use backends::BackendKind;

    const I: &str = "inst-a";

    fn payout(state: PayoutState) -> Payout {
        Payout {
            id: "po_1".into(),
            idempotency_key: "k".into(),
            fingerprint: "f".into(),
            created_at_ms: 0,
            age_from_ms: 0,
            destination: "a@b.com".into(),
            destination_kind: DestinationKind::LightningAddress,
            lnurl: Some("https://b.com/.well-known/lnurlp/a".into()),
            amount_sat: 10,
            comment: None,
            external_id: None,
            route: Vec::new(),
            failed_at: Vec::new(),
            hash_refusals: 0,
            moved_at_ms: None,
            attempts_at_pin: 0,
            move_safe: true,
            provider: BackendKind::Lnbits,
            backend: Some(crate::payout::model::BackendId {
                kind: backends::BackendKind::Lnbits,
                base_url: "http://lnbits.test".into(),
                credential_fp: "fp".into(),
            }),
            blocked: None,
            invoice: "lnbc".into(),
            payment_hash: "h1".into(),
            invoice_expires_at_secs: 10_000,
            previous_hashes: vec![],
            watched: vec![],
            paid_hashes: vec![],
            overpaid: false,
            invoice_refreshes: 0,
            state,
            send_attempts: 0,
            hash_spent: false,
            hash_dead: false,
            ever_sent: false,
            reopened: 0,
            hash_sends: 0,
            hash_first_sent_at_ms: None,
            hash_said_paid: false,
            no_resend: false,
            lookups_failing_since_ms: None,
            last_sent_at_ms: None,
            lookups: 0,
            lookups_since_send: 0,
            last_error: None,
            fee_msat: None,
            preimage: None,
            webhook: None,
            operator_webhook: None,
            log: vec![],
            version: 1,
        }
    }

    fn policy() -> PayoutPolicy {
        PayoutPolicy {
            max_attempts: 2,
            not_found_grace_ms: 1_000,
            expiry_lookup_margin_secs: 100,
            ..PayoutPolicy::default()
        }
    }

    fn queued(verify_first: bool) -> PayoutState {
        PayoutState::Queued {
            next_at_ms: 0,
            verify_first,
        }
    }

    fn sending() -> PayoutState {
        PayoutState::Sending {
            since_ms: 0,
            instance: Some(I.into()),
            before: None,
        }
    }

    /// A payout whose current hash was sent once, answered ambiguously.
    fn sent_once() -> Payout {
        let mut p = payout(queued(false));
        assert!(begin_send(&mut p, 0, I).is_ok());
        assert!(apply_pay(&mut p, PayOutcome::Unknown("520".into()), 0, &policy(), 0).is_ok());
        p
    }

    #[test]
    fn only_a_ready_queued_payout_sends() {
        let mut p = payout(queued(false));
        assert_eq!(next_action(&p, 0, &policy(), I), Action::Send);
        assert!(begin_send(&mut p, 0, I).is_ok());
        assert_eq!(p.status(), "sending");
        assert!(
            begin_send(&mut p, 0, I).is_err(),
            "sending cannot send again"
        );
        let mut v = payout(queued(true));
        assert_eq!(next_action(&v, 0, &policy(), I), Action::Lookup);
        assert!(begin_send(&mut v, 0, I).is_err());
        let mut u = payout(PayoutState::Unknown {
            since_ms: 0,
            next_check_ms: 0,
        });
        assert!(begin_send(&mut u, 0, I).is_err());
    }

    #[test]
    fn ambiguous_answers_become_unknown_and_only_a_lookup_resolves_them() {
        let mut p = sent_once();
        assert_eq!(p.status(), "unknown");
        assert!(p.hash_spent);
        // "not found" right after the send is not trusted.
        let _ = apply_lookup(&mut p, LookupOutcome::NotFound, 500, &policy(), 0);
        assert_eq!(p.status(), "unknown");
        let _ = apply_lookup(&mut p, LookupOutcome::Pending, 600, &policy(), 0);
        assert_eq!(p.status(), "unknown");
        let _ = apply_lookup(&mut p, LookupOutcome::Error("x".into()), 700, &policy(), 0);
        assert_eq!(p.status(), "unknown");
        let _ = apply_lookup(
            &mut p,
            LookupOutcome::Paid {
                preimage: Some("aa".into()),
                fee_msat: Some(1),
            },
            800,
            &policy(),
            0,
        );
        assert_eq!(p.status(), "succeeded");
        assert_eq!(p.preimage.as_deref(), Some("aa"));
        assert_eq!(p.paid_hashes, vec!["h1".to_string()]);
    }

    #[test]
    fn an_explicit_failure_is_always_checked_by_a_lookup_even_on_the_last_attempt() {
        let mut p = payout(queued(false));
        for attempt in 1..=2u64 {
            let t = attempt * 10_000;
            p.state = PayoutState::Queued {
                next_at_ms: t,
                verify_first: false,
            };
            assert!(begin_send(&mut p, t, I).is_ok());
            let _ = apply_pay(
                &mut p,
                PayOutcome::Failed("no route".into()),
                t,
                &policy(),
                0,
            );
            assert!(
                matches!(
                    p.state,
                    PayoutState::Queued {
                        verify_first: true,
                        ..
                    }
                ),
                "attempt {attempt}: never failed without a lookup"
            );
        }
        // The lookup finds the payment: "failed" was wrong.
        let _ = apply_lookup(
            &mut p,
            LookupOutcome::Paid {
                preimage: None,
                fee_msat: None,
            },
            30_000,
            &policy(),
            0,
        );
        assert_eq!(p.status(), "succeeded");
    }

    #[test]
    fn not_found_before_expiry_allows_the_same_hash_again_but_never_a_new_one() {
        let mut p = sent_once();
        // After the grace period, "not found": unpaid for now.
        let _ = apply_lookup(&mut p, LookupOutcome::NotFound, 5_000, &policy(), 0);
        assert!(matches!(
            p.state,
            PayoutState::Queued {
                verify_first: false,
                ..
            }
        ));
        assert!(!p.hash_dead);
        let t = 5_000 + 3_600_000;
        assert_eq!(
            next_action(&p, t, &policy(), I),
            Action::Send,
            "the same invoice, not a new one"
        );
        assert!(replace_invoice(&mut p, "x".into(), "h2".into(), 99_999, t, &policy(), 0).is_err());
        assert!(give_up(&mut p, "x".into(), t).is_err());
    }

    #[test]
    fn a_sent_hash_is_left_only_after_expiry_plus_margin_and_a_lookup() {
        let mut p = sent_once();
        p.send_attempts = 2; // no attempts left
        let _ = apply_lookup(
            &mut p,
            LookupOutcome::failed("failed", Covers::EveryAttempt, None),
            5_000,
            &policy(),
            0,
        );
        // Not sent again: it is looked up, and left only after the invoice
        // expired (10_000 s) plus the margin (100 s).
        match p.state {
            PayoutState::Queued {
                next_at_ms,
                verify_first: true,
            } => assert!(
                next_at_ms > 5_000 && next_at_ms <= 10_100_000,
                "{next_at_ms}"
            ),
            ref s => panic!("{s:?}"),
        }
        assert_eq!(next_action(&p, 10_000_000, &policy(), I), Action::Lookup);
        let _ = apply_lookup(
            &mut p,
            LookupOutcome::failed("failed", Covers::EveryAttempt, None),
            10_000_000,
            &policy(),
            0,
        );
        assert!(!p.hash_dead, "before the proof time");
        assert!(matches!(
            p.state,
            PayoutState::Queued {
                verify_first: true,
                next_at_ms
            } if next_at_ms <= 10_100_000
        ));
        // After expiry but inside the margin, "not found" proves nothing.
        let mut early = p.clone();
        let _ = apply_lookup(
            &mut early,
            LookupOutcome::NotFound,
            10_050_000,
            &policy(),
            0,
        );
        assert!(!early.hash_dead);
        let _ = apply_lookup(&mut p, LookupOutcome::NotFound, 10_100_000, &policy(), 0);
        assert!(p.hash_dead);
        assert_eq!(
            next_action(&p, 10_100_000, &policy(), I),
            Action::GiveUp(
                "not paid after 2 attempts or within 86400 s; nothing of it can pay any more"
                    .into()
            )
        );
        let mut q = p.clone();
        q.send_attempts = 1;
        assert_eq!(
            next_action(&q, 10_100_000, &policy(), I),
            Action::NewInvoice
        );
        assert!(replace_invoice(
            &mut q,
            "x".into(),
            "h2".into(),
            20_000,
            10_100_000,
            &policy(),
            0
        )
        .is_ok());
        assert_eq!(q.previous_hashes, vec!["h1".to_string()]);
        assert_eq!(q.watched.len(), 1, "the left hash is still watched");
    }

    #[test]
    fn a_sent_hash_near_expiry_waits_instead_of_taking_a_new_invoice() {
        let mut p = sent_once();
        let _ = apply_lookup(&mut p, LookupOutcome::NotFound, 5_000, &policy(), 0);
        let t = 9_990_000; // within the expiry margin
        assert_eq!(
            next_action(&p, t + 100_000, &policy(), I),
            Action::AwaitExpiry
        );
        assert!(await_expiry(&mut p, t, &policy()).is_ok());
        assert!(matches!(
            p.state,
            PayoutState::Queued {
                verify_first: true,
                next_at_ms: 10_100_000
            }
        ));
    }

    #[test]
    fn a_previous_hash_seen_paid_makes_the_payout_succeed_and_a_second_one_overpaid() {
        let mut p = sent_once();
        p.hash_dead = true;
        p.state = queued(false);
        assert!(replace_invoice(&mut p, "i2".into(), "h2".into(), 20_000, 1, &policy(), 0).is_ok());
        let due = p.watched[0].next_check_ms.unwrap_or(0);
        assert_eq!(next_action(&p, due, &policy(), I), Action::Send);
        assert!(begin_send(&mut p, due, I).is_ok());
        let _ = apply_pay(&mut p, PayOutcome::Unknown("cut".into()), due, &policy(), 0);
        assert_eq!(
            next_action(&p, due, &policy(), I),
            Action::Watch("h1".into())
        );
        let paid = LookupOutcome::Paid {
            preimage: None,
            fee_msat: None,
        };
        assert!(apply_watch(&mut p, "h1", paid.clone(), due, &policy(), 0).is_ok());
        assert_eq!(p.status(), "succeeded");
        assert!(!p.overpaid);
        assert!(
            p.watched.iter().any(|w| w.hash == "h2"),
            "the current hash may still pay: watched"
        );
        assert!(apply_watch(&mut p, "h2", paid, due + 1, &policy(), 0).is_ok());
        assert!(p.overpaid, "two paid hashes are never hidden");
        assert_eq!(p.paid_hashes.len(), 2);
    }

    #[test]
    fn a_failed_payout_whose_hash_is_found_paid_becomes_succeeded() {
        let mut p = sent_once();
        p.hash_dead = true;
        p.state = queued(false);
        assert!(replace_invoice(&mut p, "i2".into(), "h2".into(), 20_000, 1, &policy(), 0).is_ok());
        assert!(give_up(&mut p, "x".into(), 2).is_ok(), "h2 was never sent");
        let _ = apply_watch(
            &mut p,
            "h1",
            LookupOutcome::Paid {
                preimage: None,
                fee_msat: None,
            },
            3,
            &policy(),
            0,
        );
        assert_eq!(p.status(), "succeeded");
    }

    #[test]
    fn a_send_that_never_reported_back_becomes_unknown() {
        let p = payout(sending());
        assert_eq!(next_action(&p, 1, &policy(), I), Action::Nothing);
        assert_eq!(
            next_action(&p, 1, &policy(), "inst-b"),
            Action::RecoverSending,
            "another instance knows the sender died"
        );
        let mut p2 = p.clone();
        assert_eq!(
            next_action(&p2, policy().sending_timeout_ms, &policy(), I),
            Action::RecoverSending
        );
        assert!(recover_sending(&mut p2, 5).is_ok());
        assert_eq!(p2.status(), "unknown");
        assert!(p2.hash_spent);
    }

    #[test]
    fn not_sent_may_retry_without_a_lookup_and_ends_only_if_nothing_was_sent() {
        let mut p = payout(queued(false));
        assert!(begin_send(&mut p, 0, I).is_ok());
        let _ = apply_pay(
            &mut p,
            PayOutcome::NotSent("HTTP 401".into()),
            10,
            &policy(),
            0,
        );
        assert!(matches!(
            p.state,
            PayoutState::Queued {
                verify_first: false,
                ..
            }
        ));
        p.state = queued(false);
        assert!(begin_send(&mut p, 20, I).is_ok());
        let _ = apply_pay(
            &mut p,
            PayOutcome::NotSent("HTTP 401".into()),
            30,
            &policy(),
            0,
        );
        assert_eq!(p.status(), "failed", "never sent, attempts used up");

        let mut s = sent_once();
        s.state = queued(false);
        assert!(begin_send(&mut s, 20, I).is_ok());
        let _ = apply_pay(
            &mut s,
            PayOutcome::NotSent("HTTP 401".into()),
            30,
            &policy(),
            0,
        );
        assert_ne!(s.status(), "failed", "an earlier send may still pay");
        assert_eq!(
            next_action(&s, 10_000_000, &policy(), I),
            Action::AwaitExpiry
        );
    }

    #[test]
    fn the_lookup_backoff_starts_over_with_every_send() {
        let mut p = sent_once();
        p.lookups = 40; // a long history before this send
        let _ = apply_lookup(&mut p, LookupOutcome::Pending, 1_000, &policy(), 0);
        match p.state {
            PayoutState::Unknown { next_check_ms, .. } => assert!(
                next_check_ms - 1_000 <= 2 * policy().lookup.base_delay_ms,
                "checked soon after a fresh send, not at the capped delay: {next_check_ms}"
            ),
            ref s => panic!("{s:?}"),
        }
    }

    #[test]
    fn a_blocked_payout_backs_off_and_shows_why() {
        let mut p = sent_once();
        block(&mut p, "gone".into(), 100, &policy(), 0);
        let first = match p.state {
            PayoutState::Unknown { next_check_ms, .. } => next_check_ms,
            _ => 0,
        };
        block(&mut p, "gone".into(), first, &policy(), 0);
        let second = match p.state {
            PayoutState::Unknown { next_check_ms, .. } => next_check_ms,
            _ => 0,
        };
        assert!(first > 100 && second - first > first - 100, "backs off");
        assert_eq!(p.blocked.as_ref().map(|b| b.since_ms), Some(100));
        unblock(&mut p, second);
        assert!(p.blocked.is_none());
    }

    #[test]
    fn admin_reopen_verifies_a_sent_hash_before_sending() {
        let mut p = sent_once();
        p.state = PayoutState::Failed {
            at_ms: 0,
            reason: "x".into(),
        };
        assert!(reopen(&mut p, 50).is_ok());
        assert!(matches!(
            p.state,
            PayoutState::Queued {
                verify_first: true,
                ..
            }
        ));
        assert_eq!(p.age_from_ms, 50);
        let mut s = payout(PayoutState::Succeeded { at_ms: 0 });
        assert!(reopen(&mut s, 1).is_err());
    }

    #[test]
    fn expired_unsent_invoices_get_a_new_one_for_addresses_and_fail_for_bolt11() {
        let p = payout(queued(false));
        assert_eq!(
            next_action(&p, 10_000_000, &policy(), I),
            Action::NewInvoice
        );
        let mut b = p.clone();
        b.lnurl = None;
        assert!(matches!(
            next_action(&b, 10_000_000, &policy(), I),
            Action::GiveUp(_)
        ));
        let mut many = p.clone();
        many.previous_hashes = vec!["x".into(); 9];
        assert!(
            matches!(
                next_action(&many, 10_000_000, &policy(), I),
                Action::GiveUp(_)
            ),
            "the invoice history is bounded"
        );
    }

    #[test]
    fn cancel_ends_a_never_sent_queued_payout_failed() {
        let mut p = payout(queued(false));
        p.blocked = Some(Blocked {
            since_ms: 0,
            reason: "x".into(),
            checks: 1,
        });
        assert!(cancel(&mut p, 7).is_ok());
        assert_eq!(
            p.state,
            PayoutState::Failed {
                at_ms: 7,
                reason: CANCEL_REASON.into()
            }
        );
        assert!(!p.reserves_budget(), "releases its daily-limit reservation");
        assert!(p.blocked.is_none());
        assert!(p.log.iter().any(|l| l.event.contains(CANCEL_REASON)));
        // Not due yet makes no difference: nothing was sent.
        let mut later = payout(PayoutState::Queued {
            next_at_ms: 1_000_000,
            verify_first: false,
        });
        assert!(cancel(&mut later, 1).is_ok());
    }

    #[test]
    fn cancel_after_a_refusal_before_acting_is_allowed() {
        let mut p = payout(queued(false));
        assert!(begin_send(&mut p, 0, I).is_ok());
        let _ = apply_pay(
            &mut p,
            PayOutcome::NotSent("HTTP 401".into()),
            1,
            &policy(),
            0,
        );
        assert_eq!(p.status(), "queued");
        assert!(!p.hash_spent);
        assert!(cancel(&mut p, 2).is_ok());
    }

    #[test]
    fn cancel_is_refused_while_any_hash_may_still_pay() {
        let refused = |mut p: Payout, why: &str| {
            let before = p.clone();
            assert!(cancel(&mut p, 99).is_err(), "{why}");
            assert_eq!(p, before, "{why}: a refusal changes nothing");
        };
        refused(payout(sending()), "sending");
        refused(
            payout(PayoutState::Unknown {
                since_ms: 0,
                next_check_ms: 0,
            }),
            "unknown",
        );
        refused(payout(PayoutState::Succeeded { at_ms: 0 }), "succeeded");
        refused(
            payout(PayoutState::Failed {
                at_ms: 0,
                reason: "x".into(),
            }),
            "already failed",
        );
        refused(payout(queued(true)), "waiting for a lookup");
        // Sent once, then found unpaid for now: queued, but the hash may
        // still be paid by a request held somewhere.
        let mut p = sent_once();
        let _ = apply_lookup(&mut p, LookupOutcome::NotFound, 5_000, &policy(), 0);
        assert_eq!(p.status(), "queued");
        refused(p.clone(), "sent, not proven dead");
        // Explicit "failed" from the backend is checked by a lookup first.
        let mut f = payout(queued(false));
        assert!(begin_send(&mut f, 0, I).is_ok());
        let _ = apply_pay(
            &mut f,
            PayOutcome::Failed("no route".into()),
            1,
            &policy(),
            0,
        );
        refused(f, "backend said failed, not yet confirmed");
        // Waiting for expiry after the last attempt.
        let mut w = sent_once();
        w.send_attempts = 2;
        let _ = apply_lookup(&mut w, LookupOutcome::NotFound, 5_000, &policy(), 0);
        refused(w, "awaiting expiry");
    }

    #[test]
    fn cancel_is_refused_for_unpinned_rows_that_sent() {
        let mut legacy = payout(queued(false));
        legacy.backend = None;
        legacy.ever_sent = true;
        assert!(
            cancel(&mut legacy.clone(), 1).is_err(),
            "legacy row that sent"
        );
        legacy.ever_sent = false;
        legacy.previous_hashes.push("ab".repeat(32));
        assert!(
            cancel(&mut legacy.clone(), 1).is_err(),
            "legacy row with an earlier hash"
        );
        let mut never = payout(queued(false));
        never.backend = None;
        assert!(
            cancel(&mut never, 1).is_ok(),
            "a legacy row that never sent"
        );
    }

    #[test]
    fn cancel_is_allowed_once_every_sent_hash_is_proven_dead() {
        let mut p = sent_once();
        let _ = apply_lookup(&mut p, LookupOutcome::NotFound, 10_100_000, &policy(), 0);
        assert!(p.hash_dead);
        assert_eq!(p.status(), "queued");
        let mut dead = p.clone();
        assert!(cancel(&mut dead, 10_100_001).is_ok());
        // A new, never-sent invoice after a dead one: the old hash is still
        // watched (a payment is never hidden), and the payout may be cancelled.
        assert!(replace_invoice(
            &mut p,
            "i2".into(),
            "h2".into(),
            20_000,
            10_100_001,
            &policy(),
            0
        )
        .is_ok());
        assert!(p.ever_sent && !p.hash_spent);
        assert!(cancel(&mut p, 10_100_002).is_ok());
        assert_eq!(p.watched.len(), 1, "the old hash stays watched");
        // If it was paid after all, the payout succeeds: nothing is hidden.
        let paid = LookupOutcome::Paid {
            preimage: None,
            fee_msat: None,
        };
        assert!(apply_watch(&mut p, "h1", paid, 10_100_003, &policy(), 0).is_ok());
        assert_eq!(p.status(), "succeeded");
    }
}
