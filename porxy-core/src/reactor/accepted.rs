//! A client on its way into a reactor, and where it comes from.

use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpStream;

use crate::tunnel::Tunnel;

/// A client socket just accepted (by the listener thread, or by the reactor itself).
pub(crate) struct Accepted {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) tunnel: Arc<Tunnel>,
    /// Process-wide connection id, for logs.
    pub(crate) id: u64,
    /// TCP_NODELAY is on already: inherited from a listening socket that had it (see
    /// [`ListenSocket::clients_nodelay`]), which saves a syscall per client.
    pub(crate) nodelay: bool,
}

/// Where a client comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The listener thread, or this reactor, accepted it.
    Accepted,
    /// Another process handed it over.
    Imported,
}
