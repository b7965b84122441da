//! The Lightning Address routes (LUD-16 over LUD-06, LUD-12, LUD-21):
//! `GET /.well-known/lnurlp/{name}`, its callback, and verify. Invoices go
//! through the failover chain and the watch like any other; errors are in
//! LUD-06's form (with `error.code` beside it), never a 5xx.

use worker::{Context, Env, Request};

use crate::invoices::{issue, with_timing};
use crate::reply::Reply;
use crate::request::{public_origin, query};
use crate::runtime::WorkerRuntime;
use crate::watch_link;
use backends::http::Runtime;
use gateway::api::error::ApiError;
use gateway::api::server_timing::ServerTiming;
use gateway::config::Config;
use gateway::receive::address::lnurl::{self, LnurlError};
use gateway::receive::address::settings::Address;
use gateway::receive::address::zap::{self, ZapSecret};
use gateway::receive::admit::CreateInvoice;

fn lud06(e: &LnurlError) -> Reply {
    Reply::json(e.status(), e.to_json())
}

fn address<'a>(cfg: &'a Config, name: &str) -> Result<&'a Address, LnurlError> {
    cfg.invoices
        .addresses
        .iter()
        .find(|a| a.name == name)
        .ok_or(LnurlError::UnknownName)
}

/// `GET /.well-known/lnurlp/{name}`: the payRequest.
pub fn pay_request(req: &Request, cfg: &Config, name: &str) -> Result<Reply, ApiError> {
    let a = match address(cfg, name) {
        Ok(a) => a,
        Err(e) => return Ok(lud06(&e)),
    };
    let (origin, host) = public_origin(req, cfg)?;
    let mut answer = lnurl::pay_request(a, &origin, &host);
    if let Some(keys) = cfg.invoices.zap_secret.as_ref().and_then(ZapSecret::keys) {
        zap::advertise(&mut answer, &keys);
    }
    Ok(Reply::json(200, answer))
}

/// `GET /lnurlp/{name}/callback?amount=<msat>&comment=`: the invoice.
pub async fn callback(
    req: &Request,
    env: &Env,
    ctx: &Context,
    cfg: &Config,
    name: &str,
) -> Result<Reply, ApiError> {
    let started = WorkerRuntime.now_ms();
    let (origin, host) = public_origin(req, cfg)?;
    let asked = address(cfg, name).and_then(|a| {
        lnurl::callback(
            a,
            &host,
            query(req, "amount").ok().flatten().as_deref(),
            query(req, "comment").ok().flatten().as_deref(),
            cfg.network,
        )
    });
    let (mut params, mut context) = match asked {
        Ok(p) => p,
        Err(e) => return Ok(lud06(&e)),
    };
    // A zap request (NIP-57), where zaps are on; elsewhere a plain payment.
    if let (Some(raw), Some(_)) = (query(req, "nostr").ok().flatten(), &cfg.invoices.zap_secret) {
        if let Err(e) = zap::apply(&raw, &mut params, &mut context, &cfg.invoices.url_policy) {
            return Ok(lud06(&e));
        }
    }
    let ask = CreateInvoice {
        params,
        context,
        keyed: false,
        idempotency: None,
    };
    let mut timing = ServerTiming::default();
    match issue(env, ctx, cfg, &ask, &mut timing).await {
        Ok(answer) => {
            let pr = answer["payment_request"].as_str().unwrap_or_default();
            let hash = answer["payment_hash"].as_str().unwrap_or_default();
            let reply = Reply::json(200, lnurl::callback_answer(pr, hash, &origin));
            Ok(with_timing(reply, cfg, timing, started))
        }
        Err(e) => Ok(lud06(&LnurlError::Unavailable(e.message()))),
    }
}

/// `GET /lnurlp/verify/{payment_hash}` (LUD-21), from the watch.
pub async fn verify(env: &Env, hash: &str) -> Result<Reply, ApiError> {
    match watch_link::checked(env, hash).await {
        Ok(Some(w)) if w.context.lightning_address.is_some() => {
            Ok(Reply::json(200, lnurl::verify_answer(&w)))
        }
        Ok(_) => Ok(lud06(&LnurlError::InvoiceNotFound)),
        Err(e) => Ok(lud06(&LnurlError::Unavailable(e.message()))),
    }
}
