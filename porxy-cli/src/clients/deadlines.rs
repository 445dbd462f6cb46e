//! How long an admin client may take: to complete a request, and to take a whole reply.
//!
//! Both are deadlines for the whole of it, fixed when the wait begins: bytes that trickle in
//! without completing a request, or a reply taken a little now and then, extend neither (the
//! stream side of this is [`super::stream`]).

use std::time::{Duration, Instant};

/// A client that completes no request for this long is disconnected, unless the configuration
/// says otherwise (`[control] idle_timeout`, `--control-idle-timeout`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A client that has not taken the whole of a reply this long after it was ready is reset,
/// however it took parts of it meanwhile.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The deadlines of one front end's clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    idle_timeout: Duration,
}

impl Deadlines {
    /// Clients that complete no request within `idle_timeout` are disconnected.
    pub fn new(idle_timeout: Duration) -> Self {
        Deadlines { idle_timeout }
    }

    /// How long a client may take to complete a request.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// When a request that a client begins to be waited for at `now` must be complete.
    pub fn request_by(&self, now: Instant) -> Instant {
        now + self.idle_timeout
    }

    /// When a reply ready at `now` must have been taken whole.
    pub fn reply_by(&self, now: Instant) -> Instant {
        now + WRITE_TIMEOUT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_deadline_counts_from_when_its_wait_begins() {
        let deadlines = Deadlines::new(Duration::from_secs(5));
        let now = Instant::now();
        assert_eq!(deadlines.request_by(now), now + Duration::from_secs(5));
        assert_eq!(deadlines.reply_by(now), now + WRITE_TIMEOUT);
        assert_eq!(deadlines.idle_timeout(), Duration::from_secs(5));
    }
}
