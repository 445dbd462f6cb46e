//! Who is at the other end of an upgrade conversation: only a process of this user (or root)
//! may take a porxy over, or hand its sockets to one.
//!
//! The socket file is owner-only already; the credentials the kernel gives (SO_PEERCRED, taken
//! at connect) hold even if the file's mode or owner is changed by hand, and are checked before
//! a byte is read.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

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

    /// Whether this peer may take part: it runs as this process's user, or as root.
    pub(crate) fn trusted(&self) -> bool {
        self.uid == 0 || self.uid == own_uid()
    }
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
