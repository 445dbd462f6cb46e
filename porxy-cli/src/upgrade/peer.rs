//! Who is at the other end of an upgrade conversation: only a process of this user (or root)
//! may take a porxy over, or hand its sockets to one.
//!
//! The socket file is owner-only already; the credentials the kernel gives (SO_PEERCRED, taken
//! at connect) hold even if the file's mode or owner is changed by hand, and are checked before
//! a byte is read. A peer whose `TAKEOVER` is already there when it is accepted is told apart
//! too (by a peek that consumes nothing), so that a crowd of silent peers cannot crowd it out.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The process at the other end, as the kernel saw it connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    pub(crate) pid: i32,
    pub(crate) uid: u32,
}

impl Peer {
    /// Asks the kernel who is at the other end of `stream`.
    #[allow(unsafe_code)]
    pub(crate) fn of(stream: &UnixStream) -> io::Result<Peer> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` is a live ucred and `len` its size, as SO_PEERCRED wants; the kernel
        // writes at most `len` bytes into it. The descriptor is `stream`'s, open for the call.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Peer {
            pid: cred.pid,
            uid: cred.uid,
        })
    }

    /// Whether the first bytes waiting on `stream` are a whole `TAKEOVER` request: a successor
    /// sends it as soon as it connects. Peeks without consuming a byte or waiting.
    #[allow(unsafe_code)]
    pub(crate) fn announced_takeover(stream: &UnixStream) -> bool {
        // `TAKEOVER`, then its end of line, or a space and the runtime journal's format.
        const REQUEST: &[u8; 8] = b"TAKEOVER";
        let mut buf = [0u8; 9];
        // SAFETY: `buf` is valid for writes of its length; the descriptor is `stream`'s, open
        // for the call. MSG_PEEK leaves the bytes for the conversation to read.
        let n = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n == buf.len() as isize && buf.starts_with(REQUEST) && matches!(buf[8], b'\n' | b' ')
    }

    /// [`Peer::announced_takeover`], waiting up to `patience` for the request to arrive: a
    /// successor writes it right after it connects, and may be accepted in between.
    pub(crate) fn announces_takeover_within(stream: &UnixStream, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        loop {
            if Peer::announced_takeover(stream) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !readable_within(stream, left) {
                return false;
            }
            // Something came, maybe not all of it yet: look again shortly, never spinning.
            std::thread::sleep(PEEK_PAUSE.min(left));
        }
    }

    /// Whether this peer may take part: it runs as this process's user, or as root.
    pub(crate) fn trusted(&self) -> bool {
        self.uid == 0 || self.uid == own_uid()
    }
}

/// Between two looks at a request that is coming in pieces.
const PEEK_PAUSE: Duration = Duration::from_millis(1);

/// Whether `stream` has bytes to read within `wait` (poll(2) on its descriptor).
#[allow(unsafe_code)]
fn readable_within(stream: &UnixStream, wait: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(wait.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, for a descriptor open for the call.
    let ready = unsafe { libc::poll(&mut fd, 1, ms) };
    ready > 0 && fd.revents & libc::POLLIN != 0
}

/// The user this process runs as (effective).
#[allow(unsafe_code)]
fn own_uid() -> u32 {
    // SAFETY: geteuid takes nothing, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_takeover_already_sent_is_seen_without_being_consumed() {
        let (mut peer, conn) = UnixStream::pair().unwrap();
        assert!(!Peer::announced_takeover(&conn), "nothing yet");
        peer.write_all(b"TAKE").unwrap();
        assert!(!Peer::announced_takeover(&conn), "not whole yet");
        peer.write_all(b"OVER\n").unwrap();
        assert!(Peer::announced_takeover(&conn));
        let mut line = [0u8; 9];
        (&conn).read_exact(&mut line).unwrap();
        assert_eq!(&line, b"TAKEOVER\n", "still there to read");
        let (mut junk, conn) = UnixStream::pair().unwrap();
        junk.write_all(b"JUNKJUNK\n").unwrap();
        assert!(!Peer::announced_takeover(&conn));
    }

    #[test]
    fn a_peer_of_this_process_is_this_process_and_trusted() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = Peer::of(&a).unwrap();
        assert_eq!(peer.pid, std::process::id() as i32);
        assert_eq!(peer.uid, own_uid());
        assert!(peer.trusted());
        let stranger = Peer {
            pid: 1,
            uid: own_uid().wrapping_add(1).max(1),
        };
        assert!(!stranger.trusted(), "another user is not trusted");
        assert!(Peer { pid: 1, uid: 0 }.trusted(), "root is");
    }
}
