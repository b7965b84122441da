//! The payout store on the Durable Object's SQLite. Each method is one or
//! two synchronous statements: nothing else runs in the object between them.

use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue as V};

use crate::durable::{int, opt};

use crate::claims_link::{ClaimsObject, ShardLink};
use gateway::log::{Event, PayoutLog};
use gateway::payout::breaker::PayoutBreaker;
use gateway::payout::engine::{day_of, Claim, OtherShards, PayoutStore, StoreError};
use gateway::payout::invoice_claims;
use gateway::payout::model::{BackendId, Payout};
use gateway::redact::Redactor;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS payouts (
  id TEXT PRIMARY KEY,
  idempotency_key TEXT NOT NULL UNIQUE,
  payment_hash TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  day TEXT NOT NULL,
  amount_sat INTEGER NOT NULL,
  wake_at INTEGER,
  version INTEGER NOT NULL,
  data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payouts_wake ON payouts(wake_at);
CREATE INDEX IF NOT EXISTS payouts_hash ON payouts(payment_hash);
CREATE INDEX IF NOT EXISTS payouts_created ON payouts(created_at, id);
CREATE INDEX IF NOT EXISTS payouts_status ON payouts(status, created_at);
-- The daily limit's sum (`reserved_on`, on every create) reads one day's
-- entries of this index alone, instead of scanning every payout ever kept.
CREATE INDEX IF NOT EXISTS payouts_day ON payouts(day, status, amount_sat);
CREATE INDEX IF NOT EXISTS payouts_blocked ON payouts(id) WHERE json_extract(data, '$.blocked') IS NOT NULL;
CREATE INDEX IF NOT EXISTS payouts_overpaid ON payouts(id) WHERE json_extract(data, '$.overpaid') = 1;
CREATE TABLE IF NOT EXISTS lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS claims (hash TEXT PRIMARY KEY, payout_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS invoice_claims (hash TEXT PRIMARY KEY, payout_id TEXT NOT NULL, claimed_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS known_paid_hashes (backend TEXT NOT NULL, hash TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (backend, hash));
CREATE TABLE IF NOT EXISTS payout_breakers (backend TEXT PRIMARY KEY, id TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS status_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS payouts_counted AFTER INSERT ON payouts BEGIN
  INSERT INTO status_counts (status, n) VALUES (NEW.status, 1) ON CONFLICT(status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS payouts_recounted AFTER UPDATE OF status ON payouts WHEN OLD.status IS NOT NEW.status BEGIN
  UPDATE status_counts SET n = n - 1 WHERE status = OLD.status;
  INSERT INTO status_counts (status, n) VALUES (NEW.status, 1) ON CONFLICT(status) DO UPDATE SET n = n + 1;
END;
";

/// Known-paid hashes kept per backend identity, besides its first one.
const KNOWN_PAID_KEPT: u64 = 8;

pub struct SqlStore {
    sql: SqlStorage,
    /// The Durable Object instance this store was opened by.
    instance: String,
    /// With several queue shards: where hashes are claimed across them.
    claims: Option<ClaimsObject>,
    /// The version and status of each payout this store read or wrote: the
    /// status-change log line names the old status without reading the row
    /// again before each write (a write's version check makes them exact).
    seen: std::cell::RefCell<std::collections::HashMap<String, (u64, &'static str)>>,
    /// The other shards' known-paid hashes, per backend, asked once per
    /// opening of the store (one drain): a backend that paid nothing
    /// anywhere does not cost every lookup a call to every shard.
    other_shards: std::cell::RefCell<Vec<(String, OtherShards)>>,
}

#[derive(Deserialize)]
struct DataRow {
    data: String,
}

#[derive(Deserialize)]
struct Num {
    n: Option<f64>,
}

#[derive(Deserialize)]
struct LeaseRow {
    holder: String,
    until: f64,
}

#[derive(Deserialize)]
pub struct StatusCount {
    pub status: String,
    pub n: f64,
    pub oldest: Option<f64>,
}

fn e(err: worker::Error) -> StoreError {
    StoreError(err.to_string())
}

/// One log line per stored status change. The line holds ids and status
/// names only, so name- and shape-based redaction is enough here.
fn log_change(p: &Payout, from: &str) {
    if from == p.status() {
        return;
    }
    let line = PayoutLog {
        payout_id: p.id.clone(),
        from: from.into(),
        to: p.status().into(),
        payment_hash: p.payment_hash.clone(),
    };
    crate::log::write(&Redactor::default(), line.level(), Event::Payout(line));
}

impl SqlStore {
    /// Opens the store, creating its tables (and counting an old queue once)
    /// first unless `schema_ready`: this object already did, and the DDL is
    /// work on every call otherwise.
    pub fn open(
        sql: SqlStorage,
        instance: &str,
        schema_ready: bool,
    ) -> Result<SqlStore, StoreError> {
        if !schema_ready {
            sql.exec(SCHEMA, None).map_err(e)?;
        }
        let store = SqlStore {
            sql,
            instance: instance.to_string(),
            claims: None,
            seen: Default::default(),
            other_shards: Default::default(),
        };
        if !schema_ready {
            store.count_once()?;
        }
        Ok(store)
    }

    /// The payouts per status are counted by triggers on every write; a
    /// queue from before them is counted once, here (the same synchronous
    /// block as the schema, so no write comes in between).
    fn count_once(&self) -> Result<(), StoreError> {
        let done = self.number(
            "SELECT value AS n FROM meta WHERE name = 'status_counts_v1'",
            vec![],
        )?;
        if done.is_none() {
            for q in [
                "DELETE FROM status_counts",
                "INSERT INTO status_counts (status, n) SELECT status, COUNT(*) FROM payouts GROUP BY status",
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('status_counts_v1', 1)",
            ] {
                let _ = self.sql.exec(q, None).map_err(e)?.raw().count();
            }
        }
        Ok(())
    }

    /// Claims hashes in the invoice claims object before sending them.
    pub fn with_claims(mut self, claims: Option<ClaimsObject>) -> SqlStore {
        self.claims = claims;
        self
    }

    /// Shard 0 keeps the shard count payouts were placed with: a changed
    /// count would send retries of existing keys to another shard. `Err`
    /// holds the recorded count. A queue with payouts and no record was one
    /// shard.
    pub fn check_shards(&self, shards: u32) -> Result<Result<(), u32>, StoreError> {
        let recorded = self.number("SELECT value AS n FROM meta WHERE name = 'shards'", vec![])?;
        if let Some(v) = recorded {
            // Recorded once; not rewritten on every payout request.
            let v = v as u32;
            return Ok(if v == shards { Ok(()) } else { Err(v) });
        }
        let any = self
            .number("SELECT COUNT(*) AS n FROM payouts", vec![])?
            .unwrap_or(0);
        if any > 0 && shards != 1 {
            return Ok(Err(1));
        }
        self.sql
            .exec(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('shards', ?)",
                vec![int(u64::from(shards))],
            )
            .map_err(e)?;
        Ok(Ok(()))
    }

    /// Claims-object role (sharded queues): the claim on `hash` after
    /// Claims-object role: drops `id`'s claim on `hash`, if it still holds it.
    pub fn release_claim(
        &self,
        hash: &str,
        id: &str,
        claimed_at_ms: u64,
    ) -> Result<(), StoreError> {
        self.sql
            .exec(
                "DELETE FROM invoice_claims WHERE hash = ? AND payout_id = ? AND claimed_at = ?",
                vec![V::from(hash), V::from(id), int(claimed_at_ms)],
            )
            .map_err(e)?;
        Ok(())
    }

    /// [`invoice_claims::decide`]; a grant is written with `now_ms`, so a holder's
    /// own re-claim refreshes it. Rows from before claims were timestamped
    /// count as settled.
    pub fn claim(
        &self,
        hash: &str,
        id: &str,
        takeover: Option<&invoice_claims::Takeover>,
        now_ms: u64,
    ) -> Result<invoice_claims::Answer, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            payout_id: String,
            claimed_at: f64,
        }
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT payout_id, claimed_at FROM invoice_claims WHERE hash = ?
                 UNION ALL SELECT payout_id, 0 AS claimed_at FROM claims WHERE hash = ?",
                vec![V::from(hash), V::from(hash)],
            )
            .map_err(e)?
            .to_array()
            .map_err(e)?;
        let row = rows.first().map(|r| invoice_claims::ClaimRow {
            payout_id: r.payout_id.clone(),
            claimed_at_ms: r.claimed_at as u64,
        });
        let claim = invoice_claims::decide(row.as_ref(), id, takeover, now_ms);
        if matches!(claim, invoice_claims::Answer::Granted { .. }) {
            self.sql
                .exec(
                    "INSERT OR REPLACE INTO invoice_claims (hash, payout_id, claimed_at) VALUES (?, ?, ?)",
                    vec![V::from(hash), V::from(id), int(now_ms)],
                )
                .map_err(e)?;
            self.sql
                .exec("DELETE FROM claims WHERE hash = ?", vec![V::from(hash)])
                .map_err(e)?;
        }
        Ok(claim)
    }

    /// Shard role: the hash and id of every payout that holds its invoice
    /// (not failed) while that invoice can still be paid.
    pub fn live_hashes(&self, now_secs: u64) -> Result<Vec<(String, String)>, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            payment_hash: String,
            id: String,
        }
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT payment_hash, id FROM payouts WHERE status != 'failed'
                 AND json_extract(data, '$.invoice_expires_at_secs') > ?",
                vec![int(now_secs)],
            )
            .map_err(e)?
            .to_array()
            .map_err(e)?;
        Ok(rows.into_iter().map(|r| (r.payment_hash, r.id)).collect())
    }

    /// Claims-object role: whether every shard's live hashes were recorded
    /// (payouts stored before the shards claimed through the claims object).
    pub fn backfilled(&self, shards: u32) -> Result<bool, StoreError> {
        Ok(self
            .number(
                "SELECT value AS n FROM meta WHERE name = 'claims_backfilled'",
                vec![],
            )?
            .is_some_and(|n| n >= u64::from(shards)))
    }

    /// Claims-object role: records `pairs` (hash, payout id) where no claim
    /// exists yet, as fresh claims, then marks the backfill done.
    pub fn backfill(
        &self,
        pairs: &[(String, String)],
        shards: u32,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        for (hash, id) in pairs {
            let held = self
                .number(
                    "SELECT COUNT(*) AS n FROM claims WHERE hash = ?",
                    vec![V::from(hash.as_str())],
                )?
                .unwrap_or(0);
            if held == 0 {
                self.sql
                    .exec(
                        "INSERT OR IGNORE INTO invoice_claims (hash, payout_id, claimed_at) VALUES (?, ?, ?)",
                        vec![V::from(hash.as_str()), V::from(id.as_str()), int(now_ms)],
                    )
                    .map_err(e)?;
            }
        }
        self.sql
            .exec(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('claims_backfilled', ?)",
                vec![int(u64::from(shards))],
            )
            .map_err(e)?;
        Ok(())
    }

    /// Every payout breaker this shard wrote, with its backend.
    pub fn payout_breakers(&self) -> Result<Vec<(BackendId, PayoutBreaker)>, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            id: String,
            data: String,
        }
        let rows: Vec<Row> = self
            .sql
            .exec("SELECT id, data FROM payout_breakers", vec![])
            .map_err(e)?
            .to_array()
            .map_err(e)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some((
                    serde_json::from_str(&r.id).ok()?,
                    serde_json::from_str(&r.data).ok()?,
                ))
            })
            .collect())
    }

    /// Payouts waiting for a backend that is not configured, and payouts
    /// whose recipient was paid more than once.
    /// Payouts waiting for a backend, and overpaid ones: counted from the
    /// partial indexes that hold only them, never from every row.
    pub fn attention(&self) -> Result<(u64, u64), StoreError> {
        let blocked = self
            .number(
                "SELECT COUNT(*) AS n FROM payouts WHERE json_extract(data, '$.blocked') IS NOT NULL",
                vec![],
            )?
            .unwrap_or(0);
        let overpaid = self
            .number(
                "SELECT COUNT(*) AS n FROM payouts WHERE json_extract(data, '$.overpaid') = 1",
                vec![],
            )?
            .unwrap_or(0);
        Ok((blocked, overpaid))
    }

    fn payouts(&self, query: &str, args: Vec<V>) -> Result<Vec<Payout>, StoreError> {
        let rows: Vec<DataRow> = self
            .sql
            .exec(query, args)
            .map_err(e)?
            .to_array()
            .map_err(e)?;
        let payouts = rows
            .into_iter()
            .map(|r| {
                serde_json::from_str(&r.data)
                    .map_err(|err| StoreError(format!("corrupt payout row: {err}")))
            })
            .collect::<Result<Vec<Payout>, StoreError>>()?;
        for p in &payouts {
            self.saw(p);
        }
        Ok(payouts)
    }

    fn saw(&self, p: &Payout) {
        self.seen
            .borrow_mut()
            .insert(p.id.clone(), (p.version, p.status()));
    }

    fn number(&self, query: &str, args: Vec<V>) -> Result<Option<u64>, StoreError> {
        let rows: Vec<Num> = self
            .sql
            .exec(query, args)
            .map_err(e)?
            .to_array()
            .map_err(e)?;
        Ok(rows.first().and_then(|r| r.n).map(|n| n as u64))
    }

    /// Newest first, after the `(created_at, id)` cursor if given.
    pub fn list(
        &self,
        status: Option<&str>,
        limit: u32,
        after: Option<(u64, String)>,
    ) -> Result<Vec<Payout>, StoreError> {
        let mut q = String::from("SELECT data FROM payouts WHERE 1=1");
        let mut args = Vec::new();
        if let Some(s) = status {
            q.push_str(" AND status = ?");
            args.push(V::from(s));
        }
        if let Some((t, id)) = after {
            q.push_str(" AND (created_at < ? OR (created_at = ? AND id < ?))");
            args.push(int(t));
            args.push(int(t));
            args.push(V::String(id));
        }
        q.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
        args.push(V::Integer(i64::from(limit)));
        self.payouts(&q, args)
    }

    /// Payouts that need attention (`gateway::payout::attention::reasons`):
    /// failed, unknown since `unknown_cutoff_ms` or earlier, waiting for a
    /// backend, overpaid, or moved to another backend since
    /// `moved_since_ms`. Newest first, after the cursor if given.
    pub fn attention_list(
        &self,
        unknown_cutoff_ms: u64,
        moved_since_ms: u64,
        limit: u32,
        after: Option<(u64, String)>,
    ) -> Result<Vec<Payout>, StoreError> {
        let mut q = String::from(
            "SELECT data FROM payouts WHERE (status = 'failed'
               OR (status = 'unknown' AND json_extract(data, '$.state.since_ms') <= ?)
               OR (status = 'queued' AND json_extract(data, '$.state.verify_first') = 1
                   AND json_extract(data, '$.lookups_failing_since_ms') <= ?)
               OR json_extract(data, '$.blocked') IS NOT NULL
               OR json_extract(data, '$.overpaid') = 1
               OR json_extract(data, '$.moved_at_ms') >= ?)",
        );
        let mut args = vec![
            int(unknown_cutoff_ms),
            int(unknown_cutoff_ms),
            int(moved_since_ms),
        ];
        if let Some((t, id)) = after {
            q.push_str(" AND (created_at < ? OR (created_at = ? AND id < ?))");
            args.push(int(t));
            args.push(int(t));
            args.push(V::String(id));
        }
        q.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
        args.push(V::Integer(i64::from(limit)));
        self.payouts(&q, args)
    }

    /// Payouts that failed (were created) at or after `since_ms`.
    pub fn failed_since(&self, since_ms: u64) -> Result<u64, StoreError> {
        Ok(self
            .number(
                "SELECT COUNT(*) AS n FROM payouts WHERE status = 'failed' AND created_at >= ?",
                vec![int(since_ms)],
            )?
            .unwrap_or(0))
    }

    /// Payouts per status (kept by triggers, so reading them costs the same
    /// whatever the history), with the oldest open one of each open status
    /// (the first entry of the status index).
    pub fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            status: String,
            n: f64,
        }
        let rows: Vec<Row> = self
            .sql
            .exec("SELECT status, n FROM status_counts WHERE n > 0", None)
            .map_err(e)?
            .to_array()
            .map_err(e)?;
        let mut out = Vec::new();
        for r in rows {
            let oldest = if matches!(r.status.as_str(), "succeeded" | "failed") {
                None
            } else {
                self.number(
                    "SELECT MIN(created_at) AS n FROM payouts WHERE status = ?",
                    vec![V::from(r.status.as_str())],
                )?
                .map(|t| t as f64)
            };
            out.push(StatusCount {
                status: r.status,
                n: r.n,
                oldest,
            });
        }
        Ok(out)
    }
}

impl PayoutStore for SqlStore {
    async fn claim_across_shards(&self, hash: &str, payout_id: &str) -> Result<Claim, StoreError> {
        match &self.claims {
            Some(claims) => {
                let link = ShardLink {
                    claims,
                    local: self,
                };
                invoice_claims::claim(&link, hash, payout_id).await
            }
            None => Ok(Claim::Granted { at_ms: 0 }),
        }
    }

    async fn release_across_shards(
        &self,
        hash: &str,
        payout_id: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        match &self.claims {
            Some(claims) => {
                let link = ShardLink {
                    claims,
                    local: self,
                };
                invoice_claims::ClaimsLink::release(&link, hash, payout_id, at_ms).await
            }
            None => Ok(()),
        }
    }

    fn get(&self, id: &str) -> Result<Option<Payout>, StoreError> {
        Ok(self
            .payouts("SELECT data FROM payouts WHERE id = ?", vec![V::from(id)])?
            .pop())
    }

    fn by_idempotency_key(&self, key: &str) -> Result<Option<Payout>, StoreError> {
        Ok(self
            .payouts(
                "SELECT data FROM payouts WHERE idempotency_key = ?",
                vec![V::from(key)],
            )?
            .pop())
    }

    fn by_payment_hash(&self, hash: &str) -> Result<Option<Payout>, StoreError> {
        Ok(self
            .payouts(
                "SELECT data FROM payouts WHERE payment_hash = ? ORDER BY (status = 'failed'), created_at DESC LIMIT 1",
                vec![V::from(hash)],
            )?
            .pop())
    }

    fn insert(&self, p: &Payout, wake_at_ms: Option<u64>, day: &str) -> Result<bool, StoreError> {
        let data = serde_json::to_string(p).map_err(|err| StoreError(err.to_string()))?;
        let cursor = self
            .sql
            .exec(
                "INSERT INTO payouts (id, idempotency_key, payment_hash, status, created_at, day, amount_sat, wake_at, version, data)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                vec![
                    V::from(p.id.as_str()),
                    V::from(p.idempotency_key.as_str()),
                    V::from(p.payment_hash.as_str()),
                    V::from(p.status()),
                    int(p.created_at_ms),
                    V::from(day),
                    int(p.amount_sat),
                    opt(wake_at_ms),
                    int(p.version),
                    V::String(data),
                ],
            )
            .map_err(e)?;
        // Drain the cursor so the statement runs to completion before counting.
        let _ = cursor.raw().count();
        let inserted = cursor.rows_written() > 0;
        if inserted {
            self.saw(p);
            log_change(p, "new");
        }
        Ok(inserted)
    }

    fn update(
        &self,
        p: &Payout,
        expected_version: u64,
        wake_at_ms: Option<u64>,
    ) -> Result<bool, StoreError> {
        let data = serde_json::to_string(p).map_err(|err| StoreError(err.to_string()))?;
        // For the log only: the status this write replaces. Known when this
        // store read the row at the expected version (the usual case); read
        // otherwise, in the same synchronous block as the write.
        #[derive(Deserialize)]
        struct Status {
            status: String,
        }
        let known = self
            .seen
            .borrow()
            .get(&p.id)
            .filter(|(version, _)| *version == expected_version)
            .map(|(_, status)| status.to_string());
        let before: Option<String> = known.or_else(|| {
            self.sql
                .exec(
                    "SELECT status FROM payouts WHERE id = ? AND version = ?",
                    vec![V::from(p.id.as_str()), int(expected_version)],
                )
                .and_then(|c| c.to_array::<Status>())
                .ok()
                .and_then(|rows| rows.into_iter().next())
                .map(|r| r.status)
        });
        let cursor = self
            .sql
            .exec(
                "UPDATE payouts SET status = ?, payment_hash = ?, day = ?, wake_at = ?, version = ?, data = ? WHERE id = ? AND version = ?",
                vec![
                    V::from(p.status()),
                    V::from(p.payment_hash.as_str()),
                    // An admin retry re-reserves the amount on the retry's day.
                    V::String(day_of(p.age_from_ms)),
                    opt(wake_at_ms),
                    int(p.version),
                    V::String(data),
                    V::from(p.id.as_str()),
                    int(expected_version),
                ],
            )
            .map_err(e)?;
        let _ = cursor.raw().count();
        let updated = cursor.rows_written() > 0;
        if updated {
            self.saw(p);
        }
        if let (true, Some(from)) = (updated, before) {
            log_change(p, &from);
        }
        Ok(updated)
    }

    fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        let rows: Vec<Id> = self
            .sql
            .exec(
                "SELECT id FROM payouts WHERE wake_at IS NOT NULL AND wake_at <= ? ORDER BY wake_at LIMIT ?",
                vec![int(now_ms), int(limit as u64)],
            )
            .map_err(e)?
            .to_array()
            .map_err(e)?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    fn next_wake(&self) -> Result<Option<u64>, StoreError> {
        self.number(
            "SELECT MIN(wake_at) AS n FROM payouts WHERE wake_at IS NOT NULL",
            vec![],
        )
    }

    fn reserved_on(&self, day: &str) -> Result<u64, StoreError> {
        Ok(self
            .number(
                "SELECT SUM(amount_sat) AS n FROM payouts WHERE day = ? AND status != 'failed'",
                vec![V::from(day)],
            )?
            .unwrap_or(0))
    }

    fn try_lease(&self, holder: &str, now_ms: u64, ttl_ms: u64) -> Result<bool, StoreError> {
        let rows: Vec<LeaseRow> = self
            .sql
            .exec("SELECT holder, until FROM lease WHERE name = 'drain'", None)
            .map_err(e)?
            .to_array()
            .map_err(e)?;
        if let Some(l) = rows.first() {
            // A holder from another instance died with it: its lease is void.
            let same_instance = l.holder.starts_with(&format!("{}/", self.instance));
            if l.holder != holder && same_instance && (l.until as u64) > now_ms {
                return Ok(false);
            }
        }
        self.sql
            .exec(
                "INSERT OR REPLACE INTO lease (name, holder, until) VALUES ('drain', ?, ?)",
                vec![V::from(holder), int(now_ms + ttl_ms)],
            )
            .map_err(e)?;
        Ok(true)
    }

    fn instance(&self) -> String {
        self.instance.clone()
    }

    fn known_paid(&self, backend: &BackendId) -> Result<Vec<(String, u64)>, StoreError> {
        #[derive(Deserialize)]
        struct H {
            hash: String,
            at: f64,
        }
        let rows: Vec<H> = self
            .sql
            .exec(
                "SELECT hash, at FROM known_paid_hashes WHERE backend = ? ORDER BY at DESC",
                vec![V::from(backend.key().as_str())],
            )
            .map_err(e)?
            .to_array()
            .map_err(e)?;
        Ok(rows.into_iter().map(|h| (h.hash, h.at as u64)).collect())
    }

    async fn known_paid_on_other_shards(
        &self,
        backend: &BackendId,
        own: &str,
    ) -> Result<OtherShards, StoreError> {
        let Some(claims) = &self.claims else {
            return Ok(OtherShards::default());
        };
        let key = backend.key();
        if let Some((_, known)) = self.other_shards.borrow().iter().find(|(k, _)| *k == key) {
            return Ok(known.clone());
        }
        let known = claims.known_paid_elsewhere(backend, own).await;
        // Kept for the drain even when a shard did not answer: asking again
        // for every payout would wait on it each time, and less evidence
        // only leaves a "not found" unproven until the next drain asks.
        self.other_shards.borrow_mut().push((key, known.clone()));
        Ok(known)
    }

    /// Keeps, per backend, the first hash ever seen paid and the
    /// [`KNOWN_PAID_KEPT`] latest.
    fn remember_paid(
        &self,
        backend: &BackendId,
        hash: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let key = backend.key();
        self.sql
            .exec(
                "INSERT OR IGNORE INTO known_paid_hashes (backend, hash, at) VALUES (?, ?, ?)",
                vec![V::from(key.as_str()), V::from(hash), int(now_ms)],
            )
            .map_err(e)?;
        self.sql
            .exec(
                "DELETE FROM known_paid_hashes WHERE backend = ?
                   AND at > (SELECT MIN(at) FROM known_paid_hashes WHERE backend = ?)
                   AND hash NOT IN (SELECT hash FROM known_paid_hashes WHERE backend = ? ORDER BY at DESC LIMIT ?)",
                vec![
                    V::from(key.as_str()),
                    V::from(key.as_str()),
                    V::from(key.as_str()),
                    int(KNOWN_PAID_KEPT),
                ],
            )
            .map_err(e)?;
        Ok(())
    }

    fn blocked(&self, limit: usize) -> Result<Vec<Payout>, StoreError> {
        // Only payouts that have not ended can be blocked: the status index
        // keeps this to the live ones. A row that cannot be read is skipped.
        let rows: Vec<DataRow> = self
            .sql
            .exec(
                "SELECT data FROM payouts WHERE status IN ('queued', 'sending', 'unknown')
                   AND json_extract(data, '$.blocked') IS NOT NULL LIMIT ?",
                vec![int(limit as u64)],
            )
            .map_err(e)?
            .to_array()
            .map_err(e)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| serde_json::from_str(&r.data).ok())
            .collect())
    }

    fn defer(&self, id: &str, wake_at_ms: u64) -> Result<(), StoreError> {
        self.sql
            .exec(
                "UPDATE payouts SET wake_at = ? WHERE id = ?",
                vec![int(wake_at_ms), V::from(id)],
            )
            .map_err(e)?;
        Ok(())
    }

    fn payout_breaker(&self, backend: &BackendId) -> Result<PayoutBreaker, StoreError> {
        let rows: Vec<DataRow> = self
            .sql
            .exec(
                "SELECT data FROM payout_breakers WHERE backend = ?",
                vec![V::from(backend.key().as_str())],
            )
            .map_err(e)?
            .to_array()
            .map_err(e)?;
        // A row that cannot be read counts as a closed breaker: the
        // breaker only steers new payouts, never what a sent one may do.
        Ok(rows
            .first()
            .and_then(|r| serde_json::from_str(&r.data).ok())
            .unwrap_or_default())
    }

    fn save_payout_breaker(
        &self,
        backend: &BackendId,
        breaker: &PayoutBreaker,
    ) -> Result<(), StoreError> {
        let data = serde_json::to_string(breaker).map_err(|err| StoreError(err.to_string()))?;
        let id = serde_json::to_string(backend).map_err(|err| StoreError(err.to_string()))?;
        self.sql
            .exec(
                "INSERT OR REPLACE INTO payout_breakers (backend, id, data) VALUES (?, ?, ?)",
                vec![V::from(backend.key().as_str()), V::from(id), V::from(data)],
            )
            .map_err(e)?;
        Ok(())
    }

    fn release_lease(&self, holder: &str) -> Result<(), StoreError> {
        self.sql
            .exec(
                "DELETE FROM lease WHERE name = 'drain' AND holder = ?",
                vec![V::from(holder)],
            )
            .map_err(e)?;
        Ok(())
    }
}
