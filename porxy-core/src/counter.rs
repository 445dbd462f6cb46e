//! A counter that one thread writes and others read: the increment every shard of porxy's
//! statistics uses.

use std::sync::atomic::{AtomicU64, Ordering};

/// Adds `n` to a counter that only one thread writes: a load and a store, no locked instruction.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}
