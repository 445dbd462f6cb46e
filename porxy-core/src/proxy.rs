//! [`Proxy`]: building, starting, stopping and joining the proxy's threads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::accept::{AcceptMode, Accepting};
use crate::access_record::AccessSink;
use crate::balance::health::Checker;
use crate::config::ProxyConfig;
use crate::conn::hold::Pools;
use crate::error::Error;
use crate::handle::{ProxyHandle, StopMode, Wiring};
use crate::listener::Listener;
use crate::reactor::{Reactor, ReactorExit};
use crate::spec::TunnelSpec;
use crate::status::ReactorStats;

/// Sets up a proxy: settings and the tunnels to open at start.
///
/// ```no_run
/// use porxy_core::{Proxy, TunnelSpec};
/// let proxy = Proxy::builder()
///     .reactors(2)
///     .tunnel("127.0.0.1:0=127.0.0.1:9000".parse::<TunnelSpec>()?)
///     .start()?;
/// println!("listening on {}", proxy.bound()[0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct ProxyBuilder {
    config: ProxyConfig,
    tunnels: Vec<TunnelSpec>,
    inherited: HashMap<SocketAddr, std::net::TcpListener>,
    access: Option<Arc<dyn AccessSink>>,
    /// Open the tunnels but accept nobody until told (see [`ProxyBuilder::accept_later`]).
    accept_later: bool,
}

impl std::fmt::Debug for ProxyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyBuilder")
            .field("config", &self.config)
            .field("tunnels", &self.tunnels)
            .field("inherited", &self.inherited)
            .field("access_sink", &self.access.is_some())
            .field("accept_later", &self.accept_later)
            .finish()
    }
}

impl ProxyBuilder {
    /// Hands the record of every connection's end ([`crate::access_record::ConnectionRecord`]) to `sink`, on
    /// the reactor thread where it ends: an access log, or anything an application wants to
    /// ship them to. Without a sink no record is built.
    pub fn access_sink(mut self, sink: Arc<dyn AccessSink>) -> Self {
        self.access = Some(sink);
        self
    }

    /// Opens the tunnels at start but accepts nobody until
    /// [`ProxyHandle::start_accepting`](crate::ProxyHandle::start_accepting): for an application
    /// that sets backends' states (drained, disabled) before the first client can reach one.
    /// Until then, an [`inherit`](ProxyBuilder::inherit)ed socket no tunnel took is kept for a
    /// tunnel opened meanwhile; those still unclaimed are closed when accepting starts.
    pub fn accept_later(mut self) -> Self {
        self.accept_later = true;
        self
    }

    /// Replaces every setting at once.
    pub fn config(mut self, config: ProxyConfig) -> Self {
        self.config = config;
        self
    }

    /// Number of reactor threads (default: the number of CPUs).
    pub fn reactors(mut self, n: usize) -> Self {
        self.config.reactors = n;
        self
    }

    /// Bytes buffered per direction per connection while bytes are in flight.
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.config.buffer_size = bytes;
        self
    }

    /// Bytes each kernel pipe holds on the splice path (default [`crate::DEFAULT_PIPE_SIZE`],
    /// 256 KiB): larger pipes move more per splice(2), up to what the kernel allows
    /// (`/proc/sys/fs/pipe-max-size`).
    pub fn pipe_size(mut self, bytes: usize) -> Self {
        self.config.pipe_size = bytes;
        self
    }

    /// Most proxied connections at once (default: what `RLIMIT_NOFILE` allows).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = Some(n);
        self
    }

    /// Most new clients accepted per second by the whole proxy; more wait in the listen
    /// backlog (default: no limit; see [`ProxyConfig::max_accept_rate`]).
    pub fn max_accept_rate(mut self, per_second: u32) -> Self {
        self.config.max_accept_rate = Some(per_second);
        self
    }

    /// Which threads accept new clients (default: [`AcceptMode::Reactors`]).
    pub fn accept(mut self, mode: AcceptMode) -> Self {
        self.config.accept = mode;
        self
    }

    /// Listen backlog of every tunnel.
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.config.backlog = backlog;
        self
    }

    /// Default upstream connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Default idle timeout.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Default half-closed timeout: how long a connection may stay half-closed after either
    /// side's FIN, unless [`ProxyBuilder::client_fin_timeout`] or
    /// [`ProxyBuilder::server_fin_timeout`] says otherwise.
    pub fn half_closed_timeout(mut self, timeout: Duration) -> Self {
        self.config.half_closed_timeout = timeout;
        self
    }

    /// Default time a connection may stay half-closed after the client's FIN (the client has
    /// stopped sending; the upstream's reply may still flow), as HAProxy's `timeout
    /// client-fin`. Without it, the half-closed timeout.
    pub fn client_fin_timeout(mut self, timeout: Duration) -> Self {
        self.config.client_fin_timeout = Some(timeout);
        self
    }

    /// Default time a connection may stay half-closed after the upstream's FIN (the upstream
    /// has stopped sending; the client may still send), as HAProxy's `timeout server-fin`.
    /// Without it, the half-closed timeout.
    pub fn server_fin_timeout(mut self, timeout: Duration) -> Self {
        self.config.server_fin_timeout = Some(timeout);
        self
    }

    /// Whether tunnels relay bulk data with splice(2) unless they say otherwise (default: on,
    /// where the platform has splice). Off means every byte is copied through user space.
    pub fn splice(mut self, on: bool) -> Self {
        self.config.splice = on;
        self
    }

    /// Busy polling (default: off, `Duration::ZERO`; at most 1 s): after the last event, each
    /// reactor keeps polling with a zero timeout for up to `window` before it blocks again.
    ///
    /// Why: a thread blocked in `epoll_wait` has to be woken, and its CPU may have to leave an
    /// idle state first; on a virtual machine that is most of a small round trip through the
    /// proxy. A reactor still spinning when the next message arrives answers it at once.
    ///
    /// The cost: while traffic flows, each busy reactor keeps a CPU at 100 %, and after each
    /// burst burns up to `window` more; an idle proxy goes back to sleep. Timers, control
    /// messages and stops are never delayed by it. Like HAProxy's `busy-polling`, but bounded.
    pub fn busy_poll(mut self, window: Duration) -> Self {
        self.config.busy_poll = window;
        self
    }

    /// A tunnel to open at start.
    pub fn tunnel(mut self, spec: TunnelSpec) -> Self {
        self.tunnels.push(spec);
        self
    }

    /// A listening socket taken over from another process (see
    /// [`ProxyHandle::listening_sockets`]): a tunnel opened on exactly `local` accepts on it
    /// instead of binding, so that no client is refused during an upgrade. An inherited socket
    /// no tunnel asks for is closed once the proxy starts accepting.
    pub fn inherit(mut self, local: SocketAddr, socket: std::net::TcpListener) -> Self {
        self.inherited.insert(local, socket);
        self
    }

    /// Starts the threads and opens the tunnels. If any tunnel fails to open (or two ask for the
    /// same address), everything started so far is stopped again and the error
    /// ([`Error::Tunnel`]) says which tunnel failed.
    pub fn start(self) -> Result<Proxy, Error> {
        self.config.validate()?;
        let id = NEXT_PROXY_ID.fetch_add(1, Ordering::Relaxed);
        let mode = self.config.accept.effective();
        let max_connections = self.config.connection_limit();
        let conn_ids = Arc::new(AtomicU64::new(1));
        let accepting = Arc::new(Accepting::new(
            max_connections,
            self.config.max_accept_rate,
            self.config.reactors,
            conn_ids.clone(),
        ));
        let mut reactor_mailboxes = Vec::with_capacity(self.config.reactors);
        let mut reactor_stats = Vec::with_capacity(self.config.reactors);
        let mut reactors = Vec::with_capacity(self.config.reactors);
        for index in 0..self.config.reactors {
            let pools = Pools::new(
                self.config.buffer_size,
                self.config.pipe_size,
                self.config.pipes_per_reactor(),
            );
            let stats = Arc::new(ReactorStats::new(pools.pipes.fallback_counts()));
            let (reactor, mailbox) = Reactor::new(
                id,
                index,
                pools,
                stats.clone(),
                accepting.clone(),
                mode == AcceptMode::Reactors,
            )
            .map_err(|source| Error::Start {
                what: format!("reactor {index}"),
                source,
            })?;
            let reactor = reactor
                .with_busy_poll(self.config.busy_poll)
                .with_access_sink(self.access.clone());
            reactor_mailboxes.push(mailbox);
            reactor_stats.push(stats);
            reactors.push(reactor);
        }
        let (listener, listener_mailbox) =
            Listener::new(mode, reactor_mailboxes.clone(), accepting.clone()).map_err(
                |source| Error::Start {
                    what: "listener".into(),
                    source,
                },
            )?;
        let mut threads = Threads::default();
        for (index, reactor) in reactors.into_iter().enumerate() {
            let thread = spawn(format!("porxy-reactor-{index}"), move || reactor.run())?;
            threads.reactors.push(thread);
        }
        threads.listener = Some(spawn("porxy-listener".into(), move || listener.run())?);
        let (checker, checker_mailbox) = Checker::new().map_err(|source| Error::Start {
            what: "health checker".into(),
            source,
        })?;
        threads.checker = Some(spawn("porxy-checker".into(), move || checker.run())?);
        let wiring = Wiring {
            id,
            listener: listener_mailbox,
            checker: checker_mailbox,
            reactors: reactor_mailboxes,
            reactor_stats,
            conn_ids,
            accepting,
        };
        let handle = ProxyHandle::new(self.config, wiring, self.inherited);
        let mut proxy = Proxy {
            handle,
            threads,
            bound: Vec::new(),
        };
        for spec in &self.tunnels {
            // On failure, `proxy` drops here, which stops the threads.
            let failed = |source| Error::Tunnel {
                spec: spec.to_string(),
                source: Box::new(source),
            };
            let opened = proxy.handle.open(spec).map_err(failed)?;
            if opened.replaced {
                return Err(failed(Error::AlreadyListening(opened.local)));
            }
            proxy.bound.push(opened.local);
        }
        // Only now, with every tunnel open: a start that failed above accepted no client.
        // (Inherited sockets no tunnel took stay until then: a tunnel opened before may.)
        if !self.accept_later {
            proxy.handle.start_accepting()?;
        }
        Ok(proxy)
    }
}

/// Tells proxies in one process apart (a session given back must find the proxy it left).
static NEXT_PROXY_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Default)]
struct Threads {
    listener: Option<JoinHandle<()>>,
    checker: Option<JoinHandle<()>>,
    reactors: Vec<JoinHandle<ReactorExit>>,
}

fn spawn<T: Send + 'static>(
    name: String,
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, Error> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(body)
        .map_err(|source| Error::Start { what: name, source })
}

/// A running proxy. It owns the threads; [`Proxy::handle`] gives cloneable access to them.
///
/// Dropping a `Proxy` without [`Proxy::join`] stops it at once and waits for its threads.
pub struct Proxy {
    handle: ProxyHandle,
    threads: Threads,
    bound: Vec<SocketAddr>,
}

/// How a stopped proxy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StopReport {
    /// Connections that were closed by the stop instead of finishing (0 after a complete drain).
    pub cut: u64,
}

impl Proxy {
    /// A builder with default settings.
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder::default()
    }

    /// A handle to open, close and inspect tunnels and to stop the proxy, from any thread.
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    /// The addresses the builder's tunnels are bound to, in the order they were added.
    pub fn bound(&self) -> &[SocketAddr] {
        &self.bound
    }

    /// Stops the proxy and waits for it (see [`ProxyHandle::stop`]).
    pub fn stop(self, mode: StopMode) -> Result<StopReport, Error> {
        self.handle.stop(mode);
        self.join()
    }

    /// Waits until the proxy has stopped (after a [`ProxyHandle::stop`] from anywhere).
    pub fn join(mut self) -> Result<StopReport, Error> {
        self.join_threads()
    }

    fn join_threads(&mut self) -> Result<StopReport, Error> {
        let mut report = StopReport::default();
        let mut panicked = None;
        if let Some(listener) = self.threads.listener.take() {
            if listener.join().is_err() {
                panicked = Some("listener".to_string());
            }
        }
        if let Some(checker) = self.threads.checker.take() {
            if checker.join().is_err() {
                panicked = Some("health checker".to_string());
            }
        }
        for (index, reactor) in self.threads.reactors.drain(..).enumerate() {
            match reactor.join() {
                Ok(exit) => report.cut += exit.cut,
                Err(_) => panicked = Some(format!("reactor {index}")),
            }
        }
        match panicked {
            Some(thread) => Err(Error::ThreadPanicked(thread)),
            None => Ok(report),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.threads.listener.is_some() || !self.threads.reactors.is_empty() {
            self.handle.stop(StopMode::Now);
            let _ = self.join_threads();
        }
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("bound", &self.bound).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn start_names_the_tunnel_that_failed_to_bind() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let spec: TunnelSpec = format!("{addr}=127.0.0.1:9").parse().unwrap();
        let err = Proxy::builder()
            .reactors(1)
            .tunnel(spec)
            .start()
            .unwrap_err();
        assert!(
            matches!(&err, Error::Tunnel { source, .. } if matches!(**source, Error::Bind { addr: a, .. } if a == addr)),
            "{err:?}"
        );
        assert!(err.to_string().starts_with(&format!(
            "tunnel `{addr}=127.0.0.1:9`: cannot listen on {addr}"
        )));
    }

    /// Regression: a remote listed twice shared one backend between two spec entries, and a
    /// later REMOVE of it misaligned the tunnel's remotes and backends.
    #[test]
    fn a_remote_listed_twice_is_refused() {
        let spec: TunnelSpec = "127.0.0.1:0=127.0.0.1:9,127.0.0.1:9".parse().unwrap();
        let err = Proxy::builder()
            .reactors(1)
            .tunnel(spec)
            .start()
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("lists remote 127.0.0.1:9 twice; give it a weight instead (`*N`)"),
            "{err}"
        );
    }

    #[test]
    fn start_refuses_two_tunnels_on_one_address() {
        // A port the OS just handed out and took back: free for the builder's first tunnel.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let first: TunnelSpec = format!("{addr}=127.0.0.1:9").parse().unwrap();
        let second: TunnelSpec = format!("{addr}=127.0.0.1:10").parse().unwrap();
        let err = Proxy::builder()
            .reactors(1)
            .tunnel(first)
            .tunnel(second)
            .start()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("tunnel `{addr}=127.0.0.1:10`: another tunnel already listens on {addr}")
        );
    }
}
