//! Listening sockets in a reactor's epoll with `EPOLLEXCLUSIVE`, which mio does not offer.
//!
//! This is the only unsafe code in porxy-core: two `epoll_ctl` calls on the raw descriptor of
//! the reactor's `mio::Poll`. mio delivers the events they produce like its own: the token is
//! `epoll_event.u64`, and readability is `EPOLLIN`.
//!
//! The registration is level-triggered (a reactor that leaves clients in the backlog is told
//! again at its next `poll`) and exclusive: when a client arrives, the kernel wakes one reactor
//! waiting in `epoll_wait`, not all of them. An exclusive registration cannot be modified, only
//! added and deleted (epoll_ctl(2)), so a reactor that stops accepting deletes it and adds it
//! again later.
//!
//! A registration lives as long as the open file description, not the descriptor: after an
//! upgrade another process holds the same listening socket, and closing our descriptor would
//! leave the registration (and its wake-ups) in place. So a reactor always deletes it before it
//! lets go of the socket.

use std::io;
use std::os::fd::AsRawFd;

use mio::{Poll, Token};

/// How a listening socket went into an epoll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Registration {
    /// With `EPOLLEXCLUSIVE`: one reactor is woken per new client.
    Exclusive,
    /// Without it (kernels before 4.5 refuse the flag): every reactor is woken, and all but one
    /// find nobody to accept.
    Shared,
}

/// Adds `socket` to `poll` for readability under `token`, level-triggered and exclusive where
/// the kernel allows it.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn add_exclusive(
    poll: &Poll,
    socket: &impl AsRawFd,
    token: Token,
) -> io::Result<Registration> {
    let readable = libc::EPOLLIN as u32;
    let exclusive = libc::EPOLLEXCLUSIVE as u32;
    match ctl(
        poll,
        libc::EPOLL_CTL_ADD,
        socket,
        readable | exclusive,
        token,
    ) {
        Ok(()) => Ok(Registration::Exclusive),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            ctl(poll, libc::EPOLL_CTL_ADD, socket, readable, token)?;
            Ok(Registration::Shared)
        }
        Err(e) => Err(e),
    }
}

/// Takes `socket` out of `poll`. The descriptor must be the one it was added with, still open.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn delete(poll: &Poll, socket: &impl AsRawFd) -> io::Result<()> {
    ctl(poll, libc::EPOLL_CTL_DEL, socket, 0, Token(0))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn ctl(
    poll: &Poll,
    op: libc::c_int,
    socket: &impl AsRawFd,
    events: u32,
    token: Token,
) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events,
        u64: token.0 as u64,
    };
    // SAFETY: `epoll_ctl` reads one `epoll_event` through the pointer, which points to `event`,
    // alive and not otherwise borrowed for the whole call (for EPOLL_CTL_DEL it is ignored; a
    // non-null pointer also suits kernels before 2.6.9). Both descriptors are borrowed from
    // owners that outlive the call (`poll` and `socket`), so neither can be closed, nor its
    // number reused, while the kernel looks them up. Nothing else is touched.
    let result = unsafe {
        libc::epoll_ctl(
            poll.as_raw_fd(),
            op,
            socket.as_raw_fd(),
            &mut event as *mut libc::epoll_event,
        )
    };
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Elsewhere reactors do not accept ([`AcceptMode::effective`](crate::AcceptMode)).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn add_exclusive(
    _poll: &Poll,
    _socket: &impl AsRawFd,
    _token: Token,
) -> io::Result<Registration> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Elsewhere reactors do not accept.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn delete(_poll: &Poll, _socket: &impl AsRawFd) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use mio::Events;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// A pending client is reported under the token, level-triggered, until deleted.
    #[test]
    fn exclusive_registration_reports_clients_until_deleted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut poll = Poll::new().unwrap();
        let token = crate::reactor::token::listener_token(0x1234);
        assert_eq!(
            add_exclusive(&poll, &listener, token).unwrap(),
            Registration::Exclusive
        );
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut events = Events::with_capacity(8);
        for _ in 0..2 {
            // Level-triggered: reported again while the client waits in the backlog.
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            let event = events.iter().next().expect("an event");
            assert_eq!(event.token(), token);
            assert!(event.is_readable());
        }
        let err = add_exclusive(&poll, &listener, token).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        delete(&poll, &listener).unwrap();
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        assert!(events.is_empty(), "no event once deleted");
        let err = delete(&poll, &listener).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }
}
