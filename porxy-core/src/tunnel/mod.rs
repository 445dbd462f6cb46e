//! Tunnels: what a listening address forwards to, and with which settings.
//!
//! A [`Tunnel`] is immutable and shared as `Arc`: the listener hands it to reactors with every
//! accepted connection, and a connection keeps the one it started with. Changing a tunnel means
//! building a new `Tunnel` with the same id and counters; established connections keep the old.

pub(crate) mod endpoint;
pub(crate) mod spec;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::balance::RoundRobin;
use crate::config::TunnelSettings;
use crate::status::{TunnelStats, TunnelStatus};

/// Identifies a tunnel across replacements of its remotes or options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TunnelId(pub(crate) u64);

/// A resolved, running tunnel.
pub(crate) struct Tunnel {
    pub(crate) id: TunnelId,
    pub(crate) local: SocketAddr,
    pub(crate) remotes: Vec<SocketAddr>,
    pub(crate) settings: TunnelSettings,
    pub(crate) balance: RoundRobin,
    pub(crate) stats: Arc<TunnelStats>,
    /// The expression as it was opened, with the bound address, for status output.
    pub(crate) spec: String,
}

impl Tunnel {
    /// The upstream for a new connection.
    pub(crate) fn pick_remote(&self) -> SocketAddr {
        self.remotes[self.balance.next(self.remotes.len())]
    }

    pub(crate) fn status(&self) -> TunnelStatus {
        self.stats
            .snapshot(self.local, self.remotes.clone(), self.spec.clone())
    }
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("id", &self.id)
            .field("local", &self.local)
            .field("remotes", &self.remotes)
            .finish()
    }
}
