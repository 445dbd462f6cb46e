//! The new porxy's side of a takeover (steps 1 to 4 of the module docs): it asks the running
//! porxy for its listening sockets, starts on them, and confirms.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Instant;

use porxy_core::ProxyHandle;
use sendfd::RecvWithFd;

use super::line::Quoted;
use super::peer::Peer;
use super::raw::{own, read_line, time_left};
use super::{UpgradeError, STEP_TIMEOUT};
use crate::clients::{BoundAddr, ListenSocket};
use crate::journal::{self, Change, Journal};

/// Most sockets one handover carries (the kernel's limit per message is 253).
pub(super) const MAX_SOCKETS: usize = 250;
/// Largest handover text.
const MAX_TEXT: usize = 64 * 1024;
/// Longest line the new porxy reads.
const MAX_LINE: usize = 1024;
/// Largest runtime journal taken.
const MAX_RUNTIME: usize = 64 * 1024 * 1024;

/// What the new porxy received from the running one.
pub(crate) struct Takeover {
    path: String,
    /// Read without a buffer: descriptors come later on it, and a buffered read could swallow
    /// them.
    conn: UnixStream,
    /// Listening sockets by tunnel name, with their addresses.
    pub(crate) tunnels: Vec<(String, SocketAddr, TcpListener)>,
    /// The control socket, if the running porxy had one.
    pub(crate) control: Option<(BoundAddr, ListenSocket)>,
    /// The changes the running porxy's operators made at runtime, to replay here (`None`:
    /// not asked for, or the running porxy is too old to send them).
    pub(crate) runtime: Option<Vec<Change>>,
}

/// New side, steps 1 and 2: asks the porxy at `path` for its listening sockets and, with
/// `runtime`, for the changes made there at runtime. A running porxy too old to know that
/// request refuses it; then it is asked again without.
pub(crate) fn take_over(path: &Path, runtime: bool) -> Result<Takeover, UpgradeError> {
    if !runtime {
        return ask(path, false);
    }
    match ask(path, true) {
        Err(UpgradeError::Protocol { what, .. }) if what.contains("expected TAKEOVER, got") => {
            tracing::warn!(
                "the running porxy cannot send the changes made at runtime (an older version); \
                 starting from the configuration alone"
            );
            ask(path, false)
        }
        other => other,
    }
}

fn ask(path: &Path, runtime: bool) -> Result<Takeover, UpgradeError> {
    let name = path.display().to_string();
    let io_error = |source| UpgradeError::Io {
        path: name.clone(),
        source,
    };
    let protocol = |what: String| UpgradeError::Protocol {
        path: name.clone(),
        what,
    };
    let mut conn = UnixStream::connect(path).map_err(io_error)?;
    let peer = Peer::of(&conn).map_err(io_error)?;
    if !peer.trusted() {
        return Err(protocol(format!(
            "the process listening there (pid {}) runs as user {}, neither this user nor root; \
             its sockets are not taken",
            peer.pid, peer.uid
        )));
    }
    conn.set_read_timeout(Some(STEP_TIMEOUT))
        .map_err(io_error)?;
    let request = if runtime {
        format!("TAKEOVER {}\n", journal::FORMAT)
    } else {
        "TAKEOVER\n".to_string()
    };
    conn.write_all(request.as_bytes()).map_err(io_error)?;
    let mut text = vec![0u8; MAX_TEXT];
    let mut raw_fds: Vec<RawFd> = vec![-1; MAX_SOCKETS + 1];
    let timed_out = |e: io::Error| {
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            protocol(format!(
                "the running porxy (pid {}) did not answer TAKEOVER within {}s",
                peer.pid,
                STEP_TIMEOUT.as_secs()
            ))
        } else {
            io_error(e)
        }
    };
    // One deadline for the whole answer, however it trickles in.
    let deadline = Instant::now() + STEP_TIMEOUT;
    let (mut len, count) = conn
        .recv_with_fd(&mut text, &mut raw_fds)
        .map_err(timed_out)?;
    // Own every descriptor received at once, so that none leaks on an error below.
    let mut fds: Vec<OwnedFd> = raw_fds[..count].iter().map(|&fd| own(fd)).collect();
    // The text may come in more than one piece; the descriptors come with the first.
    while !text[..len].ends_with(b"END\n") {
        if let Some(why) = refusal(&text[..len]) {
            return Err(protocol(format!(
                "the running porxy refused the takeover: {why}"
            )));
        }
        if len == text.len() {
            return Err(protocol("handover text too long".into()));
        }
        let n = time_left(&conn, deadline)
            .and_then(|()| conn.read(&mut text[len..]))
            .map_err(timed_out)?;
        if n == 0 {
            return Err(protocol(match len {
                0 => "the running porxy closed the connection without answering TAKEOVER".into(),
                _ => format!(
                    "the running porxy closed the connection before END, after {}",
                    Quoted(&text[..len])
                ),
            }));
        }
        len += n;
    }
    let text = String::from_utf8_lossy(&text[..len]).into_owned();
    let mut fds = fds.drain(..);
    let mut tunnels = Vec::new();
    let mut control = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut next_fd = || {
            fds.next()
                .ok_or_else(|| protocol(format!("no socket sent for `{line}`")))
        };
        match words.as_slice() {
            ["tunnel", name, addr] => {
                let addr: SocketAddr = addr
                    .parse()
                    .map_err(|_| protocol(format!("bad address in `{line}`")))?;
                let socket = TcpListener::from(next_fd()?);
                // The socket must be what the line says it is.
                match socket.local_addr() {
                    Ok(bound) if bound == addr => tunnels.push((name.to_string(), addr, socket)),
                    _ => {
                        return Err(protocol(format!(
                            "the socket sent for `{line}` is not bound there"
                        )))
                    }
                }
            }
            ["control", "tcp", addr] => {
                let addr: SocketAddr = addr
                    .parse()
                    .map_err(|_| protocol(format!("bad address in `{line}`")))?;
                let socket = TcpListener::from(next_fd()?);
                control = Some((BoundAddr::Tcp(addr), ListenSocket::Tcp(socket)));
            }
            ["control", "unix", path] => {
                let socket = UnixListener::from(next_fd()?);
                control = Some((
                    BoundAddr::Unix(PathBuf::from(path)),
                    ListenSocket::Unix(socket),
                ));
            }
            ["END"] => break,
            _ => return Err(protocol(format!("unexpected line `{line}`"))),
        }
    }
    let runtime = if runtime {
        Some(read_runtime(&mut conn).map_err(protocol)?)
    } else {
        None
    };
    Ok(Takeover {
        path: name,
        conn,
        tunnels,
        control,
        runtime,
    })
}

/// Asks for the runtime journal and reads it: `RUNTIME LEN`, then exactly LEN bytes of JSON.
fn read_runtime(conn: &mut UnixStream) -> Result<Vec<Change>, String> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    conn.write_all(b"RUNTIME\n")
        .map_err(|e| format!("asking for the runtime journal: {e}"))?;
    let line = read_line(conn, MAX_LINE, deadline)
        .map_err(|e| format!("reading the runtime journal: {e}"))?
        .ok_or("the running porxy closed the connection instead of sending its runtime journal")?;
    let len = line
        .trim_end()
        .strip_prefix("RUNTIME ")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n <= MAX_RUNTIME)
        .ok_or_else(|| format!("expected `RUNTIME LEN` (at most {MAX_RUNTIME}), got {line:?}"))?;
    let mut body = vec![0u8; len];
    let mut read = 0;
    while read < len {
        let n = time_left(conn, deadline)
            .and_then(|()| conn.read(&mut body[read..]))
            .map_err(|e| format!("reading the runtime journal: {e}"))?;
        if n == 0 {
            return Err(format!(
                "the runtime journal was cut after {read} of {len} bytes"
            ));
        }
        read += n;
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("the runtime journal: {e}"))?;
    Journal::parse(&value, Instant::now()).map_err(|e| format!("the runtime journal: {e}"))
}

/// The reason in an `ERR why` answer, once its line is whole.
fn refusal(text: &[u8]) -> Option<String> {
    let rest = text.strip_prefix(b"ERR ")?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The old porxy has stopped accepting; its established connections are to be taken over or
/// left with it (`handover.rs`).
pub(crate) struct Confirmed {
    conn: UnixStream,
}

impl Confirmed {
    /// Steps 5 and 6: takes the old porxy's established connections into `handle`'s proxy;
    /// how many went to its reactors.
    pub(crate) fn take_connections(mut self, handle: &ProxyHandle) -> u64 {
        super::handover::take_connections(&mut self.conn, handle)
    }

    /// Step 5 with `--leave-connections`: the old porxy finishes its connections itself.
    pub(crate) fn leave_connections(mut self) {
        super::handover::leave_connections(&mut self.conn);
    }
}

impl Takeover {
    /// New side, step 4: tells the old porxy that this one accepts now; it stops accepting.
    pub(crate) fn confirm(mut self) -> Result<Confirmed, UpgradeError> {
        let io_error = |source| UpgradeError::Io {
            path: self.path.clone(),
            source,
        };
        self.conn.write_all(b"READY\n").map_err(io_error)?;
        let reply = read_line(&mut self.conn, MAX_LINE, Instant::now() + STEP_TIMEOUT)
            .map_err(|source| UpgradeError::Io {
                path: self.path.clone(),
                source,
            })?
            .unwrap_or_default();
        if reply.is_empty() {
            return Err(UpgradeError::Protocol {
                path: self.path.clone(),
                what: "the running porxy closed the connection without answering READY".into(),
            });
        }
        if reply.trim_end() != "OK" {
            return Err(UpgradeError::Protocol {
                path: self.path.clone(),
                what: format!("the running porxy answered {reply:?} to READY"),
            });
        }
        Ok(Confirmed { conn: self.conn })
    }
}
