//! Relayed connections waiting for a backend slot while every backend of their tunnel is full,
//! oldest first. A slot freed on this reactor says so at once ([`BackendQueue::slot_freed`]);
//! one freed on another reactor sends no word, so the waiting look again every
//! [`QUEUE_TICK`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often queued connections look for a slot freed on another reactor.
const QUEUE_TICK: Duration = Duration::from_millis(10);

/// The connections waiting for a backend slot, as `(key, id)`.
#[derive(Default)]
pub(super) struct BackendQueue {
    waiting: VecDeque<(usize, u64)>,
    /// A slot may have freed up here: look before blocking.
    retry: bool,
}

impl BackendQueue {
    /// Connection `id` at slab key `key` waits (at the back, unless it waits already).
    pub(super) fn wait(&mut self, key: usize, id: u64) {
        if !self.waiting.iter().any(|&(k, i)| k == key && i == id) {
            self.waiting.push_back((key, id));
        }
    }

    /// A backend slot was given back (`released`): the waiting may get it.
    #[inline]
    pub(super) fn slot_freed(&mut self, released: bool) {
        self.retry |= released;
    }

    /// Whether to serve the queue this round.
    pub(super) fn due(&self) -> bool {
        self.retry || !self.waiting.is_empty()
    }

    /// When the waiting must look again if nothing frees a slot here.
    pub(super) fn next_look(&self, now: Instant) -> Option<Instant> {
        (!self.waiting.is_empty()).then(|| now + QUEUE_TICK)
    }

    /// This round's waiting connections, oldest first; each that is still full waits again
    /// (at the back) through [`BackendQueue::wait`].
    pub(super) fn take_round(&mut self) -> VecDeque<(usize, u64)> {
        self.retry = false;
        std::mem::take(&mut self.waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_once_in_order_and_a_round_takes_everyone() {
        let mut queue = BackendQueue::default();
        let now = Instant::now();
        assert!(!queue.due());
        assert_eq!(queue.next_look(now), None);
        queue.wait(3, 30);
        queue.wait(1, 10);
        queue.wait(3, 30);
        assert!(queue.due());
        assert_eq!(queue.next_look(now), Some(now + QUEUE_TICK));
        assert_eq!(queue.take_round(), [(3, 30), (1, 10)]);
        assert!(!queue.due(), "a round empties it");
        queue.slot_freed(false);
        assert!(!queue.due());
        queue.slot_freed(true);
        assert!(
            queue.due(),
            "a freed slot calls for a look, even with nobody waiting"
        );
        assert!(queue.take_round().is_empty());
        assert!(!queue.due());
    }
}
