//! Requests the Worker sends (to backends, relays and its own Durable
//! Objects), built on `web_sys` directly. worker-rs's `RequestInit` copies
//! its Cloudflare `cf` options onto every request field by field, about
//! 11 KB of wasm, and this Worker never sets one.

use wasm_bindgen::JsValue;
use worker::web_sys;
use worker::{Error, Headers, Request};

/// What a request carries besides its URL.
pub struct Outgoing<'a> {
    /// `GET` or `POST`.
    pub method: &'static str,
    pub headers: Option<&'a Headers>,
    pub body: Option<JsValue>,
    /// A redirect comes back as the answer instead of being followed: a
    /// backend that redirects is misconfigured, and our keys stay with it.
    pub manual_redirect: bool,
}

impl Outgoing<'_> {
    /// A `GET` with no headers or body that follows redirects.
    pub const GET: Outgoing<'static> = Outgoing {
        method: "GET",
        headers: None,
        body: None,
        manual_redirect: false,
    };

    pub fn to(self, url: &str) -> Result<Request, Error> {
        let init = web_sys::RequestInit::new();
        init.set_method(self.method);
        if let Some(h) = self.headers {
            init.set_headers(&h.0);
        }
        if let Some(b) = &self.body {
            init.set_body(b);
        }
        if self.manual_redirect {
            init.set_redirect(web_sys::RequestRedirect::Manual);
        }
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
