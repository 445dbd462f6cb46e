//! Deadlines of one reactor's connections, and the poll timeout they give.
//!
//! One min-heap per reactor; no thread and no syscall per connection per tick. Entries are lazy:
//! activity never touches the heap. When an entry fires, the reactor asks the connection for its
//! real deadline, and re-arms if that has moved later. An entry names its connection by slab key
//! and connection id, so an entry that outlived its connection (or whose key was reused) is
//! recognised and dropped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Instant,
    id: u64,
    key: usize,
}

/// The pending deadlines of one reactor.
#[derive(Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl TimerQueue {
    /// Arms a deadline for connection `id` at slab `key`.
    pub(crate) fn arm(&mut self, at: Instant, key: usize, id: u64) {
        self.heap.push(Reverse(Entry { at, id, key }));
    }

    /// The earliest deadline, if any.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Takes the earliest deadline if it is due at `now`: `(key, id, at)`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(usize, u64, Instant)> {
        match self.heap.peek() {
            Some(Reverse(e)) if e.at <= now => {
                let Reverse(e) = self.heap.pop()?;
                Some((e.key, e.id, e.at))
            }
            _ => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.arm(t0 + Duration::from_secs(3), 1, 10);
        q.arm(t0 + Duration::from_secs(1), 2, 20);
        q.arm(t0 + Duration::from_secs(2), 3, 30);
        assert_eq!(q.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(q.pop_due(t0), None);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(q.pop_due(now).map(|e| e.0), Some(2));
        assert_eq!(q.pop_due(now).map(|e| e.0), Some(3));
        assert_eq!(q.pop_due(now), None);
        assert_eq!(q.len(), 1);
    }
}
