//! When a reactor gives memory back: once it has been quiet for [`QUIET`] after any activity.
//! A burst (a stalled fan-out destination holding `max_lag` per connection, a flood of bulk
//! transfers) leaves buffers in the reactor's stock and freed pages in the allocator; a busy
//! reactor reuses them, a quiet one should not keep them. The policy alone, with no memory
//! touched: `mod.rs` carries it out.

use std::time::{Duration, Instant};

/// How long a reactor is quiet before it gives memory back.
pub(super) const QUIET: Duration = Duration::from_secs(1);

/// Whether there was activity since memory was last given back, and when the last was.
#[derive(Debug, Default)]
pub(super) struct IdleTrim {
    last_activity: Option<Instant>,
}

impl IdleTrim {
    /// Something happened at `now`.
    #[inline]
    pub(super) fn activity(&mut self, now: Instant) {
        self.last_activity = Some(now);
    }

    /// When to give memory back, if anything happened since the last time.
    pub(super) fn due(&self) -> Option<Instant> {
        self.last_activity.map(|at| at + QUIET)
    }

    /// Whether to give memory back at `now`; once per quiet spell.
    pub(super) fn take_due(&mut self, now: Instant) -> bool {
        match self.due() {
            Some(at) if now >= at => {
                self.last_activity = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_given_back_once_per_quiet_spell() {
        let mut trim = IdleTrim::default();
        let t0 = Instant::now();
        assert_eq!(trim.due(), None, "nothing happened yet");
        assert!(!trim.take_due(t0 + QUIET * 5));
        trim.activity(t0);
        trim.activity(t0 + QUIET / 2);
        assert_eq!(
            trim.due(),
            Some(t0 + QUIET / 2 + QUIET),
            "from the last activity"
        );
        assert!(!trim.take_due(t0 + QUIET));
        assert!(trim.take_due(t0 + QUIET * 2));
        assert!(!trim.take_due(t0 + QUIET * 3), "once");
        assert_eq!(trim.due(), None);
    }
}
