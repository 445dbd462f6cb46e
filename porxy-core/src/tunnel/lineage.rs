//! [`Lineage`]: what every version of one tunnel shares (its id, bound address, counters,
//! per-client counts and buckets), handed from one version to the next.

use std::net::SocketAddr;
use std::sync::Arc;

use super::bandwidth::TunnelBuckets;
use super::reach::OwnListener;
use super::{Tunnel, TunnelId};
use crate::conn::client_limits::ClientLimits;
use crate::conn::client_rate::ClientRate;
use crate::generation::Generation;
use crate::status::TunnelStats;

/// What every version of one tunnel shares (id, bound address, counters), and the generation
/// of the version being built.
pub(crate) struct Lineage {
    pub(crate) id: TunnelId,
    pub(crate) local: SocketAddr,
    pub(crate) dual_stack: bool,
    pub(crate) stats: Arc<TunnelStats>,
    pub(crate) generation: Arc<Generation>,
    /// The per-client connection counts, shared by every version.
    pub(crate) clients: Arc<ClientLimits>,
    /// The per-client connection rate buckets, shared by every version.
    pub(crate) rates: Arc<ClientRate>,
    /// The tunnel-wide bandwidth buckets, shared by every version.
    pub(crate) buckets: Arc<TunnelBuckets>,
}

impl Lineage {
    /// A new tunnel's identity, with fresh per-client counts and buckets.
    pub(crate) fn new(
        id: TunnelId,
        listening: OwnListener,
        stats: Arc<TunnelStats>,
        generation: Arc<Generation>,
    ) -> Lineage {
        Lineage {
            id,
            local: listening.addr,
            dual_stack: listening.dual_stack,
            stats,
            generation,
            clients: Arc::default(),
            rates: Arc::default(),
            buckets: Arc::default(),
        }
    }

    /// The next version of `tunnel`, in `generation`.
    pub(crate) fn of(tunnel: &Tunnel, generation: Arc<Generation>) -> Lineage {
        Lineage {
            id: tunnel.id,
            local: tunnel.local,
            dual_stack: tunnel.dual_stack,
            stats: tunnel.stats.clone(),
            generation,
            clients: tunnel.clients.clone(),
            rates: tunnel.rates.clone(),
            buckets: tunnel.bandwidth.buckets(),
        }
    }
}

#[cfg(test)]
impl Lineage {
    /// A fresh tunnel identity on 127.0.0.1:1, for building tunnels in tests.
    pub(crate) fn for_test() -> Lineage {
        Lineage::new(
            TunnelId(1),
            OwnListener::to_bind("127.0.0.1:1".parse().unwrap()),
            Arc::new(TunnelStats::new(1)),
            Arc::new(Generation::new(1)),
        )
    }
}
