//! Reading where descriptors may follow, on the new porxy's side: a line is read a byte at a
//! time, so that nothing after it is consumed (a buffered read could swallow the descriptors
//! attached to what follows), and every descriptor received is owned at once, so that none
//! leaks on an error.

use std::io::{self, ErrorKind, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// Lets the next read on `stream` wait for what is left until `deadline`, so that one deadline
/// bounds a whole step however its bytes trickle in; `TimedOut` once it has passed.
pub(crate) fn time_left(stream: &UnixStream, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            ErrorKind::TimedOut,
            "no whole answer in time",
        ));
    }
    stream.set_read_timeout(Some(left))
}

/// Reads one line, newline included, a byte at a time, by `deadline`: nothing after it is
/// consumed, so that descriptors sent after it are still there for `recvmsg`. `None` at end of
/// stream.
pub(crate) fn read_line(
    stream: &mut UnixStream,
    max: usize,
    deadline: Instant,
) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < max {
        time_left(stream, deadline)?;
        match stream.read(&mut byte) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(0) => break,
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
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
    use std::io::Write;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// Regression guard: a buffered read of a line would consume what follows it, and with it
    /// the descriptors attached there.
    #[test]
    fn read_line_consumes_exactly_one_line() {
        let (mut peer, mut stream) = UnixStream::pair().unwrap();
        peer.write_all(b"SESSIONS porxy-sessions/1\nPXS1 binary")
            .unwrap();
        assert_eq!(
            read_line(&mut stream, 64, soon()).unwrap().as_deref(),
            Some("SESSIONS porxy-sessions/1\n")
        );
        assert_eq!(
            read_line(&mut stream, 4, soon()).unwrap().as_deref(),
            Some("PXS1"),
            "bounded"
        );
        let mut rest = [0u8; 7];
        stream.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b" binary");
        drop(peer);
        assert_eq!(read_line(&mut stream, 64, soon()).unwrap(), None);
    }

    /// One deadline bounds the whole line, however its bytes trickle in.
    #[test]
    fn read_line_stops_at_the_deadline() {
        let (mut peer, mut stream) = UnixStream::pair().unwrap();
        peer.write_all(b"OK").unwrap();
        let deadline = Instant::now() + Duration::from_millis(100);
        let err = read_line(&mut stream, 64, deadline).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock),
            "{err:?}"
        );
        assert!(Instant::now() >= deadline);
    }
}
