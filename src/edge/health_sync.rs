//! One request's view of the shared health book: loaded once, flushed to KV
//! after the response only if something others must see has changed.

use worker::{Context, Env};

use crate::core::health::{Flush, HealthBook};
use crate::edge::store::Store;

pub struct HealthSession {
    before: HealthBook,
    pub book: HealthBook,
}

impl HealthSession {
    pub async fn load(store: &Store) -> HealthSession {
        let before = store.health().await;
        HealthSession {
            book: before.clone(),
            before,
        }
    }

    /// Writes the book back as `flush_needed` says: before the response when
    /// a breaker or online state changed, in the background otherwise.
    pub async fn flush(mut self, env: &Env, ctx: &Context, now_ms: u64) {
        let how = self.book.flush_needed(&self.before, now_ms);
        if how == Flush::No {
            return;
        }
        let Ok(store) = Store::open(env) else { return };
        self.book.written_at_ms = now_ms;
        let book = self.book;
        match how {
            Flush::Now => store.save_health(&book).await,
            _ => ctx.wait_until(async move { store.save_health(&book).await }),
        }
    }
}
