//! Calls from the Worker to its invoice watch objects, each bounded in time.

use worker::Env;

use crate::durable::{self, fetch_bounded, Answer};
use crate::outgoing::{Outgoing, Redirect};
use gateway::api::error::ApiError;
use gateway::receive::watch::call::{
    object_name, shard_of_hash, shard_of_key, KeyBegin, WatchCall, WatchReply,
};
use gateway::receive::watch::record::WatchedInvoice;

/// The invoice watch's Durable Object binding (wrangler.toml).
pub const BINDING: &str = "INVOICE_WATCH";
/// A wake-up ends within this: its lookups (each within the attempt
/// timeout) and deliveries.
pub const WAKE_TIMEOUT_MS: u64 = 60_000;
/// Every other call is a few SQLite statements: public routes (check-invoice,
/// health) must not hang on a busy shard.
pub const CALL_TIMEOUT_MS: u64 = 10_000;

fn timeout_ms(c: &WatchCall) -> u64 {
    match c {
        WatchCall::Wake => WAKE_TIMEOUT_MS,
        _ => CALL_TIMEOUT_MS,
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::InvoiceWatchUnavailable(e.to_string())
}

/// Makes `call` to watch shard `shard`.
pub async fn call(env: &Env, shard: u32, call: &WatchCall) -> Result<WatchReply, ApiError> {
    let stub = durable::stub(env, BINDING, &object_name(shard))?.map_err(unavailable)?;
    let body = serde_json::to_string(call).map_err(unavailable)?;
    let req = Outgoing {
        method: "POST",
        headers: None,
        body: Some(wasm_bindgen::JsValue::from_str(&body)),
        redirect: Redirect::Follow,
    }
    .to("https://invoice-watch/call")
    .map_err(unavailable)?;
    let limit = timeout_ms(call);
    let Some(Answer { status, text, .. }) = fetch_bounded(&stub, req, limit)
        .await
        .map_err(unavailable)?
    else {
        return Err(unavailable(format!(
            "watch shard {shard} did not answer within {} s",
            limit / 1000
        )));
    };
    if status != 200 {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let m = v["error"]["message"].as_str().unwrap_or("no message");
        return Err(unavailable(format!(
            "watch shard {shard} answered {status}: {m}"
        )));
    }
    serde_json::from_str(&text).map_err(|e| unavailable(format!("watch shard {shard}: {e}")))
}

/// Makes `call` to every shard at once; the replies in shard order.
pub async fn every_shard(env: &Env, c: &WatchCall) -> Vec<Result<WatchReply, ApiError>> {
    let shards = 0..gateway::receive::watch::call::SHARDS;
    gateway::join::join_all(shards.map(|s| call(env, s, c))).await
}

/// A reply of the wrong kind for its call (named by its kind: its
/// `Debug` would bring every watch record's `Debug` into the wasm).
pub fn unexpected(reply: WatchReply) -> ApiError {
    unavailable(format!("unexpected reply from the watch: {}", reply.kind()))
}

/// The watch state of `payment_hash`, if it is watched.
pub async fn watched(env: &Env, payment_hash: &str) -> Result<Option<WatchedInvoice>, ApiError> {
    let c = WatchCall::Get {
        payment_hash: payment_hash.into(),
    };
    match call(env, shard_of_hash(payment_hash), &c).await? {
        WatchReply::Invoice { invoice } => Ok(invoice.map(|b| *b)),
        other => Err(unexpected(other)),
    }
}

/// The watch's state of `payment_hash` for a caller (check-invoice, the
/// checkout page, verify), looked up first when a lookup on demand is due.
pub async fn checked(env: &Env, payment_hash: &str) -> Result<Option<WatchedInvoice>, ApiError> {
    let c = WatchCall::Check {
        payment_hash: payment_hash.into(),
    };
    match call(env, shard_of_hash(payment_hash), &c).await? {
        WatchReply::Invoice { invoice } => Ok(invoice.map(|b| *b)),
        other => Err(unexpected(other)),
    }
}

/// Takes an invoice into the watch; it must be there before anyone learns
/// of the invoice.
pub async fn register(env: &Env, invoice: WatchedInvoice) -> Result<(), ApiError> {
    let shard = shard_of_hash(&invoice.payment_hash);
    let c = WatchCall::Register {
        invoice: Box::new(invoice),
    };
    call(env, shard, &c).await.map(|_| ())
}

/// Hands a paid state seen by `check-invoice` to the watch.
pub async fn seen_paid(env: &Env, payment_hash: &str, settled_at_ms: u64) -> Result<(), ApiError> {
    let c = WatchCall::SeenPaid {
        payment_hash: payment_hash.into(),
        settled_at_ms,
    };
    call(env, shard_of_hash(payment_hash), &c).await.map(|_| ())
}

/// Takes `key` for a request whose body has `fingerprint`.
pub async fn begin_key(env: &Env, key: &str, fingerprint: &str) -> Result<KeyBegin, ApiError> {
    let c = WatchCall::BeginKey {
        key: key.into(),
        fingerprint: fingerprint.into(),
    };
    match call(env, shard_of_key(key), &c).await? {
        WatchReply::Key { begin } => Ok(begin),
        other => Err(unexpected(other)),
    }
}

/// Keeps the answer given for `key`.
pub async fn finish_key(
    env: &Env,
    key: &str,
    fingerprint: &str,
    answer: &serde_json::Value,
) -> Result<(), ApiError> {
    let c = WatchCall::FinishKey {
        key: key.into(),
        fingerprint: fingerprint.into(),
        answer: answer.clone(),
    };
    call(env, shard_of_key(key), &c).await.map(|_| ())
}

/// Frees `key` after its request failed before making an invoice.
pub async fn drop_key(env: &Env, key: &str, fingerprint: &str) -> Result<(), ApiError> {
    let c = WatchCall::DropKey {
        key: key.into(),
        fingerprint: fingerprint.into(),
    };
    call(env, shard_of_key(key), &c).await.map(|_| ())
}

/// Ends the watch of an invoice that create-invoice did not hand out; a
/// failure is logged (the invoice then ends with one `invoice.expired`).
pub async fn abandon(env: &Env, payment_hash: &str) {
    let c = WatchCall::Abandon {
        payment_hash: payment_hash.into(),
    };
    if let Err(e) = call(env, shard_of_hash(payment_hash), &c).await {
        worker::console_warn!(
            "could not drop an invoice that was not handed out: {}",
            e.message()
        );
    }
}
