//! The invoice watch's store on its Durable Object's SQLite. Each method is
//! a few synchronous statements: nothing else runs in the object between them.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue as V};

use crate::durable::{int, opt};

use gateway::receive::idempotency::{KeyRecord, KEEP_MS};
use gateway::receive::watch::engine::{
    PendingDelivery, StoreError, WatchStats, WatchStore, RETAIN_MS,
};
use gateway::receive::watch::events::InvoiceEvent;
use gateway::receive::watch::record::{EventKind, WatchState, WatchedInvoice};
use gateway::webhooks::delivery::HISTORY_LEN;
use gateway::webhooks::Delivery;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS invoices (
  hash TEXT PRIMARY KEY,
  open INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  next_lookup INTEGER,
  paid_at INTEGER,
  data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS invoices_due ON invoices(open, next_lookup);
CREATE INDEX IF NOT EXISTS invoices_paid ON invoices(paid_at);
-- Pruning (every wake-up) reaches only what it deletes through these,
-- instead of scanning every closed invoice, finished delivery and event kept.
CREATE INDEX IF NOT EXISTS invoices_closed ON invoices(created_at) WHERE open = 0;
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  hash TEXT NOT NULL,
  kind TEXT NOT NULL,
  at INTEGER NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_hash ON events(hash);
CREATE INDEX IF NOT EXISTS events_at ON events(at);
CREATE TABLE IF NOT EXISTS deliveries (
  event_seq INTEGER NOT NULL,
  url TEXT NOT NULL,
  failed INTEGER NOT NULL,
  next_at INTEGER,
  delivered_at INTEGER,
  created_at INTEGER NOT NULL,
  attempts TEXT NOT NULL,
  PRIMARY KEY (event_seq, url)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(next_at);
CREATE INDEX IF NOT EXISTS deliveries_done ON deliveries(created_at) WHERE next_at IS NULL;
CREATE TABLE IF NOT EXISTS idempotency (
  key TEXT PRIMARY KEY,
  taken_at INTEGER NOT NULL,
  data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_taken ON idempotency(taken_at);
";

pub struct SqlWatchStore {
    sql: SqlStorage,
}

fn e(err: worker::Error) -> StoreError {
    StoreError(err.to_string())
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|x| StoreError(x.to_string()))
}

fn parse<T: DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|x| StoreError(format!("a stored record is unreadable: {x}")))
}

#[derive(Deserialize)]
struct Data {
    data: String,
}

#[derive(Deserialize)]
struct Num {
    n: Option<f64>,
}

#[derive(Deserialize)]
struct EventRow {
    seq: f64,
    id: String,
    hash: String,
    kind: String,
    at: f64,
    body: String,
}

#[derive(Deserialize)]
struct DeliveryRow {
    event_seq: f64,
    id: String,
    url: String,
    failed: f64,
    body: String,
}

#[derive(Deserialize)]
struct Attempts {
    attempts: String,
}

impl SqlWatchStore {
    /// Opens the store, creating its tables first unless `schema_ready`
    /// (this object already did: the DDL is work on every call otherwise).
    pub fn open(sql: SqlStorage, schema_ready: bool) -> Result<SqlWatchStore, StoreError> {
        if !schema_ready {
            sql.exec(SCHEMA, None).map_err(e)?;
        }
        Ok(SqlWatchStore { sql })
    }

    fn rows<T: DeserializeOwned>(&self, query: &str, args: Vec<V>) -> Result<Vec<T>, StoreError> {
        self.sql.exec(query, args).map_err(e)?.to_array().map_err(e)
    }

    fn exec(&self, query: &str, args: Vec<V>) -> Result<(), StoreError> {
        self.sql.exec(query, args).map_err(e).map(|_| ())
    }

    fn number(&self, query: &str, args: Vec<V>) -> Result<Option<u64>, StoreError> {
        let rows: Vec<Num> = self.rows(query, args)?;
        Ok(rows.first().and_then(|r| r.n).map(|n| n as u64))
    }

    fn invoices(&self, query: &str, args: Vec<V>) -> Result<Vec<WatchedInvoice>, StoreError> {
        let rows: Vec<Data> = self.rows(query, args)?;
        rows.iter().map(|r| parse(&r.data)).collect()
    }

    fn event_of(row: EventRow) -> Result<InvoiceEvent, StoreError> {
        Ok(InvoiceEvent {
            seq: row.seq as u64,
            id: row.id,
            kind: match row.kind.as_str() {
                "paid" => EventKind::Paid,
                "zap" => EventKind::ZapReceipt,
                _ => EventKind::Expired,
            },
            payment_hash: row.hash,
            at_ms: row.at as u64,
            body: parse(&row.body)?,
        })
    }
}

impl WatchStore for SqlWatchStore {
    fn get(&self, hash: &str) -> Result<Option<WatchedInvoice>, StoreError> {
        Ok(self
            .invoices(
                "SELECT data FROM invoices WHERE hash = ?",
                vec![V::from(hash)],
            )?
            .pop())
    }

    fn put(&self, inv: &WatchedInvoice) -> Result<(), StoreError> {
        let paid_at = match &inv.state {
            WatchState::Paid { settled_at_ms, .. } => Some(*settled_at_ms),
            _ => None,
        };
        // An upsert, not INSERT OR REPLACE: a lookup that changes only the
        // next lookup time and the record rewrites the row and the due
        // index, not every index entry of the invoice (rows written are billed).
        let query = if paid_at.is_some() {
            "INSERT INTO invoices (hash, open, created_at, next_lookup, paid_at, data) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT(hash) DO UPDATE SET open = excluded.open, next_lookup = excluded.next_lookup, paid_at = excluded.paid_at, data = excluded.data"
        } else {
            "INSERT INTO invoices (hash, open, created_at, next_lookup, paid_at, data) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT(hash) DO UPDATE SET open = excluded.open, next_lookup = excluded.next_lookup, data = excluded.data"
        };
        self.exec(
            query,
            vec![
                V::from(inv.payment_hash.as_str()),
                int(u64::from(inv.is_open())),
                int(inv.created_at_ms),
                opt(inv.next_lookup_at_ms),
                opt(paid_at),
                V::from(json(inv)?),
            ],
        )
    }

    fn due(&self, now_ms: u64, limit: u32) -> Result<Vec<WatchedInvoice>, StoreError> {
        let n = int(u64::from(limit));
        let young = self.invoices(
            "SELECT data FROM invoices WHERE open = 1 AND next_lookup <= ? ORDER BY created_at DESC LIMIT ?",
            vec![int(now_ms), n.clone()],
        )?;
        let overdue = self.invoices(
            "SELECT data FROM invoices WHERE open = 1 AND next_lookup <= ? ORDER BY next_lookup LIMIT ?",
            vec![int(now_ms), n],
        )?;
        Ok(gateway::receive::watch::engine::alternate(
            young, overdue, limit,
        ))
    }

    fn append_event(
        &self,
        ev: &InvoiceEvent,
        targets: &[String],
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        if let Some(seq) = self.number(
            "SELECT seq AS n FROM events WHERE id = ?",
            vec![V::from(ev.id.as_str())],
        )? {
            return Ok(seq);
        }
        self.exec(
            "INSERT INTO events (id, hash, kind, at, body) VALUES (?, ?, ?, ?, ?)",
            vec![
                V::from(ev.id.as_str()),
                V::from(ev.payment_hash.as_str()),
                V::from(ev.kind.suffix()),
                int(ev.at_ms),
                V::from(json(&ev.body)?),
            ],
        )?;
        let seq = self
            .number(
                "SELECT seq AS n FROM events WHERE id = ?",
                vec![V::from(ev.id.as_str())],
            )?
            .ok_or_else(|| StoreError("the event just added is missing".into()))?;
        for url in targets {
            self.exec(
                "INSERT OR IGNORE INTO deliveries (event_seq, url, failed, next_at, delivered_at, created_at, attempts) VALUES (?, ?, 0, ?, NULL, ?, '[]')",
                vec![int(seq), V::from(url.as_str()), int(now_ms), int(now_ms)],
            )?;
        }
        Ok(seq)
    }

    fn supersede(&self, hash: &str, kind: EventKind) -> Result<(), StoreError> {
        self.exec(
            "UPDATE deliveries SET next_at = NULL WHERE delivered_at IS NULL AND event_seq IN (SELECT seq FROM events WHERE hash = ? AND kind = ?)",
            vec![V::from(hash), V::from(kind.suffix())],
        )
    }

    fn due_deliveries(&self, now_ms: u64, limit: u32) -> Result<Vec<PendingDelivery>, StoreError> {
        let rows: Vec<DeliveryRow> = self.rows(
            "SELECT d.event_seq AS event_seq, e.id AS id, d.url AS url, d.failed AS failed, e.body AS body FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.next_at <= ? ORDER BY d.next_at LIMIT ?",
            vec![int(now_ms), int(u64::from(limit))],
        )?;
        rows.into_iter()
            .map(|r| {
                Ok(PendingDelivery {
                    event_seq: r.event_seq as u64,
                    event_id: r.id,
                    url: r.url,
                    attempts: r.failed as u32,
                    body: parse(&r.body)?,
                })
            })
            .collect()
    }

    fn delivery_pending(&self, d: &PendingDelivery) -> Result<bool, StoreError> {
        Ok(self
            .number(
                "SELECT COUNT(*) AS n FROM deliveries WHERE event_seq = ? AND url = ? AND next_at IS NOT NULL",
                vec![int(d.event_seq), V::from(d.url.as_str())],
            )?
            .unwrap_or(0)
            > 0)
    }

    fn record_delivery(
        &self,
        d: &PendingDelivery,
        attempt: &Delivery,
        next_at_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let key = vec![int(d.event_seq), V::from(d.url.as_str())];
        let rows: Vec<Attempts> = self.rows(
            "SELECT attempts FROM deliveries WHERE event_seq = ? AND url = ?",
            key.clone(),
        )?;
        let mut attempts: Vec<Delivery> = match rows.first() {
            Some(r) => parse(&r.attempts)?,
            None => return Ok(()),
        };
        attempts.push(attempt.clone());
        if attempts.len() > HISTORY_LEN {
            attempts.remove(0);
        }
        let delivered = attempt.delivered();
        let mut args = vec![
            int(u64::from(!delivered)),
            opt(next_at_ms),
            opt(delivered.then_some(attempt.at_ms)),
            V::from(json(&attempts)?),
        ];
        args.extend(key);
        self.exec(
            "UPDATE deliveries SET failed = failed + ?, next_at = CASE WHEN next_at IS NULL THEN NULL ELSE ? END, delivered_at = COALESCE(delivered_at, ?), attempts = ? WHERE event_seq = ? AND url = ?",
            args,
        )
    }

    fn events_after(&self, seq: u64, limit: u32) -> Result<Vec<InvoiceEvent>, StoreError> {
        let rows: Vec<EventRow> = self.rows(
            "SELECT seq, id, hash, kind, at, body FROM events WHERE seq > ? AND kind != 'zap' ORDER BY seq LIMIT ?",
            vec![int(seq), int(u64::from(limit))],
        )?;
        rows.into_iter().map(Self::event_of).collect()
    }

    fn rearm(&self, hash: &str, now_ms: u64) -> Result<u32, StoreError> {
        // The invoice's latest event: "paid" once it was paid, else "expired".
        let n = self
            .number(
                "SELECT COUNT(*) AS n FROM deliveries WHERE event_seq = (SELECT MAX(seq) FROM events WHERE hash = ? AND kind != 'zap')",
                vec![V::from(hash)],
            )?
            .unwrap_or(0);
        self.exec(
            "UPDATE deliveries SET next_at = ?, failed = 0, delivered_at = NULL WHERE event_seq = (SELECT MAX(seq) FROM events WHERE hash = ? AND kind != 'zap')",
            vec![int(now_ms), V::from(hash)],
        )?;
        Ok(n as u32)
    }

    fn next_wake(&self) -> Result<Option<u64>, StoreError> {
        let lookup = self.number(
            "SELECT MIN(next_lookup) AS n FROM invoices WHERE open = 1",
            vec![],
        )?;
        let delivery = self.number("SELECT MIN(next_at) AS n FROM deliveries", vec![])?;
        Ok([lookup, delivery].into_iter().flatten().min())
    }

    fn stats(&self, now_ms: u64) -> Result<WatchStats, StoreError> {
        Ok(WatchStats {
            watched: self
                .number("SELECT COUNT(*) AS n FROM invoices WHERE open = 1", vec![])?
                .unwrap_or(0),
            paid_last_hour: self
                .number(
                    "SELECT COUNT(*) AS n FROM invoices WHERE paid_at >= ?",
                    vec![int(now_ms.saturating_sub(3_600_000))],
                )?
                .unwrap_or(0),
            events_waiting: self
                .number(
                    "SELECT COUNT(*) AS n FROM deliveries WHERE next_at IS NOT NULL AND url NOT LIKE 'ws%'",
                    vec![],
                )?
                .unwrap_or(0),
            oldest_undelivered_at_ms: self.number(
                "SELECT MIN(created_at) AS n FROM deliveries WHERE next_at IS NOT NULL AND url NOT LIKE 'ws%'",
                vec![],
            )?,
        })
    }

    fn key(&self, key: &str) -> Result<Option<KeyRecord>, StoreError> {
        let rows: Vec<Data> = self.rows(
            "SELECT data FROM idempotency WHERE key = ?",
            vec![V::from(key)],
        )?;
        rows.first().map(|r| parse(&r.data)).transpose()
    }

    fn put_key(&self, key: &str, record: &KeyRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR REPLACE INTO idempotency (key, taken_at, data) VALUES (?, ?, ?)",
            vec![
                V::from(key),
                int(record.taken_at_ms),
                V::from(json(record)?),
            ],
        )
    }

    fn prune(&self, now_ms: u64) -> Result<(), StoreError> {
        let old = int(now_ms.saturating_sub(RETAIN_MS));
        self.exec(
            "DELETE FROM idempotency WHERE taken_at < ?",
            vec![int(now_ms.saturating_sub(KEEP_MS))],
        )?;
        self.exec(
            "DELETE FROM invoices WHERE open = 0 AND created_at < ?",
            vec![old.clone()],
        )?;
        self.exec(
            "DELETE FROM deliveries WHERE next_at IS NULL AND created_at < ?",
            vec![old.clone()],
        )?;
        self.exec(
            "DELETE FROM events WHERE at < ? AND seq NOT IN (SELECT event_seq FROM deliveries)",
            vec![old],
        )
    }

    fn drop_key(&self, key: &str) -> Result<(), StoreError> {
        self.exec("DELETE FROM idempotency WHERE key = ?", vec![V::from(key)])
    }
}
