//! One request's view of the shared health book: loaded once, flushed to KV
//! after the response only if something others must see has changed.

use worker::{Context, Env};

use crate::core::health::HealthBook;
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

    /// Writes the book back in the background when `needs_flush` says so.
    pub fn flush(mut self, env: &Env, ctx: &Context, now_ms: u64) {
        if !self.book.needs_flush(&self.before, now_ms) {
            return;
        }
        let Ok(store) = Store::open(env) else { return };
        self.book.written_at_ms = now_ms;
        let book = self.book;
        ctx.wait_until(async move { store.save_health(&book).await });
    }
}
