//! [`ProxyHandle`]: the runtime API. Open, change and close tunnels, read status, stop.
//!
//! The handle is cheap to clone and `Send + Sync`; it talks to the listener and reactor threads
//! by messages. The tunnel table here is for the API's own bookkeeping (lookups by address,
//! status); the data path never touches its lock, and status reads a snapshot of it
//! (`table.rs`).

mod backends;
mod close;
mod listen;
mod liveness;
mod loops;
mod open;
mod reload;
mod sessions;
mod table;

use listen::bind;
pub(crate) use open::{resolve_remotes, usable_remote};

pub use backends::Removal;
pub use close::Closed;
pub use reload::ReloadReport;
pub use sessions::{ImportReport, SessionExport};
use table::{TableGuard, TunnelTable};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::accept::Accepting;
use crate::balance::backend::Backend;
use crate::balance::health::CheckerMsg;
use crate::config::ProxyConfig;
use crate::error::Error;
use crate::generation::{Generation, GenerationStatus};
use crate::listener::ListenerMsg;
use crate::mailbox::Mailbox;
use crate::reactor::ReactorMsg;
use crate::spec::TunnelSpec;
use crate::status::{ReactorStats, Status, TunnelStats};
use crate::tunnel::reach::OwnListener;
use crate::tunnel::{Lineage, Tunnel, TunnelId};

/// How long `close` waits for the listener thread to confirm the socket is closed (and a
/// change, that new clients get the new tunnel).
const CLOSE_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// How to stop the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Stop accepting, let established connections finish, and cut what is left after `timeout`.
    Graceful {
        /// The longest the drain may take.
        timeout: Duration,
    },
    /// Stop accepting and close every connection now (with a reset).
    Now,
}

/// What to do with a closed tunnel's established connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseMode {
    /// Let them go on until they end by themselves.
    KeepConnections,
    /// Close them now, with a reset: every connection that came in on the listen address,
    /// those of earlier tunnels there (closed with `KeepConnections`, or handed over from
    /// a previous process) included.
    CloseConnections,
}

/// What an operator does to one backend ([`ProxyHandle::change_backend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChange {
    /// Back in service.
    Enable,
    /// No new connections; established ones go on.
    Drain,
    /// Out of service: no new connections, and established ones are closed now.
    Disable,
    /// Out of the tunnel: no new connections; established ones go on until `deadline` (or
    /// until they end, without one), then are closed.
    Remove {
        /// How long established connections may go on.
        deadline: Option<Duration>,
    },
}

/// The result of [`ProxyHandle::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenedTunnel {
    /// The bound listen address (the real port when port 0 was asked for).
    pub local: SocketAddr,
    /// The resolved remote addresses.
    pub remotes: Vec<SocketAddr>,
    /// True when an existing tunnel on this address was changed instead of a new one opened.
    pub replaced: bool,
}

impl OpenedTunnel {
    /// Made by [`ProxyHandle::open`]; public for a front end's own tests.
    pub fn new(local: SocketAddr, remotes: Vec<SocketAddr>, replaced: bool) -> OpenedTunnel {
        OpenedTunnel {
            local,
            remotes,
            replaced,
        }
    }
}

/// A cloneable handle on a running proxy.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

// The handle is made to be cloned and moved to any thread (signal handlers, control servers,
// an application's own threads): a change that made it lose `Send` or `Sync` must not compile.
const _: () = {
    const fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<ProxyHandle>();
};

struct Shared {
    /// Process-wide id of this proxy.
    id: u64,
    /// The settings in force: those a reload may change are replaced whole.
    config: RwLock<Arc<ProxyConfig>>,
    /// What the accepting threads share (the accept rate changes with a reload).
    accepting: Arc<Accepting>,
    listener: Mailbox<ListenerMsg>,
    checker: Mailbox<CheckerMsg>,
    reactors: Vec<Mailbox<ReactorMsg>>,
    reactor_stats: Vec<Arc<ReactorStats>>,
    tunnels: TunnelTable,
    /// Listening sockets handed over by a previous process, by address, until a tunnel takes
    /// each.
    inherited: Mutex<HashMap<SocketAddr, std::net::TcpListener>>,
    /// The current generation, and older ones that may still hold connections.
    generations: Mutex<(Arc<Generation>, Vec<Arc<Generation>>)>,
    next_tunnel_id: AtomicU64,
    /// Connection ids, shared with the listener: connections taken over get theirs here.
    conn_ids: Arc<AtomicU64>,
    /// Whose turn it is to take in a handed-over connection.
    next_import: AtomicUsize,
    /// A stop has begun: no tunnel may open.
    stopping: AtomicBool,
    /// ... and no thread of the proxy accepts any more (what [`Status::stopping`] reports).
    accepting_ended: AtomicBool,
}

/// How a handle reaches the proxy's threads; the builder makes it.
pub(crate) struct Wiring {
    /// Process-wide id of the proxy.
    pub(crate) id: u64,
    pub(crate) listener: Mailbox<ListenerMsg>,
    pub(crate) checker: Mailbox<CheckerMsg>,
    pub(crate) reactors: Vec<Mailbox<ReactorMsg>>,
    pub(crate) reactor_stats: Vec<Arc<ReactorStats>>,
    /// Connection ids, shared with the listener.
    pub(crate) conn_ids: Arc<AtomicU64>,
    /// What the accepting threads share.
    pub(crate) accepting: Arc<Accepting>,
}

impl ProxyHandle {
    pub(crate) fn new(
        config: ProxyConfig,
        wiring: Wiring,
        inherited: HashMap<SocketAddr, std::net::TcpListener>,
    ) -> Self {
        let Wiring {
            id,
            listener,
            checker,
            reactors,
            reactor_stats,
            conn_ids,
            accepting,
        } = wiring;
        ProxyHandle {
            shared: Arc::new(Shared {
                id,
                config: RwLock::new(Arc::new(config)),
                accepting,
                listener,
                checker,
                reactors,
                reactor_stats,
                tunnels: TunnelTable::default(),
                generations: Mutex::new((Arc::new(Generation::new(1)), Vec::new())),
                inherited: Mutex::new(inherited),
                next_tunnel_id: AtomicU64::new(1),
                conn_ids,
                next_import: AtomicUsize::new(0),
                stopping: AtomicBool::new(false),
                accepting_ended: AtomicBool::new(false),
            }),
        }
    }

    fn close_backend_connections(&self, backend: &Arc<Backend>, at: Instant) {
        for reactor in &self.shared.reactors {
            let _ = reactor.send(ReactorMsg::CloseBackend {
                backend: backend.clone(),
                at,
            });
        }
    }

    /// Starts active checks of the tunnel's backends, if it has them on.
    fn watch(&self, tunnel: &Tunnel) {
        for (i, backend) in tunnel.balancer.backends.iter().enumerate() {
            let Some(config) = tunnel.check_of(i) else {
                return;
            };
            let _ = self.shared.checker.send(CheckerMsg::Watch {
                backend: backend.clone(),
                config,
                tunnel: tunnel.local,
            });
        }
    }

    fn unwatch<'a>(&self, backends: impl Iterator<Item = &'a Arc<Backend>>) {
        for backend in backends {
            let _ = self
                .shared
                .checker
                .send(CheckerMsg::Unwatch(backend.clone()));
        }
    }

    /// A snapshot of every tunnel's and reactor's counters. Never waits for a change, a
    /// close or a reload in progress: it reports the tunnels as the last of those left them.
    pub fn status(&self) -> Status {
        let tunnels = self
            .shared
            .tunnels
            .snapshot()
            .iter()
            .map(|t| t.status())
            .collect();
        Status {
            tunnels,
            reactors: self
                .shared
                .reactor_stats
                .iter()
                .enumerate()
                .map(|(i, s)| s.snapshot(i))
                .collect(),
            stopping: self.shared.accepting_ended.load(Ordering::Acquire),
            generations: self.generations(),
            accept_pauses: self.shared.accepting.pauses.snapshot(),
        }
    }

    /// The spec of every tunnel as it runs now (its listen address the bound one, its remotes
    /// with their own settings), in the order [`ProxyHandle::status`] lists them: what a front
    /// end shows as the routing table, and can apply again. Never waits, as `status`.
    pub fn specs(&self) -> Vec<TunnelSpec> {
        self.shared
            .tunnels
            .snapshot()
            .iter()
            .map(|t| t.spec.clone())
            .collect()
    }

    /// A new tunnel's identity: a fresh id and fresh counters.
    fn new_lineage(&self, listening: OwnListener, generation: Arc<Generation>) -> Lineage {
        Lineage::new(
            TunnelId(self.shared.next_tunnel_id.fetch_add(1, Ordering::Relaxed)),
            listening,
            Arc::new(TunnelStats::new(self.shared.reactors.len())),
            generation,
        )
    }

    /// The generation new tunnel versions are built in.
    fn current_generation(&self) -> Arc<Generation> {
        self.shared
            .generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Starts a new generation; the current one is kept for status while it holds connections.
    fn next_generation(&self) -> Arc<Generation> {
        let mut generations = self
            .shared
            .generations
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let next = Arc::new(Generation::new(generations.0.id + 1));
        let previous = std::mem::replace(&mut generations.0, next.clone());
        generations.1.push(previous);
        next
    }

    /// The current generation and every older one that still holds connections.
    fn generations(&self) -> Vec<GenerationStatus> {
        let mut generations = self
            .shared
            .generations
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        generations.1.retain(|g| g.open() > 0);
        let current = GenerationStatus {
            id: generations.0.id,
            open: generations.0.open(),
            current: true,
        };
        generations
            .1
            .iter()
            .map(|g| GenerationStatus {
                id: g.id,
                open: g.open(),
                current: false,
            })
            .chain(std::iter::once(current))
            .collect()
    }

    /// Begins a stop: every listening socket closes now; connections drain or are cut as `mode`
    /// says. Returns once this proxy accepts no more clients: none of its threads holds a
    /// listening socket any more (waiting at most a few seconds for them), so that a successor
    /// sharing the sockets gets every client that connects from then on.
    /// [`Proxy::join`](crate::Proxy::join) waits for the end. A second call may shorten the
    /// drain (`Now` after `Graceful`), never lengthen it.
    pub fn stop(&self, mode: StopMode) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        let deadline = match mode {
            StopMode::Graceful { timeout } => Some(crate::units::after(Instant::now(), timeout)),
            StopMode::Now => None,
        };
        let listening = {
            let mut tunnels = self.tunnels();
            let listening = tunnels.len();
            tunnels.clear();
            listening
        };
        let _ = self.shared.checker.send(CheckerMsg::Stop);
        // A graceful stop goes through the listener only: it forwards the stop after the last
        // client it handed over, so no reactor stops with an accepted client still queued (and
        // reactors that accept stop accepting when the stop reaches them).
        let (released, sockets_released) = crossbeam_channel::bounded(listening.max(1));
        let listener_gone = self
            .shared
            .listener
            .send(ListenerMsg::Stop { deadline, released })
            .is_err();
        // An immediate stop (or any stop once the listener has gone, or is busy finishing an
        // earlier stop) must reach the reactors even if the listener never reads it again.
        if listener_gone || deadline.is_none() {
            for reactor in &self.shared.reactors {
                let _ = reactor.send(ReactorMsg::Stop { deadline });
            }
        }
        if !listener_gone {
            let until = Instant::now() + CLOSE_CONFIRM_TIMEOUT;
            for _ in 0..listening {
                let left = until.saturating_duration_since(Instant::now());
                if sockets_released.recv_timeout(left).is_err() {
                    tracing::debug!("a listening socket was not let go of in time");
                    break;
                }
            }
        }
        self.shared.accepting_ended.store(true, Ordering::Release);
    }

    /// Duplicates of every listening socket, with the tunnel address each serves: what a new
    /// process needs to take over without a refused connection (pass them over a Unix socket
    /// with SCM_RIGHTS, and give them to its [`ProxyBuilder::inherit`](crate::ProxyBuilder::inherit)).
    /// This proxy goes on accepting on its own copies until it is stopped.
    pub fn listening_sockets(&self) -> Result<Vec<(SocketAddr, std::net::TcpListener)>, Error> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.shared
            .listener
            .send(ListenerMsg::Export(tx))
            .map_err(|_| Error::Stopped)?;
        rx.recv_timeout(CLOSE_CONFIRM_TIMEOUT)
            .map_err(|_| Error::Stopped)
    }

    /// Starts accepting clients: done by [`ProxyBuilder::start`](crate::ProxyBuilder::start)
    /// once every tunnel is open, unless it was told to
    /// [`accept_later`](crate::ProxyBuilder::accept_later). Calling it again does nothing.
    pub fn start_accepting(&self) -> Result<(), Error> {
        self.close_unclaimed_inherited();
        self.shared
            .listener
            .send(ListenerMsg::StartAccepting)
            .map_err(|_| Error::Stopped)
    }

    /// Closes inherited sockets that no tunnel took: nobody would accept on them.
    fn close_unclaimed_inherited(&self) {
        let mut inherited = self
            .shared
            .inherited
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for local in inherited.keys() {
            tracing::warn!(%local, "an inherited listening socket matches no tunnel; closing it");
        }
        inherited.clear();
    }

    /// True once a stop has begun.
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::Relaxed)
    }

    /// The proxy-wide settings it runs with (after a [`ProxyHandle::reload_with`], the ones
    /// that reload changed).
    pub fn config(&self) -> Arc<ProxyConfig> {
        self.shared
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `config` in force: tunnels built from now on resolve their options against it,
    /// and the accept rate is its.
    fn set_config(&self, config: ProxyConfig) {
        self.shared.accepting.set_rate(config.max_accept_rate);
        *self
            .shared
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
    }

    fn tunnels(&self) -> TableGuard<'_> {
        self.shared.tunnels.lock()
    }
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("reactors", &self.shared.reactors.len())
            .finish()
    }
}
