//! Choosing an upstream for a new connection.
//!
//! For now one strategy: round robin over the tunnel's remotes. Reactors share a tunnel, so the
//! cursor is an atomic; it is touched once per connection, never per byte.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Hands out indexes `0..n` in turn.
#[derive(Debug, Default)]
pub(crate) struct RoundRobin {
    cursor: AtomicUsize,
}

impl RoundRobin {
    /// The next index below `n`. `n` must be at least 1 (a tunnel always has a remote).
    pub(crate) fn next(&self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        self.cursor.fetch_add(1, Ordering::Relaxed) % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_takes_each_in_turn() {
        let rr = RoundRobin::default();
        let picks: Vec<usize> = (0..7).map(|_| rr.next(3)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(rr.next(1), 0);
    }
}
