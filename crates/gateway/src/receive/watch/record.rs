//! One invoice under watch, and how each answer about it moves it on.
//! Transitions are plain functions: they return the events to announce.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::receive::context::InvoiceContext;
use crate::receive::invoice::InvoiceRecord;
use crate::receive::watch::schedule;
use crate::time::iso8601_ms;
use backends::identity::BackendId;
use backends::InvoiceState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Paid,
    Expired,
    /// A NIP-57 zap receipt, published to the zap request's relays (not an
    /// invoice event: the events history and webhooks never show it).
    ZapReceipt,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Paid => "invoice.paid",
            EventKind::Expired => "invoice.expired",
            EventKind::ZapReceipt => "nostr.zap_receipt",
        }
    }

    /// The last part of its event id.
    pub fn suffix(self) -> &'static str {
        match self {
            EventKind::Paid => "paid",
            EventKind::Expired => "expired",
            EventKind::ZapReceipt => "zap",
        }
    }
}

/// Where the watch stands. Read through one flat struct ([`crate::tagged`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WatchState {
    /// Not seen paid; looked up on the schedule.
    Open,
    /// Seen paid by its issuing backend: the watch is over.
    Paid {
        settled_at_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        preimage: Option<String>,
    },
    /// Never seen paid, watched until well past expiry: over.
    Ended,
}

impl<'de> Deserialize<'de> for WatchState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Tag {
            Open,
            Paid,
            Ended,
        }
        #[derive(Deserialize)]
        struct Flat {
            state: Tag,
            settled_at_ms: Option<u64>,
            preimage: Option<String>,
        }
        let f = Flat::deserialize(d)?;
        Ok(match f.state {
            Tag::Open => WatchState::Open,
            Tag::Paid => WatchState::Paid {
                settled_at_ms: crate::tagged::need(f.settled_at_ms, "settled_at_ms")?,
                preimage: f.preimage,
            },
            Tag::Ended => WatchState::Ended,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchedInvoice {
    pub payment_hash: String,
    pub payment_request: String,
    /// The backend that issued it: the only one asked about it.
    pub backend: BackendId,
    pub amount_sat: u64,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    #[serde(default)]
    pub context: InvoiceContext,
    pub state: WatchState,
    /// `invoice.expired` was announced (a later `invoice.paid` supersedes it).
    #[serde(default)]
    pub expired_announced: bool,
    pub lookups: u32,
    pub last_lookup_at_ms: Option<u64>,
    /// `None` once the watch is over.
    pub next_lookup_at_ms: Option<u64>,
    pub last_error: Option<String>,
    /// Pushed notices that moved a lookup earlier (at most [`MAX_NUDGES`]).
    #[serde(default)]
    pub nudges: u32,
}

/// Pushed paid notices that may each bring one lookup forward: a notice is
/// only a hint (anyone can send one), so it costs at most this many extra
/// lookups per invoice.
pub const MAX_NUDGES: u32 = 3;
/// A notice right after a lookup waits for the next one.
pub const NUDGE_MIN_GAP_MS: u64 = 2_000;

/// What one lookup of the issuing backend said.
#[derive(Debug, Clone, PartialEq)]
pub enum Looked {
    /// The state, and the preimage where the answer shows one.
    Answer(InvoiceState, Option<String>),
    /// No answer (transport, breaker, an error status): nothing is known.
    Failed(String),
}

impl WatchedInvoice {
    /// A new invoice, first looked up on the schedule's first point.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        payment_hash: String,
        payment_request: String,
        backend: BackendId,
        amount_sat: u64,
        created_at_ms: u64,
        expires_at_ms: u64,
        context: InvoiceContext,
    ) -> WatchedInvoice {
        WatchedInvoice {
            next_lookup_at_ms: schedule::next_lookup_ms(created_at_ms, expires_at_ms, None),
            payment_hash,
            payment_request,
            backend,
            amount_sat,
            created_at_ms,
            expires_at_ms,
            context,
            state: WatchState::Open,
            expired_announced: false,
            lookups: 0,
            last_lookup_at_ms: None,
            last_error: None,
            nudges: 0,
        }
    }

    /// The invoice was never handed out (create-invoice failed after taking
    /// it in): the watch ends without an event. `false` if it was not open.
    pub fn abandon(&mut self) -> bool {
        if !self.is_open() {
            return false;
        }
        self.state = WatchState::Ended;
        self.expired_announced = true;
        self.next_lookup_at_ms = None;
        true
    }

    /// A backend pushed a paid notice: look it up now (the lookup, not the
    /// notice, decides). `false` when the notice changes nothing.
    pub fn nudge(&mut self, now_ms: u64) -> bool {
        let recent = self
            .last_lookup_at_ms
            .is_some_and(|t| now_ms < t + NUDGE_MIN_GAP_MS);
        if !self.is_open() || self.nudges >= MAX_NUDGES || recent {
            return false;
        }
        self.nudges += 1;
        self.next_lookup_at_ms = Some(now_ms);
        true
    }

    /// Whether a caller's demand (check-invoice) warrants a lookup now:
    /// open, and not looked up within [`schedule::demand_gap_ms`].
    pub fn wants_demand_lookup(&self, now_ms: u64) -> bool {
        let gap = schedule::demand_gap_ms(self.created_at_ms, self.expires_at_ms, now_ms);
        self.is_open() && self.last_lookup_at_ms.is_none_or(|t| now_ms >= t + gap)
    }

    pub fn is_open(&self) -> bool {
        self.state == WatchState::Open
    }

    pub fn is_paid(&self) -> bool {
        matches!(self.state, WatchState::Paid { .. })
    }

    /// Folds in one lookup made at `now_ms`; the events to announce.
    pub fn apply_lookup(&mut self, looked: Looked, now_ms: u64) -> Vec<EventKind> {
        if !self.is_open() {
            return Vec::new();
        }
        self.lookups += 1;
        self.last_lookup_at_ms = Some(now_ms);
        self.next_lookup_at_ms =
            schedule::next_lookup_ms(self.created_at_ms, self.expires_at_ms, Some(now_ms));
        match looked {
            Looked::Answer(InvoiceState::Paid { settled_at_secs }, preimage) => {
                self.last_error = None;
                self.paid(settled_at_secs.map_or(now_ms, |s| s * 1000), preimage)
            }
            Looked::Answer(InvoiceState::Pending | InvoiceState::Cancelled, _) => {
                self.last_error = None;
                self.announce_expiry(now_ms)
            }
            Looked::Failed(why) => {
                self.last_error = Some(why);
                self.end_if_over()
            }
        }
    }

    /// Paid, as the issuing backend said (to the watch, or to a
    /// `check-invoice` that handed it over).
    pub fn paid(&mut self, settled_at_ms: u64, preimage: Option<String>) -> Vec<EventKind> {
        if self.is_paid() {
            return Vec::new();
        }
        self.state = WatchState::Paid {
            settled_at_ms,
            preimage,
        };
        self.next_lookup_at_ms = None;
        vec![EventKind::Paid]
    }

    /// Past expiry and not paid: announced once, after a lookup that said
    /// so (a backend that cannot be asked gets no "expired" until the end).
    fn announce_expiry(&mut self, now_ms: u64) -> Vec<EventKind> {
        let mut events = Vec::new();
        if now_ms >= self.expires_at_ms && !self.expired_announced {
            self.expired_announced = true;
            events.push(EventKind::Expired);
        }
        events.extend(self.end_if_over());
        events
    }

    /// The schedule has no more lookups: the watch ends, unpaid. An invoice
    /// no lookup could reach is announced expired now, as the best word left.
    fn end_if_over(&mut self) -> Vec<EventKind> {
        if self.next_lookup_at_ms.is_some() || !self.is_open() {
            return Vec::new();
        }
        self.state = WatchState::Ended;
        if self.expired_announced {
            Vec::new()
        } else {
            self.expired_announced = true;
            vec![EventKind::Expired]
        }
    }

    /// The invoice as the KV index keeps it (for `check-invoice`).
    pub fn index_record(&self) -> InvoiceRecord {
        let settled_at = match self.state {
            WatchState::Paid { settled_at_ms, .. } => Some(settled_at_ms / 1000),
            _ => None,
        };
        InvoiceRecord {
            payment_hash: self.payment_hash.clone(),
            provider: self.backend.kind,
            amount_sat: self.amount_sat,
            created_at: self.created_at_ms / 1000,
            expires_at: self.expires_at_ms / 1000,
            settled_at,
            paid: settled_at.is_some(),
        }
    }

    /// `pending`, `paid` or `expired`, as check-invoice says it.
    pub fn status(&self, now_ms: u64) -> &'static str {
        match self.state {
            WatchState::Paid { .. } => "paid",
            _ if now_ms >= self.expires_at_ms => "expired",
            _ => "pending",
        }
    }

    /// The invoice as events and the events history show it.
    pub fn event_data(&self, now_ms: u64) -> Value {
        let mut v = json!({
            "payment_hash": self.payment_hash,
            "payment_request": self.payment_request,
            "status": self.status(now_ms),
            "amount": self.amount_sat,
            "provider": self.backend.kind.as_str(),
            "created_at": iso8601_ms(self.created_at_ms),
            "expires_at": iso8601_ms(self.expires_at_ms),
        });
        if let WatchState::Paid {
            settled_at_ms,
            preimage,
        } = &self.state
        {
            v["settled_at"] = Value::from(iso8601_ms(*settled_at_ms));
            if let Some(p) = preimage {
                v["preimage"] = Value::from(p.clone());
            }
        }
        self.context.extend(&mut v);
        v
    }
}

/// An unpaid LNbits invoice, created at 0 and expiring at 600 s, for tests.
#[cfg(test)]
pub(crate) fn test_invoice() -> WatchedInvoice {
    WatchedInvoice::new(
        "ab".repeat(32),
        "lnbc1".into(),
        BackendId {
            kind: backends::BackendKind::Lnbits,
            base_url: "https://l.example".into(),
            credential_fp: "00".into(),
        },
        21,
        0,
        600_000,
        InvoiceContext::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each state reads back as itself (read through a flat struct).
    #[test]
    fn every_watch_state_round_trips() {
        crate::tagged::assert_reads_back([
            WatchState::Open,
            WatchState::Paid {
                settled_at_ms: 7,
                preimage: None,
            },
            WatchState::Paid {
                settled_at_ms: 7,
                preimage: Some("cd".repeat(32)),
            },
            WatchState::Ended,
        ]);
        assert!(serde_json::from_str::<WatchState>(r#"{"state":"paid"}"#).is_err());
    }

    fn pending() -> Looked {
        Looked::Answer(InvoiceState::Pending, None)
    }

    /// Looks up at every scheduled point with `answer(at)`; all events.
    fn run(inv: &mut WatchedInvoice, answer: impl Fn(u64) -> Looked) -> Vec<(u64, EventKind)> {
        let mut out = Vec::new();
        while let Some(at) = inv.next_lookup_at_ms {
            for e in inv.apply_lookup(answer(at), at) {
                out.push((at, e));
            }
        }
        out
    }

    #[test]
    fn an_unpaid_invoice_is_announced_expired_once_and_the_watch_ends() {
        let mut inv = test_invoice();
        let events = run(&mut inv, |_| pending());
        assert_eq!(events, vec![(660_000, EventKind::Expired)]);
        assert_eq!(inv.state, WatchState::Ended);
        assert_eq!(inv.lookups, schedule::lookups_for_lifetime(600_000));
    }

    #[test]
    fn paid_after_expiry_is_announced_after_expired() {
        let mut inv = test_invoice();
        let events = run(&mut inv, |at| {
            if at >= 4_000_000 {
                Looked::Answer(
                    InvoiceState::Paid {
                        settled_at_secs: Some(3_999),
                    },
                    None,
                )
            } else {
                pending()
            }
        });
        let kinds: Vec<EventKind> = events.iter().map(|e| e.1).collect();
        assert_eq!(kinds, vec![EventKind::Expired, EventKind::Paid]);
        assert!(inv.is_paid());
        assert_eq!(inv.status(5_000_000), "paid");
    }

    #[test]
    fn a_backend_down_all_along_gets_one_expired_at_the_end() {
        let mut inv = test_invoice();
        let events = run(&mut inv, |_| Looked::Failed("HTTP 520".into()));
        assert_eq!(
            events,
            vec![(schedule::watch_ends_ms(600_000), EventKind::Expired)]
        );
        assert_eq!(inv.last_error.as_deref(), Some("HTTP 520"));
    }

    #[test]
    fn notices_bring_a_lookup_forward_a_bounded_number_of_times() {
        let mut inv = test_invoice();
        assert!(inv.nudge(1_000));
        assert_eq!(inv.next_lookup_at_ms, Some(1_000));
        inv.apply_lookup(pending(), 1_000);
        assert!(!inv.nudge(1_500), "right after a lookup");
        assert!(inv.nudge(4_000));
        assert!(inv.nudge(9_000));
        assert!(!inv.nudge(20_000), "at most MAX_NUDGES");
        assert_eq!(inv.nudges, MAX_NUDGES);
        let mut paid = test_invoice();
        paid.paid(5, None);
        assert!(!paid.nudge(6));
    }

    #[test]
    fn an_abandoned_invoice_ends_silently() {
        let mut inv = test_invoice();
        assert!(inv.abandon());
        assert_eq!(inv.state, WatchState::Ended);
        assert!(inv.apply_lookup(pending(), 700_000).is_empty());
        assert!(!inv.nudge(700_000));
        assert!(!inv.abandon());
    }

    #[test]
    fn paid_once_only() {
        let mut inv = test_invoice();
        assert_eq!(inv.paid(5, None), vec![EventKind::Paid]);
        assert!(inv.paid(6, None).is_empty());
        assert!(inv.apply_lookup(pending(), 7).is_empty());
        assert_eq!(inv.next_lookup_at_ms, None);
    }
}
