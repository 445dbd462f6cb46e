//! [`Rate`]: a token bucket shared by threads without a lock, for every "so many a second" of
//! the proxy: clients accepted (`max_accept_rate`) and bytes relayed (`max_rate_up`,
//! `max_rate_down`, per connection and per tunnel).
//!
//! The bucket is one number: the moment at which every unit granted so far will have been
//! paid for at the rate (the generic cell rate algorithm's "theoretical arrival time"). Units
//! are available while that moment is in the past, up to a burst's worth: a grant moves it
//! forward by what the units cost, in one compare-and-swap, so threads taking at once never
//! grant more than the rate and the burst allow. The rate may change at any time.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const NANOS: u128 = 1_000_000_000;

/// A rate in units a second, with a burst; unlimited until [`Rate::set`] gives one.
#[derive(Debug)]
pub(crate) struct Rate {
    /// What the times below count nanoseconds from.
    origin: Instant,
    /// When every unit granted so far is paid for, in nanoseconds after `origin` (it starts
    /// far in the past: a full bucket).
    paid_at: AtomicI64,
    /// Units a second; 0: no limit.
    per_second: AtomicU64,
    /// Units that may be taken at once after a quiet spell.
    burst: AtomicU64,
}

impl Rate {
    /// No limit, until [`Rate::set`] gives one.
    pub(crate) fn new(origin: Instant) -> Rate {
        Rate {
            origin,
            paid_at: AtomicI64::new(i64::MIN / 2),
            per_second: AtomicU64::new(0),
            burst: AtomicU64::new(1),
        }
    }

    /// `per_second` units a second (`None`: no limit), at most `burst` at once (at least 1).
    pub(crate) fn set(&self, per_second: Option<u64>, burst: u64) {
        self.burst.store(burst.max(1), Ordering::Relaxed);
        self.per_second
            .store(per_second.unwrap_or(0), Ordering::Relaxed);
    }

    /// Takes up to `want` units at `now`, and no fewer than `at_least` (or `want`, or the burst,
    /// if less): how many were granted, or `Err(when that many will be available)`.
    pub(crate) fn take(&self, now: Instant, want: u64, at_least: u64) -> Result<u64, Instant> {
        let per_second = u128::from(self.per_second.load(Ordering::Relaxed));
        if per_second == 0 || want == 0 {
            return Ok(want);
        }
        let burst = u128::from(self.burst.load(Ordering::Relaxed));
        let now_ns = self.nanos(now);
        // A full bucket's worth of time: older debts are forgiven beyond it.
        let full = cost_ns(burst, per_second);
        let mut paid_at = self.paid_at.load(Ordering::Relaxed);
        loop {
            let base = paid_at.max(now_ns.saturating_sub(full));
            let spare_ns = u128::try_from(now_ns.saturating_sub(base)).unwrap_or(0);
            let available = (spare_ns * per_second / NANOS).min(burst);
            let needed = u128::from(at_least.clamp(1, want)).min(burst);
            if available < needed {
                let at = base.saturating_add(cost_ns(needed, per_second));
                return Err(self.instant(at));
            }
            let granted = available.min(u128::from(want));
            let next = base.saturating_add(cost_ns(granted, per_second));
            match self.paid_at.compare_exchange_weak(
                paid_at,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(granted as u64),
                Err(current) => paid_at = current,
            }
        }
    }

    /// Gives back `units` granted and not used.
    pub(crate) fn give_back(&self, units: u64) {
        let per_second = u128::from(self.per_second.load(Ordering::Relaxed));
        if per_second == 0 || units == 0 {
            return;
        }
        // Rounded down: a refund never gives more than was paid.
        let refund = i64::try_from(u128::from(units) * NANOS / per_second).unwrap_or(i64::MAX);
        let _ = self
            .paid_at
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |paid_at| {
                Some(paid_at.saturating_sub(refund))
            });
    }

    fn nanos(&self, now: Instant) -> i64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        i64::try_from(since).unwrap_or(i64::MAX)
    }

    fn instant(&self, nanos: i64) -> Instant {
        self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
    }
}

/// What `units` cost at `per_second`, in nanoseconds, rounded up.
fn cost_ns(units: u128, per_second: u128) -> i64 {
    i64::try_from((units * NANOS).div_ceil(per_second)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn no_limit_grants_everything() {
        let t0 = Instant::now();
        let rate = Rate::new(t0);
        assert_eq!(rate.take(t0, u64::MAX, 1), Ok(u64::MAX));
        rate.set(Some(10), 1);
        rate.set(None, 1);
        assert_eq!(rate.take(t0, 7, 1), Ok(7));
    }

    #[test]
    fn a_full_bucket_then_the_rate() {
        let t0 = Instant::now();
        let rate = Rate::new(t0);
        rate.set(Some(100), 10); // A burst of 10, then one each 10 ms.
        assert_eq!(rate.take(t0, 4, 1), Ok(4), "a full bucket from the start");
        assert_eq!(rate.take(t0, 100, 1), Ok(6), "the rest of the burst");
        let next = rate.take(t0, 1, 1).unwrap_err();
        assert_eq!(next, t0 + Duration::from_millis(10));
        assert_eq!(rate.take(next, 5, 1), Ok(1));
        assert_eq!(
            rate.take(next, 5, 3).unwrap_err(),
            next + Duration::from_millis(30),
            "when three will be there"
        );
        // Over a second: the burst and a second's worth at the rate, whatever the steps.
        let mut taken = 10 + 1;
        let mut at = next;
        while at < t0 + Duration::from_secs(1) {
            at += Duration::from_micros(700);
            taken += rate.take(at, 3, 1).unwrap_or(0);
        }
        assert_eq!(taken, 10 + 100);
        // A long pause fills the bucket to the burst, not beyond.
        let later = at + Duration::from_secs(60);
        assert_eq!(rate.take(later, 1000, 1), Ok(10));
    }

    #[test]
    fn bytes_at_a_high_rate_are_paid_exactly() {
        let t0 = Instant::now();
        let rate = Rate::new(t0);
        rate.set(Some(3_000_000_000), 64 * 1024); // 3 GB/s: a third of a nanosecond a byte.
        assert_eq!(rate.take(t0, 1 << 20, 1), Ok(64 * 1024));
        assert!(rate.take(t0, 1, 1).is_err());
        let ms = t0 + Duration::from_millis(1);
        assert_eq!(
            rate.take(ms, 1 << 30, 1),
            Ok(64 * 1024),
            "capped by the burst"
        );
    }

    #[test]
    fn units_given_back_are_taken_again() {
        let t0 = Instant::now();
        let rate = Rate::new(t0);
        rate.set(Some(1000), 100);
        assert_eq!(rate.take(t0, 100, 1), Ok(100));
        rate.give_back(40);
        assert_eq!(rate.take(t0, 100, 1), Ok(40));
        assert!(rate.take(t0, 1, 1).is_err());
    }

    #[test]
    fn threads_taking_at_once_take_only_the_burst() {
        let t0 = Instant::now();
        let rate = Arc::new(Rate::new(t0));
        rate.set(Some(50), 5);
        let taken: u64 = (0..4)
            .map(|_| {
                let rate = rate.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .filter_map(|_| rate.take(t0, 1, 1).ok())
                        .sum::<u64>()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(taken, 5);
    }
}
