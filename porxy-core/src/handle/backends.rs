//! Operator changes to one backend of a tunnel: add, drain, disable, enable, remove.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{BackendChange, ProxyHandle};
use crate::balance::backend::AdminState;
use crate::error::Error;
use crate::tunnel::spec::Remote;
use crate::tunnel::Tunnel;

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
        // A backend still being removed at this address is taken back into service by
        // `replace`, as OPEN and a reload do: its connections, counters and limit go on (a new
        // one would be a second backend for one server, each with its own limit). One whose
        // connections are to be closed at a deadline is refused there.
        let mut spec = old.spec.clone();
        spec.remotes.push(remote);
        spec.options
            .check(spec.remotes.len())
            .map_err(|message| Error::Options {
                local: local.to_string(),
                message,
            })?;
        let mut remotes: Vec<SocketAddr> = old.balancer.backends.iter().map(|b| b.addr).collect();
        remotes.push(addr);
        self.replace(&mut tunnels, &old, &spec, &remotes, old.generation.clone())?;
        tracing::info!(tunnel = %local, backend = %addr, "backend added");
        Ok(addr)
    }

    /// Changes what an operator says of one backend of the tunnel on `local`. Returns the
    /// connections the backend holds now.
    pub fn change_backend(
        &self,
        local: SocketAddr,
        backend: SocketAddr,
        change: BackendChange,
    ) -> Result<u64, Error> {
        let mut tunnels = self.tunnels();
        let old = tunnels
            .get(&local)
            .cloned()
            .ok_or(Error::NoSuchTunnel(local))?;
        let Some((index, _)) = old.remote(backend) else {
            return self.change_leaving_backend(&old, backend, change);
        };
        let target = old.balancer.backends[index].clone();
        match change {
            BackendChange::Enable => target.set_admin(AdminState::Enabled),
            BackendChange::Drain => target.set_admin(AdminState::Draining),
            BackendChange::Disable => {
                target.set_admin(AdminState::Disabled);
                // Counted before the close is sent: the reactors may be quicker than we are.
                let open = target.open();
                self.close_backend_connections(&target, Instant::now());
                tracing::info!(tunnel = %local, %backend, open, "backend disabled");
                return Ok(open);
            }
            BackendChange::Remove { deadline } => {
                if old.balancer.backends.len() == 1 {
                    return Err(Error::LastBackend { tunnel: local });
                }
                if deadline.is_some() {
                    // Before the new version is built: it must not take this one back.
                    target.order_close();
                }
                let mut spec = old.spec.clone();
                spec.remotes.remove(index);
                let remotes: Vec<SocketAddr> = old
                    .balancer
                    .backends
                    .iter()
                    .filter(|b| !Arc::ptr_eq(b, &target))
                    .map(|b| b.addr)
                    .collect();
                self.replace(&mut tunnels, &old, &spec, &remotes, old.generation.clone())?;
                if let Some(deadline) = deadline {
                    let at = crate::units::after(Instant::now(), deadline);
                    self.close_backend_connections(&target, at);
                }
            }
        }
        tracing::info!(tunnel = %local, %backend, ?change, open = target.open(), "backend changed");
        Ok(target.open())
    }

    /// A change to a backend already removed from the tunnel on `tunnel.local` that still holds
    /// connections: REMOVE again may give (or shorten) a deadline for them, NOW included;
    /// nothing else applies to it.
    fn change_leaving_backend(
        &self,
        tunnel: &Tunnel,
        backend: SocketAddr,
        change: BackendChange,
    ) -> Result<u64, Error> {
        let local = tunnel.local;
        let target = tunnel
            .leaving_backend(backend)
            .ok_or(Error::NoSuchBackend {
                tunnel: local,
                backend,
            })?;
        let open = target.open();
        match change {
            BackendChange::Remove { deadline } => {
                if let Some(deadline) = deadline {
                    target.order_close();
                    let at = crate::units::after(Instant::now(), deadline);
                    self.close_backend_connections(target, at);
                }
                tracing::info!(tunnel = %local, %backend, ?change, open, "backend being removed: removed again");
                Ok(open)
            }
            _ => Err(Error::BackendLeaving {
                tunnel: local,
                backend,
                open,
            }),
        }
    }
}
