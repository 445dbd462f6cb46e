//! Histograms of durations with fixed buckets (Prometheus's shape: a count per bucket, their
//! sum): how long connections lived, how long connects took. Recording is an increment of one
//! bucket and of the sum, in atomics laid out per writer where the writer is one thread (a
//! tunnel's shard per reactor) or shared with a read-modify-write where it is not (a backend).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The most buckets a histogram has, its `+Inf` one included.
const MAX_BUCKETS: usize = 16;

/// Upper bounds, in seconds, of a connection's lifetime buckets: from a short request to an
/// hour-long session.
pub const LIFETIME_BOUNDS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
];

/// Upper bounds, in seconds, of a connect's buckets: from a loopback connect to a timeout.
pub const CONNECT_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A histogram's figures: the count of each bucket (not cumulative), the last one `+Inf`.
#[derive(Debug, Clone, Copy)]
pub struct Histogram {
    /// The buckets' upper bounds, in seconds (the `+Inf` one not listed).
    pub bounds: &'static [f64],
    counts: [u64; MAX_BUCKETS],
    /// The sum of what was recorded, in microseconds.
    sum_micros: u64,
}

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: [0; MAX_BUCKETS],
            sum_micros: 0,
        }
    }

    /// Each bucket's count, `bounds.len() + 1` of them, the last one past every bound.
    pub fn counts(&self) -> &[u64] {
        &self.counts[..self.bounds.len() + 1]
    }

    /// How many were recorded.
    pub fn count(&self) -> u64 {
        self.counts().iter().fold(0u64, |a, b| a.wrapping_add(*b))
    }

    /// The sum of what was recorded, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_micros as f64 / 1e6
    }
}

impl PartialEq for Histogram {
    fn eq(&self, other: &Self) -> bool {
        // Bounds are finite constants: comparing them as numbers is an equivalence.
        self.bounds == other.bounds
            && self.counts == other.counts
            && self.sum_micros == other.sum_micros
    }
}

impl Eq for Histogram {}

/// A histogram's atomics.
#[derive(Debug)]
pub(crate) struct Buckets {
    bounds: &'static [f64],
    counts: [AtomicU64; MAX_BUCKETS],
    sum_micros: AtomicU64,
}

impl Buckets {
    pub(crate) fn new(bounds: &'static [f64]) -> Buckets {
        debug_assert!(bounds.len() < MAX_BUCKETS);
        Buckets {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn bucket(&self, value: Duration) -> usize {
        let seconds = value.as_secs_f64();
        self.bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len())
    }

    /// Records `value`, this thread being the only one that records here.
    pub(crate) fn record_alone(&self, value: Duration) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        crate::counter::bump(&self.counts[self.bucket(value)], 1);
        crate::counter::bump(&self.sum_micros, micros);
    }

    /// Records `value`, other threads recording here too.
    pub(crate) fn record_shared(&self, value: Duration) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.counts[self.bucket(value)].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Adds what it holds into `into` (a snapshot over the same bounds).
    pub(crate) fn add_into(&self, into: &mut Histogram) {
        for (sum, count) in into.counts.iter_mut().zip(&self.counts) {
            *sum = sum.wrapping_add(count.load(Ordering::Relaxed));
        }
        into.sum_micros = into
            .sum_micros
            .wrapping_add(self.sum_micros.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_that_holds_them() {
        let buckets = Buckets::new(&[0.01, 1.0]);
        buckets.record_alone(Duration::from_millis(10));
        buckets.record_alone(Duration::from_millis(11));
        buckets.record_shared(Duration::from_secs(1));
        buckets.record_alone(Duration::from_secs(7));
        let mut snapshot = Histogram::new(&[0.01, 1.0]);
        buckets.add_into(&mut snapshot);
        assert_eq!(snapshot.counts(), [1, 2, 1]);
        assert_eq!(snapshot.count(), 4);
        assert_eq!(snapshot.sum_seconds(), 8.021);
    }
}
