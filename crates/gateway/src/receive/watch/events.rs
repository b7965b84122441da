//! Invoice events: `invoice.paid` and `invoice.expired`, in the payout
//! events' envelope `{id, type, timestamp, data}`. The id is stable per
//! invoice and event (`evt_<payment hash>_paid`), so a receiver
//! deduplicates on `webhook-id` across redeliveries and URLs.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::receive::watch::record::{EventKind, WatchState, WatchedInvoice};
use crate::time::iso8601_ms;

/// An event as a watch shard keeps it, in the order it was committed there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceEvent {
    /// Its place in its shard's history (from 1, no gaps).
    pub seq: u64,
    pub id: String,
    pub kind: EventKind,
    pub payment_hash: String,
    /// When it happened (settlement, or the lookup that saw it expired).
    pub at_ms: u64,
    /// The whole body sent to receivers.
    pub body: Value,
}

/// `evt_<payment hash>_<paid|expired>`: no `.`, as Standard Webhooks asks.
pub fn event_id(payment_hash: &str, kind: EventKind) -> String {
    format!("evt_{payment_hash}_{}", kind.suffix())
}

/// When `kind` happened for `inv`.
fn happened_at(inv: &WatchedInvoice, kind: EventKind, now_ms: u64) -> u64 {
    match (&inv.state, kind) {
        (WatchState::Paid { settled_at_ms, .. }, EventKind::Paid) => *settled_at_ms,
        _ => now_ms,
    }
}

/// The event `kind` of `inv`, not yet numbered (`seq` 0).
pub fn new_event(inv: &WatchedInvoice, kind: EventKind, now_ms: u64) -> InvoiceEvent {
    let id = event_id(&inv.payment_hash, kind);
    let at_ms = happened_at(inv, kind, now_ms);
    let mut data = inv.event_data(now_ms);
    if kind == EventKind::Expired {
        // What the event says, whatever the invoice became since.
        data["status"] = Value::from("expired");
    }
    InvoiceEvent {
        seq: 0,
        body: json!({
            "id": id,
            "type": kind.as_str(),
            "timestamp": iso8601_ms(at_ms),
            "data": data,
        }),
        id,
        kind,
        payment_hash: inv.payment_hash.clone(),
        at_ms,
    }
}

/// Where an invoice's events go: its own `webhook_url`, then the
/// operator's `INVOICE_WEBHOOK_URL` (once, if they are the same).
pub fn targets(inv: &WatchedInvoice, operator_url: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = inv.context.webhook_url.iter().cloned().collect();
    if let Some(u) = operator_url {
        if !out.iter().any(|x| x == u) {
            out.push(u.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receive::context::InvoiceContext;
    use backends::identity::BackendId;
    use backends::BackendKind;

    #[test]
    fn ids_are_stable_and_bodies_carry_the_shops_context() {
        let mut inv = WatchedInvoice::new(
            "cd".repeat(32),
            "lnbc1".into(),
            BackendId {
                kind: BackendKind::Cln,
                base_url: "https://n.example".into(),
                credential_fp: "00".into(),
            },
            500,
            1_000,
            61_000,
            InvoiceContext {
                external_id: Some("order-9".into()),
                metadata: serde_json::from_value(json!({"k": 1})).ok(),
                webhook_url: Some("https://shop.example/h".into()),
                ..InvoiceContext::default()
            },
        );
        inv.paid(30_000, Some("ee".repeat(32)));
        let e = new_event(&inv, EventKind::Paid, 40_000);
        assert_eq!(e.id, format!("evt_{}_paid", "cd".repeat(32)));
        assert_eq!(e.body["type"], "invoice.paid");
        assert_eq!(e.body["timestamp"], iso8601_ms(30_000));
        assert_eq!(e.body["data"]["external_id"], "order-9");
        assert_eq!(e.body["data"]["metadata"]["k"], 1);
        assert_eq!(e.body["data"]["preimage"], "ee".repeat(32));
        assert_eq!(e.body["data"]["settled_at"], iso8601_ms(30_000));
        assert_eq!(
            targets(&inv, Some("https://ops.example/h")),
            vec!["https://shop.example/h", "https://ops.example/h"]
        );
        assert_eq!(
            targets(&inv, Some("https://shop.example/h")),
            vec!["https://shop.example/h"]
        );
    }
}
