//! Reading settings: one parser for every part of the configuration, so
//! each variable is read the same way and every error names it.

/// A setting that cannot be used, naming the variable to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(variable: &str, message: impl Into<String>) -> Self {
        ConfigError {
            variable: variable.to_string(),
            message: message.into(),
        }
    }
}

/// Reads variables through `get`; empty values count as unset.
pub(crate) struct Vars<F: Fn(&str) -> Option<String>>(pub(crate) F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// The first of `names` that is set, with the name it was found under.
    pub(crate) fn first(&self, names: &[&'static str]) -> Option<(&'static str, String)> {
        names.iter().find_map(|n| self.get(n).map(|v| (*n, v)))
    }

    pub(crate) fn bool(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(Some(true)),
                "0" | "false" | "no" | "off" => Ok(Some(false)),
                _ => Err(ConfigError::new(
                    name,
                    format!("`{v}` is not a boolean (use true or false)"),
                )),
            },
        }
    }

    pub(crate) fn number(
        &self,
        name: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(ConfigError::new(
                    name,
                    format!("`{v}` must be a whole number from {min} to {max}"),
                )),
            },
        }
    }

    /// A number of seconds, as milliseconds.
    pub(crate) fn secs_as_ms(
        &self,
        name: &str,
        default_ms: u64,
        min_secs: u64,
        max_secs: u64,
    ) -> Result<u64, ConfigError> {
        Ok(self.number(name, default_ms / 1000, min_secs, max_secs)? * 1000)
    }
}
