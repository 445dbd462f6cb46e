//! When a reactor that accepts steps aside, and when it comes back: the policy alone, with no
//! socket and no epoll, so that it is tested on its own. `reactor/accept.rs` carries out what it
//! says (takes the listening sockets out of its epoll, puts them back, probes).
//!
//! A reactor stops accepting when the proxy is at its connection limit ([`Parked::Full`]), over
//! the proxy-wide accept rate until the next client is due ([`Parked::Throttled`]), when
//! it holds more than its share of the open connections ([`Parked::OverShare`]: the kernel then
//! wakes another reactor for the next clients), or when descriptors or memory ran out
//! ([`Parked::Starved`], for a while). Each is left by its own rule ([`Parked::tick`]).

use std::time::{Duration, Instant};

use super::within_share;

/// How often a parked reactor looks whether it may accept again.
pub(crate) const PARK_TICK: Duration = Duration::from_millis(10);
/// How long accepting pauses when descriptors or memory run out.
pub(crate) const RESOURCE_BACKOFF: Duration = Duration::from_millis(100);

/// The connections as one reactor sees them when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    /// Open on this reactor.
    pub(crate) own: u64,
    /// Open on all reactors (places taken under the limit).
    pub(crate) total: u64,
    pub(crate) reactors: u64,
    /// One more connection fits under the limit.
    pub(crate) room: bool,
}

impl Load {
    fn within_share(&self) -> bool {
        within_share(self.own, self.total, self.reactors)
    }
}

/// Why a reactor does not accept for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parked {
    /// The proxy holds `max_connections`.
    Full,
    /// This reactor holds more than its share of the open connections. At `probe`, it takes
    /// any client still waiting (nobody else may have been told of it).
    OverShare { probe: Option<Instant> },
    /// Descriptors or memory ran out; try again at this moment.
    Starved { until: Instant },
    /// Over `max_accept_rate`; the next client is due at this moment.
    Throttled { until: Instant },
}

/// What a parked reactor does at a turn of its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Stay out of the epoll.
    Stay,
    /// Accept again.
    Resume,
    /// Accept at most one client per socket: one still waiting a tick after stepping aside was
    /// told to nobody else. Back to the epoll if one was there; else parked, without a probe.
    Probe,
}

impl Parked {
    /// Stepping aside past the share at `now`: look for stranded clients a tick later.
    pub(crate) fn over_share(now: Instant) -> Parked {
        Parked::OverShare {
            probe: Some(now + PARK_TICK),
        }
    }

    /// Out of descriptors or memory at `now`.
    pub(crate) fn starved(now: Instant) -> Parked {
        Parked::Starved {
            until: now + RESOURCE_BACKOFF,
        }
    }

    /// What to do at `now` with `load`. A probe is made once: the state forgets it.
    pub(crate) fn tick(&mut self, now: Instant, load: Load) -> Tick {
        match *self {
            Parked::Full if load.room => Tick::Resume,
            Parked::Full => Tick::Stay,
            Parked::OverShare { .. } if load.within_share() => Tick::Resume,
            Parked::OverShare { probe: Some(at) } if now >= at => {
                *self = Parked::OverShare { probe: None };
                Tick::Probe
            }
            Parked::OverShare { .. } => Tick::Stay,
            Parked::Starved { until } | Parked::Throttled { until } if now >= until => Tick::Resume,
            Parked::Starved { .. } | Parked::Throttled { .. } => Tick::Stay,
        }
    }

    /// When to look again, from `now`.
    pub(crate) fn wake_at(&self, now: Instant) -> Instant {
        match *self {
            Parked::OverShare { probe: Some(at) } => at,
            Parked::Full | Parked::OverShare { .. } => now + PARK_TICK,
            Parked::Starved { until } | Parked::Throttled { until } => until,
        }
    }
}

/// Before accepting one more client in a round, `accepted` taken so far: step aside for the
/// share? The first client of a wake-up is always taken (no other reactor was woken for it).
/// (The limit is the admission count's to enforce, as it takes the place.)
pub(crate) fn before_accept(accepted: usize, now: Instant, load: Load) -> Option<Parked> {
    (accepted > 0 && !load.within_share()).then(|| Parked::over_share(now))
}

/// After a round that served every ready socket: past its share now, the reactor steps aside
/// so that the next clients wake another.
pub(crate) fn after_round(now: Instant, load: Load) -> Option<Parked> {
    (!load.within_share()).then(|| Parked::over_share(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accept::admission::SPREAD_SLACK;

    fn load(own: u64, total: u64, room: bool) -> Load {
        Load {
            own,
            total,
            reactors: 2,
            room,
        }
    }

    #[test]
    fn full_resumes_once_there_is_room() {
        let t0 = Instant::now();
        let mut parked = Parked::Full;
        assert_eq!(parked.tick(t0, load(10, 20, false)), Tick::Stay);
        assert_eq!(parked.wake_at(t0), t0 + PARK_TICK);
        assert_eq!(parked.tick(t0, load(10, 19, true)), Tick::Resume);
    }

    #[test]
    fn over_share_resumes_within_share_and_probes_once() {
        let t0 = Instant::now();
        let over = load(SPREAD_SLACK + 10, SPREAD_SLACK + 10, true);
        let mut parked = Parked::over_share(t0);
        assert_eq!(parked.wake_at(t0), t0 + PARK_TICK);
        assert_eq!(parked.tick(t0, over), Tick::Stay, "before the probe");
        assert_eq!(parked.tick(t0 + PARK_TICK, over), Tick::Probe);
        assert_eq!(parked, Parked::OverShare { probe: None });
        assert_eq!(parked.tick(t0 + 2 * PARK_TICK, over), Tick::Stay, "once");
        assert_eq!(parked.tick(t0, load(5, 10, true)), Tick::Resume);
    }

    #[test]
    fn starved_waits_for_the_backoff() {
        let t0 = Instant::now();
        let mut parked = Parked::starved(t0);
        assert_eq!(parked.wake_at(t0), t0 + RESOURCE_BACKOFF);
        assert_eq!(parked.tick(t0, load(0, 0, true)), Tick::Stay);
        assert_eq!(
            parked.tick(t0 + RESOURCE_BACKOFF, load(0, 0, true)),
            Tick::Resume
        );
    }

    #[test]
    fn throttled_waits_until_the_next_client_is_due() {
        let t0 = Instant::now();
        let due = t0 + Duration::from_millis(3);
        let mut parked = Parked::Throttled { until: due };
        assert_eq!(parked.wake_at(t0), due);
        assert_eq!(parked.tick(t0, load(0, 0, true)), Tick::Stay);
        assert_eq!(parked.tick(due, load(0, 0, true)), Tick::Resume);
    }

    #[test]
    fn a_round_takes_the_first_client_then_minds_the_share_and_the_limit() {
        let t0 = Instant::now();
        let over = load(SPREAD_SLACK + 10, SPREAD_SLACK + 10, true);
        assert_eq!(
            before_accept(0, t0, over),
            None,
            "the first is always taken"
        );
        assert_eq!(before_accept(1, t0, over), Some(Parked::over_share(t0)));
        assert_eq!(before_accept(3, t0, load(1, 2, true)), None);
        assert_eq!(after_round(t0, over), Some(Parked::over_share(t0)));
        assert_eq!(after_round(t0, load(1, 2, true)), None);
    }
}
