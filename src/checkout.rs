//! `GET /pay/{payment_hash}`: the checkout page, rendered from the watch
//! (after a lookup on demand when one is due, like check-invoice).

use worker::Env;

use crate::reply::{Body, Reply};
use crate::watch_link;
use gateway::api::error::ApiError;
use gateway::config::Config;
use gateway::receive::checkout::page;
use gateway::receive::checkout::view::CheckoutView;
use gateway::receive::invoice::parse_payment_hash;

/// The page's address, as create-invoice hands it out.
pub fn url(origin: &str, payment_hash: &str) -> String {
    format!("{origin}/pay/{payment_hash}")
}

fn html(status: u16, body: String, cfg: &Config) -> Reply {
    Reply {
        status,
        body: Body::Html(body),
        headers: page::security_headers(&cfg.invoices.checkout),
    }
}

/// The page of a watched invoice; a friendly 404 page for a malformed
/// hash or one the watch does not hold.
pub async fn page(env: &Env, cfg: &Config, raw_hash: &str, now_ms: u64) -> Result<Reply, ApiError> {
    let settings = &cfg.invoices.checkout;
    let not_found = || html(404, page::not_found(&settings.shop_name), cfg);
    let Ok(hash) = parse_payment_hash(Some(raw_hash)) else {
        return Ok(not_found());
    };
    match watch_link::checked(env, &hash).await? {
        Some(inv) => Ok(html(
            200,
            page::render(&CheckoutView::new(&inv, settings, now_ms)),
            cfg,
        )),
        None => Ok(not_found()),
    }
}
