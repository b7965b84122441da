//! LNURL-pay resolution (LUD-06, LUD-16 addresses, LUD-12 comments): from a
//! payRequest URL to a BOLT11 invoice for exactly the requested amount.
//! Everything a remote server says is checked: the range, the amount, the
//! network, the description hash and the remaining lifetime of the invoice
//! it returns (a hostile server can inflate the amount), and every answer is
//! read under a 64 KiB cap enforced while the body streams in.

use serde_json::Value;

use crate::payout::safe_url::UrlPolicy;
use backends::bolt11::{self, Expectation, Network};
use backends::http::{HttpRequest, HttpResponse, ReadLimits, Runtime, TransportError};

/// LNURL responses are small; anything bigger is refused, and the runtime
/// stops reading as soon as a body passes this (chunked bodies included).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A recipient's invoice must stay payable at least this long after it is
/// fetched: a pay attempt, a timeout and the lookups that settle an unknown
/// outcome all have to fit before it expires. Shorter-lived invoices are
/// refused (`ResolveError::Protocol`), so a recipient that keeps issuing
/// them cannot make the queue fetch invoice after invoice.
pub const MIN_INVOICE_LIFETIME_SECS: u64 = 120;

#[derive(Debug, Clone, PartialEq)]
pub enum ResolveError {
    /// The URL (or the callback it names) is not allowed.
    Refused(String),
    /// No answer, a timeout or a 5xx: worth trying later.
    Unreachable(String),
    /// The server answered, but not with a usable invoice.
    Protocol(String),
}

impl ResolveError {
    pub fn message(&self) -> &str {
        match self {
            ResolveError::Refused(m) | ResolveError::Unreachable(m) | ResolveError::Protocol(m) => {
                m
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedInvoice {
    pub invoice: String,
    pub payment_hash: String,
    pub expires_at_secs: u64,
    /// Deviations that real servers commit and payers tolerate.
    pub warnings: Vec<String>,
}

pub struct ResolveParams<'a> {
    pub amount_msat: u64,
    pub comment: Option<&'a str>,
    pub network: Network,
    pub policy: &'a UrlPolicy,
    pub timeout_ms: u64,
    /// The invoice must not expire sooner than this many seconds from now
    /// (normally [`MIN_INVOICE_LIFETIME_SECS`]).
    pub min_lifetime_secs: u64,
}

async fn get_json<R: Runtime>(
    rt: &R,
    url: &str,
    p: &ResolveParams<'_>,
) -> Result<Value, ResolveError> {
    let checked = p
        .policy
        .check(url)
        .map_err(|e| ResolveError::Refused(format!("{url}: {e}")))?;
    let resp: HttpResponse = rt
        .send_limited(
            HttpRequest::get(checked.to_string()),
            p.timeout_ms,
            ReadLimits::capped(MAX_BODY_BYTES),
        )
        .await
        .map_err(|e| match e {
            TransportError::Timeout => ResolveError::Unreachable(format!(
                "{}: timed out",
                checked.host_str().unwrap_or("")
            )),
            TransportError::Network(m) => {
                ResolveError::Unreachable(format!("{}: {m}", checked.host_str().unwrap_or("")))
            }
            TransportError::TooLarge => ResolveError::Protocol("response too large".into()),
            TransportError::SlowBody => {
                ResolveError::Protocol("the server sent its answer too slowly".into())
            }
        })?;
    if resp.body.len() > MAX_BODY_BYTES {
        return Err(ResolveError::Protocol("response too large".into()));
    }
    match resp.status {
        200..=299 => {}
        300..=399 => {
            return Err(ResolveError::Protocol(format!(
                "HTTP {}: redirects are not followed",
                resp.status
            )))
        }
        429 | 500..=599 => return Err(ResolveError::Unreachable(format!("HTTP {}", resp.status))),
        s => {
            return Err(ResolveError::Protocol(format!(
                "HTTP {s} from {}",
                checked.host_str().unwrap_or("")
            )))
        }
    }
    let v: Value = serde_json::from_str(&resp.body)
        .map_err(|_| ResolveError::Protocol("the answer is not JSON".into()))?;
    if v.get("status")
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("ERROR"))
    {
        // The server's words are stored and shown: one line, capped.
        let reason = v
            .get("reason")
            .and_then(Value::as_str)
            .map(backends::error::snippet)
            .unwrap_or_else(|| "no reason given".into());
        return Err(ResolveError::Protocol(format!(
            "the LNURL server refused: {reason}"
        )));
    }
    Ok(v)
}

fn u64_of(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Checks the invoice's description hash (BOLT11 `h` tag) against the
/// payRequest `metadata` string (LUD-06).
///
/// - An `h` tag that is present must equal sha256 of the metadata string's
///   UTF-8 bytes; anything else is refused (`Protocol`): the invoice commits
///   to a different description than the one the recipient published (or
///   the payRequest carried no metadata to check it against).
/// - An invoice without an `h` tag (only a `d` description) is accepted with
///   a warning. LUD-06 once told wallets to verify the hash, but
///   lnurl/luds PR #234 dropped that step (2023) because Lightning Address
///   servers backed by Cashu mints and other custodians cannot set a
///   description hash, and the major payers (Alby, Breez, BlueWallet,
///   BTCPay, LNbits, Stacker News) removed the check. Refusing such
///   invoices would break real recipients; the amount, network and expiry
///   checks, which are what protect the payer's money, still apply.
///
/// LNbits 1.6.2's own Lightning Addresses hash exactly the metadata string
/// they serve, so they pass.
fn check_description_hash(
    metadata: Option<&str>,
    invoice_hash: Option<&str>,
) -> Result<Option<String>, ResolveError> {
    match (invoice_hash, metadata) {
        (None, _) => Ok(Some(
            "the invoice has no description hash (only a description): it does not commit \
             to the payRequest metadata"
                .into(),
        )),
        (Some(found), Some(meta)) => {
            let expected = backends::sha256::hex_digest(meta.as_bytes());
            if found.eq_ignore_ascii_case(&expected) {
                Ok(None)
            } else {
                Err(ResolveError::Protocol(format!(
                    "the returned invoice's description hash {found} is not the hash of the \
                     payRequest metadata ({expected})"
                )))
            }
        }
        (Some(_), None) => Err(ResolveError::Protocol(
            "the returned invoice has a description hash but the payRequest has no metadata \
             to check it against"
                .into(),
        )),
    }
}

/// Resolves `url` (a payRequest endpoint) to an invoice.
pub async fn resolve<R: Runtime>(
    rt: &R,
    url: &str,
    p: &ResolveParams<'_>,
) -> Result<ResolvedInvoice, ResolveError> {
    let pay = get_json(rt, url, p).await?;
    let callback = check_pay_request(&pay, p)?;
    let mut cb = p
        .policy
        .check(callback)
        .map_err(|e| ResolveError::Refused(format!("callback {callback}: {e}")))?;
    {
        let mut q = cb.query_pairs_mut();
        q.append_pair("amount", &p.amount_msat.to_string());
        if let Some(c) = p.comment {
            q.append_pair("comment", c);
        }
    }
    let answer = get_json(rt, cb.as_str(), p).await?;
    let pr = answer
        .get("pr")
        .and_then(Value::as_str)
        .ok_or_else(|| ResolveError::Protocol("the callback returned no invoice (pr)".into()))?;
    let want = Expectation {
        network: p.network,
        amount_msat: p.amount_msat,
        payment_hash: None,
        now_secs: rt.now_ms() / 1000,
    };
    let inv = bolt11::verify(pr, &want)
        .map_err(|e| ResolveError::Protocol(format!("the returned invoice is unusable: {e}")))?;
    let mut warnings = Vec::new();
    if let Some(w) = check_description_hash(
        pay.get("metadata").and_then(Value::as_str),
        inv.description_hash.as_deref(),
    )? {
        warnings.push(w);
    }
    let remaining = inv.expires_at_secs().saturating_sub(want.now_secs);
    if remaining < p.min_lifetime_secs {
        return Err(ResolveError::Protocol(format!(
            "the recipient's invoice expires in {remaining} s, too soon to pay safely \
             (at least {} s are needed)",
            p.min_lifetime_secs
        )));
    }
    Ok(ResolvedInvoice {
        invoice: pr.to_ascii_lowercase(),
        expires_at_secs: inv.expires_at_secs(),
        payment_hash: inv.payment_hash,
        warnings,
    })
}

/// The payRequest's promises (LUD-06, LUD-12): its tag, a callback, the
/// amount within its bounds, a comment it accepts. Its callback.
fn check_pay_request<'a>(pay: &'a Value, p: &ResolveParams<'_>) -> Result<&'a str, ResolveError> {
    let protocol = |m: String| Err(ResolveError::Protocol(m));
    if pay.get("tag").and_then(Value::as_str) != Some("payRequest") {
        return protocol("not an LNURL-pay endpoint (tag is not payRequest)".into());
    }
    let callback = pay
        .get("callback")
        .and_then(Value::as_str)
        .ok_or_else(|| ResolveError::Protocol("payRequest has no callback".into()))?;
    let (min, max) = match (u64_of(pay, "minSendable"), u64_of(pay, "maxSendable")) {
        (Some(a), Some(b)) if a <= b => (a, b),
        _ => return protocol("payRequest has no valid minSendable/maxSendable".into()),
    };
    if p.amount_msat < min || p.amount_msat > max {
        return protocol(format!(
            "amount {} sat is outside what the recipient accepts ({} to {} sat)",
            p.amount_msat / 1000,
            min.div_ceil(1000),
            max / 1000
        ));
    }
    let comment_allowed = u64_of(pay, "commentAllowed").unwrap_or(0);
    if let Some(c) = p.comment {
        if comment_allowed == 0 {
            return protocol("the recipient does not accept comments".into());
        }
        if c.chars().count() as u64 > comment_allowed {
            return protocol(format!(
                "the recipient accepts comments of at most {comment_allowed} characters"
            ));
        }
    }
    Ok(callback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backends::mock::sign_invoice;
    use futures_executor::block_on;
    use proptest::prelude::*;
    use serde_json::json;
    use std::rc::Rc;
    use testkit::{FakeRuntime, Reply};

    const NOW_MS: u64 = 1_700_000_000_000;

    fn policy() -> UrlPolicy {
        UrlPolicy::default()
    }

    fn pay_request(min: u64, max: u64, callback: &str) -> Reply {
        Reply::Respond(
            HttpResponse::json(
                200,
                &json!({"tag": "payRequest", "callback": callback, "minSendable": min, "maxSendable": max, "metadata": "[[\"text/plain\",\"hi\"]]", "commentAllowed": 10}),
            ),
            5,
        )
    }

    /// The metadata string `pay_request` serves.
    const META: &str = "[[\"text/plain\",\"hi\"]]";

    fn meta_hash() -> String {
        backends::sha256::hex_digest(META.as_bytes())
    }

    /// A callback that returns an invoice for `factor` × the requested amount.
    fn callback(factor: u64, network: Network) -> Reply {
        callback_with(factor, network, None, 600)
    }

    /// A callback whose invoice has description hash `h` (else a plain
    /// description) and expires `expiry` seconds after it is issued.
    fn callback_with(factor: u64, network: Network, h: Option<String>, expiry: u64) -> Reply {
        Reply::Func(
            Rc::new(move |req: &HttpRequest, now: u64| {
                let url = url::Url::parse(&req.url).unwrap_or_else(|_| panic!("url"));
                let amount: u64 = url
                    .query_pairs()
                    .find(|(k, _)| k == "amount")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                match sign_invoice(
                    network,
                    amount * factor,
                    "x",
                    h.as_deref(),
                    expiry,
                    now / 1000,
                    [3; 32],
                ) {
                    Ok(i) => {
                        HttpResponse::json(200, &json!({"pr": i.payment_request, "routes": []}))
                    }
                    Err(e) => HttpResponse::json(500, &json!({"e": e})),
                }
            }),
            5,
        )
    }

    fn params<'a>(
        amount_msat: u64,
        comment: Option<&'static str>,
        p: &'a UrlPolicy,
    ) -> ResolveParams<'a> {
        ResolveParams {
            amount_msat,
            comment,
            network: Network::Bitcoin,
            policy: p,
            timeout_ms: 1000,
            min_lifetime_secs: MIN_INVOICE_LIFETIME_SECS,
        }
    }

    #[test]
    fn resolves_an_address_to_a_checked_invoice() {
        let rt = FakeRuntime::new(NOW_MS);
        rt.on(
            "https://example.com/.well-known",
            vec![pay_request(1_000, 1_000_000, "https://example.com/cb")],
        );
        rt.on(
            "https://example.com/cb",
            vec![callback(1, Network::Bitcoin)],
        );
        let pol = policy();
        let r = block_on(resolve(
            &rt,
            "https://example.com/.well-known/lnurlp/alice",
            &params(21_000, Some("thanks"), &pol),
        ));
        let r = r.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            r.warnings.len(),
            1,
            "an invoice without a description hash is accepted with a warning"
        );
        let sent = rt.sent.borrow();
        assert!(
            sent[1].0.contains("amount=21000") && sent[1].0.contains("comment=thanks"),
            "{:?}",
            sent[1]
        );
    }

    #[test]
    fn refuses_inflated_amounts_wrong_network_and_out_of_range() {
        let pol = policy();
        let rt = FakeRuntime::new(NOW_MS);
        rt.on(
            "https://example.com/.well-known",
            vec![pay_request(1_000, 1_000_000, "https://example.com/cb")],
        );
        rt.on(
            "https://example.com/cb",
            vec![callback(2, Network::Bitcoin)],
        );
        let r = block_on(resolve(
            &rt,
            "https://example.com/.well-known/lnurlp/a",
            &params(21_000, None, &pol),
        ));
        assert!(
            matches!(&r, Err(ResolveError::Protocol(m)) if m.contains("amount")),
            "{r:?}"
        );

        let rt = FakeRuntime::new(NOW_MS);
        rt.on(
            "https://example.com/.well-known",
            vec![pay_request(1_000, 1_000_000, "https://example.com/cb")],
        );
        rt.on(
            "https://example.com/cb",
            vec![callback(1, Network::Testnet)],
        );
        let r = block_on(resolve(
            &rt,
            "https://example.com/.well-known/lnurlp/a",
            &params(21_000, None, &pol),
        ));
        assert!(
            matches!(&r, Err(ResolveError::Protocol(m)) if m.contains("testnet")),
            "{r:?}"
        );

        let r = block_on(resolve(
            &rt,
            "https://example.com/.well-known/lnurlp/a",
            &params(5_000_000, None, &pol),
        ));
        assert!(
            matches!(&r, Err(ResolveError::Protocol(m)) if m.contains("outside")),
            "{r:?}"
        );
        let r = block_on(resolve(
            &rt,
            "https://example.com/.well-known/lnurlp/a",
            &params(21_000, Some("this comment is too long"), &pol),
        ));
        assert!(
            matches!(&r, Err(ResolveError::Protocol(m)) if m.contains("at most 10")),
            "{r:?}"
        );
    }

    #[test]
    fn a_servers_refusal_reason_is_kept_to_one_short_line() {
        let rt = FakeRuntime::new(NOW_MS);
        let long = format!("line one\nline two {}", "x".repeat(10_000));
        rt.on(
            "https://long.example.com/",
            vec![Reply::Respond(
                HttpResponse::json(200, &json!({"status": "ERROR", "reason": long})),
                5,
            )],
        );
        let pol = policy();
        let r = block_on(resolve(
            &rt,
            "https://long.example.com/x",
            &params(1_000, None, &pol),
        ));
        match r {
            Err(ResolveError::Protocol(m)) => {
                assert!(m.len() < 300 && !m.contains('\n'), "{m}");
                assert!(m.contains("line one line two"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_redirects_html_and_private_callbacks() {
        let pol = policy();
        let rt = FakeRuntime::new(NOW_MS);
        rt.on(
            "https://err.example.com/",
            vec![Reply::Respond(
                HttpResponse::json(200, &json!({"status": "ERROR", "reason": "no such user"})),
                5,
            )],
        );
        rt.on(
            "https://redirect.example.com/",
            vec![Reply::Respond(
                HttpResponse {
                    status: 302,
                    content_type: None,
                    body: String::new(),
                },
                5,
            )],
        );
        rt.on(
            "https://html.example.com/",
            vec![Reply::Respond(
                HttpResponse {
                    status: 200,
                    content_type: Some("text/html".into()),
                    body: "<html>".into(),
                },
                5,
            )],
        );
        rt.on(
            "https://private.example.com/",
            vec![pay_request(1, 10_000_000, "https://10.0.0.1/cb")],
        );
        rt.on(
            "https://down.example.com/",
            vec![Reply::Respond(HttpResponse::json(503, &json!({})), 5)],
        );
        let r = |u: &str| block_on(resolve(&rt, u, &params(1_000, None, &pol)));
        assert!(
            matches!(r("https://err.example.com/x"), Err(ResolveError::Protocol(m)) if m.contains("no such user"))
        );
        assert!(
            matches!(r("https://redirect.example.com/x"), Err(ResolveError::Protocol(m)) if m.contains("redirect"))
        );
        assert!(matches!(
            r("https://html.example.com/x"),
            Err(ResolveError::Protocol(_))
        ));
        assert!(matches!(
            r("https://private.example.com/x"),
            Err(ResolveError::Refused(_))
        ));
        assert!(matches!(
            r("https://down.example.com/x"),
            Err(ResolveError::Unreachable(_))
        ));
        assert!(matches!(
            r("http://plain.example.com/x"),
            Err(ResolveError::Refused(_))
        ));
        assert_eq!(
            rt.calls_to("http://plain"),
            0,
            "refused URLs are never fetched"
        );
    }

    /// A server at example.com whose callback answers with `cb`.
    fn server(cb: Reply) -> FakeRuntime {
        let rt = FakeRuntime::new(NOW_MS);
        rt.on(
            "https://example.com/.well-known",
            vec![pay_request(1_000, 1_000_000, "https://example.com/cb")],
        );
        rt.on("https://example.com/cb", vec![cb]);
        rt
    }

    fn resolve_at(rt: &FakeRuntime, pol: &UrlPolicy) -> Result<ResolvedInvoice, ResolveError> {
        block_on(resolve(
            rt,
            "https://example.com/.well-known/lnurlp/alice",
            &params(21_000, None, pol),
        ))
    }

    #[test]
    fn a_matching_description_hash_passes_without_warnings() {
        let pol = policy();
        let rt = server(callback_with(1, Network::Bitcoin, Some(meta_hash()), 600));
        let r = resolve_at(&rt, &pol).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn a_mismatched_description_hash_is_refused() {
        let pol = policy();
        let other = backends::sha256::hex_digest(b"[[\"text/plain\",\"something else\"]]");
        let rt = server(callback_with(1, Network::Bitcoin, Some(other), 600));
        let r = resolve_at(&rt, &pol);
        assert!(
            matches!(&r, Err(ResolveError::Protocol(m)) if m.contains("description hash")),
            "{r:?}"
        );
    }

    #[test]
    fn a_description_hash_without_metadata_to_check_is_refused() {
        let pol = policy();
        let rt = FakeRuntime::new(NOW_MS);
        rt.on(
            "https://example.com/.well-known",
            vec![Reply::Respond(
                HttpResponse::json(
                    200,
                    &json!({"tag": "payRequest", "callback": "https://example.com/cb", "minSendable": 1000, "maxSendable": 1_000_000}),
                ),
                5,
            )],
        );
        rt.on(
            "https://example.com/cb",
            vec![callback_with(1, Network::Bitcoin, Some(meta_hash()), 600)],
        );
        let r = resolve_at(&rt, &pol);
        assert!(
            matches!(&r, Err(ResolveError::Protocol(m)) if m.contains("no metadata")),
            "{r:?}"
        );
    }

    #[test]
    fn invoices_that_expire_too_soon_are_refused() {
        let pol = policy();
        for expiry in [5, MIN_INVOICE_LIFETIME_SECS - 1] {
            let rt = server(callback_with(
                1,
                Network::Bitcoin,
                Some(meta_hash()),
                expiry,
            ));
            let r = resolve_at(&rt, &pol);
            assert!(
                matches!(&r, Err(ResolveError::Protocol(m))
                    if m.contains(&format!("expires in {expiry} s, too soon to pay safely"))),
                "{expiry}: {r:?}"
            );
        }
        let rt = server(callback_with(
            1,
            Network::Bitcoin,
            Some(meta_hash()),
            MIN_INVOICE_LIFETIME_SECS,
        ));
        assert!(
            resolve_at(&rt, &pol).is_ok(),
            "exactly the minimum is enough"
        );
    }

    #[test]
    fn answers_are_read_under_the_64_kib_cap() {
        let pol = policy();
        // A valid-looking callback answer padded past the cap.
        let padded = Reply::Respond(
            HttpResponse::json(
                200,
                &json!({"pr": "lnbc1", "pad": "x".repeat(MAX_BODY_BYTES)}),
            ),
            5,
        );
        let rt = server(padded);
        let r = resolve_at(&rt, &pol);
        assert!(
            matches!(&r, Err(ResolveError::Protocol(m)) if m.contains("too large")),
            "{r:?}"
        );
        // Both requests asked the runtime to stop reading at 64 KiB, which the
        // Worker enforces while the body streams in.
        let limits = rt.limits.borrow();
        assert_eq!(limits.len(), 2);
        for (url, l) in limits.iter() {
            assert_eq!(*l, ReadLimits::capped(MAX_BODY_BYTES), "{url}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            Just(Value::from("payRequest")),
            Just(Value::from("ERROR")),
            Just(Value::from("https://example.com/cb")),
            Just(Value::from("http://127.0.0.1/cb")),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("tag".to_string()),
                        Just("callback".to_string()),
                        Just("minSendable".to_string()),
                        Just("maxSendable".to_string()),
                        Just("metadata".to_string()),
                        Just("commentAllowed".to_string()),
                        Just("status".to_string()),
                        Just("reason".to_string()),
                        Just("pr".to_string()),
                        ".{0,8}",
                    ],
                    inner,
                    0..8,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn raw(status: u16, body: String) -> Reply {
        Reply::Respond(
            HttpResponse {
                status,
                content_type: Some("application/json".into()),
                body,
            },
            5,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

        /// Whatever the payRequest endpoint answers (any status, any text),
        /// resolving never panics and, lacking a real invoice, is refused.
        #[test]
        fn any_pay_request_text_is_refused_cleanly(
            status in prop_oneof![Just(200u16), 100u16..600],
            body in ".{0,300}",
        ) {
            let pol = policy();
            let rt = FakeRuntime::new(NOW_MS);
            rt.on("https://example.com/", vec![raw(status, body)]);
            let r = block_on(resolve(&rt, "https://example.com/x", &params(21_000, None, &pol)));
            prop_assert!(r.is_err(), "{:?}", r);
        }

        /// Arbitrary JSON at either step never panics and never yields an
        /// invoice; only https://example.com is ever fetched.
        #[test]
        fn any_json_at_either_step_is_refused_cleanly(
            first in json_value(),
            second in json_value(),
            comment in proptest::option::of("[a-z ]{0,20}"),
        ) {
            let pol = policy();
            let rt = FakeRuntime::new(NOW_MS);
            rt.on("https://example.com/cb", vec![raw(200, second.to_string())]);
            rt.on("https://example.com/", vec![raw(200, first.to_string())]);
            let p = ResolveParams {
                comment: comment.as_deref(),
                ..params(21_000, None, &pol)
            };
            let r = block_on(resolve(&rt, "https://example.com/x", &p));
            prop_assert!(r.is_err(), "{:?}", r);
            for (url, _) in rt.sent.borrow().iter() {
                prop_assert!(url.starts_with("https://example.com/"), "{}", url);
            }
        }

        /// A well-formed payRequest whose callback answers with any JSON,
        /// or with a `pr` that is any string, is refused cleanly.
        #[test]
        fn any_callback_answer_is_refused_cleanly(
            answer in json_value(),
            pr in ".{0,200}",
            use_pr in any::<bool>(),
        ) {
            let pol = policy();
            let body = if use_pr { json!({"pr": pr}).to_string() } else { answer.to_string() };
            let rt = server(raw(200, body));
            prop_assert!(resolve_at(&rt, &pol).is_err());
        }
    }
}
