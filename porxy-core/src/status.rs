//! Counters and the status snapshots built from them.
//!
//! Counters are atomics sharded per writer thread (each reactor, and the listener, writes only its
//! own shard, padded to its own cache line), so counting never makes reactors contend. A status
//! call sums the shards into plain values.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::accept_pauses::AcceptPauses;
use crate::balance::backend::BackendState;
use crate::cert_status::CertificateStatus;
use crate::conn::close::CloseReason;
use crate::generation::GenerationStatus;
use crate::histogram::{Buckets, Histogram, LIFETIME_BOUNDS};
use crate::spec::{Reply, Strategy, TunnelMode};
use crate::splice::{FallbackCounts, SpliceFallbacks};

pub(crate) use crate::counter::bump;

/// Counts a connection gone from an `open` counter. Release: whoever reads the counter with
/// [`open_now`] and sees the connection gone also sees everything counted for it before (bytes,
/// the reason it ended), so a caller that waits for `open == 0` reads final figures.
#[inline]
fn drop_one(counter: &AtomicU64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_sub(1),
        Ordering::Release,
    );
}

/// Reads an `open` counter (see [`drop_one`]).
#[inline]
fn open_now(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Acquire)
}

/// One writer's counters for one tunnel.
#[repr(align(128))]
pub(crate) struct TunnelShard {
    pub(crate) open: AtomicU64,
    pub(crate) accepted: AtomicU64,
    /// Connections taken over from another porxy process.
    pub(crate) imported: AtomicU64,
    pub(crate) bytes_to_upstream: AtomicU64,
    pub(crate) bytes_to_client: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    /// Clients that waited for a backend's slot (every backend at `max_conns`).
    pub(crate) queued: AtomicU64,
    pub(crate) closes: [AtomicU64; CloseReason::ALL.len()],
    /// How long its connections lived (those that ended here, not those handed over).
    lifetime: Buckets,
}

impl Default for TunnelShard {
    fn default() -> Self {
        TunnelShard {
            open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            imported: AtomicU64::new(0),
            bytes_to_upstream: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            closes: std::array::from_fn(|_| AtomicU64::new(0)),
            lifetime: Buckets::new(LIFETIME_BOUNDS),
        }
    }
}

impl TunnelShard {
    pub(crate) fn opened(&self) {
        bump(&self.open, 1);
    }

    /// A connection that lived `lived` ended for `reason`.
    pub(crate) fn closed(&self, reason: CloseReason, lived: std::time::Duration) {
        // The reason first: a reader that sees the connection gone sees why.
        bump(&self.closes[reason.index()], 1);
        if reason != CloseReason::HandedOver {
            self.lifetime.record_alone(lived);
        }
        drop_one(&self.open);
    }
}

/// The counters of one tunnel: one shard per reactor, then one for the listener.
pub(crate) struct TunnelStats {
    shards: Box<[TunnelShard]>,
}

impl TunnelStats {
    pub(crate) fn new(reactors: usize) -> Self {
        TunnelStats {
            shards: (0..=reactors).map(|_| TunnelShard::default()).collect(),
        }
    }

    /// The shard reactor `index` writes.
    pub(crate) fn reactor(&self, index: usize) -> &TunnelShard {
        &self.shards[index]
    }

    /// The shard the listener thread writes.
    pub(crate) fn listener(&self) -> &TunnelShard {
        &self.shards[self.shards.len() - 1]
    }

    fn sum(&self, field: impl Fn(&TunnelShard) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }

    pub(crate) fn snapshot(
        &self,
        local: SocketAddr,
        spec: String,
        strategy: Strategy,
        mode: TunnelMode,
        reply: Option<Reply>,
        backends: Vec<BackendStatus>,
    ) -> TunnelStatus {
        // `open` first: what was counted before a connection closed is read after it.
        let open = self
            .shards
            .iter()
            .map(|s| open_now(&s.open))
            .fold(0u64, u64::wrapping_add);
        let mut closes = [0u64; CloseReason::ALL.len()];
        for (i, slot) in closes.iter_mut().enumerate() {
            *slot = self.sum(|s| &s.closes[i]);
        }
        TunnelStatus {
            local,
            remotes: backends
                .iter()
                .filter(|b| b.state != BackendState::Removing)
                .map(|b| b.addr)
                .collect(),
            spec,
            strategy,
            mode,
            reply,
            backends,
            open,
            accepted: self.sum(|s| &s.accepted),
            imported: self.sum(|s| &s.imported),
            bytes_to_upstream: self.sum(|s| &s.bytes_to_upstream),
            bytes_to_client: self.sum(|s| &s.bytes_to_client),
            connect_failures: self.sum(|s| &s.connect_failures),
            queued: self.sum(|s| &s.queued),
            closes: CloseCounts(closes),
            lifetime: {
                let mut lifetime = Histogram::new(LIFETIME_BOUNDS);
                for shard in self.shards.iter() {
                    shard.lifetime.add_into(&mut lifetime);
                }
                lifetime
            },
            certificates: Vec::new(),
        }
    }
}

/// Counters of one reactor, written by that reactor only.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct ReactorStats {
    pub(crate) open: AtomicU64,
    pub(crate) adopted: AtomicU64,
    /// Connections that ended because descriptors or memory ran out.
    shortages: AtomicU64,
    /// Its pipe pool's count of copies made instead of splices.
    splice_fallbacks: Arc<FallbackCounts>,
}

impl ReactorStats {
    /// The counters of a reactor whose pipe pool counts its fallbacks in `splice_fallbacks`.
    pub(crate) fn new(splice_fallbacks: Arc<FallbackCounts>) -> Self {
        ReactorStats {
            splice_fallbacks,
            ..ReactorStats::default()
        }
    }

    pub(crate) fn snapshot(&self, index: usize) -> ReactorStatus {
        ReactorStatus {
            index,
            open: open_now(&self.open),
            adopted: self.adopted.load(Ordering::Relaxed),
            shortages: self.shortages.load(Ordering::Relaxed),
            splice_fallbacks: self.splice_fallbacks.snapshot(),
        }
    }

    pub(crate) fn opened(&self) {
        bump(&self.open, 1);
        bump(&self.adopted, 1);
    }

    /// A connection taken over from another process: open here, but never handed over by the
    /// listener thread (whose count of clients on their way compares with `adopted`).
    pub(crate) fn imported(&self) {
        bump(&self.open, 1);
    }

    pub(crate) fn closed(&self, reason: CloseReason) {
        if reason == CloseReason::LocalResource {
            bump(&self.shortages, 1);
        }
        drop_one(&self.open);
    }
}

/// A snapshot of the whole proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Every listening tunnel, ordered by listen address.
    pub tunnels: Vec<TunnelStatus>,
    /// Every reactor, by index.
    pub reactors: Vec<ReactorStatus>,
    /// True once a stop has begun and the proxy has stopped accepting: a client that connects
    /// from then on is not taken by this proxy (a successor sharing its sockets gets it).
    pub stopping: bool,
    /// The current configuration generation and older ones that still hold connections.
    pub generations: Vec<GenerationStatus>,
    /// How often accepting paused, by cause.
    pub accept_pauses: AcceptPauses,
}

/// Snapshots are made by the proxy; these constructors give the rest of the fields zeros, so
/// that a front end can build one for its own tests (the structs grow: see `non_exhaustive`).
impl TunnelStatus {
    /// A balancing tunnel on `local` with nothing counted and no backend.
    pub fn new(local: SocketAddr) -> TunnelStatus {
        TunnelStatus {
            local,
            remotes: Vec::new(),
            spec: String::new(),
            strategy: Strategy::default(),
            mode: TunnelMode::default(),
            reply: None,
            backends: Vec::new(),
            open: 0,
            accepted: 0,
            imported: 0,
            bytes_to_upstream: 0,
            bytes_to_client: 0,
            connect_failures: 0,
            queued: 0,
            closes: CloseCounts::default(),
            lifetime: Histogram::new(LIFETIME_BOUNDS),
            certificates: Vec::new(),
        }
    }
}

impl BackendStatus {
    /// A backend at `addr`, up, of weight 1, with nothing counted.
    pub fn new(addr: SocketAddr) -> BackendStatus {
        BackendStatus {
            addr,
            weight: 1,
            state: BackendState::Up,
            open: 0,
            total: 0,
            failures: 0,
            bytes_to_backend: 0,
            bytes_from_backend: 0,
            bytes_sent: 0,
            lag_drops: 0,
            connect_time: Histogram::new(crate::histogram::CONNECT_BOUNDS),
        }
    }
}

impl ReactorStatus {
    /// Reactor `index`, with nothing counted.
    pub fn new(index: usize) -> ReactorStatus {
        ReactorStatus {
            index,
            open: 0,
            adopted: 0,
            shortages: 0,
            splice_fallbacks: SpliceFallbacks::default(),
        }
    }
}

impl Status {
    /// Open proxied connections across all reactors (closed tunnels' connections included).
    pub fn open_connections(&self) -> u64 {
        self.reactors.iter().map(|r| r.open).sum()
    }

    /// The tunnel listening on `local`, if any.
    pub fn tunnel(&self, local: SocketAddr) -> Option<&TunnelStatus> {
        self.tunnels.iter().find(|t| t.local == local)
    }
}

/// A snapshot of one tunnel's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunnelStatus {
    /// The bound listen address.
    pub local: SocketAddr,
    /// The resolved addresses of the remotes in use (not those being removed).
    pub remotes: Vec<SocketAddr>,
    /// The tunnel expression it was opened with.
    pub spec: String,
    /// How connections are spread over the backends (balance mode).
    pub strategy: Strategy,
    /// Balance over the remotes, or copy every client to all of them.
    pub mode: TunnelMode,
    /// Fan-out: whose replies reach the client (`None` in balance mode).
    pub reply: Option<Reply>,
    /// Every backend, in the tunnel's order (a removed one until its last connection ends).
    pub backends: Vec<BackendStatus>,
    /// Connections open now.
    pub open: u64,
    /// Connections accepted since the tunnel opened.
    pub accepted: u64,
    /// Established connections taken over from the porxy process this one replaced.
    pub imported: u64,
    /// Bytes relayed from clients to upstreams.
    pub bytes_to_upstream: u64,
    /// Bytes relayed from upstreams to clients.
    pub bytes_to_client: u64,
    /// Upstream connect attempts that failed (refused, timed out, other errors), including
    /// those after which another backend served the client.
    pub connect_failures: u64,
    /// Clients that waited for a backend's slot (every backend at `max_conns`); those that
    /// waited in vain are the `queue_timeout` closes.
    pub queued: u64,
    /// Ended connections by reason.
    pub closes: CloseCounts,
    /// How long connections lived, those that ended here (not those handed over).
    pub lifetime: Histogram,
    /// The certificates it holds, as read when it was opened or last reloaded: its listener's
    /// (TLS termination), then the one it shows backends (`backend_tls_cert`).
    pub certificates: Vec<CertificateStatus>,
}

/// A snapshot of one backend of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendStatus {
    /// Its address.
    pub addr: SocketAddr,
    /// Its weight.
    pub weight: u32,
    /// Up, down, draining, disabled or removing.
    pub state: BackendState,
    /// Connections it holds now.
    pub open: u64,
    /// Connections it was given since it joined the tunnel.
    pub total: u64,
    /// Connects to it that failed.
    pub failures: u64,
    /// Bytes relayed to it: a relayed connection's from its client, a fan-out destination's
    /// copy of its client's stream.
    pub bytes_to_backend: u64,
    /// Bytes relayed from it to clients (a fan-out connection's replies come from its primary).
    pub bytes_from_backend: u64,
    /// Fan-out: bytes sent to it (0 in balance mode).
    pub bytes_sent: u64,
    /// Fan-out: connections it was dropped from for falling more than `max_lag` behind.
    pub lag_drops: u64,
    /// How long connects to it took, those that succeeded.
    pub connect_time: Histogram,
}

/// Ended connections counted by [`CloseReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloseCounts([u64; CloseReason::ALL.len()]);

impl CloseCounts {
    /// How many connections ended for `reason`.
    pub fn get(&self, reason: CloseReason) -> u64 {
        self.0[reason.index()]
    }

    /// Every reason with a count above zero.
    pub fn nonzero(&self) -> impl Iterator<Item = (CloseReason, u64)> + '_ {
        CloseReason::ALL
            .iter()
            .map(|r| (*r, self.get(*r)))
            .filter(|(_, n)| *n > 0)
    }

    /// All ended connections.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// A snapshot of one reactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReactorStatus {
    /// The reactor's index, from 0.
    pub index: usize,
    /// Connections it holds now.
    pub open: u64,
    /// Connections it took in since start: accepted itself, or handed by the listener thread.
    pub adopted: u64,
    /// Its connections that ended because descriptors or memory ran out (reason
    /// `local_resource`).
    pub shortages: u64,
    /// Bytes it copied instead of splicing, by cause.
    pub splice_fallbacks: SpliceFallbacks,
}
