//! Reading one request from a client's connection, bounded in size and in time: the head and
//! the body must both come within the request timeout, counted from the request's first byte
//! (bytes that trickle in do not extend it: 408); a connection silent between requests for its
//! idle time is closed without a word. Bytes past a request stay for the next one (pipelining).
//!
//! Before a body is read the caller judges the head (route, method, token, type: `admit`), so
//! that a refused request's body is never read, and a client that sent `Expect: 100-continue`
//! gets its go-ahead only for a request that will be served.

use std::io::{self, ErrorKind};
use std::time::{Duration, Instant};

use super::chunked::Chunked;
use super::error::HttpError;
use super::head::{self, Framing, Head};
use crate::clients::{write_all_by, ClientStream, TimedRead};

/// Bytes read per call.
const READ_CHUNK: usize = 16 * 1024;

/// How much and how long a request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest body taken (413 beyond).
    pub max_body: usize,
    /// The time from a request's first byte to its last (408 beyond).
    pub request_timeout: Duration,
}

/// A request read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub head: Head,
    pub body: Vec<u8>,
}

/// What reading came to.
#[derive(Debug)]
pub enum Next {
    Request(Request),
    /// The client ended the connection, or was silent for its idle time, between requests.
    Ended,
    /// A request that cannot be served: answer `error` (with the head, if it was read) and
    /// close the connection if the error says so.
    Refused(HttpError, Option<Head>),
}

/// Reads a client's requests in turn.
#[derive(Debug, Default)]
pub struct Reader {
    /// Bytes read and not yet used: the start of the next request.
    buf: Vec<u8>,
}

impl Reader {
    /// The next request: waits for its first byte until `idle_deadline`, then for the rest
    /// within `limits`; `admit` judges the head before the body is read.
    pub fn next<S: ClientStream>(
        &mut self,
        stream: &mut S,
        limits: &Limits,
        idle_deadline: Instant,
        admit: impl FnOnce(&Head) -> Result<(), HttpError>,
    ) -> io::Result<Next> {
        if self.buf.is_empty() && !self.fill(stream, idle_deadline)? {
            return Ok(Next::Ended);
        }
        let deadline = Instant::now() + limits.request_timeout;
        let late = || {
            HttpError::closing(
                408,
                format!(
                    "the request did not come whole within {}",
                    porxy_core::units::format_duration(limits.request_timeout)
                ),
            )
        };
        // Bounded: each turn reads more bytes (the head is bounded) or ends.
        let (head, taken) = loop {
            match head::parse(&self.buf) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {}
                Err(error) => return Ok(Next::Refused(error, None)),
            }
            if !self.fill(stream, deadline)? {
                return Ok(match Instant::now() >= deadline {
                    true => Next::Refused(late(), None),
                    false => Next::Ended,
                });
            }
        };
        self.buf.drain(..taken);
        if let Framing::Length(n) = head.framing {
            if n > limits.max_body as u64 {
                let error = HttpError::closing(
                    413,
                    format!(
                        "the body is {n} bytes, over the limit of {} bytes",
                        limits.max_body
                    ),
                );
                return Ok(Next::Refused(error, Some(head)));
            }
        }
        if let Err(mut error) = admit(&head) {
            // Its body is not read: what follows cannot be told from the next request.
            error.close |= head.framing != Framing::Empty;
            return Ok(Next::Refused(error, Some(head)));
        }
        if head.expect_continue && head.framing != Framing::Empty {
            write_all_by(stream, b"HTTP/1.1 100 Continue\r\n\r\n", deadline)?;
        }
        let body = match head.framing {
            Framing::Empty => Vec::new(),
            Framing::Length(n) => {
                let n = n as usize;
                // Bounded: each turn reads more, up to the announced length.
                while self.buf.len() < n {
                    if !self.fill(stream, deadline)? {
                        return Ok(Next::Refused(self.cut_short(deadline, late), Some(head)));
                    }
                }
                self.buf.drain(..n).collect()
            }
            Framing::Chunked => {
                let mut chunked = Chunked::new(limits.max_body);
                // Bounded: the body is bounded, each turn decodes or reads more.
                loop {
                    match chunked.feed(&self.buf) {
                        Ok((taken, done)) => {
                            self.buf.drain(..taken);
                            if done {
                                break chunked.into_body();
                            }
                        }
                        Err(error) => return Ok(Next::Refused(error, Some(head))),
                    }
                    if !self.fill(stream, deadline)? {
                        return Ok(Next::Refused(self.cut_short(deadline, late), Some(head)));
                    }
                }
            }
        };
        Ok(Next::Request(Request { head, body }))
    }

    /// Why a body did not come whole: too late, or the client's end.
    fn cut_short(&self, deadline: Instant, late: impl Fn() -> HttpError) -> HttpError {
        if Instant::now() >= deadline {
            late()
        } else {
            HttpError::closing(400, "the connection ended before the body was whole")
        }
    }

    /// Reads more bytes by `deadline`: false at the end of the stream or the deadline.
    fn fill(&mut self, stream: &mut impl TimedRead, deadline: Instant) -> io::Result<bool> {
        // Bounded: each turn reads, or waits for the time left.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            stream.set_read_timeout(left)?;
            let start = self.buf.len();
            self.buf.resize(start + READ_CHUNK, 0);
            let read = stream.read(&mut self.buf[start..]);
            let got = *read.as_ref().unwrap_or(&0);
            self.buf.truncate(start + got);
            match read {
                Ok(0) => return Ok(false),
                Ok(_) => return Ok(true),
                // A read timeout: the deadline check above decides.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}
