//! The reactor's clock: how long it may sleep, and what is due when it wakes (connection
//! deadlines, a bounded number per round; backends whose removal deadline has come).

use std::time::{Duration, Instant};

use super::{Reactor, QUEUE_TICK, TIMERS_PER_ROUND};
use crate::conn::close::CloseReason;
use crate::conn::Action;

impl Reactor {
    pub(super) fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if self.work_left() {
            return Some(Duration::ZERO);
        }
        // Slots freed on other reactors send no word: queued connections look again shortly.
        let queue_tick = (!self.queued.is_empty()).then(|| now + QUEUE_TICK);
        let next = [
            self.timers.next(),
            self.fan_timers.next(),
            self.stopping.deadline(),
            queue_tick,
            self.backend_deadlines.iter().map(|(at, _)| *at).min(),
            self.exporting
                .as_ref()
                .map(super::handover::Exporting::until),
            self.acceptor.as_ref().and_then(|a| a.wake_at(now)),
        ]
        .into_iter()
        .flatten()
        .min();
        // Round up to the next millisecond so a timer is not polled for early, in a spin.
        next.map(|at| at.saturating_duration_since(now) + Duration::from_micros(999))
    }

    /// Makes sure the timer queue holds an entry no later than the connection's deadline.
    pub(super) fn arm_timer(&mut self, key: usize) {
        let Some(slot) = self.slab.get_mut(key) else {
            return;
        };
        let Some(deadline) = slot.conn.deadline() else {
            return;
        };
        if slot.timer_armed.is_none_or(|armed| deadline < armed) {
            slot.timer_armed = Some(deadline);
            self.timers.arm(deadline, key, slot.id);
        }
    }

    pub(super) fn fire_timers(&mut self, now: Instant) {
        // Bounded, so that a burst of deadlines cannot keep the reactor from its sockets.
        for _ in 0..TIMERS_PER_ROUND {
            let Some((key, id, at)) = self.timers.pop_due(now) else {
                return;
            };
            let Some(slot) = self.slab.get_mut(key) else {
                continue;
            };
            if slot.id != id {
                continue;
            }
            if slot.timer_armed == Some(at) {
                slot.timer_armed = None;
            }
            match slot.conn.on_timer(now) {
                // A connect timed out: the backend is charged for it, and maybe another is tried.
                Action::ConnectFailed(failure) => {
                    if let Some(failed) = self.after_connect_failure(key, failure, None, now) {
                        self.assign_backend(key, Some(failed), now);
                    }
                }
                action @ Action::Close { .. } => self.finish(key, action, None, now),
                _ => {
                    // The connection says nothing is due: its deadline must lie ahead. Should
                    // it not (a bug), re-arm a little later rather than fire again at once.
                    if slot.conn.deadline().is_some_and(|d| d <= now) {
                        tracing::error!(
                            conn = id,
                            "a deadline passed but nothing was due; a porxy bug"
                        );
                        slot.timer_armed = Some(now + Duration::from_millis(1));
                        self.timers.arm(now + Duration::from_millis(1), key, id);
                    } else {
                        self.arm_timer(key);
                    }
                }
            }
        }
    }

    /// Closes the connections of backends whose removal deadline has come.
    pub(super) fn fire_backend_deadlines(&mut self, now: Instant) {
        if self.backend_deadlines.iter().all(|(at, _)| *at > now) {
            return;
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.backend_deadlines)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.backend_deadlines = later;
        for (_, backend) in due {
            self.abort_where(|s| s.on_backend(&backend), CloseReason::BackendRemoved, now);
            self.close_fan_backend(&backend, now);
        }
    }
}
