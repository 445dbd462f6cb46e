//! The reactor's clock: how long it may sleep, and what is due when it wakes (connection
//! deadlines, a bounded number per round; backends whose removal deadline has come).

use std::time::{Duration, Instant};

use super::slot::Due;
use super::{Reactor, TIMERS_PER_ROUND};
use crate::conn::Action;

impl Reactor {
    pub(super) fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if self.work_left() {
            return Some(Duration::ZERO);
        }
        // Slots freed on other reactors send no word: queued connections look again shortly.

        let next = [
            self.slots.next_deadline(),
            self.stopping.deadline(),
            self.queue.next_look(now),
            self.removals.next(),
            self.handing_over.until(),
            self.acceptor.as_ref().and_then(|a| a.wake_at(now)),
            self.idle_trim.due(),
        ]
        .into_iter()
        .flatten()
        .min();
        // Round up to the next millisecond so a timer is not polled for early, in a spin.
        next.map(|at| at.saturating_duration_since(now) + Duration::from_micros(999))
    }

    /// Handles the connection deadlines that have come, a bounded number per round, so that
    /// a burst of deadlines cannot keep the reactor from its sockets.
    pub(super) fn fire_timers(&mut self, now: Instant) {
        for _ in 0..TIMERS_PER_ROUND {
            let Some(due) = self.slots.pop_due(now) else {
                return;
            };
            let Due::Conn(key) = due else {
                continue;
            };
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            let action = slot.machine.on_timer(now);
            if action == Action::Wait && slot.machine.deadline().is_some_and(|d| d <= now) {
                // Nothing was due though the deadline passed (a bug): look again a little
                // later rather than at once, in a spin.
                tracing::error!(
                    conn = slot.id,
                    "a deadline passed but nothing was due; a porxy bug"
                );
                self.slots.arm_at(key, now + Duration::from_millis(1));
                continue;
            }
            self.after_step(key, action, None, now);
        }
    }

    /// Closes the connections of backends whose removal deadline has come.
    pub(super) fn fire_backend_deadlines(&mut self, now: Instant) {
        for backend in self.removals.take_due(now) {
            self.remove_backend(&backend, now);
        }
    }
}
