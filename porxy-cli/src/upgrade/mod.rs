//! Zero-downtime upgrade: a new porxy takes over the listening sockets of the running one.
//!
//! The running porxy, started with `--upgrade-socket PATH`, listens there (a Unix socket,
//! owner-only; `server.rs`). A new porxy started with `--takeover PATH` (`successor.rs`):
//!
//! 1. connects and sends `TAKEOVER`;
//! 2. receives one message: lines `tunnel NAME ADDR`, then `control tcp ADDR` or
//!    `control unix PATH` if there is a control socket, then `END`, with the listening sockets
//!    themselves attached (SCM_RIGHTS) in the same order; or `ERR why` when the running porxy
//!    will not be taken over now (another takeover is under way, say);
//! 3. starts its proxy on those sockets: both processes now accept on them, so no client is
//!    refused at any moment;
//! 4. sends `READY`. The old porxy answers `OK` and stops accepting (closing only its own
//!    copies);
//! 5. and 6. asks for the old porxy's established connections and takes them over, so that the
//!    old one exits at once (`handover.rs`), or leaves them with the old one, which drains them
//!    and exits.
//!
//! If the new porxy goes away before `READY`, the old one carries on as if nothing had happened.
//!
//! A stranger cannot get in the way (`conversation.rs`): each side checks that the other runs
//! as the same user or as root before it reads a byte; the running porxy holds several
//! conversations at once, reads each line with a length bound and one deadline for the whole
//! line, and lets one takeover run at a time, answering any other `ERR`.

mod conversation;
pub(crate) mod line;
mod peer;
mod server;
mod successor;

use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub(crate) use server::UpgradeSocket;
pub(crate) use successor::{take_over, Takeover};

use crate::socket_path::SocketPathError;

/// How long each side waits for the other's next line.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(30);

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
    #[error(transparent)]
    Path(#[from] SocketPathError),
}

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
