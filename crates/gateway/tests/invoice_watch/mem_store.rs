//! A [`WatchStore`] in memory, with the SQL store's semantics (the Worker's
//! `watch_store.rs`): ids unique, seqs from 1 without gaps, a delivery per
//! event and URL.

use std::cell::RefCell;
use std::collections::BTreeMap;

use lightning_fallback_gateway as gateway;

use gateway::receive::idempotency::KeyRecord;
use gateway::receive::idempotency::KEEP_MS;
use gateway::receive::watch::engine::{
    self, PendingDelivery, StoreError, WatchStats, WatchStore, RETAIN_MS,
};
use gateway::receive::watch::events::InvoiceEvent;
use gateway::receive::watch::record::{EventKind, WatchState, WatchedInvoice};
use gateway::webhooks::delivery::HISTORY_LEN;
use gateway::webhooks::Delivery;

#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub event_seq: u64,
    pub url: String,
    pub failed: u32,
    pub next_at: Option<u64>,
    pub delivered_at: Option<u64>,
    pub created_at: u64,
    pub attempts: Vec<Delivery>,
}

#[derive(Default)]
pub struct MemWatchStore {
    pub invoices: RefCell<BTreeMap<String, WatchedInvoice>>,
    pub events: RefCell<Vec<InvoiceEvent>>,
    pub deliveries: RefCell<Vec<DeliveryRow>>,
    pub keys: RefCell<BTreeMap<String, KeyRecord>>,
    /// The last seq handed out: never reused (SQLite's AUTOINCREMENT).
    pub last_seq: std::cell::Cell<u64>,
}

impl WatchStore for MemWatchStore {
    fn get(&self, hash: &str) -> Result<Option<WatchedInvoice>, StoreError> {
        Ok(self.invoices.borrow().get(hash).cloned())
    }

    fn put(&self, inv: &WatchedInvoice) -> Result<(), StoreError> {
        self.invoices
            .borrow_mut()
            .insert(inv.payment_hash.clone(), inv.clone());
        Ok(())
    }

    fn due(&self, now_ms: u64, limit: u32) -> Result<Vec<WatchedInvoice>, StoreError> {
        let due: Vec<WatchedInvoice> = self
            .invoices
            .borrow()
            .values()
            .filter(|i| i.is_open() && i.next_lookup_at_ms.is_some_and(|t| t <= now_ms))
            .cloned()
            .collect();
        let mut young = due.clone();
        young.sort_by_key(|i| std::cmp::Reverse(i.created_at_ms));
        let mut overdue = due;
        overdue.sort_by_key(|i| i.next_lookup_at_ms);
        Ok(engine::alternate(young, overdue, limit))
    }

    fn append_event(
        &self,
        e: &InvoiceEvent,
        targets: &[String],
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        if let Some(old) = self.events.borrow().iter().find(|x| x.id == e.id) {
            return Ok(old.seq);
        }
        let seq = self.last_seq.get() + 1;
        self.last_seq.set(seq);
        let mut e = e.clone();
        e.seq = seq;
        self.events.borrow_mut().push(e);
        for url in targets {
            self.deliveries.borrow_mut().push(DeliveryRow {
                event_seq: seq,
                url: url.clone(),
                failed: 0,
                next_at: Some(now_ms),
                delivered_at: None,
                created_at: now_ms,
                attempts: Vec::new(),
            });
        }
        Ok(seq)
    }

    fn supersede(&self, hash: &str, kind: EventKind) -> Result<(), StoreError> {
        let seqs: Vec<u64> = self
            .events
            .borrow()
            .iter()
            .filter(|e| e.payment_hash == hash && e.kind == kind)
            .map(|e| e.seq)
            .collect();
        for d in self.deliveries.borrow_mut().iter_mut() {
            if d.delivered_at.is_none() && seqs.contains(&d.event_seq) {
                d.next_at = None;
            }
        }
        Ok(())
    }

    fn due_deliveries(&self, now_ms: u64, limit: u32) -> Result<Vec<PendingDelivery>, StoreError> {
        let events = self.events.borrow();
        let mut due: Vec<&DeliveryRow> = Vec::new();
        let deliveries = self.deliveries.borrow();
        for d in deliveries.iter() {
            if d.next_at.is_some_and(|t| t <= now_ms) {
                due.push(d);
            }
        }
        due.sort_by_key(|d| d.next_at);
        due.truncate(limit as usize);
        Ok(due
            .into_iter()
            .filter_map(|d| {
                let e = events.iter().find(|e| e.seq == d.event_seq)?;
                Some(PendingDelivery {
                    event_seq: d.event_seq,
                    event_id: e.id.clone(),
                    url: d.url.clone(),
                    attempts: d.failed,
                    body: e.body.clone(),
                })
            })
            .collect())
    }

    fn delivery_pending(&self, p: &PendingDelivery) -> Result<bool, StoreError> {
        Ok(self
            .deliveries
            .borrow()
            .iter()
            .any(|d| d.event_seq == p.event_seq && d.url == p.url && d.next_at.is_some()))
    }

    fn record_delivery(
        &self,
        p: &PendingDelivery,
        attempt: &Delivery,
        next_at_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut all = self.deliveries.borrow_mut();
        let Some(d) = all
            .iter_mut()
            .find(|d| d.event_seq == p.event_seq && d.url == p.url)
        else {
            return Ok(());
        };
        d.attempts.push(attempt.clone());
        if d.attempts.len() > HISTORY_LEN {
            d.attempts.remove(0);
        }
        if attempt.delivered() {
            d.delivered_at.get_or_insert(attempt.at_ms);
        } else {
            d.failed += 1;
        }
        // Superseded while the attempt ran: stays stopped.
        if d.next_at.is_some() {
            d.next_at = next_at_ms;
        }
        Ok(())
    }

    fn events_after(&self, seq: u64, limit: u32) -> Result<Vec<InvoiceEvent>, StoreError> {
        Ok(self
            .events
            .borrow()
            .iter()
            .filter(|e| e.seq > seq && e.kind != EventKind::ZapReceipt)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    fn rearm(&self, hash: &str, now_ms: u64) -> Result<u32, StoreError> {
        let Some(last) = self
            .events
            .borrow()
            .iter()
            .filter(|e| e.payment_hash == hash && e.kind != EventKind::ZapReceipt)
            .map(|e| e.seq)
            .max()
        else {
            return Ok(0);
        };
        let mut n = 0;
        for d in self.deliveries.borrow_mut().iter_mut() {
            if d.event_seq == last {
                d.next_at = Some(now_ms);
                d.failed = 0;
                d.delivered_at = None;
                n += 1;
            }
        }
        Ok(n)
    }

    fn next_wake(&self) -> Result<Option<u64>, StoreError> {
        let lookup = self
            .invoices
            .borrow()
            .values()
            .filter(|i| i.is_open())
            .filter_map(|i| i.next_lookup_at_ms)
            .min();
        let delivery = self
            .deliveries
            .borrow()
            .iter()
            .filter_map(|d| d.next_at)
            .min();
        Ok([lookup, delivery].into_iter().flatten().min())
    }

    fn stats(&self, now_ms: u64) -> Result<WatchStats, StoreError> {
        let invoices = self.invoices.borrow();
        let deliveries = self.deliveries.borrow();
        Ok(WatchStats {
            watched: invoices.values().filter(|i| i.is_open()).count() as u64,
            paid_last_hour: invoices
                .values()
                .filter(|i| match i.state {
                    WatchState::Paid { settled_at_ms, .. } => {
                        settled_at_ms >= now_ms.saturating_sub(3_600_000)
                    }
                    _ => false,
                })
                .count() as u64,
            // Zap receipts to relays are not webhook events waiting.
            events_waiting: deliveries
                .iter()
                .filter(|d| d.next_at.is_some() && !d.url.starts_with("ws"))
                .count() as u64,
            oldest_undelivered_at_ms: deliveries
                .iter()
                .filter(|d| d.next_at.is_some() && !d.url.starts_with("ws"))
                .map(|d| d.created_at)
                .min(),
        })
    }

    fn key(&self, key: &str) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.keys.borrow().get(key).cloned())
    }

    fn put_key(&self, key: &str, record: &KeyRecord) -> Result<(), StoreError> {
        self.keys.borrow_mut().insert(key.into(), record.clone());
        Ok(())
    }

    fn prune(&self, now_ms: u64) -> Result<(), StoreError> {
        let old = now_ms.saturating_sub(RETAIN_MS);
        self.keys
            .borrow_mut()
            .retain(|_, r| r.taken_at_ms >= now_ms.saturating_sub(KEEP_MS));
        self.invoices
            .borrow_mut()
            .retain(|_, i| i.is_open() || i.created_at_ms >= old);
        self.deliveries
            .borrow_mut()
            .retain(|d| d.next_at.is_some() || d.created_at >= old);
        let kept: Vec<u64> = self
            .deliveries
            .borrow()
            .iter()
            .map(|d| d.event_seq)
            .collect();
        self.events
            .borrow_mut()
            .retain(|e| e.at_ms >= old || kept.contains(&e.seq));
        Ok(())
    }

    fn drop_key(&self, key: &str) -> Result<(), StoreError> {
        self.keys.borrow_mut().remove(key);
        Ok(())
    }
}
