//! The payout state machine. Each function takes a payout in a given state
//! and an outcome, and gives the next state; none does I/O. The rules that
//! keep money safe live here:
//!
//! - only `Queued` without `verify_first` may send, and `Sending` is saved first;
//! - an ambiguous answer (timeout, 5xx, a 520 that does not say `failed`, a cut
//!   connection, "pending") makes the payout `Unknown`, resolved only by
//!   looking up that payment hash on the same backend;
//! - a hash that was sent is sent again only after a lookup confirms it unpaid;
//! - a terminal state needs the backend's word (paid, or failed/unpaid).

use crate::core::backoff::RetryPolicy;
use crate::core::payout::model::{Payout, PayoutState};

/// How a pay request ended, as the backend adapter classified it.
#[derive(Debug, Clone, PartialEq)]
pub enum PayOutcome {
    Succeeded {
        preimage: Option<String>,
        fee_msat: Option<u64>,
    },
    /// The backend said explicitly that this payment failed.
    Failed(String),
    /// The backend refused before acting (credentials, rate limit).
    NotSent(String),
    /// It may or may not have paid.
    Unknown(String),
}

/// What a status lookup of the payment hash said.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupOutcome {
    Paid {
        preimage: Option<String>,
        fee_msat: Option<u64>,
    },
    Failed(String),
    /// Still in flight.
    Pending,
    /// The backend has no payment with this hash.
    NotFound,
    /// The lookup itself failed; nothing is known.
    Error(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PayoutPolicy {
    /// Send attempts before a confirmed-unpaid payout ends as failed.
    pub max_attempts: u32,
    /// A payout still unsent after this long ends as failed (never while unknown).
    pub max_age_ms: u64,
    pub retry: RetryPolicy,
    /// Backoff of status lookups while unknown.
    pub lookup: RetryPolicy,
    /// A "not found" lookup this soon after a send is not trusted: the
    /// request may still be on its way.
    pub not_found_grace_ms: u64,
    /// A `Sending` older than this was cut off (the instance died): unknown.
    pub sending_timeout_ms: u64,
    /// An invoice this close to expiry is not sent.
    pub expiry_margin_secs: u64,
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
        }
    }
}

/// The next thing the queue should do with a payout.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Nothing,
    Send,
    Lookup,
    /// The invoice expired unpaid: fetch a new one (addresses and LNURLs only).
    NewInvoice,
    /// End as failed (unpaid is certain): expired BOLT11, or too old.
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

pub fn next_action(p: &Payout, now_ms: u64, policy: &PayoutPolicy) -> Action {
    match &p.state {
        PayoutState::Queued { next_at_ms, .. } if now_ms < *next_at_ms => Action::Nothing,
        PayoutState::Queued {
            verify_first: true, ..
        } => Action::Lookup,
        PayoutState::Queued { .. } => {
            if now_ms.saturating_sub(p.age_from_ms) >= policy.max_age_ms {
                return Action::GiveUp(format!(
                    "not paid within {} s; the backend confirmed it unpaid",
                    policy.max_age_ms / 1000
                ));
            }
            if p.hash_spent && p.lnurl.is_some() {
                return Action::NewInvoice;
            }
            if now_ms / 1000 + policy.expiry_margin_secs >= p.invoice_expires_at_secs {
                return match p.lnurl {
                    Some(_) => Action::NewInvoice,
                    None => Action::GiveUp("the invoice expired before it could be paid".into()),
                };
            }
            Action::Send
        }
        PayoutState::Sending { since_ms }
            if now_ms >= since_ms.saturating_add(policy.sending_timeout_ms) =>
        {
            Action::RecoverSending
        }
        PayoutState::Unknown { next_check_ms, .. } if now_ms >= *next_check_ms => Action::Lookup,
        _ => Action::Nothing,
    }
}

/// Queued → Sending. Save the result before the pay request leaves.
pub fn begin_send(p: &mut Payout, now_ms: u64) -> Result<(), WrongState> {
    match p.state {
        PayoutState::Queued {
            verify_first: false,
            next_at_ms,
        } if now_ms >= next_at_ms => {
            p.state = PayoutState::Sending { since_ms: now_ms };
            p.send_attempts += 1;
            p.hash_spent = true;
            p.last_sent_at_ms = Some(now_ms);
            let (n, h) = (p.send_attempts, p.payment_hash.clone());
            p.note(now_ms, format!("sending attempt {n} for {h}"));
            Ok(())
        }
        _ => Err(WrongState(
            "only a due, unverified-free queued payout may send",
        )),
    }
}

fn succeed(
    p: &mut Payout,
    now_ms: u64,
    preimage: Option<String>,
    fee_msat: Option<u64>,
    how: &str,
) {
    p.state = PayoutState::Succeeded { at_ms: now_ms };
    p.preimage = preimage;
    p.fee_msat = fee_msat;
    p.last_error = None;
    p.note(now_ms, format!("succeeded ({how})"));
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
    if !matches!(
        p.state,
        PayoutState::Sending { .. } | PayoutState::Unknown { .. }
    ) {
        return Err(WrongState("a pay outcome needs a sending payout"));
    }
    let attempts_left = p.send_attempts < policy.max_attempts;
    match outcome {
        PayOutcome::Succeeded { preimage, fee_msat } => {
            succeed(p, now_ms, preimage, fee_msat, "backend confirmed")
        }
        PayOutcome::Failed(reason) => {
            p.last_error = Some(reason.clone());
            if attempts_left {
                p.note(
                    now_ms,
                    format!("backend says failed: {reason}; will confirm unpaid, then retry"),
                );
                p.state = PayoutState::Queued {
                    next_at_ms: later(
                        now_ms,
                        &policy.retry,
                        p.send_attempts.saturating_sub(1),
                        random,
                    ),
                    verify_first: true,
                };
            } else {
                fail(
                    p,
                    now_ms,
                    format!(
                        "backend says failed after {} attempts: {reason}",
                        p.send_attempts
                    ),
                );
            }
        }
        PayOutcome::NotSent(reason) => {
            p.last_error = Some(reason.clone());
            if attempts_left {
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
            } else {
                fail(
                    p,
                    now_ms,
                    format!("not sent after {} attempts: {reason}", p.send_attempts),
                );
            }
        }
        PayOutcome::Unknown(reason) => {
            p.last_error = Some(reason.clone());
            p.note(
                now_ms,
                format!("outcome unknown: {reason}; will look up the payment hash"),
            );
            p.state = PayoutState::Unknown {
                since_ms: now_ms,
                next_check_ms: next_lookup(now_ms, &policy.lookup, 0, random),
            };
        }
    }
    Ok(())
}

/// Applies a status lookup, in `Unknown` or `Queued { verify_first }`.
pub fn apply_lookup(
    p: &mut Payout,
    outcome: LookupOutcome,
    now_ms: u64,
    policy: &PayoutPolicy,
    random: u64,
) -> Result<(), WrongState> {
    let from_unknown = match p.state {
        PayoutState::Unknown { .. } => true,
        PayoutState::Queued {
            verify_first: true, ..
        } => false,
        _ => return Err(WrongState("a lookup needs an unknown or verifying payout")),
    };
    p.lookups += 1;
    let since = match p.state {
        PayoutState::Unknown { since_ms, .. } => since_ms,
        _ => now_ms,
    };
    let keep_checking = |p: &mut Payout, why: String| {
        let n = p.lookups;
        p.note(now_ms, why);
        if from_unknown {
            p.state = PayoutState::Unknown {
                since_ms: since,
                next_check_ms: next_lookup(now_ms, &policy.lookup, n, random),
            };
        } else if let PayoutState::Queued { .. } = p.state {
            p.state = PayoutState::Queued {
                next_at_ms: next_lookup(now_ms, &policy.lookup, n, random),
                verify_first: true,
            };
        }
    };
    let confirmed_unpaid = match outcome {
        LookupOutcome::Paid { preimage, fee_msat } => {
            succeed(p, now_ms, preimage, fee_msat, "status lookup");
            return Ok(());
        }
        LookupOutcome::Pending => {
            p.note(now_ms, "status lookup: still in flight");
            // In flight is never a failure to retry: wait for its end, as unknown.
            p.state = PayoutState::Unknown {
                since_ms: since,
                next_check_ms: next_lookup(now_ms, &policy.lookup, p.lookups, random),
            };
            return Ok(());
        }
        LookupOutcome::Error(e) => {
            keep_checking(p, format!("status lookup failed: {e}"));
            return Ok(());
        }
        LookupOutcome::NotFound => {
            let recent = p
                .last_sent_at_ms
                .is_some_and(|t| now_ms.saturating_sub(t) < policy.not_found_grace_ms);
            if from_unknown && recent {
                keep_checking(
                    p,
                    "status lookup: not found yet; too soon after the send to trust".into(),
                );
                return Ok(());
            }
            "the backend has no payment with this hash".to_string()
        }
        LookupOutcome::Failed(reason) => reason,
    };
    p.last_error = Some(confirmed_unpaid.clone());
    if p.send_attempts >= policy.max_attempts {
        fail(
            p,
            now_ms,
            format!(
                "confirmed unpaid after {} attempts: {confirmed_unpaid}",
                p.send_attempts
            ),
        );
    } else {
        p.note(
            now_ms,
            format!("confirmed unpaid ({confirmed_unpaid}); may retry"),
        );
        p.state = PayoutState::Queued {
            next_at_ms: if from_unknown {
                later(
                    now_ms,
                    &policy.retry,
                    p.send_attempts.saturating_sub(1),
                    random,
                )
            } else {
                now_ms
            },
            verify_first: false,
        };
    }
    Ok(())
}

/// A `Sending` that outlived the timeout: its outcome is unknown.
pub fn recover_sending(p: &mut Payout, now_ms: u64) -> Result<(), WrongState> {
    match p.state {
        PayoutState::Sending { .. } => {
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

/// Swaps in a fresh invoice; the old hash must be confirmed unpaid, which a
/// `Queued` payout without `verify_first` guarantees.
pub fn replace_invoice(
    p: &mut Payout,
    invoice: String,
    payment_hash: String,
    expires_at_secs: u64,
    now_ms: u64,
) -> Result<(), WrongState> {
    match p.state {
        PayoutState::Queued {
            verify_first: false,
            ..
        } => {
            let old = std::mem::replace(&mut p.payment_hash, payment_hash.clone());
            p.previous_hashes.push(old);
            p.invoice = invoice;
            p.invoice_expires_at_secs = expires_at_secs;
            p.hash_spent = false;
            p.note(
                now_ms,
                format!("new invoice {payment_hash} (the previous one is confirmed unpaid)"),
            );
            Ok(())
        }
        _ => Err(WrongState(
            "a new invoice needs a confirmed-unpaid queued payout",
        )),
    }
}

/// Fetching a new invoice failed (the recipient's server is down or
/// refuses): stay queued and try again later; max age ends it eventually.
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
            p.note(now_ms, reason.clone());
            p.last_error = Some(reason);
            p.state = PayoutState::Queued {
                next_at_ms: later(now_ms, &policy.retry, p.send_attempts, random),
                verify_first: false,
            };
            Ok(())
        }
        _ => Err(WrongState(
            "only a confirmed-unpaid queued payout fetches invoices",
        )),
    }
}

/// Ends a payout whose hash is certainly unpaid (never sent, or confirmed).
pub fn give_up(p: &mut Payout, reason: String, now_ms: u64) -> Result<(), WrongState> {
    match p.state {
        PayoutState::Queued {
            verify_first: false,
            ..
        } => {
            fail(p, now_ms, reason);
            Ok(())
        }
        _ => Err(WrongState("only a confirmed-unpaid payout can be given up")),
    }
}

/// Re-opens a dead-lettered payout (admin retry). Allowed only when it
/// failed, which the machine allows only with the backend's word that the
/// hash is unpaid; it still verifies once more before sending.
pub fn reopen(p: &mut Payout, now_ms: u64) -> Result<(), WrongState> {
    match p.state {
        PayoutState::Failed { .. } => {
            p.state = PayoutState::Queued {
                next_at_ms: now_ms,
                verify_first: p.send_attempts > 0,
            };
            p.send_attempts = 0;
            p.age_from_ms = now_ms;
            p.note(now_ms, "re-opened by an admin");
            Ok(())
        }
        _ => Err(WrongState("only a failed payout can be retried")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::payout::destination::DestinationKind;
    use crate::core::providers::ProviderKind;

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
            provider: ProviderKind::Lnbits,
            invoice: "lnbc".into(),
            payment_hash: "h1".into(),
            invoice_expires_at_secs: 10_000,
            previous_hashes: vec![],
            state,
            send_attempts: 0,
            hash_spent: false,
            last_sent_at_ms: None,
            lookups: 0,
            last_error: None,
            fee_msat: None,
            preimage: None,
            webhook: None,
            log: vec![],
            version: 1,
        }
    }

    fn policy() -> PayoutPolicy {
        PayoutPolicy {
            max_attempts: 2,
            not_found_grace_ms: 1_000,
            ..PayoutPolicy::default()
        }
    }

    #[test]
    fn only_a_ready_queued_payout_sends() {
        let mut p = payout(PayoutState::Queued {
            next_at_ms: 0,
            verify_first: false,
        });
        assert_eq!(next_action(&p, 0, &policy()), Action::Send);
        assert!(begin_send(&mut p, 0).is_ok());
        assert_eq!(p.status(), "sending");
        assert!(begin_send(&mut p, 0).is_err(), "sending cannot send again");
        let mut v = payout(PayoutState::Queued {
            next_at_ms: 0,
            verify_first: true,
        });
        assert_eq!(next_action(&v, 0, &policy()), Action::Lookup);
        assert!(begin_send(&mut v, 0).is_err());
        let mut u = payout(PayoutState::Unknown {
            since_ms: 0,
            next_check_ms: 0,
        });
        assert!(begin_send(&mut u, 0).is_err());
    }

    #[test]
    fn ambiguous_answers_become_unknown_and_only_a_lookup_resolves_them() {
        let mut p = payout(PayoutState::Sending { since_ms: 0 });
        p.send_attempts = 1;
        p.last_sent_at_ms = Some(0);
        let _ = apply_pay(
            &mut p,
            PayOutcome::Unknown("HTTP 520".into()),
            10,
            &policy(),
            0,
        );
        assert_eq!(p.status(), "unknown");
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
    }

    #[test]
    fn explicit_failure_is_verified_before_retry_and_ends_failed_at_the_limit() {
        let mut p = payout(PayoutState::Sending { since_ms: 0 });
        p.send_attempts = 1;
        let _ = apply_pay(
            &mut p,
            PayOutcome::Failed("no route".into()),
            10,
            &policy(),
            0,
        );
        assert!(matches!(
            p.state,
            PayoutState::Queued {
                verify_first: true,
                ..
            }
        ));
        let _ = apply_lookup(
            &mut p,
            LookupOutcome::Failed("failed".into()),
            20,
            &policy(),
            0,
        );
        assert!(matches!(
            p.state,
            PayoutState::Queued {
                verify_first: false,
                next_at_ms: 20
            }
        ));
        assert!(begin_send(&mut p, 20).is_ok());
        let _ = apply_pay(
            &mut p,
            PayOutcome::Failed("no route".into()),
            30,
            &policy(),
            0,
        );
        assert_eq!(p.status(), "failed", "max_attempts is 2");
    }

    #[test]
    fn expired_invoices_get_a_new_one_for_addresses_and_fail_for_bolt11() {
        let p = payout(PayoutState::Queued {
            next_at_ms: 0,
            verify_first: false,
        });
        assert_eq!(next_action(&p, 10_000_000, &policy()), Action::NewInvoice);
        let mut b = p.clone();
        b.lnurl = None;
        assert!(matches!(
            next_action(&b, 10_000_000, &policy()),
            Action::GiveUp(_)
        ));
        let mut q = p.clone();
        assert!(replace_invoice(&mut q, "lnbc2".into(), "h2".into(), 20_000, 1).is_ok());
        assert_eq!(q.previous_hashes, vec!["h1".to_string()]);
        let mut u = payout(PayoutState::Unknown {
            since_ms: 0,
            next_check_ms: 0,
        });
        assert!(
            replace_invoice(&mut u, "x".into(), "h3".into(), 1, 1).is_err(),
            "never a new hash while unknown"
        );
        assert!(
            give_up(&mut u, "x".into(), 1).is_err(),
            "never failed while unknown"
        );
    }

    #[test]
    fn a_send_that_never_reported_back_becomes_unknown() {
        let p = payout(PayoutState::Sending { since_ms: 0 });
        assert_eq!(next_action(&p, 1, &policy()), Action::Nothing);
        let mut p2 = p.clone();
        assert_eq!(
            next_action(&p2, policy().sending_timeout_ms, &policy()),
            Action::RecoverSending
        );
        assert!(recover_sending(&mut p2, 5).is_ok());
        assert_eq!(p2.status(), "unknown");
    }

    #[test]
    fn not_sent_may_retry_without_a_lookup() {
        let mut p = payout(PayoutState::Sending { since_ms: 0 });
        p.send_attempts = 1;
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
    }

    #[test]
    fn admin_reopen_verifies_again_before_sending() {
        let mut p = payout(PayoutState::Failed {
            at_ms: 0,
            reason: "x".into(),
        });
        p.send_attempts = 2;
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
}
