//! Lines of the upgrade conversation, read with bounds: a line is short and must come in time.
//!
//! The running porxy reads what a peer of its upgrade socket sends (the request, `READY`, the
//! handover's requests and acknowledgements) through a [`LineReader`]: it never holds more than
//! a line's bound, and one deadline covers a whole line however slowly its bytes trickle in, so
//! a peer can neither fill its memory nor hold a conversation open past the deadline.
//!
//! Buffered: nothing that the running porxy reads carries descriptors, so reading past a line
//! loses nothing (the bytes wait for the next line).

use std::fmt;
use std::io::{self, ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// How many bytes of a bad line a log line or a reply quotes.
const QUOTED: usize = 32;

/// Why no line was read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LineError {
    /// The peer closed the connection (`partial` holds bytes of a line it did not finish).
    #[error("the peer closed the connection{}", partial_note(.partial))]
    Closed { partial: Vec<u8> },
    /// No newline within the bound; `start` holds its first bytes.
    #[error("a line longer than {max} bytes, starting {}", Quoted(.start))]
    TooLong { max: usize, start: Vec<u8> },
    /// The deadline passed before the line was whole.
    #[error("no whole line within the time allowed{}", partial_note(.partial))]
    TimedOut { partial: Vec<u8> },
    #[error("{0}")]
    Io(#[source] io::Error),
}

fn partial_note(partial: &[u8]) -> String {
    if partial.is_empty() {
        String::new()
    } else {
        format!(" (after {} bytes: {})", partial.len(), Quoted(partial))
    }
}

/// Bytes as a log line shows them: at most [`QUOTED`] of them, quoted and escaped.
pub(crate) struct Quoted<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.0[..self.0.len().min(QUOTED)];
        write!(f, "\"{}\"", shown.escape_ascii())?;
        if self.0.len() > QUOTED {
            write!(f, "...")?;
        }
        Ok(())
    }
}

/// Reads bounded lines from one stream.
pub(crate) struct LineReader {
    stream: UnixStream,
    /// Bytes read and not yet returned: never more than the longest line asked for, plus one.
    pending: Vec<u8>,
}

impl LineReader {
    pub(crate) fn new(stream: UnixStream) -> LineReader {
        LineReader {
            stream,
            pending: Vec::new(),
        }
    }

    /// The stream, to write on.
    pub(crate) fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Reads one line of at most `max` bytes before its newline, by `deadline`. The line comes
    /// without its newline (nor a `\r` before it); bytes that are not UTF-8 come replaced.
    pub(crate) fn read_line(&mut self, max: usize, deadline: Instant) -> Result<String, LineError> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                if end > max {
                    return Err(self.too_long(max));
                }
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.pending.len() > max {
                return Err(self.too_long(max));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LineError::TimedOut {
                    partial: std::mem::take(&mut self.pending),
                });
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(LineError::Io)?;
            // Never more than the bound allows: a flood costs this much memory and no more.
            let mut chunk = [0u8; 512];
            let room = (max + 1 - self.pending.len()).min(chunk.len());
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) => {
                    return Err(LineError::Closed {
                        partial: std::mem::take(&mut self.pending),
                    })
                }
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(LineError::TimedOut {
                        partial: std::mem::take(&mut self.pending),
                    })
                }
                Err(e) => return Err(LineError::Io(e)),
            }
        }
    }

    fn too_long(&mut self, max: usize) -> LineError {
        let mut start = std::mem::take(&mut self.pending);
        start.truncate(QUOTED + 1);
        LineError::TooLong { max, start }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    fn pair() -> (UnixStream, LineReader) {
        let (a, b) = UnixStream::pair().unwrap();
        (a, LineReader::new(b))
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn reads_lines_one_at_a_time_keeping_what_follows() {
        let (mut peer, mut reader) = pair();
        peer.write_all(b"TAKEOVER\r\nREADY\nSES").unwrap();
        assert_eq!(reader.read_line(16, soon()).unwrap(), "TAKEOVER");
        assert_eq!(reader.read_line(16, soon()).unwrap(), "READY");
        peer.write_all(b"SIONS x\n").unwrap();
        assert_eq!(reader.read_line(16, soon()).unwrap(), "SESSIONS x");
        drop(peer);
        assert!(matches!(
            reader.read_line(16, soon()),
            Err(LineError::Closed { partial }) if partial.is_empty()
        ));
    }

    /// A flood without a newline is cut at the bound, and quoted briefly.
    #[test]
    fn an_overlong_line_is_refused_at_the_bound() {
        let (mut peer, mut reader) = pair();
        let writer = std::thread::spawn(move || {
            // Stops when the reader goes away.
            for _ in 0..1024 {
                if peer.write_all(&[b'x'; 1024]).is_err() {
                    break;
                }
            }
        });
        let err = reader.read_line(64, soon()).unwrap_err();
        assert!(matches!(&err, LineError::TooLong { max: 64, start } if start.len() == 33));
        assert_eq!(
            err.to_string(),
            format!(
                "a line longer than 64 bytes, starting \"{}\"...",
                "x".repeat(32)
            )
        );
        assert!(
            reader.pending.capacity() <= 1024,
            "{}",
            reader.pending.capacity()
        );
        drop(reader);
        writer.join().unwrap();
    }

    /// A line that trickles in is cut at the deadline, whatever the pace of its bytes.
    #[test]
    fn one_deadline_covers_the_whole_line() {
        let (mut peer, mut reader) = pair();
        peer.write_all(b"TAKE").unwrap();
        let deadline = Instant::now() + Duration::from_millis(200);
        let err = reader.read_line(64, deadline).unwrap_err();
        assert!(Instant::now() >= deadline);
        assert_eq!(
            err.to_string(),
            "no whole line within the time allowed (after 4 bytes: \"TAKE\")"
        );
    }

    #[test]
    fn quoting_escapes_and_shortens() {
        assert_eq!(Quoted(b"a\x00\n").to_string(), "\"a\\x00\\n\"");
        assert_eq!(
            Quoted(&[b'y'; 40]).to_string(),
            format!("\"{}\"...", "y".repeat(32))
        );
    }
}
