//! The control socket: a TCP or Unix listener, and one session thread per connected client.
//!
//! A session reads bounded lines (at most [`MAX_LINE`] bytes; a longer one is refused and
//! skipped up to its newline), answers each, and ends on `EXIT`, EOF, an idle client
//! ([`IDLE_TIMEOUT`]) or a client that does not read its replies ([`WRITE_TIMEOUT`]). At most
//! [`MAX_SESSIONS`] run at once; further clients are told so and closed. Sessions share nothing
//! but the proxy handle, so a slow client delays no other.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token, Waker};
use porxy_core::{Endpoint, ProxyHandle};

use super::command::{parse, MAX_LINE};
use super::reply::{answer, Context, Reply};

/// Control clients served at once.
pub const MAX_SESSIONS: usize = 32;
/// A control client that sends nothing for this long is disconnected.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A control client that takes no reply bytes for this long is disconnected.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

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
    #[error("control socket {path} is in use by a running process")]
    PathInUse { path: PathBuf },
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
                ControlSocket::Unix(bind_unix(path)?),
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

/// Serves a bound control socket on a thread of its own.
pub fn serve(
    socket: ControlSocket,
    bound: BoundControl,
    handle: ProxyHandle,
    ctx: Context,
) -> Result<ControlCloser, ControlError> {
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
        sessions: Arc::new(AtomicUsize::new(0)),
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
    sessions: Arc<AtomicUsize>,
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
                    start_session(s, &self.handle, &self.ctx, &self.sessions);
                    Ok(())
                }),
                MioListener::Unix(l) => l.accept().and_then(|(s, _)| {
                    let s = UnixStream::from(s);
                    s.set_nonblocking(false)?;
                    start_session(s, &self.handle, &self.ctx, &self.sessions);
                    Ok(())
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
}

/// Binds a Unix socket readable and writable by its owner only. A stale socket file (nobody
/// answers on it) is replaced; a live one is an error.
fn bind_unix(path: &Path) -> Result<UnixListener, ControlError> {
    let bind_error = |source| ControlError::Bind {
        addr: path.display().to_string(),
        source,
    };
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ControlError::PathInUse { path: path.into() });
        }
        std::fs::remove_file(path).map_err(bind_error)?;
    }
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// A control connection, TCP or Unix.
trait ControlStream: Read + Write + Send + 'static {
    fn set_timeouts(&self, read: Duration, write: Duration) -> io::Result<()>;
}

impl ControlStream for TcpStream {
    fn set_timeouts(&self, read: Duration, write: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(read))?;
        self.set_write_timeout(Some(write))
    }
}

impl ControlStream for UnixStream {
    fn set_timeouts(&self, read: Duration, write: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(read))?;
        self.set_write_timeout(Some(write))
    }
}

fn start_session<S: ControlStream>(
    mut stream: S,
    handle: &ProxyHandle,
    ctx: &Context,
    sessions: &Arc<AtomicUsize>,
) {
    if sessions.fetch_add(1, Ordering::SeqCst) >= MAX_SESSIONS {
        sessions.fetch_sub(1, Ordering::SeqCst);
        let _ = stream.set_timeouts(WRITE_TIMEOUT, WRITE_TIMEOUT);
        let _ = stream.write_all(
            Reply::err(format!(
                "too many control connections (limit {MAX_SESSIONS})"
            ))
            .text
            .as_bytes(),
        );
        return;
    }
    let handle = handle.clone();
    let ctx = ctx.clone();
    let sessions = sessions.clone();
    let spawned = std::thread::Builder::new()
        .name("porxy-control-session".into())
        .spawn(move || {
            if let Err(e) = run_session(stream, &handle, &ctx) {
                tracing::debug!(error = %e, "control session ended");
            }
            sessions.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a control session thread");
    }
}

/// Serves one client until EXIT, EOF, a timeout or an IO error.
fn run_session<S: ControlStream>(
    mut stream: S,
    handle: &ProxyHandle,
    ctx: &Context,
) -> io::Result<()> {
    stream.set_timeouts(IDLE_TIMEOUT, WRITE_TIMEOUT)?;
    let mut lines = LineReader::default();
    loop {
        let line = match lines.next_line(&mut stream) {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                let _ = stream.write_all(b"ERR: idle for too long; closing\n");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let reply = match line {
            Line::Complete(bytes) => answer(parse(&bytes), handle, ctx),
            Line::TooLong(len) => Reply::err(format!(
                "line too long: over {len} bytes, the limit is {MAX_LINE}"
            )),
        };
        stream.write_all(reply.text.as_bytes())?;
        if reply.then_stop {
            let _ = stream.flush();
            ctx.stopper.graceful();
        }
        if reply.close {
            return Ok(());
        }
    }
}

/// What the line reader found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// One line's bytes, without `\n` (a trailing `\r` is left to the parser).
    Complete(Vec<u8>),
    /// A line that passed [`MAX_LINE`]; its bytes up to the newline are skipped.
    TooLong(usize),
}

/// Splits a byte stream into lines of bounded length.
#[derive(Default)]
struct LineReader {
    buf: Vec<u8>,
    /// Skipping the rest of a too-long line.
    skipping: bool,
}

impl LineReader {
    /// The next line, or `None` at EOF.
    fn next_line(&mut self, input: &mut impl Read) -> io::Result<Option<Line>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                if line.len() > MAX_LINE {
                    return Ok(Some(Line::TooLong(MAX_LINE)));
                }
                return Ok(Some(Line::Complete(line)));
            }
            if self.buf.len() > MAX_LINE {
                self.buf.clear();
                if !self.skipping {
                    self.skipping = true;
                    return Ok(Some(Line::TooLong(MAX_LINE)));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = match input.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                // A last line without a newline still counts.
                if self.buf.is_empty() || self.skipping {
                    return Ok(None);
                }
                return Ok(Some(Line::Complete(std::mem::take(&mut self.buf))));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
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
    fn line_reader_bounds_lines_and_skips_long_ones() {
        let long = vec![b'x'; MAX_LINE * 3];
        let mut input = Vec::new();
        input.extend_from_slice(b"STATUS\r\n");
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nHELP\nlast");
        let mut cursor = io::Cursor::new(input);
        let mut reader = LineReader::default();
        let mut got = Vec::new();
        while let Some(line) = reader.next_line(&mut cursor).unwrap() {
            got.push(line);
        }
        assert_eq!(
            got,
            vec![
                Line::Complete(b"STATUS\r".to_vec()),
                Line::TooLong(MAX_LINE),
                Line::Complete(b"HELP".to_vec()),
                Line::Complete(b"last".to_vec()),
            ]
        );
    }
}
