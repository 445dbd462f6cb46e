//! [`Session`]: an established connection on its way from one porxy process to another, so that
//! a zero-downtime upgrade hands over the connections too and the old process can exit at once.
//!
//! A session carries both sockets and what the proxy keeps in user space between them: per
//! direction, how far the end of stream has got (open, draining, done) and the bytes read but
//! not yet written; and how long the connection has been idle and half-closed. The kernel keeps
//! the rest with the sockets themselves (bytes not yet read, bytes not yet sent, a FIN already
//! sent). A connection frozen in one process
//! ([`ProxyHandle::export_sessions`](crate::ProxyHandle::export_sessions)) and thawed in another
//! ([`ProxyHandle::import_sessions`](crate::ProxyHandle::import_sessions)) thus goes on with no
//! byte lost or repeated, and each end of stream passed on exactly once.
//!
//! A client that was still waiting for a backend slot (queued) travels alone: nothing was read
//! from it yet, and the importing proxy finds it a backend afresh.
//!
//! A fan-out connection travels with its client socket and one socket per destination still
//! open, and with its log of client bytes, each destination's position in it and its reply
//! state (see `conn/fanout/frozen.rs`), and the fan-out settings it ran with, which it keeps in the
//! importing proxy whatever that proxy's tunnel says. Each destination carries its backend's
//! address, by which the importing proxy finds its backend.
//!
//! [`wire`] turns sessions into bytes and descriptors, and back.
//!
//! Ownership: a `Session` owns its sockets. Dropping one that was neither imported nor
//! [handed over](Session::handed_over) resets all its connections, so that a peer sees an error
//! rather than a clean end of stream hiding lost bytes.

pub mod wire;

use std::fmt;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::conn::fanout::frozen::FanState;
use crate::conn::fanout::FanoutSettings;
use crate::conn::frozen::RelayState;
use crate::tunnel::Tunnel;

/// An established connection taken out of a proxy, to go on in another one.
pub struct Session {
    /// `None` once taken (imported, or closed as handed over).
    client: Option<TcpStream>,
    /// The sockets towards the backends, as `kind` says: none while waiting, the upstream of a
    /// relay, one per open destination of a fan-out connection (in the destinations' order).
    upstreams: Vec<TcpStream>,
    /// The connection's id in the process it comes from, for logs.
    pub(crate) id: u64,
    /// The listen address of its tunnel.
    pub(crate) tunnel: SocketAddr,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// What the connection was doing.
    pub(crate) kind: Kind,
    /// The proxy (its process-wide id) and tunnel it comes from, while it has not left its
    /// process: taken back into that proxy (a handover that failed), it returns to that very
    /// tunnel. Any other proxy ignores it.
    pub(crate) origin: Option<(u64, Arc<Tunnel>)>,
}

/// What a session's connection was doing, with the state that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A client still waiting for a backend: nothing was read from it yet.
    Waiting,
    /// A relay between client and one upstream.
    Relaying(Relay),
    /// A client copied to several destinations.
    Fanout(Fanout),
}

/// The upstream side of a relaying session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relay {
    /// The backend the upstream socket is connected to.
    pub(crate) backend: SocketAddr,
    pub(crate) state: RelayState,
}

/// The destinations' side of a fan-out session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fanout {
    /// The settings it ran with, kept in the importing proxy.
    pub(crate) settings: FanoutSettings,
    /// Each destination's backend address, in the connection's order (as `state.dests`).
    pub(crate) dests: Vec<SocketAddr>,
    pub(crate) state: FanState,
}

impl Session {
    /// A relaying connection: both sockets and the state between them.
    pub(crate) fn relaying(
        client: TcpStream,
        upstream: TcpStream,
        id: u64,
        tunnel: SocketAddr,
        peer: SocketAddr,
        relay: Relay,
    ) -> Session {
        Session {
            client: Some(client),
            upstreams: vec![upstream],
            id,
            tunnel,
            peer,
            kind: Kind::Relaying(relay),
            origin: None,
        }
    }

    /// A client that waits for a backend: nothing was read from it yet.
    pub(crate) fn waiting(
        client: TcpStream,
        id: u64,
        tunnel: SocketAddr,
        peer: SocketAddr,
    ) -> Session {
        Session {
            client: Some(client),
            upstreams: Vec::new(),
            id,
            tunnel,
            peer,
            kind: Kind::Waiting,
            origin: None,
        }
    }

    /// A fan-out connection: the client's socket, one socket per open destination (in order:
    /// as many as `fanout.state` has open destinations), and the state between them.
    pub(crate) fn fanout(
        client: TcpStream,
        dests: Vec<TcpStream>,
        id: u64,
        tunnel: SocketAddr,
        peer: SocketAddr,
        fanout: Fanout,
    ) -> Session {
        Session {
            client: Some(client),
            upstreams: dests,
            id,
            tunnel,
            peer,
            kind: Kind::Fanout(fanout),
            origin: None,
        }
    }

    /// The listen address of the tunnel the connection came in on.
    pub fn tunnel(&self) -> SocketAddr {
        self.tunnel
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The backend the connection relays to; `None` for a client that was still waiting for
    /// one, and for a fan-out connection (see [`Session::destinations`]).
    pub fn backend(&self) -> Option<SocketAddr> {
        match &self.kind {
            Kind::Relaying(relay) => Some(relay.backend),
            Kind::Waiting | Kind::Fanout(_) => None,
        }
    }

    /// True for a fan-out connection (one client copied to several destinations).
    pub fn is_fanout(&self) -> bool {
        matches!(self.kind, Kind::Fanout(_))
    }

    /// The backends the connection still sends to: its one backend, or a fan-out connection's
    /// open destinations (those that had already left stay behind); empty for a waiting client.
    pub fn destinations(&self) -> Vec<SocketAddr> {
        match &self.kind {
            Kind::Waiting => Vec::new(),
            Kind::Relaying(relay) => vec![relay.backend],
            Kind::Fanout(fan) => fan
                .dests
                .iter()
                .zip(&fan.state.dests)
                .filter(|(_, d)| d.phase == crate::conn::fanout::frozen::FrozenPhase::Open)
                .map(|(addr, _)| *addr)
                .collect(),
        }
    }

    /// Bytes read from one side and not yet written to the other, both directions (for a
    /// fan-out connection: the client's bytes some destination lacks, and the primary's reply
    /// bytes): what the session carries besides its sockets.
    pub fn buffered(&self) -> usize {
        match &self.kind {
            Kind::Waiting => 0,
            Kind::Relaying(relay) => relay.state.buffered(),
            Kind::Fanout(fan) => fan.state.buffered(),
        }
    }

    /// True when one direction has ended (its source sent end of stream) while the other goes
    /// on.
    pub fn half_closed(&self) -> bool {
        match &self.kind {
            Kind::Waiting => false,
            Kind::Relaying(relay) => relay.state.half_closed(),
            Kind::Fanout(fan) => fan.state.half_closed(),
        }
    }

    /// How long the connection had passed no byte when it was taken out.
    pub fn idle_for(&self) -> Duration {
        match &self.kind {
            Kind::Waiting => Duration::ZERO,
            Kind::Relaying(relay) => relay.state.idle_for,
            Kind::Fanout(fan) => fan.state.idle_for,
        }
    }

    /// Closes this process's copies of the sockets without touching the connections: for a
    /// session another process has acknowledged (its copies carry the connections on). Only
    /// then: closing the last copy of a socket ends its connection.
    pub fn handed_over(mut self) {
        // Plain closes: no SO_LINGER change, which would apply to the other process's copy too.
        self.client.take();
        self.upstreams.clear();
    }

    /// The sockets, for the proxy that takes the session in: the client's and the upstreams
    /// (see [`Session::fanout`] for their order); `None` if already taken.
    pub(crate) fn take_sockets(&mut self) -> Option<(TcpStream, Vec<TcpStream>)> {
        let client = self.client.take()?;
        Some((client, std::mem::take(&mut self.upstreams)))
    }

    /// The sockets, for [`wire`]; `None` once taken.
    pub(crate) fn sockets(&self) -> Option<(&TcpStream, &[TcpStream])> {
        Some((self.client.as_ref()?, &self.upstreams))
    }
}

impl Drop for Session {
    /// A session nobody took: reset its connections (SO_LINGER 0, then close), so that the
    /// peers see an error, not a clean end of stream.
    fn drop(&mut self) {
        for socket in self
            .client
            .take()
            .into_iter()
            .chain(self.upstreams.drain(..))
        {
            let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("tunnel", &self.tunnel)
            .field("peer", &self.peer)
            .field("destinations", &self.destinations())
            .field("fanout", &self.is_fanout())
            .field("buffered", &self.buffered())
            .field("half_closed", &self.half_closed())
            .finish()
    }
}
