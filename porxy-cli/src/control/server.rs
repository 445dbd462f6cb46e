//! The control socket: a TCP or Unix listener, and the thread that accepts its clients.
//!
//! Each client gets a session of its own ([`super::session`]); sessions share nothing but the
//! proxy handle, so a slow client delays no other.

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
use porxy_core::{Endpoint, ProxyHandle};

use super::execute::Context;
use super::session;
use crate::clients::{ClientStream, Deadlines, Register};
use crate::socket_path::{bind_unix, check_len, SocketPathError};

/// The socket's name in errors and logs.
const ROLE: &str = "control socket";

/// Where the control socket listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAddr {
    /// A TCP address (`9999` means `127.0.0.1:9999`).
    Tcp(Endpoint),
    /// A Unix socket path (`unix:PATH`, or any value with a `/` in it).
    Unix(PathBuf),
}

impl FromStr for ControlAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("`unix:` needs a path, like `unix:/run/porxy.sock`".into());
            }
            return Ok(ControlAddr::Unix(path.into()));
        }
        if text.contains('/') {
            return Ok(ControlAddr::Unix(text.into()));
        }
        text.parse()
            .map(ControlAddr::Tcp)
            .map_err(|e: porxy_core::SpecError| {
                format!(
                    "`{text}` is neither a TCP address nor a Unix socket path: {}",
                    e.message()
                )
            })
    }
}

impl ControlAddr {
    /// What [`ControlSocket::bind`] checks of the address itself, without binding: a TCP
    /// address resolves; a Unix socket path fits in a socket address.
    pub fn check(&self) -> Result<(), ControlError> {
        match self {
            ControlAddr::Tcp(endpoint) => {
                endpoint
                    .resolve()
                    .map(drop)
                    .map_err(|source| ControlError::Resolve {
                        addr: endpoint.to_string(),
                        source,
                    })
            }
            ControlAddr::Unix(path) => Ok(check_len(path, ROLE)?),
        }
    }
}

/// The address a control socket is bound to, as the READY line and logs show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundControl {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for BoundControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundControl::Tcp(addr) => write!(f, "{addr}"),
            BoundControl::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {addr}: {source}")]
    Resolve {
        addr: String,
        #[source]
        source: porxy_core::Error,
    },
    #[error("cannot listen for control on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Path(#[from] SocketPathError),
    #[error("cannot start the control thread: {0}")]
    Thread(#[source] io::Error),
}

/// A bound control socket, not yet served: bound here, or inherited from a previous process.
pub enum ControlSocket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl ControlSocket {
    /// Binds the control socket at `addr`.
    pub fn bind(addr: &ControlAddr) -> Result<(ControlSocket, BoundControl), ControlError> {
        match addr {
            ControlAddr::Tcp(endpoint) => {
                let resolved = endpoint.resolve().map_err(|source| ControlError::Resolve {
                    addr: endpoint.to_string(),
                    source,
                })?;
                let bind_error = |source| ControlError::Bind {
                    addr: resolved.to_string(),
                    source,
                };
                let listener = TcpListener::bind(resolved).map_err(bind_error)?;
                let bound = listener.local_addr().map_err(bind_error)?;
                Ok((ControlSocket::Tcp(listener), BoundControl::Tcp(bound)))
            }
            ControlAddr::Unix(path) => Ok((
                ControlSocket::Unix(bind_unix(path, ROLE)?),
                BoundControl::Unix(path.clone()),
            )),
        }
    }

    /// A duplicate of the listening socket, to hand over to a new process.
    fn duplicate(&self) -> io::Result<OwnedFd> {
        match self {
            ControlSocket::Tcp(l) => l.try_clone().map(OwnedFd::from),
            ControlSocket::Unix(l) => l.try_clone().map(OwnedFd::from),
        }
    }
}

/// Closes the control socket: no new control clients (sessions already open go on).
#[derive(Clone)]
pub struct ControlCloser {
    bound: BoundControl,
    closing: Arc<AtomicBool>,
    waker: Arc<Waker>,
    /// A duplicate of the listening socket for a handover; dropped on close.
    spare: Arc<Mutex<Option<OwnedFd>>>,
    /// Handed over to a new process: closing must not remove a Unix socket's file.
    handed_over: Arc<AtomicBool>,
}

impl ControlCloser {
    /// Stops accepting and closes the listening socket (removing a Unix socket's file unless
    /// it was handed over).
    pub fn close(&self) {
        if self.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.waker.wake() {
            tracing::debug!(error = %e, "control acceptor already gone");
        }
        self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let BoundControl::Unix(path) = &self.bound {
            if !self.handed_over.load(Ordering::SeqCst) {
                let _ = std::fs::remove_file(path);
            }
        }
        tracing::info!(control = %self.bound, "control socket closed");
    }

    /// A handover did not happen after all: closing may remove the socket file again.
    pub fn cancel_hand_over(&self) {
        self.handed_over.store(false, Ordering::SeqCst);
    }

    /// The address, and a duplicate of the listening socket for a new process.
    pub fn hand_over(&self) -> io::Result<(BoundControl, OwnedFd)> {
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        let fd = spare
            .as_ref()
            .ok_or_else(|| io::Error::other("the control socket is closed"))?
            .try_clone()?;
        self.handed_over.store(true, Ordering::SeqCst);
        Ok((self.bound.clone(), fd))
    }
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// How long accepting pauses after an error such as running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// True when a TCP control address can be reached from beyond this host.
pub fn reachable_from_outside(bound: &BoundControl) -> bool {
    matches!(bound, BoundControl::Tcp(addr) if !addr.ip().is_loopback())
}

/// Serves a bound control socket on a thread of its own; a client that completes no line
/// within `idle_timeout` is disconnected.
pub fn serve(
    socket: ControlSocket,
    bound: BoundControl,
    handle: ProxyHandle,
    ctx: Context,
    idle_timeout: Duration,
) -> Result<ControlCloser, ControlError> {
    if reachable_from_outside(&bound) {
        tracing::warn!(
            control = %bound,
            "the control socket listens beyond loopback: whoever reaches it controls the proxy"
        );
    }
    let thread_error = ControlError::Thread;
    let spare = socket.duplicate().map_err(thread_error)?;
    let poll = Poll::new().map_err(ControlError::Thread)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(ControlError::Thread)?);
    let closing = Arc::new(AtomicBool::new(false));
    let acceptor = Acceptor {
        poll,
        listener: match socket {
            ControlSocket::Tcp(l) => {
                l.set_nonblocking(true).map_err(ControlError::Thread)?;
                MioListener::Tcp(mio::net::TcpListener::from_std(l))
            }
            ControlSocket::Unix(l) => {
                l.set_nonblocking(true).map_err(ControlError::Thread)?;
                MioListener::Unix(mio::net::UnixListener::from_std(l))
            }
        },
        closing: closing.clone(),
        handle,
        ctx,
        register: Arc::new(Register::default()),
        deadlines: Deadlines::new(idle_timeout),
    };
    std::thread::Builder::new()
        .name("porxy-control".into())
        .spawn(move || acceptor.run())
        .map_err(ControlError::Thread)?;
    Ok(ControlCloser {
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

/// The accepting thread: waits on its own poll, so that closing never depends on a wake-up
/// connection (which, on a socket shared with a new process, that process might take).
struct Acceptor {
    poll: Poll,
    listener: MioListener,
    closing: Arc<AtomicBool>,
    handle: ProxyHandle,
    ctx: Context,
    register: Arc<Register>,
    deadlines: Deadlines,
}

impl Acceptor {
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
            tracing::error!(error = %e, "cannot watch the control socket; no control clients");
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
                tracing::error!(error = %e, "control poll failed; no more control clients");
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
                    self.start_session(s)
                }),
                MioListener::Unix(l) => l.accept().and_then(|(s, _)| {
                    let s = UnixStream::from(s);
                    s.set_nonblocking(false)?;
                    self.start_session(s)
                }),
            };
            match accepted {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e)
                    if e.kind() == ErrorKind::Interrupted
                        || e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "control accept failed; retrying shortly");
                    return true;
                }
            }
        }
        true
    }

    fn start_session<S: ClientStream>(&self, stream: S) -> io::Result<()> {
        session::start(
            stream,
            &self.handle,
            &self.ctx,
            &self.register,
            self.deadlines,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_addr_forms() {
        assert_eq!(
            "9999".parse::<ControlAddr>().unwrap(),
            ControlAddr::Tcp("127.0.0.1:9999".parse().unwrap())
        );
        assert_eq!(
            "unix:porxy.sock".parse::<ControlAddr>().unwrap(),
            ControlAddr::Unix("porxy.sock".into())
        );
        assert_eq!(
            "/run/porxy.sock".parse::<ControlAddr>().unwrap(),
            ControlAddr::Unix("/run/porxy.sock".into())
        );
        assert!("unix:".parse::<ControlAddr>().is_err());
        assert!("localhost"
            .parse::<ControlAddr>()
            .unwrap_err()
            .contains("neither"));
    }

    #[test]
    fn only_loopback_tcp_counts_as_private() {
        let tcp = |a: &str| BoundControl::Tcp(a.parse().unwrap());
        assert!(reachable_from_outside(&tcp("0.0.0.0:9999")));
        assert!(reachable_from_outside(&tcp("10.1.2.3:9999")));
        assert!(reachable_from_outside(&tcp("[::]:9999")));
        assert!(!reachable_from_outside(&tcp("127.0.0.1:9999")));
        assert!(!reachable_from_outside(&tcp("127.8.9.10:9999")));
        assert!(!reachable_from_outside(&tcp("[::1]:9999")));
        assert!(!reachable_from_outside(&BoundControl::Unix(
            "/run/p.sock".into()
        )));
    }
}
