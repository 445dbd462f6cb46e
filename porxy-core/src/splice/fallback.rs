//! Why a direction copied instead of splicing, and how often: counted by the reactor's pipe
//! pool, read by status snapshots from any thread.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::counter::bump;

/// Why a direction copied instead of splicing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// Every pipe the reactor may open is in use: this burst is copied.
    Budget,
    /// Creating a pipe failed (`EMFILE`, `ENFILE`, ...): the direction copies from now on.
    Create,
    /// A socket refused a splice (`EINVAL`, `ENOSYS`): the direction copies from now on.
    Unsupported,
}

/// One reactor's fallbacks so far, by [`Fallback`] (in declaration order). Written by that
/// reactor only.
#[derive(Debug, Default)]
pub(crate) struct FallbackCounts([AtomicU64; 3]);

impl FallbackCounts {
    /// Counts one fallback for `why`; the count so far.
    pub(crate) fn record(&self, why: Fallback) -> u64 {
        let count = &self.0[why as usize];
        bump(count, 1);
        count.load(Ordering::Relaxed)
    }

    pub(crate) fn get(&self, why: Fallback) -> u64 {
        self.0[why as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> SpliceFallbacks {
        SpliceFallbacks {
            budget: self.get(Fallback::Budget),
            create: self.get(Fallback::Create),
            unsupported: self.get(Fallback::Unsupported),
        }
    }
}

/// How often a reactor's connections copied bytes instead of splicing them, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpliceFallbacks {
    /// Bursts copied because every pipe the reactor may open was in use (expected under load).
    pub budget: u64,
    /// Directions that copy from then on because a pipe could not be created (descriptors or
    /// memory ran out).
    pub create: u64,
    /// Directions that copy from then on because a socket refused splice(2).
    pub unsupported: u64,
}
