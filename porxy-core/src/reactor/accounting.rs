//! What a reactor counts for every connection it takes in and lets go: in the connection's
//! tunnel (this reactor's shard, and the tunnel's generation), in this reactor's own counters,
//! and in the proxy-wide count against the connection limit. Every path in and out goes
//! through here, so the three always agree.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::accept::Accepting;
use crate::conn::close::CloseReason;
use crate::status::ReactorStats;
use crate::tunnel::Tunnel;

/// One reactor's counting.
pub(super) struct Accounting {
    /// The reactor's index: its shard of every tunnel's counters.
    index: usize,
    stats: Arc<ReactorStats>,
    /// The count against the connection limit this reactor's connections are in, whoever
    /// accepted them.
    accepting: Arc<Accepting>,
}

impl Accounting {
    pub(super) fn new(index: usize, stats: Arc<ReactorStats>, accepting: Arc<Accepting>) -> Self {
        Accounting {
            index,
            stats,
            accepting,
        }
    }

    /// The reactor's index: its shard of the tunnels' counters.
    #[inline]
    pub(super) fn shard(&self) -> usize {
        self.index
    }

    /// Connections open on this reactor now.
    pub(super) fn open_here(&self) -> u64 {
        self.stats.open.load(Ordering::Relaxed)
    }

    /// A client accepted by this reactor itself (before it is taken in).
    pub(super) fn accepted(&self, tunnel: &Tunnel) {
        crate::status::bump(&tunnel.stats.reactor(self.index).accepted, 1);
    }

    /// A client taken in, accepted here or by the listener thread (which counted it against
    /// the limit already).
    pub(super) fn opened(&self, tunnel: &Tunnel) {
        tunnel.stats.reactor(self.index).opened();
        tunnel.generation.opened();
        self.stats.opened();
    }

    /// A connection taken in from another process: it counts against the limit here.
    pub(super) fn imported(&self, tunnel: &Tunnel) {
        let shard = tunnel.stats.reactor(self.index);
        shard.opened();
        crate::status::bump(&shard.imported, 1);
        tunnel.generation.opened();
        self.stats.imported();
        self.accepting.admission.add();
    }

    /// A connection of this reactor ended for `reason` after `lived` (or left, handed over):
    /// in its tunnel
    /// (the reason before the open count, see `status.rs`), its generation, this reactor and
    /// the count against the connection limit.
    pub(super) fn closed(&self, tunnel: &Tunnel, reason: CloseReason, lived: std::time::Duration) {
        tunnel.stats.reactor(self.index).closed(reason, lived);
        tunnel.generation.closed();
        self.stats.closed(reason);
        self.accepting.admission.release();
    }

    /// A client of `tunnel` began to wait for a backend's slot.
    pub(super) fn queued(&self, tunnel: &Tunnel) {
        crate::status::bump(&tunnel.stats.reactor(self.index).queued, 1);
    }

    /// A connect to one of `tunnel`'s backends failed.
    pub(super) fn connect_failed(&self, tunnel: &Tunnel) {
        crate::status::bump(&tunnel.stats.reactor(self.index).connect_failures, 1);
    }
}
