//! Publishing one Nostr event to one relay (a zap receipt): the runtime's
//! answer to a `ws(s)://` request whose body is the event. One outbound
//! WebSocket: `["EVENT", event]`, then the relay's `["OK", id, accepted,
//! message]` (NIP-01), answered as 200 (accepted) or 502 with the relay's
//! message, within the caller's timeout. The NWC transport shares the
//! message and timeout helpers.

use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::{pin_mut, StreamExt};
use serde_json::{json, Value};
use worker::{Delay, EventStream, Fetch, Headers, WebSocket, WebsocketEvent};

use backends::http::{HttpRequest, HttpResponse, TransportError};

use crate::outgoing::{Outgoing, Redirect};

/// Whether the runtime should carry `req` to a relay.
pub fn is_relay(req: &HttpRequest) -> bool {
    req.url.starts_with("wss://") || req.url.starts_with("ws://")
}

pub fn net(e: worker::Error) -> TransportError {
    TransportError::Network(format!("relay: {e}"))
}

/// The next text message from a relay; `Ok(None)` for a binary one. A
/// closed or failed connection is an error.
pub async fn next_text(events: &mut EventStream<'_>) -> Result<Option<String>, TransportError> {
    match events.next().await {
        Some(Ok(WebsocketEvent::Message(m))) => Ok(m.text()),
        Some(Ok(WebsocketEvent::Close(c))) => Err(TransportError::Network(format!(
            "the relay closed the connection (code {})",
            c.code()
        ))),
        Some(Err(e)) => Err(net(e)),
        None => Err(TransportError::Network("the relay connection ended".into())),
    }
}

/// `work` within `timeout_ms`, else [`TransportError::Timeout`].
pub async fn within<T>(
    timeout_ms: u64,
    work: impl std::future::Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    let timer = Delay::from(Duration::from_millis(timeout_ms.max(1)));
    pin_mut!(work);
    pin_mut!(timer);
    match select(work, timer).await {
        Either::Left((r, _)) => r,
        Either::Right(_) => Err(TransportError::Timeout),
    }
}

/// Opens the WebSocket without following redirects: the relay was named
/// by an anonymous caller and checked against the outbound URL rules, and
/// a redirect must not take the connection anywhere those rules refuse.
/// (`WebSocket::connect` is a fetch that follows them.)
async fn connect(relay: &str) -> Result<WebSocket, TransportError> {
    let mut url = worker::Url::parse(relay)
        .map_err(|_| TransportError::Network("the relay URL is invalid".into()))?;
    let scheme = if url.scheme() == "ws" {
        "http"
    } else {
        "https"
    };
    url.set_scheme(scheme)
        .map_err(|_| TransportError::Network("the relay URL is invalid".into()))?;
    let headers = Headers::new();
    headers.set("upgrade", "websocket").map_err(net)?;
    let req = Outgoing {
        method: "GET",
        headers: Some(&headers),
        body: None,
        redirect: Redirect::Manual,
    }
    .to(url.as_str())
    .map_err(net)?;
    let res = Fetch::Request(req).send().await.map_err(net)?;
    let status = res.status_code();
    res.websocket().ok_or_else(|| {
        TransportError::Network(format!(
            "the relay did not accept a WebSocket (HTTP {status}; redirects are not followed)"
        ))
    })
}

/// The relay's `OK` for event `id`, as an answer.
fn ok_answer(v: &Value, id: &str) -> Option<HttpResponse> {
    if v[0] != "OK" || v[1] != id {
        return None;
    }
    let message = v[3].as_str().unwrap_or_default();
    let status = if v[2] == true { 200 } else { 502 };
    Some(HttpResponse::json(
        status,
        &json!({"accepted": v[2], "message": message}),
    ))
}

async fn exchange(relay: &str, event: &Value) -> Result<HttpResponse, TransportError> {
    let id = event["id"].as_str().unwrap_or_default().to_string();
    let ws = connect(relay).await?;
    let mut events = ws.events().map_err(net)?;
    ws.accept().map_err(net)?;
    ws.send_with_str(json!(["EVENT", event]).to_string())
        .map_err(net)?;
    let answer = loop {
        let text = next_text(&mut events).await?;
        let v = text.and_then(|t| serde_json::from_str::<Value>(&t).ok());
        if let Some(answer) = v.as_ref().and_then(|v| ok_answer(v, &id)) {
            break answer;
        }
    };
    let _ = ws.close(Some(1000), Some("done"));
    Ok(answer)
}

/// Publishes the event in `req.body` to the relay at `req.url`.
pub async fn publish(req: &HttpRequest, timeout_ms: u64) -> Result<HttpResponse, TransportError> {
    let event: Value = serde_json::from_str(req.body.as_deref().unwrap_or_default())
        .map_err(|_| TransportError::Network("the event to publish is not JSON".into()))?;
    within(timeout_ms, exchange(&req.url, &event)).await
}
