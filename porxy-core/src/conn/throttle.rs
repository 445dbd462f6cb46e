//! Bandwidth limits of one relayed connection (`max_rate_up`, `max_rate_down`) and of its
//! tunnel's connections together (`max_tunnel_rate_up`, `max_tunnel_rate_down`).
//!
//! A direction reads only what both its own bucket and its tunnel's grant (see [`Rate`]): the
//! grant is taken before the read and what the read did not use is given back, so the
//! connections of a tunnel, on every reactor, never read more than its rate and one burst
//! together. A direction out of allowance stops reading (its source's readiness is kept) and
//! the connection's deadline becomes the moment a quantum is due again: the reactor's timer
//! drives it then. Nothing sleeps. Only reads are held back: bytes read are written out as
//! fast as the sink takes them.

use std::sync::Arc;
use std::time::Instant;

use crate::rate::Rate;

/// The fewest bytes a held-back direction waits for, unless its burst is smaller: reading
/// less at a time would cost a system call for a few bytes.
const QUANTUM: u64 = 16 * 1024;
/// Most bytes asked for before one pump of a direction (more than one drive reads).
const WANT: u64 = 1 << 20;

/// Which way bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    /// Client → upstream.
    Up,
    /// Upstream → client.
    Down,
}

/// The bytes a second one direction may read, from its own limit and its tunnel's, and
/// until when it is held back.
#[derive(Debug, Default)]
struct Limits {
    own: Option<Rate>,
    tunnel: Option<Arc<Rate>>,
    until: Option<Instant>,
}

impl Limits {
    fn is_empty(&self) -> bool {
        self.own.is_none() && self.tunnel.is_none()
    }

    /// Bytes granted at `now`, or when some will be.
    fn take(&self, now: Instant) -> Result<u64, Instant> {
        let own = match &self.own {
            Some(own) => own.take(now, WANT, QUANTUM)?,
            None => WANT,
        };
        let Some(tunnel) = &self.tunnel else {
            return Ok(own);
        };
        match tunnel.take(now, own, QUANTUM) {
            Ok(granted) => {
                if let Some(rate) = &self.own {
                    rate.give_back(own - granted);
                }
                Ok(granted)
            }
            Err(at) => {
                if let Some(rate) = &self.own {
                    rate.give_back(own);
                }
                Err(at)
            }
        }
    }

    fn give_back(&self, bytes: u64) {
        for rate in self.own.iter().chain(self.tunnel.as_deref()) {
            rate.give_back(bytes);
        }
    }
}

/// A connection's bandwidth limits, each way, and when each may read again.
#[derive(Debug)]
pub(crate) struct Throttle {
    up: Limits,
    down: Limits,
}

/// The burst of a connection's own rate: a tenth of a second's worth, at least a quantum (or
/// a second's worth, below a quantum a second).
pub(crate) fn burst(per_second: u64) -> u64 {
    (per_second / 10).max(per_second.min(QUANTUM))
}

impl Throttle {
    /// Limits of a connection that starts at `now`: its own bytes a second each way, and its
    /// tunnel's buckets. `None` if there is no limit at all.
    pub(crate) fn new(
        now: Instant,
        own: (Option<u64>, Option<u64>),
        tunnel: (Option<Arc<Rate>>, Option<Arc<Rate>>),
    ) -> Option<Box<Throttle>> {
        let own_rate = |per_second: Option<u64>| {
            per_second.map(|per_second| {
                let rate = Rate::new(now);
                rate.set(Some(per_second), burst(per_second));
                rate
            })
        };
        let throttle = Throttle {
            up: Limits {
                own: own_rate(own.0),
                tunnel: tunnel.0,
                until: None,
            },
            down: Limits {
                own: own_rate(own.1),
                tunnel: tunnel.1,
                until: None,
            },
        };
        (!throttle.up.is_empty() || !throttle.down.is_empty()).then(|| Box::new(throttle))
    }

    fn limits(&mut self, way: Way) -> &mut Limits {
        match way {
            Way::Up => &mut self.up,
            Way::Down => &mut self.down,
        }
    }

    /// Bytes `way` may read at `now` (`u64::MAX`: no limit); 0 holds it back, and the
    /// connection's deadline says when to try again.
    pub(crate) fn allow(&mut self, way: Way, now: Instant) -> u64 {
        let limits = self.limits(way);
        if limits.is_empty() {
            return u64::MAX;
        }
        match limits.until {
            Some(until) if now < until => return 0,
            Some(_) => limits.until = None,
            None => {}
        }
        match limits.take(now) {
            Ok(granted) => granted,
            Err(at) => {
                limits.until = Some(at);
                0
            }
        }
    }

    /// `way` read `read` of the `granted` bytes [`Throttle::allow`] gave: the rest goes back.
    /// If the grant ran out while its source still has bytes (`more`), true if more may be
    /// read at once (drive again); else the connection's deadline says when.
    pub(crate) fn used(
        &mut self,
        way: Way,
        granted: u64,
        read: u64,
        more: bool,
        now: Instant,
    ) -> bool {
        if granted == u64::MAX {
            return false;
        }
        if granted > read {
            self.limits(way).give_back(granted - read);
            return false;
        }
        if !more {
            return false;
        }
        // Out of grant with bytes waiting: when may it read again? No new event would say.
        match self.allow(way, now) {
            0 => false,
            granted => {
                self.limits(way).give_back(granted);
                true
            }
        }
    }

    /// When a held-back direction may read again, if one is held back.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.up.until.into_iter().chain(self.down.until).min()
    }

    /// At `now`: true if a direction was held back and may read again (drive it).
    pub(crate) fn on_timer(&mut self, now: Instant) -> bool {
        let mut due = false;
        for limits in [&mut self.up, &mut self.down] {
            if limits.until.is_some_and(|until| now >= until) {
                limits.until = None;
                due = true;
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn tunnel_rate(t0: Instant, per_second: u64) -> Arc<Rate> {
        let rate = Rate::new(t0);
        rate.set(Some(per_second), burst(per_second));
        Arc::new(rate)
    }

    #[test]
    fn no_limit_no_throttle() {
        assert!(Throttle::new(Instant::now(), (None, None), (None, None)).is_none());
    }

    #[test]
    fn a_direction_reads_its_burst_then_waits_for_a_quantum() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(t0, (Some(1_000_000), None), (None, None)).unwrap();
        assert_eq!(
            throttle.allow(Way::Down, t0),
            u64::MAX,
            "down is not limited"
        );
        assert_eq!(
            throttle.allow(Way::Up, t0),
            100_000,
            "a tenth of a second's worth"
        );
        throttle.used(Way::Up, 100_000, 100_000, false, t0);
        assert_eq!(throttle.allow(Way::Up, t0), 0);
        let quantum_later = t0 + Duration::from_nanos(QUANTUM * 1000);
        assert_eq!(throttle.deadline(), Some(quantum_later));
        assert!(!throttle.on_timer(t0));
        assert_eq!(throttle.allow(Way::Up, t0), 0, "held back until then");
        assert_eq!(
            throttle.allow(Way::Down, t0),
            u64::MAX,
            "the other way is not"
        );
        assert!(throttle.on_timer(quantum_later));
        assert_eq!(throttle.deadline(), None);
        assert_eq!(throttle.allow(Way::Up, quantum_later), QUANTUM);
    }

    #[test]
    fn bytes_not_read_go_back() {
        let t0 = Instant::now();
        let shared = tunnel_rate(t0, 1_000_000);
        let mut throttle =
            Throttle::new(t0, (Some(500_000), None), (Some(shared.clone()), None)).unwrap();
        assert_eq!(throttle.allow(Way::Up, t0), 50_000, "the smaller burst");
        throttle.used(Way::Up, 50_000, 10_000, true, t0);
        assert_eq!(throttle.allow(Way::Up, t0), 40_000, "what the read left");
        // The tunnel's bucket lost only what was read.
        assert_eq!(shared.take(t0, u64::MAX, 1), Ok(100_000 - 50_000));
    }

    #[test]
    fn connections_of_a_tunnel_share_its_rate() {
        let t0 = Instant::now();
        let shared = tunnel_rate(t0, 200_000);
        let mut a = Throttle::new(t0, (None, None), (None, Some(shared.clone()))).unwrap();
        let mut b = Throttle::new(t0, (None, None), (None, Some(shared))).unwrap();
        let mut read = 0;
        let mut at = t0;
        // One second, each connection reading whatever it is granted, in turn.
        while at <= t0 + Duration::from_secs(1) {
            for throttle in [&mut a, &mut b] {
                throttle.on_timer(at);
                let granted = throttle.allow(Way::Down, at);
                read += granted;
                throttle.used(Way::Down, granted, granted, false, at);
            }
            at += Duration::from_millis(1);
        }
        // The burst (20 KB) and a second at the rate, for both together, less what had not
        // made a quantum yet; and every grant a quantum or more.
        assert!(
            (220_000 - QUANTUM..=220_000).contains(&read),
            "{read} bytes in a second"
        );
    }
}
