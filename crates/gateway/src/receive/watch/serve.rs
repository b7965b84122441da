//! One watch shard answering a [`WatchCall`]: what its Durable Object runs
//! for each request and alarm, over its store and the runtime.

use std::cell::RefCell;

use crate::receive::idempotency::{self, Begin, KeyRecord};
use crate::receive::watch::budget::LookupBudget;
use crate::receive::watch::call::{KeyBegin, WatchCall, WatchReply};
use crate::receive::watch::engine::{
    self, Delivering, Looking, LookupPass, StoreError, WatchStore,
};
use crate::receive::watch::history::MAX_LIMIT;
use crate::receive::watch::record::WatchedInvoice;
use backends::http::Runtime;

/// What a shard works with besides its store.
pub struct Shard<'a> {
    pub looking: Looking<'a>,
    pub delivering: Delivering<'a>,
    /// Kept by the object across requests; borrowed only between awaits.
    pub budget: &'a RefCell<LookupBudget>,
}

/// What one wake-up did, and when the shard must wake next.
#[derive(Debug, Clone, PartialEq)]
pub struct Woke {
    pub looked: u32,
    pub delivered: u32,
    pub next_wake_ms: Option<u64>,
}

/// Looks up what is due, then delivers what is due.
pub async fn wake<R: Runtime, S: WatchStore>(
    rt: &R,
    store: &S,
    shard: &Shard<'_>,
) -> Result<Woke, StoreError> {
    let now = rt.now_ms();
    store.prune(now)?;
    let (work, pass): (engine::Work, LookupPass) = {
        let mut budget = shard.budget.borrow_mut();
        engine::pick_due(store, &shard.looking, &mut budget, now)?
    };
    let looked = engine::look_up(
        rt,
        store,
        &work,
        shard.looking.timeout_ms,
        &shard.delivering,
    )
    .await?;
    let delivered = engine::deliver_due(rt, store, &shard.delivering).await?;
    Ok(Woke {
        looked,
        delivered,
        next_wake_ms: engine::next_wake(store.next_wake()?, &pass, rt.now_ms()),
    })
}

fn key_begin<S: WatchStore>(
    store: &S,
    key: &str,
    fingerprint: &str,
    now_ms: u64,
) -> Result<KeyBegin, StoreError> {
    let (begin, take) = idempotency::begin(store.key(key)?.as_ref(), fingerprint, now_ms);
    if let Some(record) = take {
        store.put_key(key, &record)?;
    }
    Ok(match begin {
        Begin::Proceed => KeyBegin::Proceed,
        Begin::Replay(answer) => KeyBegin::Replay { answer },
        Begin::Conflict => KeyBegin::Conflict,
        Begin::InProgress => KeyBegin::InProgress,
    })
}

/// Applies `change` to a watched invoice and stores it if it changed.
fn touch<S: WatchStore>(
    store: &S,
    hash: &str,
    change: impl FnOnce(&mut WatchedInvoice) -> bool,
) -> Result<WatchReply, StoreError> {
    if let Some(mut inv) = store.get(hash)? {
        if change(&mut inv) {
            store.put(&inv)?;
        }
    }
    Ok(WatchReply::Done)
}

/// A caller asks about an invoice: a lookup on demand if one is due.
async fn check<R: Runtime, S: WatchStore>(
    rt: &R,
    store: &S,
    shard: &Shard<'_>,
    hash: &str,
) -> Result<WatchReply, StoreError> {
    let l = &shard.looking;
    let inv = engine::on_demand(rt, store, l, shard.budget, &shard.delivering, hash).await?;
    Ok(WatchReply::Invoice {
        invoice: inv.map(Box::new),
    })
}

/// Answers one call.
pub async fn handle<R: Runtime, S: WatchStore>(
    rt: &R,
    store: &S,
    shard: &Shard<'_>,
    call: WatchCall,
) -> Result<WatchReply, StoreError> {
    let now = rt.now_ms();
    Ok(match call {
        WatchCall::Register { invoice } => {
            engine::register(store, &invoice)?;
            WatchReply::Done
        }
        WatchCall::Get { payment_hash } => WatchReply::Invoice {
            invoice: store.get(&payment_hash)?.map(Box::new),
        },
        WatchCall::Check { payment_hash } => check(rt, store, shard, &payment_hash).await?,
        WatchCall::SeenPaid {
            payment_hash,
            settled_at_ms,
        } => WatchReply::Invoice {
            invoice: engine::seen_paid(
                store,
                &payment_hash,
                settled_at_ms,
                &shard.delivering,
                now,
            )?
            .map(Box::new),
        },
        WatchCall::Abandon { payment_hash } => touch(store, &payment_hash, |i| i.abandon())?,
        WatchCall::Nudge { payment_hash } => touch(store, &payment_hash, |i| i.nudge(now))?,
        WatchCall::Events { after, limit } => WatchReply::Events {
            events: store.events_after(after, limit.clamp(1, MAX_LIMIT))?,
        },
        WatchCall::Redeliver { payment_hash } => WatchReply::Redelivered {
            deliveries: store.rearm(&payment_hash, now)?,
        },
        WatchCall::Stats => WatchReply::Stats {
            stats: store.stats(now)?,
        },
        WatchCall::Wake => {
            let woke = wake(rt, store, shard).await?;
            WatchReply::Woke {
                looked: woke.looked,
                delivered: woke.delivered,
            }
        }
        WatchCall::BeginKey { key, fingerprint } => WatchReply::Key {
            begin: key_begin(store, &key, &fingerprint, now)?,
        },
        WatchCall::DropKey { key, fingerprint } => {
            let unanswered = store
                .key(&key)?
                .is_some_and(|r| r.answer.is_none() && r.fingerprint == fingerprint);
            if unanswered {
                store.drop_key(&key)?;
            }
            WatchReply::Done
        }
        WatchCall::FinishKey {
            key,
            fingerprint,
            answer,
        } => {
            let taken_at_ms = store.key(&key)?.map_or(now, |r| r.taken_at_ms);
            store.put_key(
                &key,
                &KeyRecord {
                    fingerprint,
                    taken_at_ms,
                    answer: Some(answer),
                },
            )?;
            WatchReply::Done
        }
    })
}
