//! lightning-fallback: a Cloudflare Worker that keeps Lightning payments
//! flowing when a payment backend fails.
//!
//! This crate is the Worker: the entry points, routing, the Durable Objects,
//! the KV and SQLite stores and the relay transport, for wasm32 only. It
//! binds the runtime to the `gateway` crate, which decides everything, over
//! the `backends` crate (see docs/architecture.md).
#![cfg(target_arch = "wasm32")]
// Request paths must not panic: errors are typed and answered as JSON.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod address;
mod admin;
mod body;
mod checkout;
mod claims_link;
mod durable;
mod env;
mod health;
mod health_sync;
mod invoice_events;
mod invoices;
mod js_stream;
mod log;
mod nwc;
mod objects;
mod outgoing;
mod payouts;
mod queue;
mod rate_limit;
mod relay;
mod reply;
mod request;
mod runtime;
mod sql_store;
mod store;
mod watch;
mod watch_link;
mod watch_store;

use serde_json::json;
use worker::{event, Context, Env, Request, Response, ScheduleContext, ScheduledEvent};

use gateway::api::cors::{self, AllowedOrigins};
use gateway::api::error::ApiError;
use gateway::api::rate_limit::Limited;
use gateway::api::routes::{self, Route};
use gateway::config::Config;
use gateway::log::{Answered, CronLog, Event, RequestLog};
use reply::{Body, Reply};

async fn handle(
    req: &mut Request,
    env: &Env,
    ctx: &Context,
    cfg: &Config,
    route: Route,
) -> Result<Reply, ApiError> {
    match route {
        Route::Preflight => Ok(Reply {
            status: 204,
            body: Body::Empty,
            headers: if cors::browser_path(&req.path()) {
                cfg.cors
                    .preflight_headers(req.headers().get("origin").ok().flatten().as_deref())
            } else {
                Vec::new()
            },
        }),
        Route::Index => Ok(Reply::json(
            200,
            json!({
                "name": "lightning-fallback",
                "version": env!("CARGO_PKG_VERSION"),
                "providers": cfg.backends.iter().map(|p| p.name()).collect::<Vec<_>>(),
                "network": cfg.network.as_str(),
                "openapi": "/openapi.json",
                "routes": [
                    "POST /api/create-invoice", "GET /api/check-invoice?payment_hash=", "GET /api/lightning/health", "GET /status",
                    "POST /api/payouts", "GET /api/payouts", "GET /api/payouts/{id}", "POST /api/payouts/{id}/retry",
                    "POST /api/payouts/{id}/cancel", "POST /api/payouts/{id}/redeliver-webhook", "GET /api/payouts/attention",
                    "GET /.well-known/lnurlp/{name}", "GET /lnurlp/{name}/callback", "GET /lnurlp/verify/{payment_hash}", "GET /pay/{payment_hash}", "GET /api/invoices/events", "POST /api/invoices/notify", "POST /api/invoices/{payment_hash}/redeliver-webhook",
                    "GET /openapi.json",
                ],
            }),
        )
        .header("link", "</openapi.json>; rel=\"service-desc\"")),
        Route::OpenApi => Ok(Reply {
            status: 200,
            body: Body::JsonText(gateway::api::openapi::DOCUMENT),
            headers: Vec::new(),
        }),
        Route::CreateInvoice => {
            rate_limit::check(req, env, cfg, Limited::CreateInvoice).await?;
            invoices::create(req, env, ctx, cfg).await
        }
        Route::CheckInvoice => {
            rate_limit::check(req, env, cfg, Limited::CheckInvoice).await?;
            invoices::check(req, env, ctx, cfg).await
        }
        Route::Health => {
            rate_limit::check(req, env, cfg, Limited::Status).await?;
            health::health(req, env, ctx, cfg).await
        }
        Route::StatusPage => {
            rate_limit::check(req, env, cfg, Limited::Status).await?;
            health::status_page(req, env, ctx, cfg).await
        }
        Route::CreatePayout => payouts::create(req, env).await,
        Route::ListPayouts => payouts::list(req, env, cfg).await,
        Route::GetPayout(id) => payouts::get(req, env, cfg, &id).await,
        Route::RetryPayout(id) => payouts::retry(req, env, cfg, &id).await,
        Route::CancelPayout(id) => admin::act(req, env, cfg, &id, "cancel").await,
        Route::RedeliverWebhook(id) => admin::act(req, env, cfg, &id, "redeliver-webhook").await,
        Route::PayoutAttention => admin::attention(req, env, cfg).await,
        Route::InvoiceEvents => invoice_events::list(req, env, cfg).await,
        Route::LnurlPay(name) => {
            rate_limit::check(req, env, cfg, Limited::CheckInvoice).await?;
            address::pay_request(req, cfg, &name)
        }
        Route::LnurlCallback(name) => {
            rate_limit::check(req, env, cfg, Limited::CreateInvoice).await?;
            address::callback(req, env, ctx, cfg, &name).await
        }
        Route::LnurlVerify(hash) => {
            rate_limit::check(req, env, cfg, Limited::CheckInvoice).await?;
            address::verify(env, &hash).await
        }
        Route::InvoiceNotice => {
            rate_limit::check(req, env, cfg, Limited::CheckInvoice).await?;
            invoice_events::notice(req, env).await
        }
        Route::CheckoutPage(hash) => {
            rate_limit::check(req, env, cfg, Limited::CheckInvoice).await?;
            checkout::page(env, cfg, &hash, log::now_ms()).await
        }
        Route::RedeliverInvoiceWebhook(hash) => {
            invoice_events::redeliver(req, env, cfg, &hash).await
        }
    }
}

/// The request's one log line, read from its answer.
fn log_request(
    (req, method, path): (&Request, &str, &str),
    env: &Env,
    route: Option<&Route>,
    reply: &Reply,
    started_ms: u64,
) {
    let line = RequestLog::from_answer(&Answered {
        method,
        route,
        path,
        status: reply.status,
        body: match &reply.body {
            Body::Json(v) => Some(v),
            _ => None,
        },
        replayed: reply
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(gateway::payout::queue_call::REPLAYED_HEADER)),
        duration_ms: log::now_ms().saturating_sub(started_ms),
        ray: req.headers().get("cf-ray").ok().flatten(),
    });
    log::emit(env, line.level(), Event::Request(line));
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    console_error_panic_hook::set_once();
    let started_ms = log::now_ms();
    let origin = req.headers().get("origin").ok().flatten();
    // Parsed once per request; an invalid configuration still gets CORS headers.
    let config = env::config(&env).map_err(ApiError::from);
    let cors = config
        .as_ref()
        .map(|c| c.cors.clone())
        .unwrap_or(AllowedOrigins::Any);
    let path = req.path();
    // The method as sent: `worker::Method` turns any method it does not know
    // (QUERY, FOO) into GET, which would serve GET routes to them.
    let method = req.inner().method();
    let routed = routes::route(&method, &path);
    let reply = match (&routed, &config) {
        (Err(e), _) => Err(e.clone()),
        (Ok(_), Err(e)) => Err(e.clone()),
        (Ok(route), Ok(cfg)) => match rate_limit::key_blocked(&req, cfg, started_ms) {
            Err(e) => Err(e),
            Ok(()) => match handle(&mut req, &env, &ctx, cfg, route.clone()).await {
                Err(ApiError::Unauthorized) => {
                    Err(rate_limit::key_failed(&req, &env, cfg, started_ms)
                        .await
                        .unwrap_or(ApiError::Unauthorized))
                }
                other => other,
            },
        },
    };
    let reply = reply.unwrap_or_else(|e| Reply::error(&e));
    let cors = cors::browser_path(&path).then_some(cors);
    log_request(
        (&req, &method, &path),
        &env,
        routed.as_ref().ok(),
        &reply,
        started_ms,
    );
    reply.into_response(
        cors.as_ref(),
        origin.as_deref(),
        method.eq_ignore_ascii_case("HEAD"),
    )
}

/// The first failure of a cron run names it in the log line.
fn cron_failed(line: &mut CronLog, e: &ApiError) {
    line.error.get_or_insert_with(|| e.code().into());
    line.message.get_or_insert_with(|| e.message());
}

/// Cron (`*/5 * * * *`): wakes the payout queue, probes every provider and
/// refreshes shared health; one log line says how it went.
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    console_error_panic_hook::set_once();
    let started_ms = log::now_ms();
    let mut line = CronLog {
        cron: event.cron(),
        ..CronLog::default()
    };
    match env::config(&env) {
        Err(e) => cron_failed(&mut line, &ApiError::from(e)),
        Ok(cfg) => {
            // The queue holds the truth; cron only wakes it (alarms do the rest).
            if queue::payout_config(&env).is_ok() {
                match payouts::drain_all(&env).await {
                    Ok(statuses) => {
                        line.queue_shards = Some(statuses.len());
                        line.queue_errors = Some(statuses.iter().filter(|s| **s != 200).count());
                    }
                    Err(e) => cron_failed(&mut line, &e),
                }
            }
            // The watch's alarms do the work; cron re-arms any that was lost.
            line.watch_errors = Some(invoice_events::wake_all(&env).await);
            match health::cron_probe(&env, &cfg).await {
                Ok(book) => {
                    let report = gateway::health::report::report(&cfg, &book, log::now_ms());
                    line.health = Some(report.status.as_str().into());
                }
                Err(e) => cron_failed(&mut line, &e),
            }
        }
    }
    line.duration_ms = log::now_ms().saturating_sub(started_ms);
    log::emit(&env, line.level(), Event::Cron(line));
}
