//! The reader of the line protocols (the control socket's commands, the JSON-RPC socket's
//! requests): it splits a client's input into lines of bounded length, each due by a deadline
//! however many bytes trickle in meanwhile.

use std::io::{self, ErrorKind};
use std::time::Instant;

use super::TimedRead;

/// What the line reader found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// One line's bytes, without `\n` (a trailing `\r` is left to the parser).
    Complete(Vec<u8>),
    /// A line over the reader's limit (given); its bytes up to the newline are skipped.
    TooLong(usize),
}

/// Splits a byte stream into lines of bounded length.
pub(crate) struct LineReader {
    /// The longest line taken.
    max: usize,
    buf: Vec<u8>,
    /// Skipping the rest of a too-long line.
    skipping: bool,
}

impl LineReader {
    /// A reader of lines of at most `max` bytes.
    pub(crate) fn new(max: usize) -> LineReader {
        LineReader {
            max,
            buf: Vec::new(),
            skipping: false,
        }
    }

    /// The next line, or `None` at EOF. An error of kind `TimedOut` when no line is complete
    /// by `deadline`, however many bytes came meanwhile.
    pub(crate) fn next_line(
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
                if line.len() > self.max {
                    return Ok(Some(Line::TooLong(self.max)));
                }
                return Ok(Some(Line::Complete(line)));
            }
            if self.buf.len() > self.max {
                self.buf.clear();
                if !self.skipping {
                    self.skipping = true;
                    return Ok(Some(Line::TooLong(self.max)));
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
    use std::io::Read;
    use std::time::Duration;

    use super::*;

    const MAX_LINE: usize = 4096;

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
        let mut reader = LineReader::new(MAX_LINE);
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
        let got = LineReader::new(MAX_LINE)
            .next_line(&mut slow, Instant::now() + Duration::from_millis(50));
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
