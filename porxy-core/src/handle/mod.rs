//! [`ProxyHandle`]: the runtime API. Open, change and close tunnels, read status, stop.
//!
//! The handle is cheap to clone and `Send + Sync`; it talks to the listener and reactor threads
//! by messages. The tunnel table here is for the API's own bookkeeping (lookups by address,
//! status); the data path never touches its lock.

mod backends;
mod loops;
mod reload;
mod sessions;

pub use backends::Removal;
pub use reload::ReloadReport;
pub use sessions::{ImportReport, SessionExport};

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use socket2::{Domain, Socket, Type};

use crate::balance::backend::{AdminState, Backend};
use crate::balance::health::CheckerMsg;
use crate::config::ProxyConfig;
use crate::error::Error;
use crate::generation::{Generation, GenerationStatus};
use crate::listener::ListenerMsg;
use crate::mailbox::Mailbox;
use crate::reactor::ReactorMsg;
use crate::status::{ReactorStats, Status, TunnelStats};
use crate::tunnel::endpoint::RemoteFault;
use crate::tunnel::reach::{LocalAddrs, OwnListener};
use crate::tunnel::spec::{Remote, TunnelSpec};
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
pub struct OpenedTunnel {
    /// The bound listen address (the real port when port 0 was asked for).
    pub local: SocketAddr,
    /// The resolved remote addresses.
    pub remotes: Vec<SocketAddr>,
    /// True when an existing tunnel on this address was changed instead of a new one opened.
    pub replaced: bool,
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
    config: ProxyConfig,
    listener: Mailbox<ListenerMsg>,
    checker: Mailbox<CheckerMsg>,
    reactors: Vec<Mailbox<ReactorMsg>>,
    reactor_stats: Vec<Arc<ReactorStats>>,
    tunnels: Mutex<BTreeMap<SocketAddr, Arc<Tunnel>>>,
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
        } = wiring;
        ProxyHandle {
            shared: Arc::new(Shared {
                id,
                config,
                listener,
                checker,
                reactors,
                reactor_stats,
                tunnels: Mutex::new(BTreeMap::new()),
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

    /// Opens a tunnel, or changes the one already listening on `spec.local`.
    ///
    /// A new tunnel is bound (and listening) when this returns; the address it got is in the
    /// result, so `127.0.0.1:0` works. Changing an existing tunnel replaces its remotes and
    /// options for new connections; established ones go on with what they started with, and
    /// remotes it keeps keep their counters and health. Host names are resolved here, once.
    pub fn open(&self, spec: &TunnelSpec) -> Result<OpenedTunnel, Error> {
        if self.is_stopping() {
            return Err(Error::Stopped);
        }
        if spec.remotes.is_empty() {
            return Err(Error::NoRemotes {
                local: spec.local.to_string(),
            });
        }
        let local = spec.local.resolve()?;
        let remotes = resolve_remotes(spec)?;
        let mut tunnels = self.tunnels();
        if local.port() != 0 {
            if let Some(old) = tunnels.get(&local).cloned() {
                let listeners = loops::own_listeners(&tunnels);
                loops::refuse_remotes(local, &remotes, &listeners, &mut LocalAddrs::default())?;
                self.replace(&mut tunnels, &old, spec, &remotes, old.generation.clone())?;
                return Ok(OpenedTunnel {
                    local,
                    remotes,
                    replaced: true,
                });
            }
        }
        if local.port() != 0 {
            // Before the port is taken (an inherited socket stays where it is).
            loops::refuse_new_listener(OwnListener::to_bind(local), &remotes, &tunnels)?;
        }
        let socket = match self.take_inherited(local) {
            Some(socket) => socket,
            None => bind(local, self.shared.config.backlog)?,
        };
        let listening = OwnListener::of(&socket).map_err(|source| Error::Bind {
            addr: local,
            source,
        })?;
        // Again with what it got: the port, when port 0 was asked for, and its stack.
        loops::refuse_new_listener(listening, &remotes, &tunnels)?;
        let bound = listening.addr;
        self.install(
            &mut tunnels,
            spec,
            &remotes,
            listening,
            socket,
            self.current_generation(),
        )?;
        tracing::info!(local = %bound, remotes = ?remotes, "tunnel open");
        self.warn_fanout_descriptors(bound, spec, remotes.len());
        Ok(OpenedTunnel {
            local: bound,
            remotes,
            replaced: false,
        })
    }

    /// Builds a new tunnel on the listening `socket` (`listening`) and starts accepting.
    fn install(
        &self,
        tunnels: &mut BTreeMap<SocketAddr, Arc<Tunnel>>,
        spec: &TunnelSpec,
        remotes: &[SocketAddr],
        listening: OwnListener,
        socket: TcpListener,
        generation: Arc<Generation>,
    ) -> Result<(), Error> {
        let bound = listening.addr;
        let lineage = self.new_lineage(listening, generation);
        let tunnel = Arc::new(Tunnel::build(
            lineage,
            spec,
            remotes,
            &self.shared.config,
            None,
        ));
        self.watch(&tunnel);
        self.shared
            .listener
            .send(ListenerMsg::Add(tunnel.clone(), socket))
            .map_err(|_| Error::Stopped)?;
        tunnels.insert(bound, tunnel);
        Ok(())
    }

    /// Puts a new version of `old` in its place, built from `spec` (whose remotes resolved to
    /// `remotes`). Backends it drops take no new connections and leave once drained.
    fn replace(
        &self,
        tunnels: &mut BTreeMap<SocketAddr, Arc<Tunnel>>,
        old: &Arc<Tunnel>,
        spec: &TunnelSpec,
        remotes: &[SocketAddr],
        generation: Arc<Generation>,
    ) -> Result<Arc<Tunnel>, Error> {
        old.can_take_back(remotes)?;
        let tunnel = Arc::new(Tunnel::build(
            Lineage::of(old, generation),
            spec,
            remotes,
            &self.shared.config,
            Some(old),
        ));
        let dropped: Vec<Arc<Backend>> = old
            .balancer
            .backends
            .iter()
            .filter(|b| !tunnel.balancer.backends.iter().any(|n| Arc::ptr_eq(n, b)))
            .cloned()
            .collect();
        for backend in &dropped {
            backend.set_admin(AdminState::Removing);
        }
        // One being removed that the new version names again is taken back: its removal is
        // called off, and it serves again with its connections (and limit) as they are.
        for backend in &tunnel.balancer.backends {
            if backend.admin() == AdminState::Removing {
                backend.set_admin(AdminState::Enabled);
                tracing::info!(tunnel = %old.local, backend = %backend.addr, open = backend.open(), "backend back in service: its removal is called off");
            }
        }
        // Backends carried over keep their health-check counts; only dropped ones (or all, when
        // the new version has no checks) stop being checked.
        if tunnel.check.is_some() {
            self.unwatch(dropped.iter());
        } else {
            self.unwatch(old.balancer.backends.iter());
        }
        self.watch(&tunnel);
        tunnels.insert(old.local, tunnel.clone());
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        self.shared
            .listener
            .send(ListenerMsg::Replace(tunnel.clone(), done_tx))
            .map_err(|_| Error::Stopped)?;
        // Once confirmed, every client accepted from now on gets the new version, whichever
        // thread accepts it. The listener only fails to confirm if it has stopped.
        let _ = done_rx.recv_timeout(CLOSE_CONFIRM_TIMEOUT);
        // A dropped backend without connections is gone now; one with some is reported by the
        // reactor that closes its last one.
        for backend in &dropped {
            if backend.removal_done() {
                tracing::info!(tunnel = %old.local, backend = %backend.addr, "backend removed: it had no connections left");
            }
        }
        Ok(tunnel)
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
        let Some(config) = &tunnel.check else { return };
        for backend in &tunnel.balancer.backends {
            let _ = self.shared.checker.send(CheckerMsg::Watch {
                backend: backend.clone(),
                config: config.clone(),
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

    /// Stops listening on `local`. When this returns the port refuses new connections.
    /// Established connections go on, or are closed now, as `mode` says.
    ///
    /// [`CloseMode::CloseConnections`] resets every connection that came in on `local`, the
    /// ones an earlier tunnel there left going included (a tunnel closed with
    /// [`CloseMode::KeepConnections`], then opened again), and they are reset when this
    /// returns. With no tunnel on `local` it still resets those left going, and fails with
    /// [`Error::NoSuchTunnel`] only when there are none.
    pub fn close(&self, local: SocketAddr, mode: CloseMode) -> Result<(), Error> {
        self.close_locked(&mut self.tunnels(), local, mode)
    }

    /// [`ProxyHandle::close`], with the tunnel table already locked.
    fn close_locked(
        &self,
        tunnels: &mut BTreeMap<SocketAddr, Arc<Tunnel>>,
        local: SocketAddr,
        mode: CloseMode,
    ) -> Result<(), Error> {
        let tunnel = tunnels.remove(&local);
        if let Some(tunnel) = &tunnel {
            self.unwatch(tunnel.balancer.backends.iter());
            let (done_tx, done_rx) = crossbeam_channel::bounded(1);
            self.shared
                .listener
                .send(ListenerMsg::Remove(local, done_tx))
                .map_err(|_| Error::Stopped)?;
            // The listener confirms once the socket is closed; it only fails to if it has
            // stopped, and then the socket is closed anyway.
            let _ = done_rx.recv_timeout(CLOSE_CONFIRM_TIMEOUT);
        }
        let reset = match mode {
            CloseMode::CloseConnections => self.reset_connections_on(local),
            CloseMode::KeepConnections => 0,
        };
        match tunnel {
            Some(_) => tracing::info!(local = %local, ?mode, reset, "tunnel closed"),
            None if reset > 0 => {
                tracing::info!(local = %local, reset, "connections left by closed tunnels reset")
            }
            None => return Err(Error::NoSuchTunnel(local)),
        }
        Ok(())
    }

    /// Resets every connection that came in on `local`, whichever tunnel it came through, and
    /// returns how many once every reactor has (each is waited for a few seconds at most).
    fn reset_connections_on(&self, local: SocketAddr) -> u64 {
        let reactors = &self.shared.reactors;
        let (done, counts) = crossbeam_channel::bounded(reactors.len());
        let asked = reactors
            .iter()
            .filter(|r| {
                let done = done.clone();
                r.send(ReactorMsg::CloseListen { local, done }).is_ok()
            })
            .count();
        // Only the reactors hold senders now: one that ends without answering is seen at once.
        drop(done);
        let until = Instant::now() + CLOSE_CONFIRM_TIMEOUT;
        let mut reset = 0;
        for _ in 0..asked {
            match counts.recv_deadline(until) {
                Ok(n) => reset += n as u64,
                // A reactor that stopped meanwhile closes its connections anyway.
                Err(_) => break,
            }
        }
        reset
    }

    /// A snapshot of every tunnel's and reactor's counters.
    pub fn status(&self) -> Status {
        let tunnels = self.tunnels().values().map(|t| t.status()).collect();
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
        }
    }

    /// A new tunnel's identity: a fresh id and fresh counters.
    fn new_lineage(&self, listening: OwnListener, generation: Arc<Generation>) -> Lineage {
        Lineage {
            id: TunnelId(self.shared.next_tunnel_id.fetch_add(1, Ordering::Relaxed)),
            local: listening.addr,
            dual_stack: listening.dual_stack,
            stats: Arc::new(TunnelStats::new(self.shared.reactors.len())),
            generation,
        }
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

    /// Warns when a fan-out tunnel runs under the automatic connection limit, which counts two
    /// descriptors per connection while each of its connections takes one per remote more.
    fn warn_fanout_descriptors(&self, local: SocketAddr, spec: &TunnelSpec, remotes: usize) {
        let fanout = spec.options.mode == Some(crate::tunnel::mode::TunnelMode::Fanout);
        if fanout && remotes > 1 && self.shared.config.max_connections.is_none() {
            tracing::warn!(
                tunnel = %local,
                descriptors = remotes + 1,
                "each fan-out connection takes a descriptor per remote and one for the client, \
                 but the automatic connection limit counts two: set max_connections to at most \
                 (ulimit -n - 64) / (remotes + 1), or porxy may run out of descriptors"
            );
        }
    }

    /// An inherited listening socket for `local`, if one was handed to the builder.
    fn take_inherited(&self, local: SocketAddr) -> Option<TcpListener> {
        let mut inherited = self
            .shared
            .inherited
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let socket = inherited.remove(&local)?;
        if let Err(e) = socket.set_nonblocking(true) {
            tracing::warn!(%local, error = %e, "inherited socket unusable; binding anew");
            return None;
        }
        tracing::info!(%local, "listening on an inherited socket");
        Some(TcpListener::from_std(socket))
    }

    /// Lets the listener accept, once the builder's tunnels are all open.
    pub(crate) fn start_accepting(&self) -> Result<(), Error> {
        self.shared
            .listener
            .send(ListenerMsg::StartAccepting)
            .map_err(|_| Error::Stopped)
    }

    /// Closes inherited sockets that no tunnel took: nobody would accept on them.
    pub(crate) fn close_unclaimed_inherited(&self) {
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

    /// The proxy-wide settings it runs with.
    pub fn config(&self) -> &ProxyConfig {
        &self.shared.config
    }

    fn tunnels(&self) -> MutexGuard<'_, BTreeMap<SocketAddr, Arc<Tunnel>>> {
        // The table is only ever left consistent: a panic while holding it cannot corrupt it.
        self.shared
            .tunnels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("reactors", &self.shared.reactors.len())
            .finish()
    }
}

/// Resolves a spec's remotes; the same address twice is refused (a weight says "twice as much"),
/// and so is one no connect reaches as one server ([`RemoteFault`]). The options are checked
/// first, as a whole.
pub(crate) fn resolve_remotes(spec: &TunnelSpec) -> Result<Vec<SocketAddr>, Error> {
    spec.options
        .check(spec.remotes.len())
        .map_err(|message| Error::Options {
            local: spec.local.to_string(),
            message,
        })?;
    let mut remotes: Vec<SocketAddr> = Vec::with_capacity(spec.remotes.len());
    for remote in &spec.remotes {
        let addr = usable_remote(&spec.local.to_string(), remote)?;
        if remotes.contains(&addr) {
            return Err(Error::DuplicateRemote {
                local: spec.local.to_string(),
                remote: addr,
            });
        }
        remotes.push(addr);
    }
    Ok(remotes)
}

/// The address `remote` resolves to, if a tunnel (on `tunnel`, as written) may connect to it.
pub(crate) fn usable_remote(tunnel: &str, remote: &Remote) -> Result<SocketAddr, Error> {
    let addr = remote.endpoint.resolve()?;
    match RemoteFault::of(addr) {
        Some(fault) => Err(Error::UnusableRemote {
            tunnel: tunnel.to_string(),
            remote: addr,
            fault,
        }),
        None => Ok(addr),
    }
}

/// A listening, non-blocking socket on `addr` (SO_REUSEADDR; IPv6 sockets are IPv6 only).
fn bind(addr: SocketAddr, backlog: i32) -> Result<TcpListener, Error> {
    let fail = |source| Error::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(fail)?;
    }
    socket.set_nonblocking(true).map_err(fail)?;
    // Before `listen`, so that every client it will ever queue inherits it (Linux copies the
    // listening socket's TCP options to the sockets it accepts): no setsockopt per client.
    socket.set_tcp_nodelay(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(backlog).map_err(fail)?;
    Ok(TcpListener::from_std(socket.into()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use std::net::SocketAddr;
    use std::sync::Arc;

    use super::bind;
    use crate::accept::ListenSocket;
    use crate::config::ProxyConfig;
    use crate::generation::Generation;
    use crate::status::TunnelStats;
    use crate::tunnel::spec::TunnelSpec;
    use crate::tunnel::{Lineage, Tunnel, TunnelId};

    fn tunnel_on(local: SocketAddr) -> Arc<Tunnel> {
        let spec: TunnelSpec = format!("{local}=127.0.0.1:9").parse().unwrap();
        let lineage = Lineage {
            id: TunnelId(1),
            local,
            dual_stack: false,
            stats: Arc::new(TunnelStats::new(1)),
            generation: Arc::new(Generation::new(1)),
        };
        let remotes = ["127.0.0.1:9".parse().unwrap()];
        Arc::new(Tunnel::build(
            lineage,
            &spec,
            &remotes,
            &ProxyConfig::default(),
            None,
        ))
    }

    /// Accepts the client that `connect` made, within a bounded wait.
    fn accept_one(listener: &mio::net::TcpListener) -> mio::net::TcpStream {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match listener.accept() {
                Ok((stream, _)) => return stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no client to accept");
                    std::thread::yield_now();
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn clients_queued_before_the_first_accept_inherit_nodelay() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let accepted = accept_one(&listener);
        assert!(accepted.nodelay().unwrap(), "accepted without TCP_NODELAY");
    }

    #[test]
    fn a_listening_socket_without_nodelay_makes_porxy_set_it_per_client() {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let tunnel = tunnel_on(std_listener.local_addr().unwrap());
        let socket = ListenSocket::new(0, tunnel, mio::net::TcpListener::from_std(std_listener));
        assert!(!socket.clients_nodelay());

        let fresh = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let tunnel = tunnel_on(fresh.local_addr().unwrap());
        let socket = ListenSocket::new(1, tunnel, fresh);
        assert_eq!(socket.clients_nodelay(), cfg!(target_os = "linux"));
    }
}
