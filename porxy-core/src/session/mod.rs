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
//! [`wire`] turns sessions into bytes and descriptors, and back.
//!
//! Ownership: a `Session` owns its sockets. Dropping one that was neither imported nor
//! [handed over](Session::handed_over) resets both connections, so that a peer sees an error
//! rather than a clean end of stream hiding lost bytes.

pub mod wire;

use std::fmt;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::conn::frozen::RelayState;
use crate::tunnel::Tunnel;

/// An established connection taken out of a proxy, to go on in another one.
pub struct Session {
    /// `None` once taken (imported, or closed as handed over).
    client: Option<TcpStream>,
    /// Present exactly when `relay` is.
    upstream: Option<TcpStream>,
    /// The connection's id in the process it comes from, for logs.
    pub(crate) id: u64,
    /// The listen address of its tunnel.
    pub(crate) tunnel: SocketAddr,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The relay between client and upstream; `None` for a client still waiting for a backend.
    pub(crate) relay: Option<Relay>,
    /// The proxy (its process-wide id) and tunnel it comes from, while it has not left its
    /// process: taken back into that proxy (a handover that failed), it returns to that very
    /// tunnel. Any other proxy ignores it.
    pub(crate) origin: Option<(u64, Arc<Tunnel>)>,
}

/// The upstream side of a relaying session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relay {
    /// The backend the upstream socket is connected to.
    pub(crate) backend: SocketAddr,
    pub(crate) state: RelayState,
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
            upstream: Some(upstream),
            id,
            tunnel,
            peer,
            relay: Some(relay),
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
            upstream: None,
            id,
            tunnel,
            peer,
            relay: None,
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
    /// one.
    pub fn backend(&self) -> Option<SocketAddr> {
        self.relay.as_ref().map(|r| r.backend)
    }

    /// Bytes read from one side and not yet written to the other, both directions: what the
    /// session carries besides its sockets.
    pub fn buffered(&self) -> usize {
        self.relay.as_ref().map_or(0, |r| r.state.buffered())
    }

    /// True when one direction has ended (its source sent end of stream) while the other goes
    /// on.
    pub fn half_closed(&self) -> bool {
        self.relay.as_ref().is_some_and(|r| r.state.half_closed())
    }

    /// How long the connection had passed no byte when it was taken out.
    pub fn idle_for(&self) -> Duration {
        self.relay
            .as_ref()
            .map_or(Duration::ZERO, |r| r.state.idle_for)
    }

    /// Closes this process's copies of the sockets without touching the connections: for a
    /// session another process has acknowledged (its copies carry the connections on). Only
    /// then: closing the last copy of a socket ends its connection.
    pub fn handed_over(mut self) {
        // Plain closes: no SO_LINGER change, which would apply to the other process's copy too.
        self.client.take();
        self.upstream.take();
    }

    /// The sockets, for the proxy that takes the session in; `None` if already taken.
    pub(crate) fn take_sockets(&mut self) -> Option<(TcpStream, Option<TcpStream>)> {
        let client = self.client.take()?;
        Some((client, self.upstream.take()))
    }

    /// The sockets, for [`wire`]; `None` once taken.
    pub(crate) fn sockets(&self) -> Option<(&TcpStream, Option<&TcpStream>)> {
        Some((self.client.as_ref()?, self.upstream.as_ref()))
    }
}

impl Drop for Session {
    /// A session nobody took: reset both connections (SO_LINGER 0, then close), so that the
    /// peers see an error, not a clean end of stream.
    fn drop(&mut self) {
        for socket in [self.client.take(), self.upstream.take()]
            .into_iter()
            .flatten()
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
            .field("backend", &self.backend())
            .field("buffered", &self.buffered())
            .field("half_closed", &self.half_closed())
            .finish()
    }
}
