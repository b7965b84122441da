//! The Nostr Wallet Connect transport: an `nwc://` request becomes one
//! outbound WebSocket to the relay, driven by the core's
//! [`Exchange`](backends::nwc::exchange::Exchange). The secret
//! stays in this isolate: it signs and encrypts, and is never logged or sent.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use worker::{Date, WebSocket};

use backends::http::{HttpRequest, HttpResponse, TransportError};
use backends::nwc::event::WalletInfo;
use backends::nwc::exchange::{Call, Exchange, Step};

use crate::relay::{net, next_text, within};

/// How long a wallet's info event (methods, encryption) is reused.
const INFO_TTL_MS: u64 = 5 * 60 * 1000;

thread_local! {
    /// Per isolate: wallet + relay → (info, read at).
    static INFO: RefCell<HashMap<String, (WalletInfo, u64)>> = RefCell::new(HashMap::new());
}

/// Runs the exchange over an open socket until it finishes or the relay goes away.
async fn drive(
    relay: &str,
    ex: &mut Exchange,
    first: Step,
    socket: &RefCell<Option<Rc<WebSocket>>>,
) -> Result<HttpResponse, TransportError> {
    let url = worker::Url::parse(relay)
        .map_err(|_| TransportError::Network("the relay URL is invalid".into()))?;
    let ws = Rc::new(WebSocket::connect(url).await.map_err(net)?);
    *socket.borrow_mut() = Some(ws.clone());
    let mut events = ws.events().map_err(net)?;
    ws.accept().map_err(net)?;
    let mut step = first;
    loop {
        match step {
            Step::Send(messages) => {
                for m in messages {
                    ws.send_with_str(m).map_err(net)?;
                }
            }
            Step::Wait => {}
            Step::Done(r) => return Ok(r),
            Step::Fail(e) => return Err(e),
        }
        step = match next_text(&mut events).await? {
            Some(text) => ex.on_message(&text),
            None => Step::Wait,
        };
    }
}

/// One NIP-47 round trip within `timeout_ms`.
pub async fn send(req: &HttpRequest, timeout_ms: u64) -> Result<HttpResponse, TransportError> {
    let call = Call::from_http(req)?;
    let relay = call.relay.clone();
    let cache_key = format!("{}|{}", call.wallet, call.relay);
    let now = Date::now().as_millis();
    let known = INFO.with(|c| {
        c.borrow()
            .get(&cache_key)
            .filter(|(_, at)| now.saturating_sub(*at) < INFO_TTL_MS)
            .map(|(i, _)| i.clone())
    });
    let mut entropy = [0u8; 64];
    getrandom::getrandom(&mut entropy)
        .map_err(|_| TransportError::Network("no randomness for the NWC request".into()))?;
    let cached = known.is_some();
    let (mut ex, first) = Exchange::start(call, known, now, timeout_ms, entropy);
    let socket: RefCell<Option<Rc<WebSocket>>> = RefCell::new(None);
    let result = within(timeout_ms, drive(&relay, &mut ex, first, &socket)).await;
    if let Some(ws) = socket.borrow_mut().take() {
        let _ = ws.close(Some(1000), Some("done"));
    }
    if !cached {
        if let Some(info) = ex.learned_info() {
            INFO.with(|c| c.borrow_mut().insert(cache_key, (info.clone(), now)));
        }
    }
    result
}
