//! The connection limit and the spread rule when reactors accept.
//!
//! [`Admission`] counts the connections open on every reactor. A reactor takes a place
//! ([`Admission::try_admit`]) before each `accept`, and gives it back when the accept finds
//! nobody or when the connection ends; connections taken over from another process are counted
//! whatever the limit (they exist already). With a place taken before the accept, reactors
//! accepting at the same moment cannot overshoot the limit together.

use std::sync::atomic::{AtomicU64, Ordering};

// The limiter has its own module now; this keeps `accept::LogLimit` where its users find it.
pub(crate) use crate::log_limit::LogLimit;

/// How many connections a reactor may hold beyond the average before it steps aside.
pub(crate) const SPREAD_SLACK: u64 = 4;

/// Open connections on all reactors against the connection limit.
#[derive(Debug)]
pub(crate) struct Admission {
    open: AtomicU64,
    limit: u64,
}

impl Admission {
    pub(crate) fn new(limit: u64) -> Self {
        Admission {
            open: AtomicU64::new(0),
            limit,
        }
    }

    /// Takes a place for one more connection; false at the limit.
    pub(crate) fn try_admit(&self) -> bool {
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                (open < self.limit).then_some(open + 1)
            })
            .is_ok()
    }

    /// Counts a connection that exists already (taken over), whatever the limit.
    pub(crate) fn add(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives a place back: the connection ended, or the accept it was taken for found nobody.
    pub(crate) fn release(&self) {
        // Never below zero, should a release ever be unmatched (a bug): the limit would lapse.
        let _ = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                open.checked_sub(1)
            });
    }

    /// Connections open (and places taken for accepts under way) on all reactors.
    pub(crate) fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// True when one more connection fits under the limit.
    pub(crate) fn has_room(&self) -> bool {
        self.open() < self.limit
    }

    /// The connection limit.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }
}

/// True when a reactor holding `own` of the `total` open connections (over `reactors`
/// reactors) stays within [`SPREAD_SLACK`] of the average with one more.
///
/// Each reactor accepts only while this holds (except for the first client of a wake-up, see
/// `reactor/accept.rs`), so none holds more than the average plus `SPREAD_SLACK + 1`.
pub(crate) fn within_share(own: u64, total: u64, reactors: u64) -> bool {
    let reactors = reactors.max(1);
    (own + 1).saturating_mul(reactors) <= (total + 1).saturating_add(SPREAD_SLACK * reactors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_stops_at_the_limit_and_counts_imports_beyond_it() {
        let admission = Admission::new(2);
        assert!(admission.try_admit());
        assert!(admission.try_admit());
        assert!(!admission.try_admit(), "at the limit");
        assert!(!admission.has_room());
        admission.add();
        assert_eq!(admission.open(), 3, "a connection taken over counts anyway");
        admission.release();
        admission.release();
        assert!(admission.try_admit());
        for _ in 0..5 {
            admission.release();
        }
        assert_eq!(admission.open(), 0, "never below zero");
    }

    #[test]
    fn share_allows_the_average_plus_the_slack() {
        // One reactor always holds all of them.
        assert!(within_share(1000, 1000, 1));
        // Four reactors, 100 connections: 25 each on average.
        assert!(within_share(25 + SPREAD_SLACK - 1, 100, 4));
        assert!(!within_share(25 + SPREAD_SLACK + 1, 100, 4));
        // At the start, a reactor may take the first few alone.
        assert!(within_share(0, 0, 4));
        assert!(within_share(SPREAD_SLACK, SPREAD_SLACK, 4));
        assert!(!within_share(SPREAD_SLACK + 1, SPREAD_SLACK + 1, 4));
    }

    #[test]
    fn share_is_reached_by_the_least_loaded_reactor() {
        // Whatever the counts, the reactor with the fewest connections may take one more: the
        // reactors can never all step aside at once.
        for counts in [[0, 0, 0], [9, 0, 0], [30, 31, 2], [100, 100, 100]] {
            let total: u64 = counts.iter().sum();
            let least = *counts.iter().min().unwrap();
            assert!(within_share(least, total, 3), "{counts:?}");
        }
    }
}
