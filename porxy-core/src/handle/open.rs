//! Opening and changing tunnels: resolve and check the remotes, refuse loops, bind (or take an
//! inherited socket), and put the tunnel in the table and on the listener.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpListener;

use super::{bind, loops, OpenedTunnel, ProxyHandle, CLOSE_CONFIRM_TIMEOUT};
use crate::balance::backend::{AdminState, Backend};
use crate::error::Error;
use crate::generation::Generation;
use crate::listener::ListenerMsg;
use crate::spec::{Remote, RemoteFault, TunnelSpec};
use crate::tunnel::loaded::Loaded;
use crate::tunnel::reach::{LocalAddrs, OwnListener};
use crate::tunnel::{Lineage, Tunnel};

/// A tunnel version to build: its spec, the addresses its remotes resolved to (same order),
/// and what it read from files.
pub(super) struct Version<'a> {
    pub(super) spec: &'a TunnelSpec,
    pub(super) remotes: &'a [SocketAddr],
    pub(super) loaded: Loaded,
}

impl ProxyHandle {
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
        // Its files are read before anything changes: a broken one changes nothing.
        let loaded = Loaded::read(spec)?;
        let mut tunnels = self.tunnels();
        if local.port() != 0 {
            if let Some(old) = tunnels.get(&local).cloned() {
                let listeners = loops::own_listeners(&tunnels);
                loops::refuse_remotes(local, &remotes, &listeners, &mut LocalAddrs::default())?;
                let version = Version {
                    spec,
                    remotes: &remotes,
                    loaded,
                };
                self.replace(&mut tunnels, &old, version, old.generation.clone())?;
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
            None => {
                let config = self.config();
                bind(local, config.backlog, config.reuse_port)?
            }
        };
        let listening = OwnListener::of(&socket).map_err(|source| Error::Bind {
            addr: local,
            source,
        })?;
        // Again with what it got: the port, when port 0 was asked for, and its stack.
        loops::refuse_new_listener(listening, &remotes, &tunnels)?;
        let bound = listening.addr;
        let version = Version {
            spec,
            remotes: &remotes,
            loaded,
        };
        self.install(
            &mut tunnels,
            version,
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
    pub(super) fn install(
        &self,
        tunnels: &mut BTreeMap<SocketAddr, Arc<Tunnel>>,
        version: Version<'_>,
        listening: OwnListener,
        socket: TcpListener,
        generation: Arc<Generation>,
    ) -> Result<(), Error> {
        let bound = listening.addr;
        let lineage = self.new_lineage(listening, generation);
        let Version {
            spec,
            remotes,
            loaded,
        } = version;
        let config = self.config();
        let tunnel = Arc::new(Tunnel::build(
            lineage, spec, remotes, &config, None, loaded,
        )?);
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
    pub(super) fn replace(
        &self,
        tunnels: &mut BTreeMap<SocketAddr, Arc<Tunnel>>,
        old: &Arc<Tunnel>,
        version: Version<'_>,
        generation: Arc<Generation>,
    ) -> Result<Arc<Tunnel>, Error> {
        let Version {
            spec,
            remotes,
            loaded,
        } = version;
        old.can_take_back(remotes)?;
        let tunnel = Arc::new(Tunnel::build(
            Lineage::of(old, generation),
            spec,
            remotes,
            &self.config(),
            Some(old),
            loaded,
        )?);
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

    /// Warns when a fan-out tunnel runs under the automatic connection limit, which counts two
    /// descriptors per connection while each of its connections takes one per remote more.
    fn warn_fanout_descriptors(&self, local: SocketAddr, spec: &TunnelSpec, remotes: usize) {
        let fanout = spec.options.mode == Some(crate::spec::TunnelMode::Fanout);
        if fanout && remotes > 1 && self.config().max_connections.is_none() {
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
    pub(super) fn take_inherited(&self, local: SocketAddr) -> Option<TcpListener> {
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
}

/// Resolves a spec's remotes; the same address twice is refused (a weight says "twice as much"),
/// and so is one no connect reaches as one server ([`RemoteFault`]). The options are checked
/// first, as a whole.
pub(crate) fn resolve_remotes(spec: &TunnelSpec) -> Result<Vec<SocketAddr>, Error> {
    crate::tunnel::check_options(spec)?;
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use std::net::SocketAddr;
    use std::sync::Arc;

    use crate::accept::ListenSocket;
    use crate::config::ProxyConfig;
    use crate::generation::Generation;
    use crate::handle::listen::bind;
    use crate::spec::TunnelSpec;
    use crate::status::TunnelStats;
    use crate::tunnel::loaded::Loaded;
    use crate::tunnel::reach::OwnListener;
    use crate::tunnel::{Lineage, Tunnel, TunnelId};

    fn tunnel_on(local: SocketAddr) -> Arc<Tunnel> {
        let spec: TunnelSpec = format!("{local}=127.0.0.1:9").parse().unwrap();
        let lineage = Lineage::new(
            TunnelId(1),
            OwnListener::to_bind(local),
            Arc::new(TunnelStats::new(1)),
            Arc::new(Generation::new(1)),
        );
        let remotes = ["127.0.0.1:9".parse().unwrap()];
        let config = ProxyConfig::default();
        let loaded = Loaded::default();
        Arc::new(Tunnel::build(lineage, &spec, &remotes, &config, None, loaded).unwrap())
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
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16, false).unwrap();
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

        let fresh = bind("127.0.0.1:0".parse().unwrap(), 16, false).unwrap();
        let tunnel = tunnel_on(fresh.local_addr().unwrap());
        let socket = ListenSocket::new(1, tunnel, fresh);
        assert_eq!(socket.clients_nodelay(), cfg!(target_os = "linux"));
    }
}
