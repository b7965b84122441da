//! The Workers binding: entry points, routing, KV. Thin by design: every
//! decision is made in `crate::core`.

mod admin;
mod body;
mod env;
mod health;
mod health_sync;
mod invoices;
mod nwc;
mod payouts;
mod queue;
mod registry;
mod reply;
mod request;
mod runtime;
mod sql_store;
mod store;

use serde_json::json;
use worker::{event, Context, Env, Request, Response, ScheduleContext, ScheduledEvent};

use crate::core::config::Config;
use crate::core::cors::AllowedOrigins;
use crate::core::error::ApiError;
use crate::core::routes::{self, Route};
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
            headers: cfg
                .cors
                .preflight_headers(req.headers().get("origin").ok().flatten().as_deref()),
        }),
        Route::Index => Ok(Reply::json(
            200,
            json!({
                "name": "lightning-fallback",
                "version": env!("CARGO_PKG_VERSION"),
                "providers": cfg.providers.iter().map(|p| p.name()).collect::<Vec<_>>(),
                "network": cfg.network.as_str(),
                "openapi": "/openapi.json",
                "routes": [
                    "POST /api/create-invoice", "GET /api/check-invoice?payment_hash=", "GET /api/lightning/health", "GET /status",
                    "POST /api/payouts", "GET /api/payouts", "GET /api/payouts/{id}", "POST /api/payouts/{id}/retry",
                    "POST /api/payouts/{id}/cancel", "POST /api/payouts/{id}/redeliver-webhook", "GET /api/payouts/attention",
                    "GET /openapi.json",
                ],
            }),
        )
        .header("link", "</openapi.json>; rel=\"service-desc\"")),
        Route::OpenApi => Ok(Reply {
            status: 200,
            body: Body::JsonText(crate::core::openapi::DOCUMENT),
            headers: Vec::new(),
        }),
        Route::CreateInvoice => invoices::create(req, env, ctx, cfg).await,
        Route::CheckInvoice => invoices::check(req, env, ctx, cfg).await,
        Route::Health => health::health(req, env, ctx, cfg).await,
        Route::StatusPage => health::status_page(env, ctx, cfg).await,
        Route::CreatePayout => payouts::create(req, env).await,
        Route::ListPayouts => payouts::list(req, env).await,
        Route::GetPayout(id) => payouts::get(req, env, &id).await,
        Route::RetryPayout(id) => payouts::retry(req, env, cfg, &id).await,
        Route::CancelPayout(id) => admin::act(req, env, cfg, &id, "cancel").await,
        Route::RedeliverWebhook(id) => admin::act(req, env, cfg, &id, "redeliver-webhook").await,
        Route::PayoutAttention => admin::attention(req, env, cfg).await,
    }
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    console_error_panic_hook::set_once();
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
    let reply = match (routes::route(&method, &path), &config) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.clone()),
        (Ok(route), Ok(cfg)) => handle(&mut req, &env, &ctx, cfg, route).await,
    };
    let reply = reply.unwrap_or_else(|e| {
        if e.status() >= 500 {
            worker::console_error!("{method} {path}: {}", e.message());
        }
        Reply::error(&e)
    });
    reply.into_response(&cors, origin.as_deref())
}

/// Cron (`*/5 * * * *`): probes every provider and refreshes shared health.
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    console_error_panic_hook::set_once();
    let cfg = match env::config(&env) {
        Ok(c) => c,
        Err(e) => {
            worker::console_error!(
                "cron {}: invalid configuration in {}: {}",
                event.cron(),
                e.variable,
                e.message
            );
            return;
        }
    };
    // The queue holds the truth; cron only wakes it (alarms do the rest).
    if queue::payout_config(&env).is_ok() {
        match payouts::drain_all(&env).await {
            Ok(r) => {
                worker::console_log!("cron {}: payout queue woken ({:?})", event.cron(), r)
            }
            Err(e) => {
                worker::console_error!("cron {}: payout queue: {}", event.cron(), e.message())
            }
        }
    }
    match health::cron_probe(&env, &cfg).await {
        Ok(book) => {
            let report =
                crate::core::health_report::report(&cfg, &book, worker::Date::now().as_millis());
            worker::console_log!("cron {}: health {}", event.cron(), report.status.as_str());
        }
        Err(e) => worker::console_error!("cron {}: {}", event.cron(), e.message()),
    }
}
