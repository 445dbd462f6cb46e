//! The proxy-wide accept rate (`max_accept_rate`): how many clients all the accepting threads
//! together take per second. Over the rate a thread stops accepting until the next client is
//! due, so clients wait in the listen backlog instead of being accepted and reset.
//!
//! One atomic holds the moment the next client is due at the rate (the generic cell rate
//! algorithm: a token bucket written as a single timestamp), so threads accepting at once take
//! turns exactly, with no lock. A burst of [`AcceptRate::burst`] clients may come at once
//! after a quiet spell; from then on they come one every `1 / rate` seconds. The rate may
//! change while the proxy runs (a reload).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The accept rate, shared by every accepting thread.
#[derive(Debug)]
pub(crate) struct AcceptRate {
    /// What `due` counts nanoseconds from.
    origin: Instant,
    /// When the next client is due at the rate, in nanoseconds after `origin`.
    due: AtomicU64,
    /// Nanoseconds between two clients at the rate; 0: no limit.
    interval: AtomicU64,
    /// How far ahead of `due` a client may come: the burst beyond the first.
    slack: AtomicU64,
}

impl AcceptRate {
    /// No limit, until [`AcceptRate::set`] gives one.
    pub(crate) fn new(origin: Instant) -> AcceptRate {
        AcceptRate {
            origin,
            due: AtomicU64::new(0),
            interval: AtomicU64::new(0),
            slack: AtomicU64::new(0),
        }
    }

    /// Clients that may come at once after a quiet spell under `rate` a second: a tenth of a
    /// second's worth, at least one.
    pub(crate) fn burst(rate: u32) -> u32 {
        rate.div_ceil(10).max(1)
    }

    /// Limits accepts to `rate` a second (`None`: no limit).
    pub(crate) fn set(&self, rate: Option<u32>) {
        let interval = rate
            .filter(|r| *r > 0)
            .map_or(0, |r| 1_000_000_000 / u64::from(r));
        let burst = rate.map_or(1, AcceptRate::burst);
        self.slack
            .store(interval * u64::from(burst - 1), Ordering::Relaxed);
        self.interval.store(interval, Ordering::Relaxed);
    }

    /// Takes the turn of one client at `now`; if none is due yet, `Err(when the next is)`.
    pub(crate) fn take(&self, now: Instant) -> Result<(), Instant> {
        let interval = self.interval.load(Ordering::Relaxed);
        if interval == 0 {
            return Ok(());
        }
        let slack = self.slack.load(Ordering::Relaxed);
        let now_ns = self.nanos(now);
        let mut due = self.due.load(Ordering::Relaxed);
        loop {
            let earliest = due.saturating_sub(slack);
            if now_ns < earliest {
                return Err(self.origin + Duration::from_nanos(earliest));
            }
            let next = due.max(now_ns) + interval;
            match self
                .due
                .compare_exchange_weak(due, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(current) => due = current,
            }
        }
    }

    /// Gives back a turn taken for an accept that found nobody.
    pub(crate) fn give_back(&self) {
        let interval = self.interval.load(Ordering::Relaxed);
        if interval == 0 {
            return;
        }
        let _ = self
            .due
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |due| {
                Some(due.saturating_sub(interval))
            });
    }

    fn nanos(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn no_limit_takes_everything() {
        let t0 = Instant::now();
        let rate = AcceptRate::new(t0);
        assert!((0..10_000).all(|_| rate.take(t0).is_ok()));
        rate.set(Some(10));
        rate.set(None);
        assert!((0..10_000).all(|_| rate.take(t0).is_ok()));
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        let t0 = Instant::now();
        let rate = AcceptRate::new(t0);
        rate.set(Some(100)); // A burst of 10, then one each 10 ms.
        let start = t0 + Duration::from_secs(1);
        for n in 0..10 {
            assert_eq!(rate.take(start), Ok(()), "client {n} of the burst");
        }
        let next = rate.take(start).unwrap_err();
        assert_eq!(next, start + Duration::from_millis(10));
        assert_eq!(rate.take(next), Ok(()));
        assert!(rate.take(next).is_err());
        // Over one second from the first client: the burst, and one per interval.
        let mut taken = 10 + 1;
        let mut at = next;
        while at < start + Duration::from_secs(1) {
            at += Duration::from_millis(1);
            if rate.take(at).is_ok() {
                taken += 1;
            }
        }
        assert_eq!(taken, 10 + 100, "the burst and a second at the rate");
    }

    #[test]
    fn a_turn_given_back_is_taken_again() {
        let t0 = Instant::now();
        let rate = AcceptRate::new(t0);
        rate.set(Some(1)); // A burst of one.
        assert_eq!(rate.take(t0), Ok(()));
        assert!(rate.take(t0).is_err());
        rate.give_back();
        assert_eq!(rate.take(t0), Ok(()));
    }

    #[test]
    fn threads_taking_at_once_take_only_the_burst() {
        let t0 = Instant::now();
        let rate = Arc::new(AcceptRate::new(t0));
        rate.set(Some(50)); // A burst of 5; the next is due 20 ms later.
        let taken: usize = (0..4)
            .map(|_| {
                let rate = rate.clone();
                std::thread::spawn(move || (0..100).filter(|_| rate.take(t0).is_ok()).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(taken, 5);
    }
}
