//! Reads configuration from Worker variables and secrets.

use crate::core::config::{Config, ConfigError};

/// A variable or a secret of that name (both are strings to the Worker).
pub fn lookup(env: &worker::Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| env.secret(name).ok().map(|s| s.to_string()))
}

pub fn config(env: &worker::Env) -> Result<Config, ConfigError> {
    Config::from_lookup(|name| lookup(env, name))
}
