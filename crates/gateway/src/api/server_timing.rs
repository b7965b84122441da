//! `Server-Timing` (W3C Server Timing): how long each step of a request
//! waited, for a browser's developer tools and the bench's latency
//! breakdown. Off unless `SERVER_TIMING=true`, since the figures tell anyone
//! who asks how fast the backends answer.

/// One request's steps, in the order they ran, with the wall time each
/// waited in milliseconds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ServerTiming {
    steps: Vec<(&'static str, u64)>,
}

impl ServerTiming {
    /// Records a step; `name` must be a header token (letters, digits, `-`, `_`).
    pub fn add(&mut self, name: &'static str, ms: u64) {
        self.steps.push((name, ms));
    }

    /// The header's value, or `None` when no step was recorded.
    pub fn header(&self) -> Option<String> {
        if self.steps.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|(name, ms)| format!("{name};dur={ms}"))
            .collect();
        Some(parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_listed_in_order_with_their_durations() {
        let mut t = ServerTiming::default();
        assert_eq!(t.header(), None);
        t.add("provider", 23);
        t.add("watch", 4);
        t.add("total", 29);
        assert_eq!(
            t.header().as_deref(),
            Some("provider;dur=23, watch;dur=4, total;dur=29")
        );
    }
}
