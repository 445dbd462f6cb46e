//! Refusing tunnels that would forward to porxy itself (see `tunnel/reach.rs` for why and for
//! what reaches a listening socket).
//!
//! Checked wherever a remote or a listening socket enters: a tunnel opened or changed (at start
//! too), a backend added, and a reload (the whole new configuration at once). Both ways: a new
//! remote must reach none of the listening sockets, the tunnel's own included, and a new
//! listening socket must be reached by none of the remotes. A listener asked for on a port is
//! checked before it is bound, and again, with what it got (the port of port 0; dual stack),
//! once it is.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::Error;
use crate::tunnel::reach::{LocalAddrs, Locality, OwnListener};
use crate::tunnel::Tunnel;

/// Every listening socket of the proxy, from its tunnel table.
pub(super) fn own_listeners(tunnels: &BTreeMap<SocketAddr, Arc<Tunnel>>) -> Vec<OwnListener> {
    tunnels.values().map(|t| t.own_listener()).collect()
}

/// Refuses the first of `remotes`, of the tunnel on `tunnel`, that reaches one of `listeners`.
pub(super) fn refuse_remotes(
    tunnel: SocketAddr,
    remotes: &[SocketAddr],
    listeners: &[OwnListener],
    local: &mut impl Locality,
) -> Result<(), Error> {
    for remote in remotes {
        if let Some(listener) = listeners.iter().find(|l| l.reached_by(*remote, local)) {
            return Err(Error::SelfLoop {
                tunnel,
                remote: *remote,
                listener: listener.addr,
            });
        }
    }
    Ok(())
}

/// Refuses a new tunnel listening on `listener` to `remotes` when they reach it or another
/// listening socket of `tunnels`, or when a remote of one of `tunnels` reaches it.
pub(super) fn refuse_new_listener(
    listener: OwnListener,
    remotes: &[SocketAddr],
    tunnels: &BTreeMap<SocketAddr, Arc<Tunnel>>,
) -> Result<(), Error> {
    let mut local = LocalAddrs::default();
    let mut listeners = own_listeners(tunnels);
    listeners.push(listener);
    refuse_remotes(listener.addr, remotes, &listeners, &mut local)?;
    for tunnel in tunnels.values() {
        refuse_remotes(tunnel.local, &tunnel.remotes(), &[listener], &mut local)?;
    }
    Ok(())
}
