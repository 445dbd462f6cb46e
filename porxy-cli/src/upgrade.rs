//! Zero-downtime upgrade: a new porxy takes over the listening sockets of the running one.
//!
//! The running porxy, started with `--upgrade-socket PATH`, listens there (a Unix socket,
//! owner-only). A new porxy started with `--takeover PATH`:
//!
//! 1. connects and sends `TAKEOVER`;
//! 2. receives one message: lines `tunnel NAME ADDR`, then `control tcp ADDR` or
//!    `control unix PATH` if there is a control socket, then `END`, with the listening sockets
//!    themselves attached (SCM_RIGHTS) in the same order;
//! 3. starts its proxy on those sockets: both processes now accept on them, so no client is
//!    refused at any moment;
//! 4. sends `READY`. The old porxy answers `OK` and stops accepting (closing only its own
//!    copies);
//! 5. and 6. asks for the old porxy's established connections and takes them over, so that the
//!    old one exits at once (`handover.rs`), or leaves them with the old one, which drains them
//!    and exits.
//!
//! If the new porxy goes away before `READY`, the old one carries on as if nothing had happened.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use porxy_core::ProxyHandle;
use sendfd::{RecvWithFd, SendWithFd};

use crate::control::{BoundControl, ControlSocket};
use crate::reload::Reloader;
use crate::stopping::Stopper;

/// How long each side waits for the other's next line.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the running porxy waits for its successor's READY: the successor may be waiting
/// for ports (`--bind-wait`) or resolving names. If it goes away, the wait ends at once.
const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// Most sockets one handover carries (the kernel's limit per message is 253).
const MAX_SOCKETS: usize = 250;
/// Largest handover text.
const MAX_TEXT: usize = 64 * 1024;

/// Why a takeover failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpgradeError {
    #[error("upgrade socket {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("upgrade socket {path}: {what}")]
    Protocol { path: String, what: String },
}

/// What the new porxy received from the running one.
pub(crate) struct Takeover {
    path: String,
    /// Read without a buffer: descriptors come later on it, and a buffered read could swallow
    /// them.
    conn: UnixStream,
    /// Listening sockets by tunnel name, with their addresses.
    pub(crate) tunnels: Vec<(String, SocketAddr, TcpListener)>,
    /// The control socket, if the running porxy had one.
    pub(crate) control: Option<(BoundControl, ControlSocket)>,
}

/// New side, steps 1 and 2: asks the porxy at `path` for its listening sockets.
pub(crate) fn take_over(path: &Path) -> Result<Takeover, UpgradeError> {
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
    conn.set_read_timeout(Some(STEP_TIMEOUT))
        .map_err(io_error)?;
    conn.write_all(b"TAKEOVER\n").map_err(io_error)?;
    let mut text = vec![0u8; MAX_TEXT];
    let mut raw_fds: Vec<RawFd> = vec![-1; MAX_SOCKETS + 1];
    let (mut len, count) = conn
        .recv_with_fd(&mut text, &mut raw_fds)
        .map_err(io_error)?;
    // Own every descriptor received at once, so that none leaks on an error below.
    let mut fds: Vec<OwnedFd> = raw_fds[..count].iter().map(|&fd| own(fd)).collect();
    // The text may come in more than one piece; the descriptors come with the first.
    while !text[..len].ends_with(b"END\n") {
        if len == text.len() {
            return Err(protocol("handover text too long".into()));
        }
        let n = conn.read(&mut text[len..]).map_err(io_error)?;
        if n == 0 {
            return Err(protocol("closed before END".into()));
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
                control = Some((BoundControl::Tcp(addr), ControlSocket::Tcp(socket)));
            }
            ["control", "unix", path] => {
                let socket = UnixListener::from(next_fd()?);
                control = Some((
                    BoundControl::Unix(PathBuf::from(path)),
                    ControlSocket::Unix(socket),
                ));
            }
            ["END"] => break,
            _ => return Err(protocol(format!("unexpected line `{line}`"))),
        }
    }
    Ok(Takeover {
        path: name,
        conn,
        tunnels,
        control,
    })
}

/// The old porxy has stopped accepting; its established connections are to be taken over or
/// left with it (`handover.rs`).
pub(crate) struct Confirmed {
    conn: UnixStream,
}

impl Confirmed {
    /// Steps 5 and 6: takes the old porxy's established connections into `handle`'s proxy.
    pub(crate) fn take_connections(mut self, handle: &ProxyHandle) {
        crate::handover::take_connections(&mut self.conn, handle);
    }

    /// Step 5 with `--leave-connections`: the old porxy finishes its connections itself.
    pub(crate) fn leave_connections(mut self) {
        crate::handover::leave_connections(&mut self.conn);
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
        let reply = read_line(&mut self.conn, MAX_LINE)
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

/// Longest line the new porxy reads.
const MAX_LINE: usize = 1024;

/// Reads one line, newline included, a byte at a time: nothing after it is consumed, so that
/// descriptors sent after it are still there for `recvmsg`. `None` at end of stream.
pub(crate) fn read_line(stream: &mut impl Read, max: usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < max {
        match stream.read(&mut byte) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(0) => break,
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// Takes ownership of a descriptor the kernel just created in this process.
#[allow(unsafe_code)]
pub(crate) fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was installed in this process by recvmsg(2) for this message (SCM_RIGHTS);
    // nothing else refers to it, so owning it (and closing it on drop) is sound.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The upgrade socket, bound and not yet served.
///
/// A porxy that took over from another binds it under a temporary name beside the final one,
/// before it confirms the takeover (so that a failure to bind stops the takeover, not a
/// running service), and renames it into place afterwards: the path always leads to a porxy
/// that can be taken over.
pub(crate) struct UpgradeSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
    /// The temporary name to rename from, for a successor; removed if never renamed.
    staged: Option<PathBuf>,
}

impl Drop for UpgradeSocket {
    fn drop(&mut self) {
        if let Some(staged) = self.staged.take() {
            let _ = std::fs::remove_file(staged);
        }
    }
}

impl UpgradeSocket {
    /// Binds the upgrade socket at `path` (owner-only). A successor (`staged`) binds beside it.
    pub(crate) fn bind(path: &Path, staged: bool) -> Result<UpgradeSocket, UpgradeError> {
        let io_error = |source| UpgradeError::Io {
            path: path.display().to_string(),
            source,
        };
        let bind_at = if staged {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".new-{}", std::process::id()));
            PathBuf::from(name)
        } else {
            if path.exists() {
                if UnixStream::connect(path).is_ok() {
                    return Err(UpgradeError::Protocol {
                        path: path.display().to_string(),
                        what: "in use by a running process".into(),
                    });
                }
                std::fs::remove_file(path).map_err(io_error)?;
            }
            path.to_path_buf()
        };
        let _ = std::fs::remove_file(&bind_at);
        let listener = UnixListener::bind(&bind_at).map_err(io_error)?;
        std::fs::set_permissions(&bind_at, std::fs::Permissions::from_mode(0o600))
            .map_err(io_error)?;
        Ok(UpgradeSocket {
            listener: Some(listener),
            path: path.to_path_buf(),
            staged: staged.then_some(bind_at),
        })
    }

    /// Puts the socket in place (a successor's replaces its predecessor's) and serves takeover
    /// requests until the process ends. Never fails the running proxy: a problem is logged.
    pub(crate) fn serve(
        mut self,
        handle: ProxyHandle,
        stopper: Arc<Stopper>,
        reloader: Arc<Reloader>,
    ) {
        if let Some(staged) = &self.staged {
            if let Err(e) = std::fs::rename(staged, &self.path) {
                tracing::error!(upgrade = %self.path.display(), error = %e, "cannot put the upgrade socket in place; this porxy cannot be taken over");
                return; // Drop removes the staged file.
            }
            self.staged = None;
        }
        let shown = self.path.display().to_string();
        let Some(listener) = self.listener.take() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("porxy-upgrade".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    match hand_over(conn, &handle, &stopper, &reloader) {
                        Ok(true) => return, // Handed over: this process is draining now.
                        Ok(false) => {}
                        Err(why) => tracing::warn!(upgrade = %shown, error = %why, "takeover abandoned; carrying on"),
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot serve the upgrade socket; this porxy cannot be taken over");
        }
    }
}

/// One takeover request; true once the new porxy has taken over.
fn hand_over(
    conn: UnixStream,
    handle: &ProxyHandle,
    stopper: &Stopper,
    reloader: &Reloader,
) -> Result<bool, String> {
    conn.set_read_timeout(Some(STEP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(conn.try_clone().map_err(|e| e.to_string())?);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    if line.trim_end() != "TAKEOVER" {
        return Err(format!("expected TAKEOVER, got {:?}", line.trim_end()));
    }
    tracing::info!("a new porxy asks to take over; handing over the listening sockets");
    let names: HashMap<SocketAddr, String> = reloader.names();
    let sockets = handle.listening_sockets().map_err(|e| e.to_string())?;
    let mut text = String::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    for (addr, socket) in sockets {
        let name = names
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| format!("addr-{addr}"));
        text.push_str(&format!("tunnel {name} {addr}\n"));
        fds.push(socket.into());
    }
    let control = stopper.control_handover();
    if let Some((bound, fd)) = control {
        match &bound {
            BoundControl::Tcp(addr) => text.push_str(&format!("control tcp {addr}\n")),
            BoundControl::Unix(path) => {
                text.push_str(&format!("control unix {}\n", path.display()))
            }
        }
        fds.push(fd);
    }
    text.push_str("END\n");
    if fds.len() > MAX_SOCKETS {
        stopper.cancel_control_handover();
        return Err(format!(
            "{} sockets is more than one handover carries",
            fds.len()
        ));
    }
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let sent = conn.send_with_fd(text.as_bytes(), &raw);
    // Our duplicates are no longer needed once sent (the receiver has its own).
    drop(fds);
    if let Err(e) = sent {
        stopper.cancel_control_handover();
        return Err(format!("sending the sockets: {e}"));
    }
    line.clear();
    conn.set_read_timeout(Some(READY_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let ready = reader.read_line(&mut line);
    if !matches!(ready, Ok(n) if n > 0) || line.trim_end() != "READY" {
        stopper.cancel_control_handover();
        return Err("the new porxy went away before it was ready".into());
    }
    // OK goes out before this process stops: with nothing to drain it exits at once, and a
    // successor that never read OK would give up the takeover, leaving nobody to serve.
    let mut conn = conn;
    if let Err(e) = conn.write_all(b"OK\n") {
        stopper.cancel_control_handover();
        return Err(format!("the new porxy went away before it read OK: {e}"));
    }
    tracing::info!("the new porxy accepts now; this one stops accepting");
    stopper.graceful();
    crate::handover::answer(&conn, &mut reader, handle);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression guard: a buffered read of a line would consume what follows it, and with it
    /// the descriptors attached there.
    #[test]
    fn read_line_consumes_exactly_one_line() {
        let mut input: &[u8] = b"SESSIONS porxy-sessions/1\nPXS1 binary";
        assert_eq!(
            read_line(&mut input, 64).unwrap().as_deref(),
            Some("SESSIONS porxy-sessions/1\n")
        );
        assert_eq!(input, b"PXS1 binary");
        assert_eq!(
            read_line(&mut input, 4).unwrap().as_deref(),
            Some("PXS1"),
            "bounded"
        );
        let mut empty: &[u8] = b"";
        assert_eq!(read_line(&mut empty, 64).unwrap(), None);
    }
}
