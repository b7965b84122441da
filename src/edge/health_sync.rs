//! One request's view of the shared health book: loaded once, flushed to KV
//! after the response only if something others must see has changed.

use worker::{Context, Env};

use crate::core::health::{Flush, HealthBook};
use crate::core::http::Runtime;
use crate::core::log::{breaker_transitions, Event};
use crate::edge::log;
use crate::edge::store::Store;

/// KV refuses a second write to one key within a second.
const KV_WRITE_SPACING_MS: u64 = 1_000;

pub struct HealthSession {
    before: HealthBook,
    pub book: HealthBook,
    /// When this request last wrote the book, if it did.
    wrote_at_ms: Option<u64>,
    /// The book as of the last breaker transitions logged.
    logged: HealthBook,
}

impl HealthSession {
    pub async fn load(store: &Store) -> HealthSession {
        let before = store.health().await;
        HealthSession {
            book: before.clone(),
            logged: before.clone(),
            before,
            wrote_at_ms: None,
        }
    }

    /// Logs each breaker this request moved, once.
    fn log_transitions(&mut self, env: &Env) {
        let changes = breaker_transitions(&self.logged, &self.book, "request");
        if changes.is_empty() {
            return;
        }
        let redactor = log::redactor(env);
        for b in changes {
            log::write(&redactor, b.level(), Event::Breaker(b));
        }
        self.logged = self.book.clone();
    }

    /// Writes the book back as `flush_needed` says: before the response when
    /// a breaker or online state changed, in the background otherwise.
    pub async fn flush(mut self, env: &Env, ctx: &Context, now_ms: u64) {
        self.log_transitions(env);
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

    /// Before the answer, for a request whose work goes on after it: writes
    /// the book only when a breaker or online state changed (other isolates
    /// act on that at once). Counters wait for [`HealthSession::flush_rest`].
    pub async fn flush_urgent(&mut self, store: &Store, now_ms: u64) {
        self.log_transitions(store.env());
        if self.book.flush_needed(&self.before, now_ms) != Flush::Now {
            return;
        }
        self.book.written_at_ms = now_ms;
        store.save_health(&self.book).await;
        self.before = self.book.clone();
        self.wrote_at_ms = Some(now_ms);
    }

    /// After the answer (inside `wait_until`): writes what is still due,
    /// spaced at least a second after this request's urgent write so KV
    /// does not refuse it.
    pub async fn flush_rest<R: Runtime>(mut self, store: &Store, rt: &R) {
        self.log_transitions(store.env());
        if self.book.flush_needed(&self.before, rt.now_ms()) == Flush::No {
            return;
        }
        if let Some(at) = self.wrote_at_ms {
            let wait = at
                .saturating_add(KV_WRITE_SPACING_MS)
                .saturating_sub(rt.now_ms());
            rt.sleep(wait).await;
        }
        self.book.written_at_ms = rt.now_ms();
        store.save_health(&self.book).await;
    }
}
