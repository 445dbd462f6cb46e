//! A connection's upstream sockets and the backend slots they hold.
//!
//! Upstream `i` is the socket the machine knows as [`SocketIx::Upstream(i)`]: a relayed
//! connection has one, to the backend it picked (and may pick again after a failed connect); a
//! fan-out connection one per destination, each to a fixed address. A backend's slot is held
//! while its upstream lives and is given back exactly once, by [`Upstreams::take`].
//!
//! [`SocketIx::Upstream(i)`]: crate::conn::machine::SocketIx

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::info;

use super::socket::Socket;
use crate::balance::backend::Backend;
use crate::balance::Tried;
use crate::tunnel::Tunnel;

pub(super) enum Upstreams {
    /// A relayed connection's one upstream.
    Relay {
        /// `[None]` while it waits for a backend slot, or between two connect attempts.
        socket: [Option<Socket>; 1],
        /// The backend (an index into `tunnel.balancer.backends`) whose slot it holds. A `u32`
        /// (a tunnel has far fewer backends) so that this packs beside the socket: a relayed
        /// connection's slot stays as small as before the two kinds shared one.
        backend: Option<u32>,
        /// Backends it has tried to connect to.
        tried: Tried,
    },
    /// A fan-out connection's destinations (boxed, so that a relayed connection's slot is no
    /// larger for them).
    Fanout(Box<Destinations>),
}

/// A fan-out connection's destinations.
pub(super) struct Destinations {
    /// Destination `i`'s socket while it is connecting or open.
    sockets: Vec<Option<Socket>>,
    /// Where destination `i` goes.
    targets: Vec<Target>,
}

/// Where one destination of a fan-out connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) addr: SocketAddr,
    /// The backend (an index into `tunnel.balancer.backends`) whose slot it holds while its
    /// socket lives; `None` for a destination taken over to a tunnel without that backend.
    pub(super) backend: Option<usize>,
}

impl Target {
    /// One per backend of `tunnel`, in order: where a fan-out connection opened here sends.
    pub(super) fn every_backend(tunnel: &Tunnel) -> Vec<Target> {
        let backends = tunnel.balancer.backends.iter().enumerate();
        backends
            .map(|(i, b)| Target {
                addr: b.addr,
                backend: Some(i),
            })
            .collect()
    }
}

impl Upstreams {
    /// A relayed connection's, before it has picked a backend.
    pub(super) fn relay() -> Self {
        Upstreams::Relay {
            socket: [None],
            backend: None,
            tried: Tried::default(),
        }
    }

    /// A fan-out connection's, one upstream per target.
    pub(super) fn fanout(sockets: Vec<Option<Socket>>, targets: Vec<Target>) -> Self {
        Upstreams::Fanout(Box::new(Destinations { sockets, targets }))
    }

    /// A relayed connection's, taken over from another process: connected with `socket`, to
    /// `backend` if this tunnel has it (the caller has taken its slot).
    pub(super) fn relay_taken_over(socket: Socket, backend: Option<usize>) -> Self {
        let mut tried = Tried::default();
        if let Some(index) = backend {
            tried.add(index);
        }
        Upstreams::Relay {
            socket: [Some(socket)],
            backend: backend.and_then(|index| u32::try_from(index).ok()),
            tried,
        }
    }

    /// A relayed connection picked backend `index` (whose slot it has reserved): it holds the
    /// slot from now on, and will not pick it again.
    pub(super) fn picked(&mut self, index: usize) {
        if let Upstreams::Relay { backend, tried, .. } = self {
            tried.add(index);
            *backend = u32::try_from(index).ok();
        }
    }

    /// A relayed connection may not go to `backends` (they are outside its route): marked
    /// tried before its first pick, they are never picked.
    pub(super) fn rule_out(&mut self, backends: &Tried) {
        if let Upstreams::Relay { tried, .. } = self {
            tried.extend(backends);
        }
    }

    /// The backends a relayed connection has tried; `None` for a fan-out one, which picks none.
    pub(super) fn tried(&self) -> Option<&Tried> {
        match self {
            Upstreams::Relay { tried, .. } => Some(tried),
            Upstreams::Fanout(_) => None,
        }
    }

    /// Upstream `i` is connecting with `socket`.
    pub(super) fn connecting(&mut self, i: usize, socket: Socket) {
        if let Some(place) = self.sockets_mut().get_mut(i) {
            *place = Some(socket);
        }
    }

    /// The sockets, upstream `i` at index `i`, as the machine drives them.
    #[inline]
    pub(super) fn sockets_mut(&mut self) -> &mut [Option<Socket>] {
        match self {
            Upstreams::Relay { socket, .. } => socket,
            Upstreams::Fanout(d) => &mut d.sockets,
        }
    }

    pub(super) fn sockets(&self) -> &[Option<Socket>] {
        match self {
            Upstreams::Relay { socket, .. } => socket,
            Upstreams::Fanout(d) => &d.sockets,
        }
    }

    /// Upstream `i`'s socket, while it is connecting or open.
    #[inline]
    pub(super) fn socket(&self, i: usize) -> Option<&Socket> {
        self.sockets().get(i).and_then(Option::as_ref)
    }

    /// Upstream `i`'s backend, with its index in `tunnel`, if it has one.
    pub(super) fn backend<'t>(
        &self,
        i: usize,
        tunnel: &'t Tunnel,
    ) -> Option<(usize, &'t Arc<Backend>)> {
        let index = match self {
            Upstreams::Relay { backend, .. } => (i == 0).then_some(*backend)?? as usize,
            Upstreams::Fanout(d) => d.targets.get(i)?.backend?,
        };
        Some((index, tunnel.balancer.backends.get(index)?))
    }

    /// Where upstream `i` goes, if known.
    pub(super) fn addr(&self, i: usize, tunnel: &Tunnel) -> Option<SocketAddr> {
        match self {
            Upstreams::Relay { .. } => self.backend(i, tunnel).map(|(_, b)| b.addr),
            Upstreams::Fanout(d) => d.targets.get(i).map(|t| t.addr),
        }
    }

    /// The upstream address a connection's log lines name: a relayed connection's backend,
    /// none for a fan-out connection (each destination's lines name their own).
    pub(super) fn logged_addr(&self, tunnel: &Tunnel) -> Option<SocketAddr> {
        match self {
            Upstreams::Relay { .. } => self.addr(0, tunnel),
            Upstreams::Fanout(_) => None,
        }
    }

    /// Where each upstream goes, in order (a fan-out connection's destinations).
    pub(super) fn addrs(&self, tunnel: &Tunnel) -> Vec<SocketAddr> {
        (0..self.sockets().len())
            .filter_map(|i| self.addr(i, tunnel))
            .collect()
    }

    /// The upstream that holds a slot on `backend`, if one does.
    pub(super) fn on_backend(&self, tunnel: &Tunnel, backend: &Arc<Backend>) -> Option<usize> {
        let holds = |i: usize| {
            self.backend(i, tunnel)
                .is_some_and(|(_, b)| Arc::ptr_eq(b, backend))
        };
        match self {
            Upstreams::Relay { .. } => holds(0).then_some(0),
            Upstreams::Fanout(d) => {
                (0..d.sockets.len()).find(|&i| d.sockets[i].is_some() && holds(i))
            }
        }
    }

    /// Takes upstream `i`'s socket out (the caller closes it) and gives back the backend slot
    /// it held. Returns the socket, and whether a slot was given back.
    pub(super) fn take(&mut self, i: usize, tunnel: &Tunnel) -> (Option<Socket>, bool) {
        let (socket, index) = match self {
            Upstreams::Relay {
                socket, backend, ..
            } if i == 0 => (socket[0].take(), backend.take().map(|index| index as usize)),
            Upstreams::Relay { .. } => (None, None),
            Upstreams::Fanout(d) => {
                let socket = d.sockets.get_mut(i).and_then(Option::take);
                // A destination holds its slot while its socket lives.
                let index = socket
                    .as_ref()
                    .and(d.targets.get(i).and_then(|t| t.backend));
                (socket, index)
            }
        };
        let Some(backend) = index.and_then(|index| tunnel.balancer.backends.get(index)) else {
            return (socket, false);
        };
        backend.release();
        report_removal(tunnel.local, backend);
        (socket, true)
    }
}

/// After a slot of `backend` was given back: if that was the last connection of a backend being
/// removed, says so (once), as the operator was promised.
pub(super) fn report_removal(tunnel: SocketAddr, backend: &Backend) {
    if backend.removal_done() {
        info!(%tunnel, backend = %backend.addr, "backend removed: its last connection has ended");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::tunnel::Tunnel;

    #[test]
    fn a_relays_backend_slot_is_given_back_exactly_once() {
        let tunnel = Tunnel::for_test("127.0.0.1:0=127.0.0.1:9001,127.0.0.1:9002", None);
        let backends = &tunnel.balancer.backends;
        let mut upstreams = Upstreams::relay();
        assert_eq!(upstreams.backend(0, &tunnel).map(|(i, _)| i), None);
        backends[1]
            .try_reserve(Instant::now(), &tunnel.balancer.passive)
            .unwrap();
        upstreams.picked(1);
        assert!(upstreams.tried().unwrap().contains(1));
        assert_eq!(upstreams.on_backend(&tunnel, &backends[1]), Some(0));
        assert_eq!(upstreams.on_backend(&tunnel, &backends[0]), None);
        assert_eq!(upstreams.logged_addr(&tunnel), Some(backends[1].addr));
        assert_eq!(backends[1].open(), 1);
        // Its connect failed before a socket existed: the slot goes back all the same.
        let (socket, released) = upstreams.take(0, &tunnel);
        assert!(socket.is_none());
        assert!(released);
        assert_eq!(backends[1].open(), 0);
        let (_, again) = upstreams.take(0, &tunnel);
        assert!(!again, "given back once");
        assert_eq!(backends[1].open(), 0);
        assert_eq!(upstreams.on_backend(&tunnel, &backends[1]), None);
        assert!(
            upstreams.tried().unwrap().contains(1),
            "still tried: the next pick skips it"
        );
    }

    #[test]
    fn a_destination_without_a_socket_holds_no_slot() {
        let tunnel = Tunnel::for_test("127.0.0.1:0=127.0.0.1:9001,127.0.0.1:9002", None);
        let targets = Target::every_backend(&tunnel);
        let mut upstreams = Upstreams::fanout(vec![None, None], targets);
        assert!(upstreams.tried().is_none(), "fan-out picks no backend");
        assert_eq!(upstreams.logged_addr(&tunnel), None);
        assert_eq!(
            upstreams.addrs(&tunnel),
            vec![
                "127.0.0.1:9001".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:9002".parse().unwrap()
            ]
        );
        assert_eq!(
            upstreams.on_backend(&tunnel, &tunnel.balancer.backends[0]),
            None
        );
        let (socket, released) = upstreams.take(0, &tunnel);
        assert!(socket.is_none());
        assert!(
            !released,
            "a departed destination gave its slot back when it left"
        );
    }
}
