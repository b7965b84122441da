//! Requests the Worker sends (to backends, relays and its own Durable
//! Objects), built on `web_sys` directly. worker-rs's `RequestInit` copies
//! its Cloudflare `cf` options onto every request field by field, about
//! 11 KB of wasm, and this Worker never sets one.

use wasm_bindgen::JsValue;
use worker::web_sys;
use worker::{Error, Headers, Request};

/// What happens to a redirect. No default: each call site chooses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Redirect {
    /// It comes back as the answer. For every backend and relay: one that
    /// redirects is misconfigured, and our keys stay where they were sent.
    Manual,
    /// Followed; only for our own Durable Objects, which never redirect.
    Follow,
}

/// One request to send.
pub struct Outgoing<'a> {
    /// `GET` or `POST`.
    pub method: &'static str,
    pub headers: Option<&'a Headers>,
    pub body: Option<JsValue>,
    pub redirect: Redirect,
}

impl Outgoing<'_> {
    pub fn to(self, url: &str) -> Result<Request, Error> {
        let init = web_sys::RequestInit::new();
        init.set_method(self.method);
        if let Some(h) = self.headers {
            init.set_headers(&h.0);
        }
        if let Some(b) = &self.body {
            init.set_body(b);
        }
        init.set_redirect(match self.redirect {
            Redirect::Manual => web_sys::RequestRedirect::Manual,
            Redirect::Follow => web_sys::RequestRedirect::Follow,
        });
        web_sys::Request::new_with_str_and_init(url, &init)
            .map(Request::from)
            .map_err(|e| {
                Error::JsError(
                    e.as_string()
                        .unwrap_or_else(|| "invalid URL or options for Request".to_string()),
                )
            })
    }
}
