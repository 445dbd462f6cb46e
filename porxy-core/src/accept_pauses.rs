//! How often accepting paused, and why: counted by whichever thread pauses, read by status
//! snapshots. A leaf: status reads it without the accepting machinery.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why accepting paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pause {
    /// The proxy holds `max_connections`.
    ConnectionLimit,
    /// Over `max_accept_rate`.
    AcceptRate,
    /// Descriptors or memory ran out.
    ResourceShortage,
    /// A reactor held more than its share of the connections and left new clients to others.
    OverShare,
}

/// Pauses so far, by [`Pause`] (in declaration order). Several threads pause, so each count
/// takes a locked add: pauses are rare next to connections.
#[derive(Debug, Default)]
pub(crate) struct PauseCounts([AtomicU64; 4]);

impl PauseCounts {
    pub(crate) fn record(&self, why: Pause) {
        self.0[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> AcceptPauses {
        let get = |why: Pause| self.0[why as usize].load(Ordering::Relaxed);
        AcceptPauses {
            connection_limit: get(Pause::ConnectionLimit),
            accept_rate: get(Pause::AcceptRate),
            resource_shortage: get(Pause::ResourceShortage),
            over_share: get(Pause::OverShare),
        }
    }
}

/// How often accepting new clients paused since start, by cause. Clients wait in the listen
/// backlog meanwhile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcceptPauses {
    /// At `max_connections`.
    pub connection_limit: u64,
    /// Over `max_accept_rate`.
    pub accept_rate: u64,
    /// Out of descriptors or memory (an accept failed with `EMFILE`, `ENFILE`, `ENOBUFS` or
    /// `ENOMEM`): accepting waits a moment.
    pub resource_shortage: u64,
    /// A reactor stepped aside, holding more than its share of the connections (reactors
    /// accept mode; expected under load, it spreads clients evenly).
    pub over_share: u64,
}
