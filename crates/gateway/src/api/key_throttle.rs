//! Throttling of failed key checks. Each wrong key shown to a keyed route
//! is counted per client by Cloudflare's rate-limiting binding
//! (`AUTH_FAILURE_LIMITER`); once a client is over its limit, its wrong
//! keys are answered 429, and this isolate refuses every keyed request
//! from it, right key or not, until the window ends, so a guess that
//! happens to be right is not told apart. The refusal list is per isolate
//! (a binding cannot be read without counting): a guesser spread over many
//! isolates still meets the binding's count on every wrong key.

use std::collections::HashMap;

/// The binding's name in wrangler.toml.
pub const BINDING: &str = "AUTH_FAILURE_LIMITER";
/// How long a client over the limit is refused (the binding's period).
pub const BLOCK_MS: u64 = 60_000;
/// At most this many clients are remembered; beyond it the oldest go.
const MAX_CLIENTS: usize = 4_096;

/// The clients this isolate refuses, until when.
#[derive(Debug, Default)]
pub struct Blocked {
    until_ms: HashMap<String, u64>,
}

impl Blocked {
    /// Refuse `client` until `now_ms + BLOCK_MS`.
    pub fn block(&mut self, client: &str, now_ms: u64) {
        if self.until_ms.len() >= MAX_CLIENTS {
            self.until_ms.retain(|_, until| *until > now_ms);
        }
        if self.until_ms.len() >= MAX_CLIENTS {
            if let Some(first) = self
                .until_ms
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(k, _)| k.clone())
            {
                self.until_ms.remove(&first);
            }
        }
        self.until_ms.insert(client.to_string(), now_ms + BLOCK_MS);
    }

    /// Seconds left of `client`'s refusal, if it is refused.
    pub fn retry_after_secs(&self, client: &str, now_ms: u64) -> Option<u64> {
        let until = *self.until_ms.get(client)?;
        (until > now_ms).then(|| (until - now_ms).div_ceil(1_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_for_the_window_then_forgets() {
        let mut b = Blocked::default();
        assert_eq!(b.retry_after_secs("1.2.3.4", 0), None);
        b.block("1.2.3.4", 1_000);
        assert_eq!(b.retry_after_secs("1.2.3.4", 1_000), Some(60));
        assert_eq!(b.retry_after_secs("1.2.3.4", 60_500), Some(1));
        assert_eq!(b.retry_after_secs("1.2.3.4", 61_000), None);
        assert_eq!(b.retry_after_secs("5.6.7.8", 1_000), None);
    }

    #[test]
    fn stays_bounded() {
        let mut b = Blocked::default();
        for i in 0..(MAX_CLIENTS as u64 + 10) {
            b.block(&format!("c{i}"), i);
        }
        assert!(b.until_ms.len() <= MAX_CLIENTS);
        assert!(b
            .retry_after_secs(&format!("c{}", MAX_CLIENTS + 9), 100)
            .is_some());
    }
}
