//! An admin front end's listening socket, TCP or Unix, and the thread that accepts its
//! clients: the control socket's and the HTTP admin endpoint's, each handing its clients to
//! sessions of its own ([`Starter`]).
//!
//! The acceptor waits on its own poll, so that closing never depends on a wake-up connection
//! (which, on a socket shared with a new process, that process might take).

use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token, Waker};
use porxy_core::Endpoint;

use super::ClientStream;
use crate::socket_path::{bind_unix, check_len, SocketPathError};

/// What a front end does with each client its socket accepts: starts serving it (on a thread
/// of its own, so that the acceptor goes on).
pub(crate) trait Starter: Send + 'static {
    fn start<S: ClientStream>(&self, stream: S) -> io::Result<()>;
}

/// Where a front end listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address (`9999` means `127.0.0.1:9999`).
    Tcp(Endpoint),
    /// A Unix socket path (`unix:PATH`, or any value with a `/` in it).
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("`unix:` needs a path, like `unix:/run/porxy.sock`".into());
            }
            return Ok(ListenAddr::Unix(path.into()));
        }
        if text.contains('/') {
            return Ok(ListenAddr::Unix(text.into()));
        }
        text.parse()
            .map(ListenAddr::Tcp)
            .map_err(|e: porxy_core::SpecError| {
                format!(
                    "`{text}` is neither a TCP address nor a Unix socket path: {}",
                    e.message()
                )
            })
    }
}

impl ListenAddr {
    /// What [`ListenSocket::bind`] checks of the address itself, without binding: a TCP
    /// address resolves; a Unix socket path fits in a socket address. `role` names the socket
    /// in errors.
    pub fn check(&self, role: &'static str) -> Result<(), ListenError> {
        match self {
            ListenAddr::Tcp(endpoint) => {
                endpoint
                    .resolve()
                    .map(drop)
                    .map_err(|source| ListenError::Resolve {
                        role,
                        addr: endpoint.to_string(),
                        source: Box::new(source),
                    })
            }
            ListenAddr::Unix(path) => Ok(check_len(path, role)?),
        }
    }
}

/// The address a front end's socket is bound to, as the READY line and logs show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for BoundAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundAddr::Tcp(addr) => write!(f, "{addr}"),
            BoundAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why a front end's socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("{role} {addr}: {source}")]
    Resolve {
        role: &'static str,
        addr: String,
        /// Boxed: a core error is large, and this is rare.
        #[source]
        source: Box<porxy_core::Error>,
    },
    #[error("cannot listen for the {role} on {addr}: {source}")]
    Bind {
        role: &'static str,
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Path(#[from] SocketPathError),
    #[error("cannot start the {role}'s thread: {source}")]
    Thread {
        role: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A bound socket, not yet served: bound here, or inherited from a previous process.
pub enum ListenSocket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl ListenSocket {
    /// Binds the `role` socket at `addr`.
    pub fn bind(
        addr: &ListenAddr,
        role: &'static str,
    ) -> Result<(ListenSocket, BoundAddr), ListenError> {
        match addr {
            ListenAddr::Tcp(endpoint) => {
                let resolved = endpoint.resolve().map_err(|source| ListenError::Resolve {
                    role,
                    addr: endpoint.to_string(),
                    source: Box::new(source),
                })?;
                let bind_error = |source| ListenError::Bind {
                    role,
                    addr: resolved.to_string(),
                    source,
                };
                let listener = TcpListener::bind(resolved).map_err(bind_error)?;
                let bound = listener.local_addr().map_err(bind_error)?;
                Ok((ListenSocket::Tcp(listener), BoundAddr::Tcp(bound)))
            }
            ListenAddr::Unix(path) => Ok((
                ListenSocket::Unix(bind_unix(path, role)?),
                BoundAddr::Unix(path.clone()),
            )),
        }
    }

    /// A duplicate of the listening socket, to hand over to a new process.
    fn duplicate(&self) -> io::Result<OwnedFd> {
        match self {
            ListenSocket::Tcp(l) => l.try_clone().map(OwnedFd::from),
            ListenSocket::Unix(l) => l.try_clone().map(OwnedFd::from),
        }
    }
}

/// Closes a front end's socket: no new clients (sessions already open go on).
#[derive(Clone)]
pub struct Closer {
    role: &'static str,
    bound: BoundAddr,
    closing: Arc<AtomicBool>,
    waker: Arc<Waker>,
    /// A duplicate of the listening socket for a handover; dropped on close.
    spare: Arc<Mutex<Option<OwnedFd>>>,
    /// Handed over to a new process: closing must not remove a Unix socket's file.
    handed_over: Arc<AtomicBool>,
}

impl Closer {
    /// Stops accepting and closes the listening socket (removing a Unix socket's file unless
    /// it was handed over).
    pub fn close(&self) {
        if self.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.waker.wake() {
            tracing::debug!(error = %e, role = self.role, "acceptor already gone");
        }
        self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let BoundAddr::Unix(path) = &self.bound {
            if !self.handed_over.load(Ordering::SeqCst) {
                let _ = std::fs::remove_file(path);
            }
        }
        tracing::info!(addr = %self.bound, "{} closed", self.role);
    }

    /// A handover did not happen after all: closing may remove the socket file again.
    pub fn cancel_hand_over(&self) {
        self.handed_over.store(false, Ordering::SeqCst);
    }

    /// The address, and a duplicate of the listening socket for a new process.
    pub fn hand_over(&self) -> io::Result<(BoundAddr, OwnedFd)> {
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        let fd = spare
            .as_ref()
            .ok_or_else(|| io::Error::other(format!("the {} is closed", self.role)))?
            .try_clone()?;
        self.handed_over.store(true, Ordering::SeqCst);
        Ok((self.bound.clone(), fd))
    }
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// How long accepting pauses after an error such as running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// True when a TCP address can be reached from beyond this host.
pub fn reachable_from_outside(bound: &BoundAddr) -> bool {
    matches!(bound, BoundAddr::Tcp(addr) if !addr.ip().is_loopback())
}

/// Serves the bound `role` socket on a thread of its own, handing each client to `starter`.
pub(crate) fn serve(
    socket: ListenSocket,
    bound: BoundAddr,
    role: &'static str,
    starter: impl Starter,
) -> Result<Closer, ListenError> {
    let thread_error = |source| ListenError::Thread { role, source };
    let spare = socket.duplicate().map_err(thread_error)?;
    let poll = Poll::new().map_err(thread_error)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(thread_error)?);
    let closing = Arc::new(AtomicBool::new(false));
    let acceptor = Acceptor {
        role,
        poll,
        listener: match socket {
            ListenSocket::Tcp(l) => {
                l.set_nonblocking(true).map_err(thread_error)?;
                MioListener::Tcp(mio::net::TcpListener::from_std(l))
            }
            ListenSocket::Unix(l) => {
                l.set_nonblocking(true).map_err(thread_error)?;
                MioListener::Unix(mio::net::UnixListener::from_std(l))
            }
        },
        closing: closing.clone(),
        starter,
    };
    std::thread::Builder::new()
        .name(format!("porxy-{}", role.replace(' ', "-")))
        .spawn(move || acceptor.run())
        .map_err(thread_error)?;
    Ok(Closer {
        role,
        bound,
        closing,
        waker,
        spare: Arc::new(Mutex::new(Some(spare))),
        handed_over: Arc::new(AtomicBool::new(false)),
    })
}

enum MioListener {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

/// The accepting thread.
struct Acceptor<T> {
    role: &'static str,
    poll: Poll,
    listener: MioListener,
    closing: Arc<AtomicBool>,
    starter: T,
}

impl<T: Starter> Acceptor<T> {
    fn run(mut self) {
        let registered = match &mut self.listener {
            MioListener::Tcp(l) => self
                .poll
                .registry()
                .register(l, LISTENER, Interest::READABLE),
            MioListener::Unix(l) => self
                .poll
                .registry()
                .register(l, LISTENER, Interest::READABLE),
        };
        if let Err(e) = registered {
            tracing::error!(error = %e, "cannot watch the {}; no clients", self.role);
            return;
        }
        let mut events = Events::with_capacity(16);
        // Accept once first: clients may wait already (a socket taken over from a previous
        // process), and an edge-triggered poll would not say so.
        let mut backoff = self.accept_all();
        loop {
            if let Err(e) = self
                .poll
                .poll(&mut events, backoff.then_some(ACCEPT_BACKOFF))
            {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "{} poll failed; no more clients", self.role);
                return;
            }
            if self.closing.load(Ordering::SeqCst) {
                return; // Dropping the listener closes this process's copy of the socket.
            }
            backoff = self.accept_all();
        }
    }

    /// Accepts until the queue is empty; true when an error asks for a pause and a retry.
    fn accept_all(&mut self) -> bool {
        // Bounded: a flood of connections gets served in rounds.
        for _ in 0..256 {
            let accepted = match &self.listener {
                MioListener::Tcp(l) => l.accept().and_then(|(s, _)| {
                    let s = std::net::TcpStream::from(s);
                    s.set_nonblocking(false)?;
                    self.starter.start(s)
                }),
                MioListener::Unix(l) => l.accept().and_then(|(s, _)| {
                    let s = UnixStream::from(s);
                    s.set_nonblocking(false)?;
                    self.starter.start(s)
                }),
            };
            match accepted {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e)
                    if e.kind() == ErrorKind::Interrupted
                        || e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "{} accept failed; retrying shortly", self.role);
                    return true;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_addr_forms() {
        assert_eq!(
            "9999".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:9999".parse().unwrap())
        );
        assert_eq!(
            "unix:porxy.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("porxy.sock".into())
        );
        assert_eq!(
            "/run/porxy.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/porxy.sock".into())
        );
        assert!("unix:".parse::<ListenAddr>().is_err());
        assert!("localhost"
            .parse::<ListenAddr>()
            .unwrap_err()
            .contains("neither"));
    }

    #[test]
    fn only_loopback_tcp_counts_as_private() {
        let tcp = |a: &str| BoundAddr::Tcp(a.parse().unwrap());
        assert!(reachable_from_outside(&tcp("0.0.0.0:9999")));
        assert!(reachable_from_outside(&tcp("10.1.2.3:9999")));
        assert!(reachable_from_outside(&tcp("[::]:9999")));
        assert!(!reachable_from_outside(&tcp("127.0.0.1:9999")));
        assert!(!reachable_from_outside(&tcp("127.8.9.10:9999")));
        assert!(!reachable_from_outside(&tcp("[::1]:9999")));
        assert!(!reachable_from_outside(&BoundAddr::Unix(
            "/run/p.sock".into()
        )));
    }
}
