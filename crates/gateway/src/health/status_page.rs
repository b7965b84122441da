//! The `/status` page for people: server-rendered HTML, no scripts, one
//! inline SVG chart per provider, refreshing itself.

use crate::health::report::{HealthReport, Service};
use crate::health::Sample;

pub const REFRESH_SECS: u32 = 30;

/// The page's only CSS. The Content-Security-Policy allows exactly this
/// text by its hash, so no other inline style (or any script) can run.
pub const STYLE: &str = "
body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 1000px; padding: 0 1rem; color: #1d2430; }
h1 { font-size: 1.4rem; }
.summary { padding: .8rem 1rem; border-radius: 8px; margin-bottom: 1rem; }
.summary.healthy { background: #e5f6ea; } .summary.degraded { background: #fff4d6; } .summary.down { background: #fde2e1; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: .5rem; border-bottom: 1px solid #e3e6eb; vertical-align: top; }
.badge { padding: .15rem .5rem; border-radius: 999px; font-weight: 600; }
.badge.online { background: #1f9d55; color: #fff; } .badge.offline { background: #d64545; color: #fff; }
.breaker.open { color: #d64545; font-weight: 600; } .breaker.half_open { color: #b7791f; font-weight: 600; }
time { white-space: nowrap; }
.muted { color: #6b7585; font-size: .85rem; }
.error { color: #a12b2b; font-size: .85rem; max-width: 22rem; overflow-wrap: anywhere; }
.chart rect.ok { fill: #1f9d55; } .chart rect.fail { fill: #d64545; }
";

/// `'sha256-…'` of [`STYLE`], as CSP source expressions write it.
fn style_hash() -> String {
    csp_hash(STYLE)
}

/// `'sha256-…'` of an inline script or style, for a CSP source list (the
/// checkout page uses it too).
pub fn csp_hash(text: &str) -> String {
    use base64::Engine;
    let digest = backends::sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Headers of the HTML page: nothing but its own CSS may load or run, it
/// cannot be framed, and it sends no referrer along its one link.
pub fn security_headers() -> Vec<(&'static str, String)> {
    vec![
        (
            "content-security-policy",
            format!(
                "default-src 'none'; style-src {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                style_hash()
            ),
        ),
        ("x-frame-options", "DENY".into()),
        ("x-content-type-options", "nosniff".into()),
        ("referrer-policy", "no-referrer".into()),
    ]
}

/// Escapes text for HTML element and attribute content.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Latency bars of the last checks: height is latency, red for failures.
fn chart(history: &[Sample]) -> String {
    const W: u64 = 240;
    const H: u64 = 40;
    if history.is_empty() {
        return r#"<span class="muted">no checks yet</span>"#.to_string();
    }
    let max = history
        .iter()
        .map(|s| s.latency_ms)
        .max()
        .unwrap_or(1)
        .max(1);
    let bar = W / crate::health::HISTORY as u64;
    let mut svg = format!(
        r#"<svg class="chart" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="last {} checks">"#,
        history.len()
    );
    for (i, s) in history.iter().enumerate() {
        let h = if s.ok {
            (s.latency_ms * (H - 4) / max).max(2)
        } else {
            H
        };
        let class = if s.ok { "ok" } else { "fail" };
        svg.push_str(&format!(
            r#"<rect class="{class}" x="{}" y="{}" width="{}" height="{h}"><title>{} ms{}</title></rect>"#,
            i as u64 * bar,
            H - h,
            bar.saturating_sub(1).max(1),
            s.latency_ms,
            if s.ok { "" } else { " (failed)" }
        ));
    }
    svg.push_str("</svg>");
    svg
}

fn row(s: &Service) -> String {
    let rate = s
        .success_rate
        .map(|r| format!("{:.0}%", r * 100.0))
        .unwrap_or_else(|| "–".into());
    let latency = s
        .latency
        .map(|l| format!("{l} ms"))
        .unwrap_or_else(|| "–".into());
    let last_check = s.last_check.clone().unwrap_or_else(|| "never".into());
    let error = s
        .last_error
        .as_deref()
        .map(|e| format!(r#"<div class="error">{}</div>"#, escape(e)))
        .unwrap_or_default();
    format!(
        r#"<tr data-provider="{p}" data-status="{st}">
<td><strong>{name}</strong><div class="muted">{p}</div>{error}</td>
<td><span class="badge {st}">{st}</span></td>
<td>{latency}</td>
<td><span class="breaker {br}">{br}</span></td>
<td>{rate}</td>
<td><time>{last_check}</time></td>
<td>{chart}</td>
</tr>"#,
        p = escape(s.provider),
        st = s.status,
        name = escape(s.name),
        br = s.breaker,
        last_check = escape(&last_check),
        chart = chart(&s.history),
    )
}

/// The payout queue's figures (the health `queue` object), when payouts are on.
fn queue_section(q: &serde_json::Value) -> String {
    let n = |k: &str| q.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let oldest = q
        .get("oldest_created_at")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("–");
    let warn = |k: &str, text: &str| {
        if n(k) > 0 {
            format!(
                r#"<p class="error" id="queue-{k}"><strong>{}</strong> {text}</p>"#,
                n(k)
            )
        } else {
            String::new()
        }
    };
    format!(
        r#"<h2>Payout queue</h2>
<table id="queue"><thead><tr><th>Open</th><th>Unknown</th><th>Oldest open</th><th>Dead letters</th><th>Waiting for a backend</th><th>Overpaid</th></tr></thead>
<tbody><tr><td>{}</td><td>{}</td><td><time>{}</time></td><td>{}</td><td>{}</td><td>{}</td></tr></tbody></table>
{}{}"#,
        n("depth"),
        n("unknown"),
        escape(oldest),
        n("dead_letter"),
        n("waiting_for_backend"),
        n("overpaid"),
        warn(
            "waiting_for_backend",
            "payouts wait for a payout backend that is no longer configured: configure it again (see docs/payouts.md, \"Switching payout backends safely\")."
        ),
        warn(
            "overpaid",
            "payouts paid their recipient more than once: see GET /api/payouts and their paid_payment_hashes."
        ),
    ) + &chain_section(q)
}

/// The payout chain: each backend in order, its payout breaker and what it
/// paid and handed on in the last hour.
fn chain_section(q: &serde_json::Value) -> String {
    let Some(list) = q
        .get("payout_backends")
        .and_then(serde_json::Value::as_array)
    else {
        return String::new();
    };
    let rows: String = list
        .iter()
        .map(|b| {
            let s = |k: &str| b.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
            let n = |k: &str| b.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(s("backend")),
                escape(s("breaker")),
                n("paid_last_hour"),
                n("handed_on_last_hour"),
                n("went_past_last_hour"),
                escape(s("last_error")),
            )
        })
        .collect();
    format!(
        r#"<h2>Payout chain</h2>
<table id="payout-chain"><thead><tr><th>Backend, in order</th><th>Payout breaker</th><th>Paid (1 h)</th><th>Handed on (1 h)</th><th>Went past (1 h)</th><th>Last pay error</th></tr></thead>
<tbody>{rows}</tbody></table>"#
    )
}

/// The invoice watch's figures (`WatchStats::view`).
fn watch_section(w: &serde_json::Value) -> String {
    let n = |k: &str| w.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let oldest = w
        .get("oldest_undelivered_at")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("–");
    let error = w
        .get("error")
        .and_then(|e| e.get("message"))
        .and_then(serde_json::Value::as_str)
        .map(|m| format!(r#"<p class="error" id="watch-error">{}</p>"#, escape(m)))
        .unwrap_or_default();
    format!(
        r#"<h2>Invoice watch</h2>
<table id="watch"><thead><tr><th>Watched</th><th>Paid in the last hour</th><th>Events waiting for delivery</th><th>Oldest undelivered</th></tr></thead>
<tbody><tr><td>{}</td><td>{}</td><td>{}</td><td><time>{}</time></td></tr></tbody></table>
{error}"#,
        n("watched"),
        n("paid_last_hour"),
        n("events_waiting"),
        escape(oldest),
    )
}

pub fn render(r: &HealthReport) -> String {
    render_with(r, None, None, &[])
}

/// What each reason of [`crate::health::attention`] means, for a person.
fn attention_text(code: &str) -> &'static str {
    match code {
        "payouts_failed_recently" => "payouts failed in the last 24 hours",
        "payouts_waiting_for_backend" => "payouts wait for a payout backend that is not configured",
        "payouts_overpaid" => "a payout was paid more than once",
        "payout_queue_unavailable" => "the payout queue did not answer",
        "invoice_watch_unavailable" => "the invoice watch did not answer",
        "invoice_events_undelivered" => {
            "paid-invoice events have been undelivered for over an hour"
        }
        _ => "see the health JSON",
    }
}

/// The page, with the payout queue's and the invoice watch's figures when
/// given, and the reasons money needs a person (shown to everyone).
pub fn render_with(
    r: &HealthReport,
    queue: Option<&serde_json::Value>,
    watch: Option<&serde_json::Value>,
    attention: &[&str],
) -> String {
    let rows: String = r.services.iter().map(row).collect();
    let attention: String = if attention.is_empty() {
        String::new()
    } else {
        let items: String = attention
            .iter()
            .map(|c| format!("<li data-code=\"{}\">{}</li>", escape(c), attention_text(c)))
            .collect();
        format!("<h2>Needs attention</h2>\n<ul id=\"attention\">{items}</ul>\n")
    };
    let queue = queue.map(queue_section).unwrap_or_default()
        + &watch.map(watch_section).unwrap_or_default();
    let active = r.fallback.active_provider.unwrap_or("none");
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECS}">
<title>Lightning gateway: {overall}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Lightning gateway status</h1>
<div class="summary {overall}" id="overall" data-status="{overall}">
<strong>{overall_title}</strong> · active provider: <strong id="active">{active}</strong> · network {network} · updated <time>{ts}</time>
</div>
<table>
<thead><tr><th>Provider</th><th>State</th><th>Latency</th><th>Breaker</th><th>Success</th><th>Last check</th><th>Last checks</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
{attention}{queue}
<p class="muted">Refreshes every {REFRESH_SECS} s. Checks run every 5 minutes and after real requests. JSON: <a href="/api/lightning/health">/api/lightning/health</a></p>
</body>
</html>
"#,
        overall = r.status.as_str(),
        overall_title = match r.status.as_str() {
            "healthy" => "All providers online",
            "degraded" if r.services.iter().all(|s| s.status == "online") => "Degraded: see below",
            "degraded" => "Degraded: some providers offline",
            _ => "Down: no provider online",
        },
        active = escape(active),
        network = r.network,
        ts = escape(&r.timestamp),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::report::{Fallback, Overall};

    fn service(err: &str) -> Service {
        Service {
            name: "LND (REST)",
            provider: "lnd",
            status: "offline",
            last_check: None,
            latency: Some(12),
            breaker: "open",
            breaker_retry_at: None,
            consecutive_failures: 3,
            last_error: Some(err.into()),
            last_success: None,
            success_rate: Some(0.5),
            history: vec![
                Sample {
                    at_ms: 1,
                    ok: true,
                    latency_ms: 30,
                },
                Sample {
                    at_ms: 2,
                    ok: false,
                    latency_ms: 5000,
                },
            ],
        }
    }

    #[test]
    fn renders_state_and_escapes_provider_text() {
        let r = HealthReport {
            status: Overall::Down,
            timestamp: "2026-01-01T00:00:00Z".into(),
            network: "bitcoin",
            services: vec![service("<script>alert(1)</script>")],
            fallback: Fallback {
                is_online: false,
                active_provider: None,
            },
        };
        let html = render(&r);
        assert!(html.contains(r#"data-status="down""#));
        assert!(html.contains(r#"<tr data-provider="lnd" data-status="offline">"#));
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains(r#"<rect class="fail""#));
        assert!(html.contains("http-equiv=\"refresh\""));
    }

    #[test]
    fn the_csp_allows_exactly_the_inline_style_by_hash() {
        let html = render(&HealthReport {
            status: Overall::Healthy,
            timestamp: "2026-01-01T00:00:00Z".into(),
            network: "bitcoin",
            services: vec![],
            fallback: Fallback {
                is_online: true,
                active_provider: None,
            },
        });
        let css = html
            .split_once("<style>")
            .and_then(|(_, rest)| rest.split_once("</style>"))
            .map(|(css, _)| css)
            .unwrap_or_else(|| panic!("no style element"));
        assert_eq!(css, STYLE);
        assert_eq!(html.matches("<style").count(), 1);
        assert!(
            !html.contains("style=\""),
            "no style attributes: a hash does not cover them"
        );
        assert!(!html.contains("<script"));
        let headers = security_headers();
        let get = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let csp = get("content-security-policy");
        assert!(
            csp.starts_with("default-src 'none'; style-src 'sha256-"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"));
        // The hash of the exact text between the tags, checked independently.
        use base64::Engine;
        use sha2::Digest;
        let h = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(css));
        assert!(csp.contains(&h));
        assert_eq!(get("x-frame-options"), "DENY");
        assert_eq!(get("referrer-policy"), "no-referrer");
        assert_eq!(get("x-content-type-options"), "nosniff");
    }
}
