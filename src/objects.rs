//! Calls to the queue's Durable Objects (its shards and the invoice
//! claims object), each bounded in time. What a call carries is a
//! [`QueueCall`]; this module only moves it over the runtime.

use serde::de::DeserializeOwned;
use worker::{Env, Headers, Request};

use crate::durable::{self, fetch_bounded, Answer};
use crate::outgoing::{Outgoing, Redirect};
use crate::reply::Reply;
use gateway::api::error::ApiError;
use gateway::payout::queue_call::{QueueCall, Verb, REPLAYED_HEADER};

/// The payout queue's Durable Object binding (wrangler.toml).
pub const BINDING: &str = "PAYOUT_QUEUE";

/// A request's call to a queue shard ends within this: longer than the
/// longest thing a shard does for one request (an LNURL resolution, a claim
/// within its commit window, a pay request within its timeout).
pub const OBJECT_CALL_TIMEOUT_MS: u64 = 150_000;
/// A call from one object to another (the invoice claims object, a holder's
/// shard) ends within this: none of them does any outbound I/O.
pub const PEER_CALL_TIMEOUT_MS: u64 = 10_000;

pub fn internal(e: worker::Error) -> ApiError {
    ApiError::StorageUnavailable(format!("payout queue: {e}"))
}

/// Calls a queue shard (or the claims object) from a request.
pub async fn call_object(env: &Env, name: &str, call: &QueueCall) -> Result<Reply, ApiError> {
    let (answer, replayed) = call_with_timeout(env, name, call, OBJECT_CALL_TIMEOUT_MS).await?;
    let value = serde_json::from_str(&answer.text).map_err(|e| {
        ApiError::Internal(format!(
            "payout queue answered {} with non-JSON: {e}",
            answer.status
        ))
    })?;
    let mut reply = Reply::json(answer.status, value);
    if let Some(r) = replayed {
        reply = reply.header(REPLAYED_HEADER, r);
    }
    Ok(reply)
}

/// What another object answered, as text: [`decode`] reads it straight
/// into its type (through `from_str`, like every JSON read here).
pub struct PeerReply {
    pub status: u16,
    pub text: String,
}

/// Calls another object from inside an object.
pub async fn call_peer(env: &Env, name: &str, call: &QueueCall) -> Result<PeerReply, ApiError> {
    call_peer_within(env, name, call, PEER_CALL_TIMEOUT_MS).await
}

/// Calls another object from inside an object, within `timeout_ms`.
pub async fn call_peer_within(
    env: &Env,
    name: &str,
    call: &QueueCall,
    timeout_ms: u64,
) -> Result<PeerReply, ApiError> {
    Ok(call_with_timeout(env, name, call, timeout_ms).await?.0)
}

/// A 200 answer read as `T`; anything else is an error naming the call.
pub fn decode<T: DeserializeOwned>(reply: PeerReply, what: &str) -> Result<T, String> {
    if reply.status != 200 {
        return Err(format!("{what}: HTTP {}", reply.status));
    }
    serde_json::from_str(&reply.text).map_err(|e| format!("{what}: {e}"))
}

fn request(call: &QueueCall) -> Result<Request, ApiError> {
    let wire = call.to_wire();
    let headers = Headers::new();
    for (name, value) in &wire.headers {
        headers.set(name, value).map_err(internal)?;
    }
    Outgoing {
        method: match wire.verb {
            Verb::Get => "GET",
            Verb::Post => "POST",
        },
        headers: Some(&headers),
        body: wire
            .body
            .map(|b| js_sys::Uint8Array::from(b.as_slice()).into()),
        redirect: Redirect::Follow,
    }
    .to(&format!("https://payout-queue{}", wire.path))
    .map_err(internal)
}

/// The object's answer and its replay header.
async fn call_with_timeout(
    env: &Env,
    name: &str,
    call: &QueueCall,
    timeout_ms: u64,
) -> Result<(PeerReply, Option<String>), ApiError> {
    let stub = durable::stub(env, BINDING, name)?.map_err(internal)?;
    let req = request(call)?;
    let Some(Answer {
        status,
        headers,
        text,
    }) = fetch_bounded(&stub, req, timeout_ms)
        .await
        .map_err(internal)?
    else {
        return Err(ApiError::StorageUnavailable(format!(
            "the payout queue object did not answer {} within {} s",
            call.to_wire().path,
            timeout_ms / 1000
        )));
    };
    let replayed = headers.get(REPLAYED_HEADER).ok().flatten();
    Ok((PeerReply { status, text }, replayed))
}
