//! Workers KV access: the shared health book and the payment-hash index.

use worker::kv::KvStore;

use crate::core::api::error::ApiError;
use crate::core::health::HealthBook;
use crate::core::receive::invoice::InvoiceRecord;

pub const KV_BINDING: &str = "LIGHTNING_KV";
/// How long this isolate reuses the health book it last read or wrote.
/// KV itself may serve a copy up to a minute old to another location, so
/// a second here changes nothing others could rely on, and saves a KV read
/// on every request under load.
const HEALTH_CACHE_MS: f64 = 1_000.0;

thread_local! {
    /// The health book as this isolate last read or wrote it, and when.
    static HEALTH_CACHE: std::cell::RefCell<Option<(f64, HealthBook)>> =
        const { std::cell::RefCell::new(None) };
}

fn cached_health() -> Option<HealthBook> {
    let now = js_sys::Date::now();
    HEALTH_CACHE.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(at, _)| now - at < HEALTH_CACHE_MS && now >= *at)
            .map(|(_, b)| b.clone())
    })
}

fn remember_health(book: &HealthBook) {
    HEALTH_CACHE.with(|c| *c.borrow_mut() = Some((js_sys::Date::now(), book.clone())));
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

    pub fn env(&self) -> &worker::Env {
        &self.env
    }

    /// The shared health book; an unreadable one starts afresh (it is advisory).
    pub async fn health(&self) -> HealthBook {
        if let Some(book) = cached_health() {
            return book;
        }
        let book = match self.kv.get(HEALTH_KEY).text().await {
            Ok(Some(s)) => serde_json::from_str(&s).unwrap_or_default(),
            Ok(None) => HealthBook::default(),
            Err(e) => {
                worker::console_warn!("health read failed: {e}");
                return HealthBook::default();
            }
        };
        remember_health(&book);
        book
    }

    pub async fn save_health(&self, book: &HealthBook) {
        remember_health(book);
        let Ok(text) = serde_json::to_string(book) else {
            return;
        };
        let put = match self.kv.put(HEALTH_KEY, text) {
            Ok(p) => p.expiration_ttl(HEALTH_TTL_SECS),
            Err(e) => {
                worker::console_warn!("health write failed: {e}");
                return;
            }
        };
        // KV refuses more than one write per key per second: losing one is fine.
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
        self.kv
            .put(&InvoiceRecord::key(&record.payment_hash), text)
            .map_err(unavailable)?
            .expiration_ttl(record.ttl_secs(now_secs).max(60))
            .execute()
            .await
            .map_err(unavailable)
    }
}
