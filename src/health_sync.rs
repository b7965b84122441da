//! One request's view of the health book: this isolate's copy, handed out
//! at the start; the request's recorded changes are applied to the
//! isolate's copy at the end (logging the breakers they move) and written
//! to KV only when it matters (`gateway::health::isolate`).

use worker::{Context, Env};

use crate::store::Store;
use gateway::health::isolate::Write as HealthWrite;
use gateway::health::HealthBook;

pub struct HealthSession {
    pub book: HealthBook,
    /// A counter-only write left for after the answer.
    pending: Option<HealthWrite>,
}

impl HealthSession {
    pub async fn load(store: &Store) -> HealthSession {
        HealthSession {
            book: store.health().await,
            pending: None,
        }
    }

    /// Applies this request's changes to the isolate's book and writes what
    /// must be: before the response when a breaker opened or closed or a
    /// provider went offline or came back, after it otherwise.
    pub async fn flush(mut self, env: &Env, ctx: &Context) {
        let Ok(store) = Store::open(env) else { return };
        let Some(w) = store.commit_health(&self.book.take_journal(), "request") else {
            return;
        };
        if w.urgent {
            store.write_health(w).await;
        } else {
            ctx.wait_until(async move { store.write_health(w).await });
        }
    }

    /// Before the answer, for a request whose work goes on after it: applies
    /// what was recorded so far, and writes it now if it must be written.
    /// Anything else waits for [`HealthSession::flush_rest`].
    pub async fn flush_urgent(&mut self, store: &Store) {
        let Some(w) = store.commit_health(&self.book.take_journal(), "request") else {
            return;
        };
        if w.urgent {
            store.write_health(w).await;
        } else {
            self.pending = Some(w);
        }
    }

    /// After the answer (inside `wait_until`): applies the rest and writes
    /// what is due.
    pub async fn flush_rest(mut self, store: &Store) {
        let later = store.commit_health(&self.book.take_journal(), "request");
        if let Some(w) = later.or(self.pending.take()) {
            store.write_health(w).await;
        }
    }
}
