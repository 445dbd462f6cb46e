//! Whether a reactor is stopping, and by when: a stop request's deadline, merged with any
//! earlier one. Pure: the reactor asks it, at each turn of its loop, whether to cut what is
//! left.

use std::time::Instant;

/// A reactor's stop, if one has begun.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Stopping {
    #[default]
    Running,
    /// Finish once every connection has ended; cut what is left at `until`.
    Draining { until: Instant },
    /// Cut every connection now.
    Now,
}

impl Stopping {
    /// Merges a stop request (`None`: at once) into this one: the earlier deadline wins, and an
    /// immediate stop is earliest of all, so a second, immediate stop cuts a graceful one
    /// short and never the other way round.
    pub(super) fn merge(self, deadline: Option<Instant>) -> Stopping {
        match (self, deadline) {
            (Stopping::Now, _) | (_, None) => Stopping::Now,
            (Stopping::Running, Some(until)) => Stopping::Draining { until },
            (Stopping::Draining { until }, Some(other)) => Stopping::Draining {
                until: until.min(other),
            },
        }
    }

    /// Nobody can send a stop any more (every sender is gone): stop now, unless a stop is
    /// under way already.
    pub(super) fn orphaned(self) -> Stopping {
        match self {
            Stopping::Running => Stopping::Now,
            stopping => stopping,
        }
    }

    pub(super) fn is_stopping(self) -> bool {
        self != Stopping::Running
    }

    /// When the reactor must wake up to cut what is left, if at a time.
    pub(super) fn deadline(self) -> Option<Instant> {
        match self {
            Stopping::Draining { until } => Some(until),
            Stopping::Running | Stopping::Now => None,
        }
    }

    /// Whether what is left must be cut at `now`.
    pub(super) fn cut_due(self, now: Instant) -> bool {
        match self {
            Stopping::Running => false,
            Stopping::Draining { until } => now >= until,
            Stopping::Now => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earlier_stop_wins_and_now_is_earliest() {
        let t0 = Instant::now();
        let (early, late) = (t0 + Duration::from_secs(1), t0 + Duration::from_secs(9));
        let draining = |until| Stopping::Draining { until };
        let cases = [
            (Stopping::Running, Some(late), draining(late)),
            (Stopping::Running, None, Stopping::Now),
            (draining(late), Some(early), draining(early)),
            (draining(early), Some(late), draining(early)),
            (draining(late), None, Stopping::Now),
            (Stopping::Now, Some(early), Stopping::Now),
            (Stopping::Now, None, Stopping::Now),
        ];
        for (current, incoming, merged) in cases {
            assert_eq!(
                current.merge(incoming),
                merged,
                "{current:?} + {incoming:?}"
            );
        }
    }

    #[test]
    fn orphaned_stops_now_unless_a_stop_is_under_way() {
        let until = Instant::now() + Duration::from_secs(5);
        assert_eq!(Stopping::Running.orphaned(), Stopping::Now);
        assert_eq!(
            Stopping::Draining { until }.orphaned(),
            Stopping::Draining { until }
        );
    }

    #[test]
    fn cut_is_due_at_the_deadline_or_at_once() {
        let t0 = Instant::now();
        let until = t0 + Duration::from_secs(5);
        assert!(!Stopping::Running.cut_due(until));
        assert!(!Stopping::Draining { until }.cut_due(t0));
        assert!(Stopping::Draining { until }.cut_due(until));
        assert!(Stopping::Now.cut_due(t0));
        assert_eq!(Stopping::Draining { until }.deadline(), Some(until));
        assert_eq!(Stopping::Now.deadline(), None);
    }
}
