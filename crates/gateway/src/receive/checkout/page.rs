//! The checkout page as HTML: server-rendered in each of its states, with
//! one stylesheet and one script that the Content-Security-Policy allows
//! by hash (no inline handlers, nothing else runs). The script only makes
//! it live: it counts down, copies, polls `check-invoice` and reloads when
//! the state changes. Without it the page refreshes itself.

use std::sync::OnceLock;

use crate::health::status_page::{csp_hash, escape};
use crate::receive::checkout::qr;
use crate::receive::checkout::settings::CheckoutSettings;
use crate::receive::checkout::view::{amount, time_left, CheckoutView, PageState};
use crate::time::iso8601_ms;

/// Without JavaScript, an open page reloads this often (seconds).
pub const NOSCRIPT_REFRESH_OPEN_SECS: u32 = 5;
/// ... and an expired one, in case it is paid late.
pub const NOSCRIPT_REFRESH_EXPIRED_SECS: u32 = 30;
/// The paid page sends the browser to `success_url` after this.
pub const REDIRECT_AFTER_SECS: u32 = 3;

pub const STYLE: &str = "
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#17202e;background:#f3f5f8}
main{max-width:26rem;margin:0 auto;padding:1.25rem 1rem 2rem;background:#fff;min-height:100vh}
.shop{margin:0;color:#3e4a5c;font-weight:600}
h1{margin:.2rem 0 .1rem;font-size:1.9rem}
.desc{margin:0 0 1rem;color:#3e4a5c;overflow-wrap:anywhere}
.status{margin:0 0 1rem;padding:.6rem .8rem;border-radius:8px;font-weight:600;background:#eef2f7}
.status.paid{background:#dcf5e4;color:#0d5a2a}.status.expired{background:#fde6e4;color:#8a1c12}
.qrlink{display:block;margin:0 auto 1rem;max-width:20rem}
.qr{display:block;width:100%;height:auto}
.left{text-align:center;margin:0 0 1rem;color:#3e4a5c}
.actions{display:flex;gap:.6rem;flex-wrap:wrap}
.button{flex:1 1 10rem;display:inline-block;padding:.8rem 1rem;border:2px solid #1b4fd8;border-radius:10px;background:#fff;color:#1b4fd8;font:inherit;font-weight:600;text-align:center;text-decoration:none;cursor:pointer}
.button.primary{background:#1b4fd8;color:#fff}
.button:focus-visible{outline:3px solid #f0a500;outline-offset:2px}
details{margin-top:1rem}
summary{cursor:pointer;color:#1b4fd8}
.bolt11{font:.8rem/1.3 ui-monospace,monospace;overflow-wrap:anywhere;word-break:break-all;background:#f3f5f8;padding:.5rem;border-radius:6px}
.done{font-size:4rem;text-align:center;color:#12803c;margin:1rem 0 0;line-height:1}
.note{color:#3e4a5c}
";

/// Counts down, copies, and polls `check-invoice` (about every second in
/// the invoice's first ten minutes, then less; backing off on errors and
/// on 429's Retry-After); reloads when the state changes, and sends a paid
/// page to its success URL.
pub const SCRIPT: &str = r#"
(function(){
var m=document.getElementById("checkout");if(!m)return;
var d=m.dataset,state=d.state,hash=d.hash,created=+d.created,expires=+d.expires,skew=Date.now()-(+d.now);
function now(){return Date.now()-skew}
if(state==="paid"){if(d.success){setTimeout(function(){location.assign(d.success)},3000)}return}
var copy=document.getElementById("copy");
if(copy&&navigator.clipboard){copy.hidden=false;copy.addEventListener("click",function(){
navigator.clipboard.writeText(copy.dataset.invoice).then(function(){copy.textContent="Copied";
setTimeout(function(){copy.textContent="Copy invoice"},2000)})})}
var left=document.getElementById("left");
function pad(n){return(n<10?"0":"")+n}
function fmt(s){var h=Math.floor(s/3600),mm=Math.floor(s/60)%60,ss=s%60;
if(s>=172800)return Math.floor(s/86400)+" days";return h>0?h+":"+pad(mm)+":"+pad(ss):mm+":"+pad(ss)}
function tick(){if(!left)return;var s=Math.max(0,Math.floor((expires-now())/1000));left.textContent=fmt(s);
if(now()>=expires&&state==="open"){location.reload();return}setTimeout(tick,1000)}
tick();
var failures=0;
function gap(){var t=now();if(t>=expires)return 30000;return t-created<600000?1000:5000}
function poll(){fetch("/api/check-invoice?payment_hash="+hash,{cache:"no-store",headers:{accept:"application/json"}})
.then(function(r){if(r.status===429){var ra=+r.headers.get("retry-after")||60;throw ra*1000}
if(!r.ok)throw 0;return r.json()})
.then(function(j){failures=0;var s=j&&j.status;
if(s==="paid"||(s==="expired"&&state==="open")){location.reload();return}
setTimeout(poll,gap())},
function(wait){failures++;setTimeout(poll,Math.max(wait||0,Math.min(60000,gap()*Math.pow(2,failures))))})}
setTimeout(poll,gap());
})();
"#;

/// The CSP hashes of [`STYLE`] and [`SCRIPT`], computed once per isolate.
fn hashes() -> &'static (String, String) {
    static HASHES: OnceLock<(String, String)> = OnceLock::new();
    HASHES.get_or_init(|| (csp_hash(STYLE), csp_hash(SCRIPT)))
}

/// The page's headers: only its own style and script run, it talks only
/// to its own origin, and only `CHECKOUT_FRAME_ANCESTORS` may frame it.
pub fn security_headers(s: &CheckoutSettings) -> Vec<(&'static str, String)> {
    let (style, script) = hashes();
    let ancestors = if s.frame_ancestors.is_empty() {
        "'none'".to_string()
    } else {
        s.frame_ancestors.join(" ")
    };
    let mut h = vec![
        (
            "content-security-policy",
            format!(
                "default-src 'none'; style-src {style}; script-src {script}; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
            ),
        ),
        ("x-content-type-options", "nosniff".into()),
        ("referrer-policy", "no-referrer".into()),
    ];
    if s.frame_ancestors.is_empty() {
        h.push(("x-frame-options", "DENY".into()));
    }
    h
}

fn document(title: &str, head_extra: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\">\
<title>{title}</title><style>{STYLE}</style>{head_extra}</head>\
<body>{body}<script>{SCRIPT}</script></body></html>\n",
        title = escape(title)
    )
}

fn refresh(secs: u32, url: Option<&str>) -> String {
    match url {
        Some(u) => format!(
            "<noscript><meta http-equiv=\"refresh\" content=\"{secs};url={}\"></noscript>",
            escape(u)
        ),
        None => format!("<noscript><meta http-equiv=\"refresh\" content=\"{secs}\"></noscript>"),
    }
}

fn open_body(v: &CheckoutView) -> String {
    let pr = escape(&v.payment_request);
    let link = format!("lightning:{pr}");
    let code = qr::svg(
        &qr::payload(&v.payment_request),
        "QR code of the Lightning invoice: scan it with a wallet",
    )
    .unwrap_or_default();
    format!(
        "<p id=\"status\" class=\"status open\" role=\"status\">Waiting for payment</p>\
<a class=\"qrlink\" href=\"{link}\">{code}</a>\
<p class=\"left\">Expires in <time id=\"left\" datetime=\"{expires}\">{left}</time></p>\
<div class=\"actions\"><a class=\"button primary\" href=\"{link}\">Open in wallet</a>\
<button type=\"button\" id=\"copy\" class=\"button\" data-invoice=\"{pr}\" hidden>Copy invoice</button></div>\
<details><summary>Show the invoice</summary><p class=\"bolt11\">{pr}</p></details>",
        expires = iso8601_ms(v.expires_at_ms),
        left = time_left(v.seconds_left()),
    )
}

fn paid_body(v: &CheckoutView) -> String {
    let next = match &v.success_url {
        Some(u) => format!(
            "<p class=\"note\">Taking you back to {shop}…</p><div class=\"actions\"><a class=\"button primary\" href=\"{u}\">Continue</a></div>",
            shop = escape(&v.shop_name),
            u = escape(u)
        ),
        None => "<p class=\"note\">You can close this page.</p>".into(),
    };
    format!(
        "<p class=\"done\" aria-hidden=\"true\">✓</p>\
<p id=\"status\" class=\"status paid\" role=\"status\">Paid. Thank you!</p>{next}"
    )
}

fn expired_body() -> String {
    "<p id=\"status\" class=\"status expired\" role=\"status\">This invoice has expired</p>\
<p class=\"note\">It can no longer be paid. Go back to the shop for a new one. \
If you paid it just now, this page turns paid as soon as the payment arrives.</p>"
        .into()
}

/// The page of a watched invoice in its current state.
pub fn render(v: &CheckoutView) -> String {
    let (body, head) = match v.state {
        PageState::Open => (open_body(v), refresh(NOSCRIPT_REFRESH_OPEN_SECS, None)),
        PageState::Paid => (
            paid_body(v),
            v.success_url
                .as_deref()
                .map(|u| refresh(REDIRECT_AFTER_SECS, Some(u)))
                .unwrap_or_default(),
        ),
        PageState::Expired => (expired_body(), refresh(NOSCRIPT_REFRESH_EXPIRED_SECS, None)),
    };
    let data_success = v
        .success_url
        .as_deref()
        .map(|u| format!(" data-success=\"{}\"", escape(u)))
        .unwrap_or_default();
    let desc = v
        .description
        .as_deref()
        .map(|d| format!("<p class=\"desc\">{}</p>", escape(d)))
        .unwrap_or_default();
    let main = format!(
        "<main id=\"checkout\" data-state=\"{state}\" data-hash=\"{hash}\" data-created=\"{created}\" \
data-expires=\"{expires}\" data-now=\"{now}\"{data_success}>\
<p class=\"shop\">{shop}</p><h1>{amount}</h1>{desc}{body}</main>",
        state = v.state.as_str(),
        hash = escape(&v.payment_hash),
        created = v.created_at_ms,
        expires = v.expires_at_ms,
        now = v.now_ms,
        shop = escape(&v.shop_name),
        amount = amount(v.amount_sat),
    );
    let title = match v.state {
        PageState::Open => format!("Pay {} · {}", amount(v.amount_sat), v.shop_name),
        PageState::Paid => format!("Paid · {}", v.shop_name),
        PageState::Expired => format!("Expired · {}", v.shop_name),
    };
    document(&title, &head, &main)
}

/// The page for a hash that is malformed or not watched here.
pub fn not_found(shop_name: &str) -> String {
    let main = format!(
        "<main><p class=\"shop\">{shop}</p><h1>Invoice not found</h1>\
<p class=\"note\">This payment link is not valid, or its invoice is too old to show. \
Go back to the shop for a new one.</p></main>",
        shop = escape(shop_name)
    );
    document(&format!("Not found · {shop_name}"), "", &main)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: PageState, success: Option<&str>) -> CheckoutView {
        CheckoutView {
            shop_name: "Café <b>".into(),
            payment_hash: "ab".repeat(32),
            payment_request: "lnbc10n1pexample".into(),
            amount_sat: 1234,
            description: Some("<script>alert(1)</script>".into()),
            state,
            created_at_ms: 1_000_000,
            expires_at_ms: 1_600_000,
            now_ms: 1_060_000,
            success_url: success.map(String::from),
        }
    }

    #[test]
    fn every_state_escapes_what_callers_wrote() {
        for state in [PageState::Open, PageState::Paid, PageState::Expired] {
            let html = render(&view(state, Some("https://shop.example/t?a=1&b=\"2\"")));
            assert!(!html.contains("<script>alert"), "{html}");
            assert!(!html.contains("<b>"));
            assert!(html.contains("Café &lt;b&gt;"));
            assert!(html.contains("1,234 sats"));
            assert!(html.contains(&format!("data-state=\"{}\"", state.as_str())));
            // The only script is the hashed one, and no handler attributes.
            assert_eq!(html.matches("<script>").count(), 1);
            assert!(!html.contains(" onclick") && !html.contains(" onload"));
        }
        let open = render(&view(PageState::Open, None));
        assert!(open.contains("href=\"lightning:lnbc10n1pexample\""));
        assert!(open.contains("<svg class=\"qr\""));
        assert!(open.contains(">9:00<"));
        assert!(open.contains("content=\"5\""));
        let paid = render(&view(PageState::Paid, Some("https://shop.example/t")));
        assert!(paid.contains("content=\"3;url=https://shop.example/t\""));
        assert!(paid.contains("href=\"https://shop.example/t\""));
        assert!(!paid.contains("<svg"));
        assert!(render(&view(PageState::Expired, None)).contains("has expired"));
    }

    #[test]
    fn only_the_hashed_script_and_style_run_and_framing_is_opt_in() {
        let none = security_headers(&CheckoutSettings::default());
        let csp = &none[0].1;
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(csp.contains(&csp_hash(SCRIPT)) && csp.contains(&csp_hash(STYLE)));
        assert!(!csp.contains("unsafe"));
        assert!(none
            .iter()
            .any(|(k, v)| *k == "x-frame-options" && v == "DENY"));
        let shop = CheckoutSettings {
            frame_ancestors: vec!["https://shop.example".into()],
            ..CheckoutSettings::default()
        };
        let h = security_headers(&shop);
        assert!(h[0].1.ends_with("frame-ancestors https://shop.example"));
        assert!(!h.iter().any(|(k, _)| *k == "x-frame-options"));
    }
}
