//! Bytes relayed to and from one backend, counted by every reactor that has connections on it:
//! each reactor adds into its own cache line (its index modulo [`SHARDS`]), so counting on the
//! data path never bounces a line between reactors; a status snapshot sums the shards.

use std::sync::atomic::{AtomicU64, Ordering};

/// Shards per backend: reactors beyond this share lines (correctly: adds are atomic).
const SHARDS: usize = 16;

#[derive(Default)]
#[repr(align(128))]
struct Shard {
    to_backend: AtomicU64,
    from_backend: AtomicU64,
}

/// A backend's byte counters.
#[derive(Default)]
pub(crate) struct BackendBytes(Box<[Shard; SHARDS]>);

impl BackendBytes {
    /// Reactor `reactor` relayed `to` bytes to the backend and `from` bytes from it.
    #[inline]
    pub(crate) fn add(&self, reactor: usize, to: u64, from: u64) {
        let shard = &self.0[reactor % SHARDS];
        if to > 0 {
            shard.to_backend.fetch_add(to, Ordering::Relaxed);
        }
        if from > 0 {
            shard.from_backend.fetch_add(from, Ordering::Relaxed);
        }
    }

    /// Bytes to the backend and from it, so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.0.iter().fold((0, 0), |(to, from), s| {
            (
                to + s.to_backend.load(Ordering::Relaxed),
                from + s.from_backend.load(Ordering::Relaxed),
            )
        })
    }
}
