//! [`ListenSocket`]: a tunnel's listening socket and the tunnel its new clients get.
//!
//! The listener thread creates one per tunnel and holds it until the tunnel closes or the proxy
//! stops. When reactors accept, each of them holds a clone of the `Arc` while the socket is in
//! its epoll. The socket closes when the last holder lets go; whoever asked to be told
//! ([`ListenSocket::on_close`], a `ProxyHandle::close` waiting to return) is told then, so "the
//! port refuses new connections" holds when `close` returns, whichever thread let go last.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_channel::Sender;
use mio::net::TcpListener;

use crate::tunnel::Tunnel;

/// A listening socket shared by the listener thread and, when they accept, the reactors.
pub(crate) struct ListenSocket {
    /// Never reused within a proxy: names the socket in reactor tokens and messages, so that an
    /// event for a socket removed since is not taken for another one's.
    id: usize,
    local: SocketAddr,
    socket: TcpListener,
    /// See [`ListenSocket::clients_nodelay`].
    clients_nodelay: bool,
    /// The tunnel new clients get; a change of the tunnel replaces it.
    tunnel: Mutex<Arc<Tunnel>>,
    /// Counts the changes of `tunnel`, so that a reactor's copy is refreshed (under the lock)
    /// only after one: see [`ListenSocket::current_tunnel`].
    version: AtomicU64,
    /// Declared after `socket`, so dropped after it: the news goes out once the socket is closed.
    closed: CloseSignal,
}

impl ListenSocket {
    pub(crate) fn new(id: usize, tunnel: Arc<Tunnel>, socket: TcpListener) -> Self {
        ListenSocket {
            id,
            local: tunnel.local,
            clients_nodelay: clients_inherit_nodelay(&socket),
            socket,
            tunnel: Mutex::new(tunnel),
            version: AtomicU64::new(0),
            closed: CloseSignal(Mutex::new(None)),
        }
    }

    pub(crate) fn id(&self) -> usize {
        self.id
    }

    /// The tunnel's listen address.
    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }

    pub(crate) fn socket(&self) -> &TcpListener {
        &self.socket
    }

    /// True when the clients accepted from this socket have TCP_NODELAY on already: on Linux
    /// they inherit it from the listening socket, which porxy sets before `listen` (so even
    /// the clients queued before the first accept have it). A socket inherited from another
    /// process without it makes porxy set it on each client.
    pub(crate) fn clients_nodelay(&self) -> bool {
        self.clients_nodelay
    }

    /// The tunnel a client accepted now gets (a lock, uncontended but for a change of the
    /// tunnel: a few tens of nanoseconds beside the microseconds of an accept).
    pub(crate) fn tunnel(&self) -> Arc<Tunnel> {
        // A poisoned lock still holds a whole `Arc`: nothing can be half-written in it.
        self.tunnel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The tunnel a client accepted now gets, through `copy`, the caller's own copy of it: a
    /// reactor takes no lock shared with other threads per client, only after a change.
    pub(crate) fn current_tunnel(&self, copy: &mut Option<(u64, Arc<Tunnel>)>) -> Arc<Tunnel> {
        let version = self.version.load(Ordering::SeqCst);
        match copy {
            Some((seen, tunnel)) if *seen == version => tunnel.clone(),
            _ => {
                let guard = self.tunnel.lock().unwrap_or_else(PoisonError::into_inner);
                // Changed under the lock only: this version is the guarded tunnel's.
                let version = self.version.load(Ordering::SeqCst);
                let tunnel = guard.clone();
                *copy = Some((version, tunnel.clone()));
                tunnel
            }
        }
    }

    /// New clients get `tunnel` from now on.
    pub(crate) fn set_tunnel(&self, tunnel: Arc<Tunnel>) {
        let mut guard = self.tunnel.lock().unwrap_or_else(PoisonError::into_inner);
        *guard = tunnel;
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    /// Sends on `done` once the socket is closed: when the last holder drops it.
    pub(crate) fn on_close(&self, done: Sender<()>) {
        *self.closed.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(done);
    }
}

/// Whether clients accepted from `socket` come with TCP_NODELAY on (see
/// [`ListenSocket::clients_nodelay`]).
fn clients_inherit_nodelay(socket: &TcpListener) -> bool {
    cfg!(target_os = "linux")
        && socket2::SockRef::from(socket)
            .tcp_nodelay()
            .unwrap_or(false)
}

/// Tells whoever waits that the socket is closed, when dropped.
struct CloseSignal(Mutex<Option<Sender<()>>>);

impl Drop for CloseSignal {
    fn drop(&mut self) {
        let done = self
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}
