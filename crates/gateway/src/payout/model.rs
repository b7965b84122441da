//! A payout as the queue stores it, and its API view.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::payout::destination::DestinationKind;
use crate::time::iso8601_ms;
use backends::{BackendConfig, BackendKind};

pub use backends::identity::BackendId;

/// Why a payout cannot progress now, shown until it can.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocked {
    pub since_ms: u64,
    pub reason: String,
    /// Times the queue found it still blocked (drives the backoff).
    pub checks: u32,
}

/// A hash the payout moved away from. It was proven unpayable before the
/// move; it is still looked up for a while, so a payment that happened
/// anyway is never hidden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchedHash {
    pub hash: String,
    pub since_ms: u64,
    /// `None` once the watch window is over or the hash was seen paid.
    pub next_check_ms: Option<u64>,
    pub checks: u32,
    /// The backend this hash was sent through: it is looked up there and
    /// nowhere else. `None` on rows from before a payout could move: the
    /// payout's own backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendId>,
}

/// One backend a payout used, and why it went there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStep {
    pub backend: BackendId,
    pub at_ms: u64,
    pub why: String,
}

/// The send bookkeeping a new send overwrites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentBefore {
    pub last_sent_at_ms: Option<u64>,
    pub hash_first_sent_at_ms: Option<u64>,
}

/// Where a payout stands. `Sending` is written before a pay request leaves;
/// `Unknown` means the backend may or may not have paid, and only a status
/// lookup of the payment hash on the same backend can tell.
///
/// Read through one flat struct (`state_reader`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PayoutState {
    /// Due at `next_at_ms`. With `verify_first`, the hash was sent before and
    /// the backend must confirm it unpaid before anything is sent again.
    Queued {
        next_at_ms: u64,
        verify_first: bool,
    },
    Sending {
        since_ms: u64,
        /// The queue instance that sent. Another instance finding it
        /// `Sending` knows the sender died with the request in the air.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
        /// What the send replaced, restored if the backend refuses it
        /// before acting.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<SentBefore>,
    },
    Unknown {
        since_ms: u64,
        next_check_ms: u64,
    },
    Succeeded {
        at_ms: u64,
    },
    Failed {
        at_ms: u64,
        reason: String,
    },
}

impl PayoutState {
    pub fn name(&self) -> &'static str {
        match self {
            PayoutState::Queued { .. } => "queued",
            PayoutState::Sending { .. } => "sending",
            PayoutState::Unknown { .. } => "unknown",
            PayoutState::Succeeded { .. } => "succeeded",
            PayoutState::Failed { .. } => "failed",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            PayoutState::Succeeded { .. } | PayoutState::Failed { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub at_ms: u64,
    pub event: String,
}

pub use crate::webhooks::Delivery;

/// Webhook delivery of the terminal event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    /// Set when the terminal state is reached: one event per payout.
    pub event_id: Option<String>,
    pub next_at_ms: Option<u64>,
    pub delivered_at_ms: Option<u64>,
    pub attempts: Vec<Delivery>,
    /// Attempts for the current event: each event gets the whole schedule.
    #[serde(default)]
    pub event_attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payout {
    pub id: String,
    pub idempotency_key: String,
    /// SHA-256 of the request body's meaning: a replay must match it.
    pub fingerprint: String,
    pub created_at_ms: u64,
    /// Start of the max-age clock: creation, or an admin retry.
    pub age_from_ms: u64,
    pub destination: String,
    pub destination_kind: DestinationKind,
    /// The payRequest URL, kept to fetch a new invoice after a confirmed failure.
    pub lnurl: Option<String>,
    pub amount_sat: u64,
    pub comment: Option<String>,
    pub external_id: Option<String>,
    pub provider: BackendKind,
    /// The backend this payout is pinned to; `None` only on rows stored
    /// before pinning existed (pinned on first touch, see the engine).
    #[serde(default)]
    pub backend: Option<BackendId>,
    /// Every backend this payout was pinned to, oldest first, with why it
    /// went there (empty on rows from before the payout chain).
    #[serde(default)]
    pub route: Vec<RouteStep>,
    /// Backends this payout did not get paid through: they refused its
    /// current invoice before acting, or an earlier invoice of it died
    /// there unpaid. A payout free to move tries the others first.
    #[serde(default)]
    pub failed_at: Vec<BackendId>,
    /// Sends of the current hash refused before acting. The hash may move
    /// to another backend only while every send of it was refused.
    #[serde(default)]
    pub hash_refusals: u32,
    /// When the payout last moved to another backend after trying one.
    #[serde(default)]
    pub moved_at_ms: Option<u64>,
    /// `send_attempts` when it was pinned to its current backend: each
    /// backend gets `PAYOUT_MAX_ATTEMPTS` sends.
    #[serde(default)]
    pub attempts_at_pin: u32,
    /// Every hash this payout left was proven dead under the rules that
    /// let a payout move. Rows from before the payout chain read false:
    /// their earlier hashes may have been left on weaker proof, so once
    /// anything of them was sent they never move.
    #[serde(default)]
    pub move_safe: bool,
    /// Set while the payout cannot progress (its backend is not configured).
    #[serde(default)]
    pub blocked: Option<Blocked>,
    pub invoice: String,
    pub payment_hash: String,
    pub invoice_expires_at_secs: u64,
    /// Hashes of earlier invoices of this payout, each proven unpayable
    /// (expired, and then confirmed absent or failed) before it was left.
    pub previous_hashes: Vec<String>,
    /// Earlier hashes still being looked up, in case one was paid after all.
    #[serde(default)]
    pub watched: Vec<WatchedHash>,
    /// Every hash of this payout the backend reported paid. More than one
    /// means the recipient was paid twice: `overpaid`, never hidden.
    #[serde(default)]
    pub paid_hashes: Vec<String>,
    #[serde(default)]
    pub overpaid: bool,
    /// New invoices fetched for this payout (drives their backoff).
    #[serde(default)]
    pub invoice_refreshes: u32,
    pub state: PayoutState,
    pub send_attempts: u32,
    /// A send of the current hash may have reached the backend: it is left
    /// only once proven unpayable (`hash_dead`).
    #[serde(default)]
    pub hash_spent: bool,
    /// The current invoice expired and a lookup after expiry plus a margin
    /// found it absent or failed: nothing can pay it any more.
    #[serde(default)]
    pub hash_dead: bool,
    /// Some hash of this payout may have reached its backend: the payout can
    /// no longer move to another backend.
    #[serde(default)]
    pub ever_sent: bool,
    /// Admin retries so far: each re-opening starts a new round whose
    /// terminal event gets its own webhook id.
    #[serde(default)]
    pub reopened: u32,
    /// Sends of the current hash. Rows stored before it was counted read
    /// 0 with `hash_spent` set: unknown, taken as more than one.
    #[serde(default)]
    pub hash_sends: u32,
    /// When the current hash was first sent (`None` on rows from before it
    /// was recorded: their creation time bounds it from below).
    #[serde(default)]
    pub hash_first_sent_at_ms: Option<u64>,
    /// The backend answered a send of the current hash with "already
    /// paid": it may be paid, so it is never proven dead.
    #[serde(default)]
    pub hash_said_paid: bool,
    /// The current hash is not sent again: a lookup said "failed" on a
    /// backend whose lookups describe one attempt of several.
    #[serde(default)]
    pub no_resend: bool,
    /// Since when every status lookup of the current hash has failed
    /// (the attention list shows a payout stuck this way).
    #[serde(default)]
    pub lookups_failing_since_ms: Option<u64>,
    pub last_sent_at_ms: Option<u64>,
    pub lookups: u32,
    /// Lookups since the last send: the lookup backoff starts over with
    /// every send, so a fresh send is checked soon.
    #[serde(default)]
    pub lookups_since_send: u32,
    pub last_error: Option<String>,
    pub fee_msat: Option<u64>,
    pub preimage: Option<String>,
    pub webhook: Option<Webhook>,
    /// The operator's `PAYOUT_WEBHOOK_URL` when the payout was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_webhook: Option<Webhook>,
    pub log: Vec<LogEntry>,
    /// Bumped on every save; a write after an `await` must match it.
    pub version: u64,
}

const LOG_CAP: usize = 60;

/// What a payout is accepted with.
pub struct Accepted<'a> {
    pub id: String,
    pub idempotency_key: String,
    pub fingerprint: String,
    pub now_ms: u64,
    pub destination: String,
    pub destination_kind: DestinationKind,
    pub lnurl: Option<String>,
    pub amount_sat: u64,
    pub comment: Option<String>,
    pub external_id: Option<String>,
    /// The backend new payouts go to: this one is pinned to it.
    pub backend: &'a BackendConfig,
    pub invoice: String,
    pub payment_hash: String,
    pub invoice_expires_at_secs: u64,
    pub webhook_url: Option<String>,
    pub operator_webhook_url: Option<String>,
}

impl Webhook {
    /// A webhook to `url` with no event yet.
    pub fn to(url: String) -> Webhook {
        Webhook {
            url,
            event_id: None,
            next_at_ms: None,
            delivered_at_ms: None,
            attempts: Vec::new(),
            event_attempts: 0,
        }
    }

    fn view(&self) -> Value {
        json!({
            "url": self.url,
            "event_id": self.event_id,
            "delivered": self.delivered_at_ms.is_some(),
            "delivered_at": self.delivered_at_ms.map(iso8601_ms),
            "next_attempt_at": self.next_at_ms.map(iso8601_ms),
            "attempts": self.attempts.iter().map(|d| json!({"at": iso8601_ms(d.at_ms), "status": d.status, "error": d.error})).collect::<Vec<_>>(),
        })
    }
}

impl Payout {
    /// A payout just accepted: queued, due now, nothing sent.
    pub fn accepted(a: Accepted) -> Payout {
        let mut p = Payout {
            id: a.id,
            idempotency_key: a.idempotency_key,
            fingerprint: a.fingerprint,
            created_at_ms: a.now_ms,
            age_from_ms: a.now_ms,
            destination: a.destination,
            destination_kind: a.destination_kind,
            lnurl: a.lnurl,
            amount_sat: a.amount_sat,
            comment: a.comment,
            external_id: a.external_id,
            provider: a.backend.kind,
            backend: Some(BackendId::of(a.backend)),
            route: vec![RouteStep {
                backend: BackendId::of(a.backend),
                at_ms: a.now_ms,
                why: "the first backend of the payout chain".into(),
            }],
            failed_at: Vec::new(),
            hash_refusals: 0,
            moved_at_ms: None,
            attempts_at_pin: 0,
            move_safe: true,
            blocked: None,
            invoice: a.invoice,
            payment_hash: a.payment_hash,
            invoice_expires_at_secs: a.invoice_expires_at_secs,
            previous_hashes: Vec::new(),
            watched: Vec::new(),
            paid_hashes: Vec::new(),
            overpaid: false,
            invoice_refreshes: 0,
            state: PayoutState::Queued {
                next_at_ms: a.now_ms,
                verify_first: false,
            },
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
            webhook: a.webhook_url.map(Webhook::to),
            operator_webhook: a.operator_webhook_url.map(Webhook::to),
            log: Vec::new(),
            version: 1,
        };
        let note = format!(
            "accepted; invoice {} for {} sat",
            p.payment_hash, p.amount_sat
        );
        p.note(a.now_ms, note);
        p
    }

    pub fn status(&self) -> &'static str {
        self.state.name()
    }

    pub fn note(&mut self, at_ms: u64, event: impl Into<String>) {
        self.log.push(LogEntry {
            at_ms,
            event: event.into(),
        });
        if self.log.len() > LOG_CAP {
            let excess = self.log.len() - LOG_CAP;
            self.log.drain(..excess);
        }
    }

    /// When the queue must next look at this payout (state or webhook).
    pub fn wake_at_ms(&self, sending_recheck_ms: u64) -> Option<u64> {
        let state = match &self.state {
            PayoutState::Queued { next_at_ms, .. } => Some(*next_at_ms),
            PayoutState::Sending { since_ms, .. } => {
                Some(since_ms.saturating_add(sending_recheck_ms))
            }
            PayoutState::Unknown { next_check_ms, .. } => Some(*next_check_ms),
            PayoutState::Succeeded { .. } | PayoutState::Failed { .. } => None,
        };
        let hook = self.webhook.as_ref().and_then(|w| w.next_at_ms);
        let operator = self.operator_webhook.as_ref().and_then(|w| w.next_at_ms);
        let watch = self.watched.iter().filter_map(|w| w.next_check_ms).min();
        [state, hook, operator, watch].into_iter().flatten().min()
    }

    /// Counts against the daily limit unless it ended unpaid.
    pub fn reserves_budget(&self) -> bool {
        !matches!(self.state, PayoutState::Failed { .. })
    }

    /// The answer to the request that created (or retried) it: 201 when
    /// paid at once, 202 while it goes on, 422 when it already ended failed
    /// (it is stored all the same; the body says why).
    pub fn created_answer(&self) -> (u16, Value) {
        let mut view = self.view();
        match &self.state {
            PayoutState::Succeeded { .. } => (201, view),
            PayoutState::Failed { reason, .. } => {
                view["error"] = json!({"code": "payout_failed", "message": reason});
                (422, view)
            }
            _ => (202, view),
        }
    }

    /// Each backend the payout used, and why it went there.
    fn route_view(&self) -> Value {
        json!(self
            .route
            .iter()
            .map(|r| json!({
                "kind": r.backend.kind.as_str(),
                "url": r.backend.base_url,
                "key_fingerprint": r.backend.credential_fp,
                "since": iso8601_ms(r.at_ms),
                "why": r.why,
            }))
            .collect::<Vec<_>>())
    }

    /// The view a client (and a webhook) gets: [`Payout::view`] without
    /// [`ADMIN_ONLY_FIELDS`].
    pub fn client_view(&self) -> Value {
        client_view(self.view())
    }

    /// The API representation, as the admin sees it.
    pub fn view(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "status": self.status(),
            "payment_hash": self.payment_hash,
            "destination": self.destination,
            "destination_type": self.destination_kind,
            "amount_sat": self.amount_sat,
            "created_at": iso8601_ms(self.created_at_ms),
            "provider": self.provider.as_str(),
            "invoice": self.invoice,
            "attempts": self.send_attempts,
            "status_checks": self.lookups,
            "previous_payment_hashes": self.previous_hashes,
            "paid_payment_hashes": self.paid_hashes,
            "overpaid": self.overpaid,
            "backend": self.backend.as_ref().map(|b| json!({"kind": b.kind.as_str(), "url": b.base_url, "key_fingerprint": b.credential_fp})),
            "log": self.log.iter().map(|l| json!({"at": iso8601_ms(l.at_ms), "event": l.event})).collect::<Vec<_>>(),
        });
        let o = match v.as_object_mut() {
            Some(o) => o,
            None => return v,
        };
        let mut put = |k: &str, val: Value| {
            o.insert(k.into(), val);
        };
        if let Some(e) = &self.external_id {
            put("external_id", json!(e));
        }
        if !self.route.is_empty() {
            put("backends_used", self.route_view());
        }
        if let Some(c) = &self.comment {
            put("comment", json!(c));
        }
        if let Some(e) = &self.last_error {
            put("last_error", json!(e));
        }
        if let Some(b) = &self.blocked {
            put(
                "blocked",
                json!({"reason": b.reason, "since": iso8601_ms(b.since_ms)}),
            );
        }
        match &self.state {
            PayoutState::Succeeded { at_ms } => {
                put("completed_at", json!(iso8601_ms(*at_ms)));
                put("fee_msat", json!(self.fee_msat));
                put("preimage", json!(self.preimage));
            }
            PayoutState::Failed { at_ms, reason } => {
                put("completed_at", json!(iso8601_ms(*at_ms)));
                put("failure_reason", json!(reason));
            }
            PayoutState::Queued { next_at_ms, .. } => {
                put("next_attempt_at", json!(iso8601_ms(*next_at_ms)))
            }
            PayoutState::Unknown {
                next_check_ms,
                since_ms,
            } => {
                put("unknown_since", json!(iso8601_ms(*since_ms)));
                put("next_status_check_at", json!(iso8601_ms(*next_check_ms)));
            }
            PayoutState::Sending { .. } => {}
        }
        if let Some(w) = &self.webhook {
            put("webhook", w.view());
        }
        v
    }
}

/// The fields of a payout's view that only the admin sees: the backend's
/// URL and key fingerprint (in `backend` and `backends_used`) and the
/// internal log, which quotes backends' answers. The stored payout keeps
/// them all (pinning is untouched); only what is shown differs.
pub const ADMIN_ONLY_FIELDS: [&str; 3] = ["backend", "backends_used", "log"];

/// A payout view, a list page of them (`payouts`) or an answer carrying one,
/// as a client sees it.
pub fn client_view(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for k in ADMIN_ONLY_FIELDS {
            o.remove(k);
        }
        if let Some(Value::Array(items)) = o.get_mut("payouts") {
            for item in items {
                if let Some(i) = item.as_object_mut() {
                    for k in ADMIN_ONLY_FIELDS {
                        i.remove(k);
                    }
                }
            }
        }
    }
    v
}
