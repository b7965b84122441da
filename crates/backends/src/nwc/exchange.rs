//! One NIP-47 round trip over one relay connection, as a pure state machine:
//! the edge opens the WebSocket, feeds every relay message to
//! [`Exchange::on_message`] and sends what it returns. Order of business:
//! read the wallet's info event (methods, encryption), subscribe to the
//! response (`#e` = request id, `#p` = us, author = wallet) and wait for the
//! relay to confirm the subscription, only then publish the request, then
//! take the first authentic reply. Everything else (duplicates, replies to
//! other requests, other authors, forged or undecryptable events) is ignored.

use serde_json::{json, Value};

use super::crypto::Keys;
use super::event::{self, Event, WalletInfo, KIND_INFO, KIND_RESPONSE};
use super::{HEADER_ALT_METHOD, HEADER_RELAY, HEADER_SECRET, SCHEME};
use crate::http::{HttpRequest, HttpResponse, TransportError};

const SUB_INFO: &str = "nwc-info";
const SUB_REPLY: &str = "nwc-reply";

/// A NIP-47 call as the backend module describes it (an `nwc://` request).
/// Debug never shows the secret.
#[derive(Clone)]
pub struct Call {
    pub wallet: String,
    pub relay: String,
    keys: Keys,
    /// The method asked for, and one the wallet may answer instead.
    pub method: String,
    pub alt_method: Option<String>,
    /// `{"method", "params"}`.
    body: Value,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Call({} via {} to {}, secret redacted)",
            self.method, self.relay, self.wallet
        )
    }
}

fn bad(what: &str) -> TransportError {
    TransportError::Network(format!("invalid NWC request: {what}"))
}

impl Call {
    pub fn from_http(req: &HttpRequest) -> Result<Call, TransportError> {
        let rest = req
            .url
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("not an nwc:// URL"))?;
        let (wallet, method) = rest.split_once('/').ok_or_else(|| bad("no method"))?;
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let relay = header(HEADER_RELAY)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| bad("no relay"))?;
        let keys = header(HEADER_SECRET)
            .and_then(|s| Keys::from_secret_hex(&s).ok())
            .ok_or_else(|| bad("the connection secret is missing or invalid"))?;
        super::crypto::parse_pubkey(wallet).map_err(|_| bad("the wallet public key is invalid"))?;
        let body: Value = req
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
            .filter(Value::is_object)
            .ok_or_else(|| bad("the body is not a JSON object"))?;
        Ok(Call {
            wallet: wallet.to_ascii_lowercase(),
            relay,
            keys,
            method: method.to_string(),
            alt_method: header(HEADER_ALT_METHOD),
            body,
        })
    }
}

/// What the transport does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send these messages to the relay, in order, then wait for more.
    Send(Vec<String>),
    /// Nothing to send; wait for the next message.
    Wait,
    /// The wallet's answer (or one the exchange gives without asking it).
    Done(HttpResponse),
    /// The relay refused or closed: the request may or may not have arrived.
    Fail(TransportError),
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Reading the info event; the newest authentic one so far.
    Info(Option<(u64, WalletInfo)>),
    /// Subscribed to the reply, waiting for the relay's EOSE to publish.
    Subscribed,
    /// Published; waiting for the reply.
    Published,
    Finished,
}

#[derive(Debug)]
pub struct Exchange {
    call: Call,
    now_secs: u64,
    timeout_secs: u64,
    entropy: [u8; 64],
    phase: Phase,
    info: Option<WalletInfo>,
    request: Option<Event>,
}

/// A NIP-47 answer the exchange gives itself: the wallet does not offer
/// the method, so nothing was sent.
fn not_offered(method: &str) -> HttpResponse {
    HttpResponse::json(
        200,
        &json!({"result_type": method, "error": {"code": "NOT_IMPLEMENTED",
            "message": format!("the wallet's info event does not offer `{method}`; nothing was sent")}}),
    )
}

impl Exchange {
    /// Starts a call. With `known` (a recent info event of this wallet) the
    /// info read is skipped. `entropy`: 64 fresh random bytes.
    pub fn start(
        call: Call,
        known: Option<WalletInfo>,
        now_ms: u64,
        timeout_ms: u64,
        entropy: [u8; 64],
    ) -> (Exchange, Step) {
        let mut ex = Exchange {
            call,
            now_secs: now_ms / 1000,
            timeout_secs: timeout_ms.div_ceil(1000),
            entropy,
            phase: Phase::Info(None),
            info: None,
            request: None,
        };
        let step = match known {
            Some(info) => ex.subscribe(info, Vec::new()),
            None => Step::Send(vec![json!(["REQ", SUB_INFO, {"kinds": [KIND_INFO], "authors": [ex.call.wallet], "limit": 1}]).to_string()]),
        };
        (ex, step)
    }

    /// The wallet's info as read during this exchange (for a cache).
    pub fn learned_info(&self) -> Option<&WalletInfo> {
        self.info.as_ref()
    }

    /// The id of the published request, once built.
    pub fn request_id(&self) -> Option<&str> {
        self.request.as_ref().map(|e| e.id.as_str())
    }

    fn finish(&mut self, step: Step) -> Step {
        self.phase = Phase::Finished;
        step
    }

    /// Picks the method and encryption, builds the request and subscribes to its reply.
    fn subscribe(&mut self, info: WalletInfo, mut out: Vec<String>) -> Step {
        let method = if info.supports(&self.call.method) {
            self.call.method.clone()
        } else {
            match self.call.alt_method.clone().filter(|m| info.supports(m)) {
                Some(m) => m,
                None => {
                    let m = self.call.method.clone();
                    self.info = Some(info);
                    return self.finish(Step::Done(not_offered(&m)));
                }
            }
        };
        let mut body = self.call.body.clone();
        body["method"] = Value::from(method.as_str());
        let expiration = self.now_secs + self.timeout_secs + 60;
        let built = event::request_event(
            &self.call.keys,
            &self.call.wallet,
            &body.to_string(),
            info.encryption(),
            self.now_secs,
            expiration,
            &self.entropy,
        );
        self.info = Some(info);
        let request = match built {
            Ok(e) => e,
            Err(e) => {
                return self.finish(Step::Fail(TransportError::Network(format!(
                    "could not build the NWC request: {e}"
                ))))
            }
        };
        out.push(
            json!(["REQ", SUB_REPLY, {"kinds": [KIND_RESPONSE], "authors": [self.call.wallet],
                "#p": [self.call.keys.public_hex], "#e": [request.id]}])
            .to_string(),
        );
        self.request = Some(request);
        self.phase = Phase::Subscribed;
        Step::Send(out)
    }

    /// Handles one relay message.
    pub fn on_message(&mut self, text: &str) -> Step {
        if self.phase == Phase::Finished {
            return Step::Wait;
        }
        let Ok(Value::Array(msg)) = serde_json::from_str::<Value>(text) else {
            return Step::Wait;
        };
        let kind = msg.first().and_then(Value::as_str).unwrap_or("");
        let sub = msg.get(1).and_then(Value::as_str).unwrap_or("");
        match kind {
            "EVENT" => {
                let Some(e) = msg.get(2).and_then(Event::from_json) else {
                    return Step::Wait;
                };
                match sub {
                    SUB_INFO => self.on_info_event(e),
                    SUB_REPLY => self.on_reply(e),
                    _ => Step::Wait,
                }
            }
            "EOSE" => match (&self.phase, sub) {
                (Phase::Info(found), SUB_INFO) => {
                    let info = found
                        .clone()
                        .map(|(_, i)| i)
                        .unwrap_or_else(WalletInfo::unknown);
                    self.subscribe(info, vec![json!(["CLOSE", SUB_INFO]).to_string()])
                }
                (Phase::Subscribed, SUB_REPLY) => {
                    self.phase = Phase::Published;
                    match &self.request {
                        Some(e) => Step::Send(vec![json!(["EVENT", e.to_json()]).to_string()]),
                        None => self.finish(Step::Fail(TransportError::Network(
                            "no request to publish".into(),
                        ))),
                    }
                }
                _ => Step::Wait,
            },
            "OK" => {
                let ours = self.request_id().is_some_and(|id| id == sub);
                match (ours, msg.get(2).and_then(Value::as_bool)) {
                    (true, Some(false)) => {
                        let why = msg.get(3).and_then(Value::as_str).unwrap_or("");
                        self.finish(Step::Fail(TransportError::Network(format!(
                            "the relay refused the request: {}",
                            crate::error::snippet(why)
                        ))))
                    }
                    _ => Step::Wait,
                }
            }
            "CLOSED" if sub == SUB_INFO || sub == SUB_REPLY => {
                let why = msg.get(2).and_then(Value::as_str).unwrap_or("");
                self.finish(Step::Fail(TransportError::Network(format!(
                    "the relay closed the subscription: {}",
                    crate::error::snippet(why)
                ))))
            }
            // NOTICE, AUTH and anything else: nothing to do.
            _ => Step::Wait,
        }
    }

    fn on_info_event(&mut self, e: Event) -> Step {
        let Phase::Info(found) = &self.phase else {
            return Step::Wait;
        };
        if e.kind != KIND_INFO || e.pubkey != self.call.wallet || !e.is_authentic() {
            return Step::Wait;
        }
        let newer = found.as_ref().is_none_or(|(at, _)| e.created_at > *at);
        if newer {
            self.phase = Phase::Info(Some((e.created_at, WalletInfo::from_event(&e))));
        }
        Step::Wait
    }

    fn on_reply(&mut self, e: Event) -> Step {
        if !matches!(self.phase, Phase::Subscribed | Phase::Published) {
            return Step::Wait;
        }
        let Some(id) = self.request_id().map(str::to_string) else {
            return Step::Wait;
        };
        let addressed = e.kind == KIND_RESPONSE
            && e.pubkey == self.call.wallet
            && e.has_tag("e", &id)
            && e.has_tag("p", &self.call.keys.public_hex);
        if !addressed || !e.is_authentic() {
            return Step::Wait;
        }
        match event::decrypt_response(&self.call.keys, &self.call.wallet, &e.content) {
            Ok(plain) => self.finish(Step::Done(HttpResponse {
                status: 200,
                content_type: Some("application/json".into()),
                body: plain,
            })),
            // Not readable: not an answer we can use; the timeout decides.
            Err(_) => Step::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;
    use crate::nwc::event::{request_event, Encryption};

    const CLIENT: &str = "11";
    const WALLET: &str = "22";

    fn keys(b: &str) -> Keys {
        Keys::from_secret_hex(&b.repeat(32)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn http(method: &str, alt: Option<&str>) -> HttpRequest {
        let mut headers = vec![
            (HEADER_RELAY.to_string(), "wss://relay.example".to_string()),
            (HEADER_SECRET.to_string(), CLIENT.repeat(32)),
        ];
        if let Some(a) = alt {
            headers.push((HEADER_ALT_METHOD.to_string(), a.to_string()));
        }
        HttpRequest {
            method: Method::Post,
            url: format!("{SCHEME}{}/{method}", keys(WALLET).public_hex),
            headers,
            body: Some(json!({"method": method, "params": {"payment_hash": "ab"}}).to_string()),
        }
    }

    fn start(method: &str, alt: Option<&str>, known: Option<WalletInfo>) -> (Exchange, Step) {
        let call = Call::from_http(&http(method, alt)).unwrap_or_else(|e| panic!("{e:?}"));
        Exchange::start(call, known, 1_700_000_000_000, 10_000, [5u8; 64])
    }

    fn sent(step: Step) -> Vec<Value> {
        match step {
            Step::Send(v) => v
                .iter()
                .map(|m| serde_json::from_str(m).unwrap_or(Value::Null))
                .collect(),
            other => panic!("expected Send, got {other:?}"),
        }
    }

    fn info_event(content: &str, enc: Option<&str>, at: u64) -> Event {
        let tags = enc
            .map(|e| vec![vec!["encryption".to_string(), e.to_string()]])
            .unwrap_or_default();
        Event::signed(
            &keys(WALLET),
            at,
            KIND_INFO,
            tags,
            content.into(),
            &[1u8; 32],
        )
    }

    fn relay(kind: &str, sub: &str, e: &Event) -> String {
        json!([kind, sub, e.to_json()]).to_string()
    }

    /// The wallet's answer to `request`, written as a wallet would.
    fn reply_to(request: &Event, by: &str, body: &Value, enc: Encryption) -> Event {
        let wallet = keys(by);
        let client = keys(CLIENT);
        let content = match enc {
            Encryption::Nip44V2 => {
                let pk = super::super::crypto::parse_pubkey(&client.public_hex)
                    .unwrap_or_else(|e| panic!("{e}"));
                super::super::crypto::nip44::encrypt(
                    &super::super::crypto::nip44::conversation_key(&wallet, &pk),
                    &body.to_string(),
                    &[8u8; 32],
                )
                .unwrap_or_else(|e| panic!("{e}"))
            }
            Encryption::Nip04 => {
                request_event(
                    &wallet,
                    &client.public_hex,
                    &body.to_string(),
                    Encryption::Nip04,
                    0,
                    0,
                    &[8u8; 64],
                )
                .unwrap_or_else(|e| panic!("{e}"))
                .content
            }
        };
        Event::signed(
            &wallet,
            request.created_at,
            KIND_RESPONSE,
            vec![
                vec!["e".into(), request.id.clone()],
                vec!["p".into(), client.public_hex.clone()],
            ],
            content,
            &[2u8; 32],
        )
    }

    /// Runs the handshake up to the published request; returns it.
    fn publish(ex: &mut Exchange, info: Option<Event>) -> Event {
        if let Some(i) = info {
            assert_eq!(ex.on_message(&relay("EVENT", SUB_INFO, &i)), Step::Wait);
        }
        let out = sent(ex.on_message(&json!(["EOSE", SUB_INFO]).to_string()));
        assert_eq!(out[0], json!(["CLOSE", SUB_INFO]));
        assert_eq!(out[1][0], "REQ");
        // Subscribed before publishing: nothing is sent until the relay's EOSE.
        let out = sent(ex.on_message(&json!(["EOSE", SUB_REPLY]).to_string()));
        assert_eq!(out[0][0], "EVENT");
        Event::from_json(&out[0][1]).unwrap_or_else(|| panic!("event"))
    }

    #[test]
    fn full_round_trip_with_nip44() {
        let (mut ex, first) = start("lookup_invoice", None, None);
        let req = sent(first);
        assert_eq!(
            req[0],
            json!(["REQ", SUB_INFO, {"kinds": [13194], "authors": [keys(WALLET).public_hex], "limit": 1}])
        );
        let request = publish(
            &mut ex,
            Some(info_event(
                "lookup_invoice pay_invoice",
                Some("nip04 nip44_v2"),
                10,
            )),
        );
        assert!(request.is_authentic());
        assert_eq!(request.tag("encryption"), Some("nip44_v2"));
        assert_eq!(request.tag("expiration"), Some("1700000070"));
        // The subscription names this request, us and the wallet.
        let answer = json!({"result_type": "lookup_invoice", "result": {"state": "settled"}});
        let reply = reply_to(&request, WALLET, &answer, Encryption::Nip44V2);
        match ex.on_message(&relay("EVENT", SUB_REPLY, &reply)) {
            Step::Done(r) => {
                assert_eq!(r.status, 200);
                assert_eq!(serde_json::from_str::<Value>(&r.body).ok(), Some(answer));
            }
            other => panic!("{other:?}"),
        }
        assert!(ex.learned_info().is_some_and(|i| i.nip44));
        // A duplicate of the reply after the answer is ignored.
        assert_eq!(
            ex.on_message(&relay("EVENT", SUB_REPLY, &reply)),
            Step::Wait
        );
    }

    #[test]
    fn subscription_filter_names_request_client_and_wallet() {
        let (mut ex, _) = start("get_balance", None, None);
        let out = sent(ex.on_message(&json!(["EOSE", SUB_INFO]).to_string()));
        let filter = &out[1][2];
        assert_eq!(filter["kinds"], json!([23195]));
        assert_eq!(filter["authors"], json!([keys(WALLET).public_hex]));
        assert_eq!(filter["#p"], json!([keys(CLIENT).public_hex]));
        assert_eq!(filter["#e"], json!([ex.request_id().unwrap_or("")]));
    }

    #[test]
    fn without_an_info_event_nip04_is_used() {
        let (mut ex, _) = start("pay_invoice", None, None);
        let request = publish(&mut ex, None);
        assert_eq!(request.tag("encryption"), None);
        assert!(request.content.contains("?iv="));
        let answer = json!({"result_type": "pay_invoice", "result": {"preimage": "aa"}});
        let reply = reply_to(&request, WALLET, &answer, Encryption::Nip04);
        assert!(matches!(
            ex.on_message(&relay("EVENT", SUB_REPLY, &reply)),
            Step::Done(_)
        ));
    }

    #[test]
    fn replies_from_others_for_others_or_forged_are_ignored() {
        let (mut ex, _) = start("pay_invoice", None, None);
        let request = publish(
            &mut ex,
            Some(info_event("pay_invoice", Some("nip44_v2"), 1)),
        );
        let answer = json!({"result_type": "pay_invoice", "result": {"preimage": "aa"}});
        // Another author (a valid signature, the right tags).
        let stranger = reply_to(&request, "33", &answer, Encryption::Nip44V2);
        assert_eq!(
            ex.on_message(&relay("EVENT", SUB_REPLY, &stranger)),
            Step::Wait
        );
        // A late reply to an earlier request.
        let mut earlier = request.clone();
        earlier.id = "ee".repeat(32);
        let late = reply_to(&earlier, WALLET, &answer, Encryption::Nip44V2);
        assert_eq!(ex.on_message(&relay("EVENT", SUB_REPLY, &late)), Step::Wait);
        // The wallet's pubkey on a forged event.
        let mut forged = reply_to(&request, "33", &answer, Encryption::Nip44V2);
        forged.pubkey = keys(WALLET).public_hex;
        assert_eq!(
            ex.on_message(&relay("EVENT", SUB_REPLY, &forged)),
            Step::Wait
        );
        // Garbage and other subscriptions.
        assert_eq!(ex.on_message("not json"), Step::Wait);
        assert_eq!(
            ex.on_message(&json!(["NOTICE", "hello"]).to_string()),
            Step::Wait
        );
        assert_eq!(
            ex.on_message(&relay("EVENT", "other", &request)),
            Step::Wait
        );
        // Then the real one.
        let real = reply_to(&request, WALLET, &answer, Encryption::Nip44V2);
        assert!(matches!(
            ex.on_message(&relay("EVENT", SUB_REPLY, &real)),
            Step::Done(_)
        ));
    }

    #[test]
    fn an_info_event_from_another_author_is_ignored() {
        let (mut ex, _) = start("pay_invoice", None, None);
        let fake = Event::signed(
            &keys("33"),
            5,
            KIND_INFO,
            vec![vec!["encryption".into(), "nip44_v2".into()]],
            "make_invoice".into(),
            &[0u8; 32],
        );
        assert_eq!(ex.on_message(&relay("EVENT", SUB_INFO, &fake)), Step::Wait);
        let request = publish(&mut ex, None);
        assert_eq!(
            request.tag("encryption"),
            None,
            "the stranger's nip44 claim was not used"
        );
    }

    #[test]
    fn a_method_the_wallet_does_not_offer_is_never_sent() {
        let (mut ex, _) = start("pay_invoice", None, None);
        ex.on_message(&relay(
            "EVENT",
            SUB_INFO,
            &info_event("make_invoice lookup_invoice", Some("nip44_v2"), 1),
        ));
        match ex.on_message(&json!(["EOSE", SUB_INFO]).to_string()) {
            Step::Done(r) => assert!(r.body.contains("NOT_IMPLEMENTED"), "{}", r.body),
            other => panic!("{other:?}"),
        }
        assert!(ex.request_id().is_none(), "no request was built");
    }

    #[test]
    fn the_alternative_method_is_used_when_the_first_is_not_offered() {
        let (mut ex, _) = start("get_balance", Some("get_info"), None);
        ex.on_message(&relay(
            "EVENT",
            SUB_INFO,
            &info_event("get_info make_invoice", Some("nip44_v2"), 1),
        ));
        let request = publish(&mut ex, None);
        let wallet = keys(WALLET);
        let plain = event::decrypt_response(&wallet, &keys(CLIENT).public_hex, &request.content)
            .unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<Value>(&plain)
                .ok()
                .map(|v| v["method"].clone()),
            Some(json!("get_info"))
        );
    }

    #[test]
    fn a_known_info_skips_the_info_read() {
        let known = WalletInfo {
            methods: vec![],
            nip44: true,
        };
        let (mut ex, first) = start("get_balance", None, Some(known));
        let out = sent(first);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][1], SUB_REPLY);
        assert!(matches!(
            ex.on_message(&json!(["EOSE", SUB_REPLY]).to_string()),
            Step::Send(_)
        ));
    }

    #[test]
    fn relay_refusals_are_network_errors() {
        let (mut ex, _) = start("pay_invoice", None, None);
        let request = publish(&mut ex, None);
        assert_eq!(
            ex.on_message(&json!(["OK", request.id, true, ""]).to_string()),
            Step::Wait
        );
        match ex.on_message(&json!(["OK", request.id, false, "blocked: rate"]).to_string()) {
            Step::Fail(TransportError::Network(m)) => assert!(m.contains("blocked"), "{m}"),
            other => panic!("{other:?}"),
        }
        let (mut ex, _) = start("pay_invoice", None, None);
        assert!(matches!(
            ex.on_message(&json!(["CLOSED", SUB_INFO, "auth-required: no"]).to_string()),
            Step::Fail(TransportError::Network(_))
        ));
    }

    #[test]
    fn malformed_calls_are_refused_without_echoing_the_secret() {
        let mut r = http("get_balance", None);
        r.headers.retain(|(k, _)| k != HEADER_SECRET);
        r.headers
            .push((HEADER_SECRET.into(), "zz-not-hex-secret".into()));
        let e = Call::from_http(&r)
            .err()
            .map(|e| format!("{e:?}"))
            .unwrap_or_default();
        assert!(e.contains("secret") && !e.contains("zz-not-hex"), "{e}");
        let ok = Call::from_http(&http("get_balance", None)).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!format!("{ok:?}").contains(&CLIENT.repeat(32)));
        let mut r = http("get_balance", None);
        r.url = "https://example.test/x".into();
        assert!(Call::from_http(&r).is_err());
    }
}
