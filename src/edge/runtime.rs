//! The core's [`Runtime`] on Workers: `fetch` with an abortable timeout,
//! `Delay` for sleeps, `Date.now()` and `crypto.getRandomValues`.

use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::pin_mut;
use wasm_bindgen::JsValue;
use worker::{
    AbortController, Date, Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect,
};

use crate::core::http::{self, HttpRequest, HttpResponse, Runtime, TransportError};

/// Provider responses larger than this are refused.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

pub struct WorkerRuntime;

fn build(req: &HttpRequest) -> worker::Result<Request> {
    let headers = Headers::new();
    for (k, v) in &req.headers {
        headers.set(k, v)?;
    }
    let mut init = RequestInit::new();
    init.with_method(match req.method {
        http::Method::Get => Method::Get,
        http::Method::Post => Method::Post,
    })
    .with_headers(headers)
    // A provider that redirects is misconfigured; never follow it with our keys.
    .with_redirect(RequestRedirect::Manual);
    if let Some(b) = &req.body {
        init.with_body(Some(JsValue::from_str(b)));
    }
    Request::new_with_init(&req.url, &init)
}

async fn fetch(
    request: Request,
    signal: &worker::AbortSignal,
) -> Result<HttpResponse, TransportError> {
    let net = |e: worker::Error| TransportError::Network(e.to_string());
    let mut resp = Fetch::Request(request)
        .send_with_signal(signal)
        .await
        .map_err(net)?;
    let status = resp.status_code();
    let content_type = resp.headers().get("content-type").ok().flatten();
    let too_large = resp
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|l| l.parse::<usize>().ok())
        .is_some_and(|l| l > MAX_RESPONSE_BYTES);
    if too_large {
        return Err(TransportError::TooLarge);
    }
    let bytes = resp.bytes().await.map_err(net)?;
    if bytes.len() > MAX_RESPONSE_BYTES {
        return Err(TransportError::TooLarge);
    }
    Ok(HttpResponse {
        status,
        content_type,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

impl Runtime for WorkerRuntime {
    async fn send(
        &self,
        req: HttpRequest,
        timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError> {
        let request = build(&req)
            .map_err(|e| TransportError::Network(format!("could not build request: {e}")))?;
        let controller = AbortController::default();
        let signal = controller.signal();
        let call = fetch(request, &signal);
        let timer = Delay::from(Duration::from_millis(timeout_ms.max(1)));
        pin_mut!(call);
        pin_mut!(timer);
        match select(call, timer).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => {
                controller.abort();
                Err(TransportError::Timeout)
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
