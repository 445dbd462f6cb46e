//! The bounded IO of one control connection: the stream traits that let reads and writes be
//! bounded in time, the reader that splits the input into lines of bounded length, with a
//! deadline for each, and the writer that writes a whole reply by a deadline.
//!
//! A deadline bounds a whole line or a whole reply, never one system call: the timeout each
//! call gets is the time left, so a peer that moves a byte now and then cannot stretch it.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use socket2::SockRef;

use super::command::MAX_LINE;

/// A stream whose reads can be bounded in time.
pub(super) trait TimedRead: Read {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()>;
}

/// A stream whose writes can be bounded in time.
pub(super) trait TimedWrite: Write {
    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()>;
}

/// A control connection, TCP or Unix.
pub(super) trait ControlStream: TimedRead + TimedWrite + Send + 'static {
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()>;
    /// Something that ends this connection's reading from another thread: a blocked read
    /// returns end of stream.
    fn stopper(&self) -> io::Result<Box<dyn Fn() + Send + Sync>>;
    /// Makes closing the connection drop what is still unsent: a TCP connection is reset (a
    /// client that does not read would otherwise keep the kernel holding its replies, and
    /// would never see the end); a Unix one ends as it would anyway.
    fn reset_on_close(&self) -> io::Result<()>;
}

macro_rules! control_stream {
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

        impl ControlStream for $stream {
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
control_stream!(TcpStream, |stream| SockRef::from(stream)
    .set_linger(Some(Duration::ZERO)));
// A Unix peer sees the end at once, whatever it has not read.
control_stream!(UnixStream, |_| Ok(()));

/// Writes all of `bytes` by `deadline`, or fails with an error of kind `TimedOut`. Each write
/// may block for the time left only: a timeout per write would start again after every partial
/// write, and a client taking a little now and then would hold the session for ever.
pub(super) fn write_all_by(
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

/// What the line reader found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// One line's bytes, without `\n` (a trailing `\r` is left to the parser).
    Complete(Vec<u8>),
    /// A line that passed [`MAX_LINE`]; its bytes up to the newline are skipped.
    TooLong(usize),
}

/// Splits a byte stream into lines of bounded length.
#[derive(Default)]
pub(super) struct LineReader {
    buf: Vec<u8>,
    /// Skipping the rest of a too-long line.
    skipping: bool,
}

impl LineReader {
    /// The next line, or `None` at EOF. An error of kind `TimedOut` when no line is complete
    /// by `deadline`, however many bytes came meanwhile.
    pub(super) fn next_line(
        &mut self,
        input: &mut impl TimedRead,
        deadline: Instant,
    ) -> io::Result<Option<Line>> {
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
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "no complete line in time",
                ));
            }
            input.set_read_timeout(left)?;
            let mut chunk = [0u8; 4096];
            let n = match input.read(&mut chunk) {
                Ok(n) => n,
                // A read timeout: the deadline check above decides.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
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

    impl TimedRead for io::Cursor<Vec<u8>> {
        fn set_read_timeout(&self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    /// Gives one byte per read, a millisecond apart, and never a newline.
    struct Trickle {
        left: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 || buf.is_empty() {
                return Ok(0);
            }
            std::thread::sleep(Duration::from_millis(1));
            self.left -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }

    impl TimedRead for Trickle {
        fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
            assert!(!timeout.is_zero(), "a zero timeout means none");
            Ok(())
        }
    }

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
        while let Some(line) = reader.next_line(&mut cursor, far()).unwrap() {
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

    #[test]
    fn bytes_without_a_newline_do_not_extend_the_deadline() {
        // 2000 bytes take at least 2 s; the line's deadline is 50 ms away.
        let mut slow = Trickle { left: 2000 };
        let started = Instant::now();
        let got =
            LineReader::default().next_line(&mut slow, Instant::now() + Duration::from_millis(50));
        let err = got.expect_err("no line completes in time");
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert!(slow.left > 0, "the reader should stop at the deadline");
    }
}
