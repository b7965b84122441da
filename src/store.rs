//! Workers KV access: the shared health book and the payment-hash index.

use worker::kv::KvStore;

use gateway::api::error::ApiError;
use gateway::health::isolate::{IsolateHealth, Write as HealthWrite};
use gateway::health::{HealthBook, Journal};
use gateway::log::Event;
use gateway::receive::invoice::InvoiceRecord;

pub const KV_BINDING: &str = "LIGHTNING_KV";

thread_local! {
    /// This isolate's health book: every request's changes applied, the
    /// stored copy merged in when read (see `gateway::health::isolate`).
    static ISOLATE: std::cell::RefCell<IsolateHealth> =
        std::cell::RefCell::new(IsolateHealth::default());
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}
const HEALTH_KEY: &str = "health:v1";
/// The health document is rewritten often; the TTL only clears abandoned ones.
const HEALTH_TTL_SECS: u64 = 30 * 24 * 3600;

pub struct Store {
    kv: KvStore,
    /// Kept for logging (the redactor reads the secrets from it).
    env: worker::Env,
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::StorageUnavailable(e.to_string())
}

impl Store {
    pub fn open(env: &worker::Env) -> Result<Store, ApiError> {
        let kv = env.kv(KV_BINDING).map_err(|_| ApiError::Configuration {
            variable: KV_BINDING.into(),
            message: "the KV namespace binding is missing from wrangler.toml".into(),
        })?;
        Ok(Store {
            kv,
            env: env.clone(),
        })
    }

    /// This isolate's health book for one request. The stored copy is read
    /// at most once a second and merged in; an unreadable one counts as
    /// empty (health is advisory).
    pub async fn health(&self) -> HealthBook {
        let now = now_ms();
        if ISOLATE.with(|i| i.borrow().needs_read(now)) {
            let stored = match self.kv.get(HEALTH_KEY).text().await {
                Ok(Some(s)) => serde_json::from_str(&s).unwrap_or_default(),
                Ok(None) => HealthBook::default(),
                Err(e) => {
                    worker::console_warn!("health read failed: {e}");
                    HealthBook::default()
                }
            };
            ISOLATE.with(|i| i.borrow_mut().absorb(stored, now_ms()));
        }
        ISOLATE.with(|i| i.borrow().view())
    }

    /// Applies a request's (or the cron probe's) recorded changes to this
    /// isolate's book; what must be written, if anything, comes back.
    /// The breakers it moved are logged here, once.
    pub fn commit_health(&self, journal: &Journal, source: &str) -> Option<HealthWrite> {
        let now = now_ms();
        let done = ISOLATE.with(|i| i.borrow_mut().commit_from(journal, now, source));
        if !done.transitions.is_empty() {
            let redactor = crate::log::redactor(&self.env);
            for b in done.transitions {
                crate::log::write(&redactor, b.level(), Event::Breaker(b));
            }
        }
        done.write
    }

    /// Writes the book as `commit_health` said, after its wait.
    pub async fn write_health(&self, w: HealthWrite) {
        if w.wait_ms > 0 {
            worker::Delay::from(std::time::Duration::from_millis(w.wait_ms)).await;
        }
        let Ok(text) = serde_json::to_string(&w.book) else {
            return;
        };
        let put = match self.kv.put_bytes(HEALTH_KEY, text.as_bytes()) {
            Ok(p) => p.expiration_ttl(HEALTH_TTL_SECS),
            Err(e) => {
                worker::console_warn!("health write failed: {e}");
                return;
            }
        };
        // KV refuses more than one write per key per second: losing one is
        // fine (the next change that matters writes again).
        if let Err(e) = put.execute().await {
            worker::console_warn!("health write failed: {e}");
        }
    }

    pub async fn invoice(&self, payment_hash: &str) -> Result<Option<InvoiceRecord>, ApiError> {
        let key = InvoiceRecord::key(payment_hash);
        match self.kv.get(&key).text().await.map_err(unavailable)? {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s).map(Some).map_err(|e| {
                ApiError::Internal(format!("stored invoice record is unreadable: {e}"))
            }),
        }
    }

    pub async fn put_invoice(&self, record: &InvoiceRecord, now_secs: u64) -> Result<(), ApiError> {
        let text = serde_json::to_string(record).map_err(|e| ApiError::Internal(e.to_string()))?;
        // As bytes: worker-rs's `put` runs every value through
        // serde-wasm-bindgen first (and links its number formatting).
        self.kv
            .put_bytes(&InvoiceRecord::key(&record.payment_hash), text.as_bytes())
            .map_err(unavailable)?
            .expiration_ttl(record.ttl_secs(now_secs).max(60))
            .execute()
            .await
            .map_err(unavailable)
    }
}
