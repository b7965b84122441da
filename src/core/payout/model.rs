//! A payout as the queue stores it, and its API view.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::core::payout::destination::DestinationKind;
use crate::core::providers::ProviderKind;
use crate::core::time::iso8601_ms;

/// Where a payout stands. `Sending` is written before a pay request leaves;
/// `Unknown` means the backend may or may not have paid, and only a status
/// lookup of the payment hash on the same backend can tell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Webhook delivery of the terminal event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    /// Set when the terminal state is reached: one event per payout.
    pub event_id: Option<String>,
    pub next_at_ms: Option<u64>,
    pub delivered_at_ms: Option<u64>,
    pub attempts: Vec<Delivery>,
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
    pub provider: ProviderKind,
    pub invoice: String,
    pub payment_hash: String,
    pub invoice_expires_at_secs: u64,
    /// Hashes of earlier invoices of this payout, each confirmed unpaid.
    pub previous_hashes: Vec<String>,
    pub state: PayoutState,
    pub send_attempts: u32,
    /// The current hash was sent at least once. An address payout then gets a
    /// new invoice rather than resending it (LNbits refuses a failed invoice).
    #[serde(default)]
    pub hash_spent: bool,
    pub last_sent_at_ms: Option<u64>,
    pub lookups: u32,
    pub last_error: Option<String>,
    pub fee_msat: Option<u64>,
    pub preimage: Option<String>,
    pub webhook: Option<Webhook>,
    pub log: Vec<LogEntry>,
    /// Bumped on every save; a write after an `await` must match it.
    pub version: u64,
}

const LOG_CAP: usize = 60;

impl Payout {
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
    pub fn wake_at_ms(&self, sending_timeout_ms: u64) -> Option<u64> {
        let state = match &self.state {
            PayoutState::Queued { next_at_ms, .. } => Some(*next_at_ms),
            PayoutState::Sending { since_ms } => Some(since_ms.saturating_add(sending_timeout_ms)),
            PayoutState::Unknown { next_check_ms, .. } => Some(*next_check_ms),
            PayoutState::Succeeded { .. } | PayoutState::Failed { .. } => None,
        };
        let hook = self.webhook.as_ref().and_then(|w| w.next_at_ms);
        match (state, hook) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counts against the daily limit unless it ended unpaid.
    pub fn reserves_budget(&self) -> bool {
        !matches!(self.state, PayoutState::Failed { .. })
    }

    /// The API representation.
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
        if let Some(c) = &self.comment {
            put("comment", json!(c));
        }
        if let Some(e) = &self.last_error {
            put("last_error", json!(e));
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
            put(
                "webhook",
                json!({
                    "url": w.url,
                    "event_id": w.event_id,
                    "delivered": w.delivered_at_ms.is_some(),
                    "delivered_at": w.delivered_at_ms.map(iso8601_ms),
                    "next_attempt_at": w.next_at_ms.map(iso8601_ms),
                    "attempts": w.attempts.iter().map(|d| json!({"at": iso8601_ms(d.at_ms), "status": d.status, "error": d.error})).collect::<Vec<_>>(),
                }),
            );
        }
        v
    }
}
