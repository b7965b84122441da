//! LNURL-pay resolution (LUD-06, LUD-16 addresses, LUD-12 comments): from a
//! payRequest URL to a BOLT11 invoice for exactly the requested amount.
//! Everything a remote server says is checked: the range, the amount, the
//! network and the expiry of the invoice it returns (a hostile server can
//! inflate the amount).

use bitcoin_hashes::{sha256, Hash};
use serde_json::Value;

use crate::core::bolt11::{self, Expectation, Network};
use crate::core::http::{HttpRequest, HttpResponse, Runtime, TransportError};
use crate::core::payout::safe_url::UrlPolicy;

/// LNURL responses are small; anything bigger is refused.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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
        .send(HttpRequest::get(checked.to_string()), p.timeout_ms)
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
        let reason = v
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
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

/// Resolves `url` (a payRequest endpoint) to an invoice.
pub async fn resolve<R: Runtime>(
    rt: &R,
    url: &str,
    p: &ResolveParams<'_>,
) -> Result<ResolvedInvoice, ResolveError> {
    let pay = get_json(rt, url, p).await?;
    if pay.get("tag").and_then(Value::as_str) != Some("payRequest") {
        return Err(ResolveError::Protocol(
            "not an LNURL-pay endpoint (tag is not payRequest)".into(),
        ));
    }
    let callback = pay
        .get("callback")
        .and_then(Value::as_str)
        .ok_or_else(|| ResolveError::Protocol("payRequest has no callback".into()))?;
    let (min, max) = match (u64_of(&pay, "minSendable"), u64_of(&pay, "maxSendable")) {
        (Some(a), Some(b)) if a <= b => (a, b),
        _ => {
            return Err(ResolveError::Protocol(
                "payRequest has no valid minSendable/maxSendable".into(),
            ))
        }
    };
    if p.amount_msat < min || p.amount_msat > max {
        return Err(ResolveError::Protocol(format!(
            "amount {} sat is outside what the recipient accepts ({} to {} sat)",
            p.amount_msat / 1000,
            min.div_ceil(1000),
            max / 1000
        )));
    }
    let comment_allowed = u64_of(&pay, "commentAllowed").unwrap_or(0);
    if let Some(c) = p.comment {
        if comment_allowed == 0 {
            return Err(ResolveError::Protocol(
                "the recipient does not accept comments".into(),
            ));
        }
        if c.chars().count() as u64 > comment_allowed {
            return Err(ResolveError::Protocol(format!(
                "the recipient accepts comments of at most {comment_allowed} characters"
            )));
        }
    }
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
    if let Some(meta) = pay.get("metadata").and_then(Value::as_str) {
        let expected = sha256::Hash::hash(meta.as_bytes()).to_string();
        if inv.description_hash.as_deref() != Some(expected.as_str()) {
            // LUD-06 asks for it, real servers often skip it: warn, do not refuse.
            warnings.push("invoice description_hash does not match the payRequest metadata".into());
        }
    }
    Ok(ResolvedInvoice {
        invoice: pr.to_ascii_lowercase(),
        expires_at_secs: inv.expires_at_secs(),
        payment_hash: inv.payment_hash,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::providers::mock::sign_invoice;
    use crate::core::testing::{FakeRuntime, Reply};
    use futures_executor::block_on;
    use serde_json::json;
    use std::rc::Rc;

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

    /// A callback that returns an invoice for `factor` × the requested amount.
    fn callback(factor: u64, network: Network) -> Reply {
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
                    None,
                    600,
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
            "description_hash mismatch is only a warning"
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
}
