//! Operator changes to one backend of a tunnel: add, drain, disable, enable, remove.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::open::Version;
use super::{BackendChange, ProxyHandle};
use crate::balance::backend::{AdminState, CloseOrder};
use crate::error::Error;
use crate::spec::Remote;
use crate::tunnel::reach::LocalAddrs;

/// What [`ProxyHandle::remove_backend`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Removal {
    /// The connections the backend holds now.
    pub open: u64,
    /// How long after the call its connections are closed (zero: now): the deadline in
    /// force, the earliest any REMOVE of it gave, which may be earlier than the one just asked
    /// for. `None` while none was given: they go on until they end.
    pub deadline: Option<Duration>,
}

impl Removal {
    /// Made by [`ProxyHandle::remove_backend`]; public for a front end's own tests.
    pub fn new(open: u64, deadline: Option<Duration>) -> Removal {
        Removal { open, deadline }
    }
}

impl ProxyHandle {
    /// Adds a backend to the tunnel on `local`; new connections may use it at once. Returns
    /// its resolved address. An address no connect reaches as one server is refused
    /// ([`Error::UnusableRemote`]).
    pub fn add_backend(&self, local: SocketAddr, remote: Remote) -> Result<SocketAddr, Error> {
        let addr = super::usable_remote(&local.to_string(), &remote)?;
        let mut tunnels = self.tunnels();
        let old = tunnels
            .get(&local)
            .cloned()
            .ok_or(Error::NoSuchTunnel(local))?;
        if old.balancer.backends.iter().any(|b| b.addr == addr) {
            return Err(Error::BackendExists {
                tunnel: local,
                backend: addr,
            });
        }
        let listeners = super::loops::own_listeners(&tunnels);
        super::loops::refuse_remotes(local, &[addr], &listeners, &mut LocalAddrs::default())?;
        // A backend still being removed at this address is taken back into service by
        // `replace`, as OPEN and a reload do: its connections, counters and limit go on (a new
        // one would be a second backend for one server, each with its own limit). One whose
        // connections are to be closed at a deadline is refused there.
        let mut spec = old.spec.clone();
        spec.remotes.push(remote);
        crate::tunnel::check_options(&spec)?;
        let mut remotes: Vec<SocketAddr> = old.balancer.backends.iter().map(|b| b.addr).collect();
        remotes.push(addr);
        let version = Version {
            spec: &spec,
            remotes: &remotes,
            loaded: old.loaded(),
        };
        self.replace(&mut tunnels, &old, version, old.generation.clone())?;
        tracing::info!(tunnel = %local, backend = %addr, "backend added");
        Ok(addr)
    }

    /// Changes what an operator says of one backend of the tunnel on `local`. Returns the
    /// connections the backend holds now. For [`BackendChange::Remove`],
    /// [`ProxyHandle::remove_backend`] tells the deadline in force too.
    pub fn change_backend(
        &self,
        local: SocketAddr,
        backend: SocketAddr,
        change: BackendChange,
    ) -> Result<u64, Error> {
        let admin = match change {
            BackendChange::Enable => AdminState::Enabled,
            BackendChange::Drain => AdminState::Draining,
            BackendChange::Disable => AdminState::Disabled,
            BackendChange::Remove { deadline } => {
                return self
                    .remove_backend(local, backend, deadline)
                    .map(|removal| removal.open)
            }
        };
        let tunnels = self.tunnels();
        let tunnel = tunnels.get(&local).ok_or(Error::NoSuchTunnel(local))?;
        let Some((index, _)) = tunnel.remote(backend) else {
            let leaving = tunnel.leaving_backend(backend);
            return Err(match leaving {
                Some(leaving) => Error::BackendLeaving {
                    tunnel: local,
                    backend,
                    open: leaving.open(),
                },
                None => Error::NoSuchBackend {
                    tunnel: local,
                    backend,
                },
            });
        };
        let target = &tunnel.balancer.backends[index];
        target.set_admin(admin);
        // Counted before a close is sent: the reactors may be quicker than we are.
        let open = target.open();
        if admin == AdminState::Disabled {
            self.close_backend_connections(target, Instant::now());
            tracing::info!(tunnel = %local, %backend, open, "backend disabled");
        } else {
            tracing::info!(tunnel = %local, %backend, ?change, open, "backend changed");
        }
        Ok(open)
    }

    /// Takes a backend out of the tunnel on `local`: no new connections; established ones go
    /// on until `deadline` (zero: now), or until they end without one, and are then closed.
    ///
    /// Again on a backend still being removed, it may give it a deadline, or an earlier one: a
    /// deadline never moves later (the earliest asked for stays in force). The result tells the
    /// deadline in force, whichever REMOVE gave it.
    pub fn remove_backend(
        &self,
        local: SocketAddr,
        backend: SocketAddr,
        deadline: Option<Duration>,
    ) -> Result<Removal, Error> {
        let now = Instant::now();
        let mut tunnels = self.tunnels();
        let old = tunnels
            .get(&local)
            .cloned()
            .ok_or(Error::NoSuchTunnel(local))?;
        let (target, order) = match old.remote(backend) {
            Some((index, _)) => {
                if old.balancer.backends.len() == 1 {
                    return Err(Error::LastBackend { tunnel: local });
                }
                let target = old.balancer.backends[index].clone();
                // Before the new version is built: it must not take this one back.
                let order = deadline.map(|d| target.order_close(crate::units::after(now, d)));
                let mut spec = old.spec.clone();
                spec.remotes.remove(index);
                let remotes: Vec<SocketAddr> = old
                    .balancer
                    .backends
                    .iter()
                    .filter(|b| !Arc::ptr_eq(b, &target))
                    .map(|b| b.addr)
                    .collect();
                let version = Version {
                    spec: &spec,
                    remotes: &remotes,
                    loaded: old.loaded(),
                };
                self.replace(&mut tunnels, &old, version, old.generation.clone())?;
                (target, order)
            }
            // Already removed, still holding connections: only a deadline may be given (or
            // an earlier one).
            None => {
                let target = old
                    .leaving_backend(backend)
                    .cloned()
                    .ok_or(Error::NoSuchBackend {
                        tunnel: local,
                        backend,
                    })?;
                let order = deadline.map(|d| target.order_close(crate::units::after(now, d)));
                (target, order)
            }
        };
        // Counted before a close is sent: the reactors may be quicker than we are.
        let open = target.open();
        if let Some(CloseOrder::Set(at)) = order {
            self.close_backend_connections(&target, at);
        }
        let removal = Removal {
            open,
            deadline: target
                .close_deadline()
                .map(|at| at.saturating_duration_since(now)),
        };
        tracing::info!(tunnel = %local, %backend, ?deadline, in_force = ?removal.deadline, open = removal.open, "backend being removed");
        Ok(removal)
    }
}
