//! The core's [`Runtime`] on Workers: `fetch` with an abortable timeout and
//! a body read chunk by chunk under a size cap (`nwc://` requests go to the
//! relay transport in `crate::nwc`), `Delay` for sleeps, `Date.now()` and
//! `crypto.getRandomValues`.

use std::cell::Cell;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::pin_mut;
use wasm_bindgen::JsValue;
use worker::{AbortController, Date, Delay, Fetch, Headers, Request, ResponseBody};

use backends::http::{
    self, BodyReader, HttpRequest, HttpResponse, ReadLimits, Runtime, TransportError,
};

use crate::js_stream::Chunks;
use crate::outgoing::{Outgoing, Redirect};

pub struct WorkerRuntime;

fn build(req: &HttpRequest) -> worker::Result<Request> {
    let headers = Headers::new();
    for (k, v) in &req.headers {
        headers.set(k, v)?;
    }
    Outgoing {
        method: match req.method {
            http::Method::Get => "GET",
            http::Method::Post => "POST",
        },
        headers: Some(&headers),
        body: req.body.as_deref().map(JsValue::from_str),
        redirect: Redirect::Manual,
    }
    .to(&req.url)
}

/// Sends `request` and reads its body chunk by chunk under `limits`:
/// reading stops as soon as the cap is passed or, in first-line mode, at the
/// first newline. The second value is true when reading stopped before the
/// end of the body; the caller then aborts the request so the rest of the
/// stream is cancelled rather than left open.
async fn fetch(
    request: Request,
    signal: &worker::AbortSignal,
    limits: ReadLimits,
    headers_seen: &Cell<bool>,
) -> (Result<HttpResponse, TransportError>, bool) {
    let net = |e: worker::Error| TransportError::Network(e.to_string());
    let resp = match Fetch::Request(request).send_with_signal(signal).await {
        Ok(r) => r,
        Err(e) => return (Err(net(e)), false),
    };
    headers_seen.set(true);
    let status = resp.status_code();
    let content_type = resp.headers().get("content-type").ok().flatten();
    // A declared length over the cap is refused before reading anything
    // (not in first-line mode: the first line may be all that is wanted).
    let declared_too_large = !limits.first_line_only
        && resp
            .headers()
            .get("content-length")
            .ok()
            .flatten()
            .and_then(|l| l.trim().parse::<u64>().ok())
            .is_some_and(|l| l > limits.max_response_bytes as u64);
    if declared_too_large {
        return (Err(TransportError::TooLarge), true);
    }
    let mut reader = BodyReader::new(limits);
    let mut stopped_early = false;
    let stream = match resp.body() {
        ResponseBody::Empty => None,
        ResponseBody::Body(bytes) => {
            if let Err(e) = reader.push(bytes) {
                return (Err(e), false);
            }
            None
        }
        ResponseBody::Stream(stream) => Some(stream),
    };
    if let Some(stream) = stream {
        let mut chunks = Chunks::new(stream);
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => return (Err(TransportError::Network(e.to_string())), true),
            };
            match reader.push(&chunk) {
                Ok(false) => {}
                Ok(true) => {
                    stopped_early = true;
                    break;
                }
                Err(e) => return (Err(e), true),
            }
        }
        // Dropping the reader before the end cancels the stream.
    }
    (
        Ok(HttpResponse {
            status,
            content_type,
            body: reader.finish(),
        }),
        stopped_early,
    )
}

impl Runtime for WorkerRuntime {
    async fn send(
        &self,
        req: HttpRequest,
        timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError> {
        self.send_limited(req, timeout_ms, ReadLimits::default())
            .await
    }

    async fn send_limited(
        &self,
        req: HttpRequest,
        timeout_ms: u64,
        limits: ReadLimits,
    ) -> Result<HttpResponse, TransportError> {
        // Nostr Wallet Connect goes over a relay WebSocket, not fetch.
        if backends::nwc::is_nwc(&req) {
            return limits.apply(super::nwc::send(&req, timeout_ms).await?);
        }
        // A zap receipt goes to a Nostr relay.
        if super::relay::is_relay(&req) {
            return limits.apply(super::relay::publish(&req, timeout_ms).await?);
        }
        let request = build(&req)
            .map_err(|e| TransportError::Network(format!("could not build request: {e}")))?;
        let controller = AbortController::default();
        let signal = controller.signal();
        let headers_seen = Cell::new(false);
        let call = fetch(request, &signal, limits, &headers_seen);
        let timer = Delay::from(Duration::from_millis(timeout_ms.max(1)));
        pin_mut!(call);
        pin_mut!(timer);
        match select(call, timer).await {
            Either::Left(((result, stopped_early), _)) => {
                if stopped_early {
                    // Cancel what is left of the body (an LND track stream
                    // stays open while the payment is in flight).
                    controller.abort();
                }
                result
            }
            Either::Right(_) => {
                controller.abort();
                Err(if headers_seen.get() {
                    TransportError::SlowBody
                } else {
                    TransportError::Timeout
                })
            }
        }
    }

    async fn sleep(&self, ms: u64) {
        if ms > 0 {
            Delay::from(Duration::from_millis(ms)).await;
        }
    }

    fn now_ms(&self) -> u64 {
        Date::now().as_millis()
    }

    fn random_bytes(&self, buf: &mut [u8]) {
        if getrandom::getrandom(buf).is_err() {
            // Never expected on Workers; keep jitter working rather than fail a request.
            for b in buf.iter_mut() {
                *b = (js_sys::Math::random() * 256.0) as u8;
            }
        }
    }
}
