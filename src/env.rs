//! Reads configuration from Worker variables and secrets.

use std::rc::Rc;

use gateway::config::{Config, ConfigError};
use gateway::payout::config::PayoutConfig;

/// A variable or a secret of that name (both are strings to the Worker).
pub fn lookup(env: &worker::Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| env.secret(name).ok().map(|s| s.to_string()))
}

thread_local! {
    /// Parsed once per isolate: variables and secrets are fixed for the life
    /// of an isolate (a new deployment or secret starts new isolates), and
    /// reading them costs a call into JS per variable. Shared, not cloned:
    /// every request and object call reads it.
    static CONFIG: std::cell::RefCell<Option<Result<Rc<Config>, ConfigError>>> =
        const { std::cell::RefCell::new(None) };
    static PAYOUT_CONFIG: std::cell::RefCell<Option<Result<Rc<PayoutConfig>, ConfigError>>> =
        const { std::cell::RefCell::new(None) };
}

pub fn config(env: &worker::Env) -> Result<Rc<Config>, ConfigError> {
    if let Some(c) = CONFIG.with(|c| c.borrow().clone()) {
        return c;
    }
    let c = Config::from_lookup(|name| lookup(env, name)).map(Rc::new);
    CONFIG.with(|x| *x.borrow_mut() = Some(c.clone()));
    c
}

/// The payout settings, over `cfg` (this isolate's [`config`]).
pub fn payout_config(env: &worker::Env, cfg: &Config) -> Result<Rc<PayoutConfig>, ConfigError> {
    if let Some(c) = PAYOUT_CONFIG.with(|c| c.borrow().clone()) {
        return c;
    }
    let c = PayoutConfig::from_lookup(|n| lookup(env, n), cfg).map(Rc::new);
    PAYOUT_CONFIG.with(|x| *x.borrow_mut() = Some(c.clone()));
    c
}
