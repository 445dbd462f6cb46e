//! The rise and fall counts of one watched backend, and the verdicts they lead to. No IO: the
//! checker feeds it each probe's outcome.

use super::CheckConfig;
use crate::balance::backend::{Backend, Health};

/// One watched backend's counts.
#[derive(Debug)]
pub(super) struct Streak {
    pub(super) ok_in_row: u32,
    pub(super) failed_in_row: u32,
    /// The backend's [`Backend::downs`] when last looked at.
    downs_seen: u64,
}

impl Streak {
    pub(super) fn new(backend: &Backend) -> Streak {
        Streak {
            ok_in_row: 0,
            failed_in_row: 0,
            downs_seen: backend.downs(),
        }
    }

    /// Counts one probe's outcome; changes the backend's health when `rise` good probes (or
    /// `fall` bad ones) in a row say so, and returns the new health then.
    pub(super) fn record(
        &mut self,
        backend: &Backend,
        passed: bool,
        config: &CheckConfig,
    ) -> Option<Health> {
        // Connect failures took it down since the last probe: the good probes before that fall
        // say nothing about it now, and it must pass `rise` more.
        let downs = backend.downs();
        if downs != self.downs_seen {
            self.downs_seen = downs;
            self.ok_in_row = 0;
        }
        if passed {
            self.failed_in_row = 0;
            self.ok_in_row = self.ok_in_row.saturating_add(1);
            if backend.health() == Health::Down && self.ok_in_row >= config.rise {
                backend.set_health(Health::Up);
                return Some(Health::Up);
            }
        } else {
            self.ok_in_row = 0;
            self.failed_in_row = self.failed_in_row.saturating_add(1);
            if backend.health() == Health::Up && self.failed_in_row >= config.fall {
                backend.set_health(Health::Down);
                self.downs_seen = backend.downs();
                return Some(Health::Down);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::balance::backend::PassiveHealth;
    use crate::balance::health::tests::{backend, config, PASSIVE};

    #[test]
    fn fall_bad_checks_in_a_row_take_it_down() {
        let (b, c) = (backend(), config(2, 3));
        let mut s = Streak::new(&b);
        assert_eq!(s.record(&b, false, &c), None);
        assert_eq!(s.record(&b, false, &c), None);
        assert_eq!(s.record(&b, true, &c), None, "a good check ends the run");
        assert_eq!(s.record(&b, false, &c), None);
        assert_eq!(s.record(&b, false, &c), None);
        assert_eq!(b.health(), Health::Up, "two bad in a row are not three");
        assert_eq!(s.record(&b, false, &c), Some(Health::Down));
        assert_eq!(b.health(), Health::Down);
        assert_eq!(
            s.record(&b, false, &c),
            None,
            "already down: no new verdict"
        );
    }

    #[test]
    fn rise_good_checks_in_a_row_bring_it_back() {
        let (b, c) = (backend(), config(3, 1));
        let mut s = Streak::new(&b);
        assert_eq!(s.record(&b, false, &c), Some(Health::Down));
        assert_eq!(s.record(&b, true, &c), None);
        assert_eq!(s.record(&b, true, &c), None);
        assert_eq!(s.record(&b, false, &c), None, "a bad check ends the run");
        assert_eq!(b.health(), Health::Down);
        assert_eq!(s.record(&b, true, &c), None);
        assert_eq!(s.record(&b, true, &c), None);
        assert_eq!(b.health(), Health::Down, "two good in a row are not three");
        assert_eq!(s.record(&b, true, &c), Some(Health::Up));
        assert_eq!(b.health(), Health::Up);
    }

    /// Regression: good checks counted before connect failures took the backend down brought it
    /// back on the next good check, whatever `rise` said.
    #[test]
    fn after_a_passive_down_it_needs_rise_good_checks_again() {
        let (b, c) = (backend(), config(3, 3));
        let mut s = Streak::new(&b);
        for _ in 0..5 {
            assert_eq!(s.record(&b, true, &c), None, "up already");
        }
        assert!(b.connect_failed(Instant::now(), &PASSIVE), "marked down");
        assert_eq!(s.record(&b, true, &c), None);
        assert_eq!(s.record(&b, true, &c), None);
        assert_eq!(b.health(), Health::Down, "two good checks since the fall");
        assert_eq!(s.record(&b, true, &c), Some(Health::Up));
    }

    /// A connect failure that does not take the backend down changes nothing for the checks.
    #[test]
    fn a_connect_failure_short_of_max_fails_leaves_the_counts_alone() {
        let (b, c) = (backend(), config(2, 2));
        let passive = PassiveHealth {
            max_fails: 3,
            ..PASSIVE
        };
        let mut s = Streak::new(&b);
        assert_eq!(s.record(&b, false, &c), None);
        assert!(!b.connect_failed(Instant::now(), &passive), "one of three");
        assert_eq!(s.record(&b, false, &c), Some(Health::Down), "fall=2");
        assert_eq!(s.record(&b, true, &c), None);
        assert!(!b.connect_failed(Instant::now(), &passive), "down already");
        assert_eq!(s.record(&b, true, &c), Some(Health::Up), "rise=2");
    }
}
