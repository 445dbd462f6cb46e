//! A rate limit for log lines about conditions that may recur thousands of times a second.
//!
//! Running out of descriptors, or a backend that refuses every connect, can make the same
//! warning due for every client. One line each would flood the log, and cost CPU when porxy
//! can least spare it. A [`LogLimit`] lets one line through per period and counts the others,
//! so that the next line says how many there were. Public, so that an application embedding
//! porxy (the porxy binary, for one) limits its own recurring warnings the same way.

use std::time::{Duration, Instant};

/// Lets one log line through per period, and counts the occurrences in between.
#[derive(Debug, Default)]
pub struct LogLimit {
    last: Option<Instant>,
    unlogged: u64,
}

impl LogLimit {
    /// Counts one occurrence at `now`; `Some(n)` when a line is due, for the `n` occurrences
    /// since the last line (this one included).
    pub fn occurred(&mut self, now: Instant, period: Duration) -> Option<u64> {
        self.unlogged += 1;
        if self
            .last
            .is_some_and(|at| now.saturating_duration_since(at) < period)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limit_says_how_many_were_not_logged() {
        let mut limit = LogLimit::default();
        let t0 = Instant::now();
        let period = Duration::from_secs(1);
        assert_eq!(limit.occurred(t0, period), Some(1));
        assert_eq!(limit.occurred(t0 + Duration::from_millis(10), period), None);
        assert_eq!(limit.occurred(t0 + Duration::from_millis(20), period), None);
        assert_eq!(limit.occurred(t0 + period, period), Some(3));
    }
}
