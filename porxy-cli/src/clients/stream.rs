//! The bounded IO of one admin client's connection, whatever protocol it speaks: the stream
//! traits that let reads and writes be bounded in time, end a blocked read from another thread
//! and drop unsent bytes on close, and the writer that writes a whole reply by a deadline.
//!
//! A deadline bounds a whole request or a whole reply, never one system call: the timeout each
//! call gets is the time left, so a peer that moves a byte now and then cannot stretch it.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use socket2::SockRef;

/// A stream whose reads can be bounded in time.
pub(crate) trait TimedRead: Read {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()>;
}

/// A stream whose writes can be bounded in time.
pub(crate) trait TimedWrite: Write {
    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()>;
}

/// An admin client's connection, TCP or Unix.
pub(crate) trait ClientStream: TimedRead + TimedWrite + Send + 'static {
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()>;
    /// Something that ends this connection's reading from another thread: a blocked read
    /// returns end of stream.
    fn stopper(&self) -> io::Result<Box<dyn Fn() + Send + Sync>>;
    /// Makes closing the connection drop what is still unsent: a TCP connection is reset (a
    /// client that does not read would otherwise keep the kernel holding its replies, and
    /// would never see the end); a Unix one ends as it would anyway.
    fn reset_on_close(&self) -> io::Result<()>;
}

macro_rules! client_stream {
    ($stream:ty, $reset_on_close:expr) => {
        impl TimedRead for $stream {
            fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
                <$stream>::set_read_timeout(self, Some(timeout))
            }
        }

        impl TimedWrite for $stream {
            fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
                <$stream>::set_write_timeout(self, Some(timeout))
            }
        }

        impl ClientStream for $stream {
            fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
                <$stream>::set_nonblocking(self, nonblocking)
            }

            fn stopper(&self) -> io::Result<Box<dyn Fn() + Send + Sync>> {
                let copy = self.try_clone()?;
                Ok(Box::new(move || {
                    let _ = copy.shutdown(Shutdown::Read);
                }))
            }

            fn reset_on_close(&self) -> io::Result<()> {
                let reset: fn(&$stream) -> io::Result<()> = $reset_on_close;
                reset(self)
            }
        }
    };
}

// Linger on, for no time: closing sends a reset and drops the unsent bytes.
client_stream!(TcpStream, |stream| SockRef::from(stream)
    .set_linger(Some(Duration::ZERO)));
// A Unix peer sees the end at once, whatever it has not read.
client_stream!(UnixStream, |_| Ok(()));

/// Writes all of `bytes` by `deadline`, or fails with an error of kind `TimedOut`. Each write
/// may block for the time left only: a timeout per write would start again after every partial
/// write, and a client taking a little now and then would hold the session for ever.
pub(crate) fn write_all_by(
    output: &mut impl TimedWrite,
    mut bytes: &[u8],
    deadline: Instant,
) -> io::Result<()> {
    // Bounded: each turn writes a byte or more, or waits for the time left.
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "the reply was not taken in time",
            ));
        }
        output.set_write_timeout(left)?;
        match output.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            // A write timeout: the deadline check above decides.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes one byte per write, a millisecond apart, as a client that reads a little now and
    /// then; notes the timeouts it is given.
    struct Drip {
        taken: Vec<u8>,
        timeouts: std::cell::RefCell<Vec<Duration>>,
    }

    impl Write for Drip {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(1));
            self.taken.extend_from_slice(&buf[..buf.len().min(1)]);
            Ok(buf.len().min(1))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl TimedWrite for Drip {
        fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
            assert!(!timeout.is_zero(), "a zero timeout means none");
            self.timeouts.borrow_mut().push(timeout);
            Ok(())
        }
    }

    fn drip() -> Drip {
        Drip {
            taken: Vec::new(),
            timeouts: Default::default(),
        }
    }

    #[test]
    fn partial_writes_do_not_extend_the_deadline() {
        // 2000 bytes take at least 2 s; the reply's deadline is 50 ms away.
        let mut slow = drip();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(50);
        let err = write_all_by(&mut slow, &[b'x'; 2000], deadline).expect_err("too slow");
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert!(!slow.taken.is_empty() && slow.taken.len() < 2000);
        // Each write could block only for what was left of the 50 ms.
        let timeouts = slow.timeouts.borrow();
        assert!(timeouts.iter().all(|t| *t <= Duration::from_millis(50)));
        assert!(timeouts.windows(2).all(|pair| pair[1] <= pair[0]));
    }

    #[test]
    fn a_reply_taken_in_pieces_in_time_is_written_whole() {
        let mut slow = drip();
        write_all_by(&mut slow, b"OK tunnels=0\n", far()).unwrap();
        assert_eq!(slow.taken, b"OK tunnels=0\n");
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }
}
