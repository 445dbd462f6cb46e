//! Busy polling: after activity, a reactor polls with a zero timeout for a while instead of
//! blocking, so that the next message finds its thread (and its CPU) awake.
//!
//! Most of a small round trip through a proxy on a virtual machine is a vCPU waking from idle:
//! the reactor sleeps in `epoll_wait` between two messages. Spinning for a bounded window after
//! the last event keeps it awake while traffic flows, at the cost of a CPU that is busy for that
//! window after every burst. Unlike a poller that always spins (HAProxy's `busy-polling`), an
//! idle reactor goes back to sleep once the window has passed.
//!
//! Invariant: the timeout chosen is never longer than the one the reactor asked for; a zero
//! timeout only makes the loop turn more often, so no timer, message or stop is delayed.

use std::time::{Duration, Instant};

/// When a reactor spins instead of blocking. A zero window turns busy polling off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BusyPoll {
    /// How long after the last activity the reactor keeps polling without blocking.
    window: Duration,
    /// The last time a poll returned events or a round left work for the next one.
    last_activity: Option<Instant>,
}

impl BusyPoll {
    /// Spins for up to `window` after each activity; `Duration::ZERO` never spins.
    pub(crate) fn new(window: Duration) -> Self {
        BusyPoll {
            window,
            last_activity: None,
        }
    }

    /// Notes that the reactor had something to do at `now`: the window starts again.
    pub(crate) fn activity(&mut self, now: Instant) {
        if !self.window.is_zero() {
            self.last_activity = Some(now);
        }
    }

    /// The timeout to poll with at `now`, given the one the reactor needs for its timers and
    /// work (`normal`; `None` means no deadline): zero while within the window since the last
    /// activity, `normal` otherwise.
    pub(crate) fn timeout(&self, now: Instant, normal: Option<Duration>) -> Option<Duration> {
        match self.last_activity {
            Some(at) if now.saturating_duration_since(at) < self.window => Some(Duration::ZERO),
            _ => normal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_micros(200);
    const SECOND: Option<Duration> = Some(Duration::from_secs(1));

    #[test]
    fn off_never_spins() {
        let now = Instant::now();
        let mut off = BusyPoll::new(Duration::ZERO);
        off.activity(now);
        assert_eq!(off.timeout(now, SECOND), SECOND);
        assert_eq!(off.timeout(now, None), None);
    }

    #[test]
    fn before_any_activity_the_normal_timeout_holds() {
        let spin = BusyPoll::new(WINDOW);
        assert_eq!(spin.timeout(Instant::now(), None), None);
        assert_eq!(spin.timeout(Instant::now(), SECOND), SECOND);
    }

    #[test]
    fn within_the_window_the_timeout_is_zero() {
        let start = Instant::now();
        let mut spin = BusyPoll::new(WINDOW);
        spin.activity(start);
        let zero = Some(Duration::ZERO);
        assert_eq!(spin.timeout(start, None), zero, "no deadline: spin anyway");
        assert_eq!(spin.timeout(start, SECOND), zero);
        assert_eq!(spin.timeout(start + WINDOW / 2, SECOND), zero);
        assert_eq!(
            spin.timeout(start + WINDOW - Duration::from_nanos(1), None),
            zero
        );
    }

    #[test]
    fn after_the_window_the_normal_timeout_comes_back() {
        let start = Instant::now();
        let mut spin = BusyPoll::new(WINDOW);
        spin.activity(start);
        assert_eq!(spin.timeout(start + WINDOW, None), None, "back to sleep");
        assert_eq!(spin.timeout(start + WINDOW, SECOND), SECOND);
        assert_eq!(spin.timeout(start + 10 * WINDOW, SECOND), SECOND);
    }

    #[test]
    fn activity_starts_the_window_again() {
        let start = Instant::now();
        let mut spin = BusyPoll::new(WINDOW);
        spin.activity(start);
        let later = start + WINDOW * 3 / 4;
        spin.activity(later);
        assert_eq!(
            spin.timeout(start + WINDOW, SECOND),
            Some(Duration::ZERO),
            "the window counts from the latest activity"
        );
        assert_eq!(spin.timeout(later + WINDOW, SECOND), SECOND);
    }

    #[test]
    fn a_zero_normal_timeout_is_never_lengthened() {
        let start = Instant::now();
        let mut spin = BusyPoll::new(WINDOW);
        let zero = Some(Duration::ZERO);
        assert_eq!(spin.timeout(start, zero), zero);
        spin.activity(start);
        assert_eq!(spin.timeout(start + WINDOW * 2, zero), zero);
    }

    #[test]
    fn a_clock_reading_before_the_activity_counts_as_within() {
        // `now` is read before the poll and the activity after it: an earlier `now` than the
        // last activity must not underflow, and is within the window.
        let start = Instant::now();
        let mut spin = BusyPoll::new(WINDOW);
        spin.activity(start + WINDOW);
        assert_eq!(spin.timeout(start, SECOND), Some(Duration::ZERO));
    }
}
