//! The opening phase: what a connection learns from its client before a backend is picked.
//!
//! Between accept and the backend pick a connection may have to read a preamble its client sends
//! ahead of the stream (a PROXY protocol header), wait for a TLS handshake, and be admitted or
//! refused on the real client's address. The hash strategy, access rules, limits and logs all
//! need that address, so none of it can wait for the relay. [`Opening`] reads the preamble
//! through the [`Transport`] seam, then drives the transport's own handshake (which takes the
//! bytes read past the preamble that are its own), and says when the connection is open, with
//! the client the preamble names and the bytes that came past it, which stay pending for the
//! upstream; or why it failed. No sockets here: it is tested with fakes.
//!
//! A tunnel with nothing to learn first never builds one: its clients go straight to the pick,
//! with no extra syscall and no extra wake-up.

use std::error::Error;
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::close::CloseReason;
use super::step::{self, Read};
use super::transport::Transport;
use super::{Readiness, DRIVE_BUDGET};
use crate::spec::Networks;

/// Bytes read per call while the preamble is incomplete (at most what it may still take).
const READ_CHUNK: usize = 4096;

/// What a tunnel's clients must go through before a backend is picked.
#[derive(Clone)]
pub(crate) struct OpeningConfig {
    /// A preamble they send ahead of the stream (a PROXY header), read first.
    pub(crate) preamble: Option<Arc<dyn Preamble>>,
    /// The peers that may send it (`None`: any); any other is refused before a byte is read,
    /// since a preamble lets its sender name any client.
    pub(crate) senders: Option<Networks>,
    /// Whether their transport has a handshake of its own to complete (TLS), after the
    /// preamble: see [`Transport::handshake`].
    pub(crate) handshake: bool,
    /// How long a client has for all of it, from accept.
    pub(crate) timeout: Duration,
    /// The close reason for a failed opening, by what failed: each kind of preamble and
    /// handshake has its own, so that logs and counters tell them apart.
    pub(crate) failure_reason: fn(&OpeningError) -> CloseReason,
}

/// A preamble a client sends ahead of its stream, and how to read it.
pub(crate) trait Preamble: Send + Sync {
    /// The most bytes a complete preamble takes: more without one is an error.
    fn max_len(&self) -> usize;

    /// Looks at the first bytes the client sent (all of them so far).
    fn parse(&self, received: &[u8]) -> Parsed;
}

/// What [`Preamble::parse`] made of the bytes so far.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Not enough bytes yet to tell.
    Incomplete,
    /// A complete preamble of `len` bytes, naming `source` as the client (`None`: the
    /// connection's own peer, as a PROXY v2 `LOCAL` header says).
    Complete {
        len: usize,
        source: Option<SocketAddr>,
        /// What else the preamble says that is worth a log line (a PROXY v2 header's
        /// authority, ALPN, unique id), if anything.
        details: Option<String>,
    },
    /// Not a valid preamble.
    Invalid(Box<dyn Error + Send + Sync>),
}

/// Why an opening failed.
#[derive(Debug)]
pub(crate) enum OpeningError {
    /// No complete preamble came within the opening timeout.
    Timeout,
    /// The client ended its stream before the preamble was complete, after `received` bytes.
    Closed { received: usize },
    /// `max` bytes came without a complete preamble.
    TooLong { max: usize },
    /// The bytes are not a valid preamble.
    Malformed(Box<dyn Error + Send + Sync>),
    /// Reading from the client failed.
    Failed(io::Error),
    /// The transport's handshake failed.
    Handshake(io::Error),
    /// The preamble was read, but the handshake did not end within the opening timeout.
    HandshakeTimeout,
}

impl fmt::Display for OpeningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpeningError::Timeout => f.write_str("no complete preamble within the timeout"),
            OpeningError::Closed { received } => write!(
                f,
                "the client closed after {received} bytes, before the preamble was complete"
            ),
            OpeningError::TooLong { max } => {
                write!(f, "{max} bytes came without a complete preamble")
            }
            OpeningError::Malformed(e) => write!(f, "malformed preamble: {e}"),
            OpeningError::Failed(e) => write!(f, "reading the preamble failed: {e}"),
            OpeningError::Handshake(e) => write!(f, "the handshake failed: {e}"),
            OpeningError::HandshakeTimeout => {
                f.write_str("no complete handshake within the timeout")
            }
        }
    }
}

impl Error for OpeningError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            OpeningError::Malformed(e) => Some(e.as_ref()),
            OpeningError::Failed(e) | OpeningError::Handshake(e) => Some(e),
            _ => None,
        }
    }
}

/// A connection whose opening is over.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Opened {
    /// The client the preamble named, if it named one.
    pub(crate) source: Option<SocketAddr>,
    /// What else the preamble said, for the logs.
    pub(crate) details: Option<String>,
    /// Bytes that came past the preamble: the start of the stream, for the upstream.
    pub(crate) early: Vec<u8>,
    /// What the client's socket has reported and not yet been used up.
    pub(crate) client_ready: Readiness,
}

/// What a step of the opening came to.
#[derive(Debug)]
pub(crate) enum OpeningStep {
    /// Nothing more yet: wait for the client's next bytes or the deadline.
    Wait,
    /// The read budget ran out with the client still readable: read on after the others.
    Again,
    /// The opening is over.
    Open(Opened),
    Fail(OpeningError),
}

/// One connection's opening: its preamble read, then its transport's handshake done, or
/// refused, or too late.
pub(crate) struct Opening {
    /// The preamble still to read, if any.
    preamble: Option<Arc<dyn Preamble>>,
    /// Whether the transport's handshake is still to complete.
    handshake: bool,
    failure_reason: fn(&OpeningError) -> CloseReason,
    received: Vec<u8>,
    /// What the preamble named, once read.
    source: Option<SocketAddr>,
    /// What else it said, for the logs.
    details: Option<String>,
    /// The transport can peek (until it says otherwise).
    peeks: bool,
    client: Readiness,
    deadline: Instant,
}

impl OpeningConfig {
    /// Whether `peer` may open a connection this way.
    pub(crate) fn admits_sender(&self, peer: SocketAddr) -> bool {
        self.senders
            .as_ref()
            .is_none_or(|senders| senders.contains(peer.ip()))
    }
}

impl Opening {
    /// The opening `config` asks for, from `now`.
    pub(crate) fn new(config: &OpeningConfig, now: Instant) -> Opening {
        Opening {
            preamble: config.preamble.clone(),
            handshake: config.handshake,
            failure_reason: config.failure_reason,
            received: Vec::new(),
            source: None,
            details: None,
            peeks: true,
            client: Readiness::default(),
            deadline: now + config.timeout,
        }
    }

    /// The close reason for a connection whose opening failed with `error`.
    pub(crate) fn failure_reason(&self, error: &OpeningError) -> CloseReason {
        (self.failure_reason)(error)
    }

    /// Records readiness reported for the client.
    pub(crate) fn on_ready(&mut self, ready: Readiness) {
        self.client.merge(ready);
    }

    /// When the opening fails if it is not over.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Checks the deadline at `now`.
    pub(crate) fn on_timer(&mut self, now: Instant) -> OpeningStep {
        if now >= self.deadline && self.preamble.is_none() && self.handshake {
            OpeningStep::Fail(OpeningError::HandshakeTimeout)
        } else if now >= self.deadline {
            OpeningStep::Fail(OpeningError::Timeout)
        } else {
            OpeningStep::Wait
        }
    }

    /// Goes on with the opening as far as the client allows (within the drive budget): reads
    /// the preamble, then drives the transport's handshake, and says whether it is over.
    pub(crate) fn read(&mut self, client: &mut impl Transport) -> OpeningStep {
        if let Some(preamble) = self.preamble.clone() {
            match self.read_preamble(preamble.as_ref(), client) {
                Some(step) => return step,
                None => self.preamble = None,
            }
        }
        if self.handshake {
            // Bytes read past the preamble may be the handshake's: the transport takes them.
            match client.handshake(&mut self.received) {
                Ok(()) => {
                    self.handshake = false;
                    // The client's first bytes may have come with its last handshake message:
                    // decoded, they wait in the transport, and no new event would say so.
                    self.client.readable = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return OpeningStep::Wait,
                Err(e) if e.kind() == ErrorKind::Interrupted => return OpeningStep::Again,
                Err(e) => return OpeningStep::Fail(OpeningError::Handshake(e)),
            }
        }
        OpeningStep::Open(Opened {
            source: self.source,
            details: self.details.take(),
            early: std::mem::take(&mut self.received),
            client_ready: self.client,
        })
    }

    /// Reads the preamble; `None` once it is complete (its source noted; by reading, the bytes
    /// past it are left in `received`), else the step to answer.
    fn read_preamble(
        &mut self,
        preamble: &dyn Preamble,
        client: &mut impl Transport,
    ) -> Option<OpeningStep> {
        if self.peeks {
            match self.peek_preamble(preamble, client) {
                Err(Unsupported) => self.peeks = false,
                Ok(step) => return step,
            }
        }
        let max = preamble.max_len();
        for _ in 0..DRIVE_BUDGET {
            if !self.client.readable {
                return Some(OpeningStep::Wait);
            }
            let room = (max - self.received.len().min(max)).min(READ_CHUNK);
            if room == 0 {
                return Some(OpeningStep::Fail(OpeningError::TooLong { max }));
            }
            let start = self.received.len();
            self.received.resize(start + room, 0);
            let read = step::read_into(client, &mut self.received[start..], &mut self.client);
            let got = match &read {
                Read::Data(n) => *n,
                _ => 0,
            };
            self.received.truncate(start + got);
            match read {
                Read::Data(_) => {}
                Read::Idle => continue,
                Read::Eof => {
                    let received = self.received.len();
                    return Some(OpeningStep::Fail(OpeningError::Closed { received }));
                }
                Read::Failed(e) => return Some(OpeningStep::Fail(OpeningError::Failed(e))),
            }
            match preamble.parse(&self.received) {
                Parsed::Incomplete => {}
                Parsed::Complete {
                    len,
                    source,
                    details,
                } => {
                    self.source = source;
                    self.details = details;
                    self.received.drain(..len.min(self.received.len()));
                    return None;
                }
                Parsed::Invalid(e) => {
                    return Some(OpeningStep::Fail(OpeningError::Malformed(e)));
                }
            }
        }
        Some(OpeningStep::Again)
    }

    /// Reads the preamble by peeking, then takes exactly its bytes: the stream's own bytes stay
    /// in the kernel (for splice). `Err(Unsupported)` if the transport cannot peek.
    fn peek_preamble(
        &mut self,
        preamble: &dyn Preamble,
        client: &mut impl Transport,
    ) -> Result<Option<OpeningStep>, Unsupported> {
        let max = preamble.max_len();
        let fail = |error| Ok(Some(OpeningStep::Fail(error)));
        for _ in 0..DRIVE_BUDGET {
            if !self.client.readable {
                return Ok(Some(OpeningStep::Wait));
            }
            self.received.resize(max, 0);
            let seen = match client.peek(&mut self.received) {
                Ok(0) => return fail(OpeningError::Closed { received: 0 }),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.client.readable = false;
                    return Ok(Some(OpeningStep::Wait));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::Unsupported => {
                    self.received.clear();
                    return Err(Unsupported);
                }
                Err(e) => return fail(OpeningError::Failed(e)),
            };
            match preamble.parse(&self.received[..seen]) {
                Parsed::Incomplete if seen >= max => {
                    return fail(OpeningError::TooLong { max });
                }
                // An EOF or error waits behind these bytes: no more will come.
                Parsed::Incomplete if self.client.failed => {
                    return fail(OpeningError::Closed { received: seen });
                }
                Parsed::Incomplete => {
                    // Peeking took nothing: the next bytes to arrive raise a new event.
                    self.client.readable = false;
                    return Ok(Some(OpeningStep::Wait));
                }
                Parsed::Complete {
                    len,
                    source,
                    details,
                } => {
                    self.details = details;
                    let len = len.min(seen);
                    if let Err(error) = take_exactly(client, &mut self.received[..len]) {
                        return fail(error);
                    }
                    self.source = source;
                    self.received.clear();
                    // Bytes seen past the preamble are still in the kernel, and raise no new
                    // event: the relay must read them.
                    self.client.readable = seen > len || self.client.failed;
                    return Ok(None);
                }
                Parsed::Invalid(e) => return fail(OpeningError::Malformed(e)),
            }
        }
        Ok(Some(OpeningStep::Again))
    }
}

/// The transport cannot peek.
struct Unsupported;

/// Reads exactly `buf.len()` bytes that a peek has shown are there.
fn take_exactly(client: &mut impl Transport, buf: &mut [u8]) -> Result<(), OpeningError> {
    let mut taken = 0;
    // Bounded: each read takes at least a byte, or the loop ends.
    for _ in 0..=buf.len() {
        if taken == buf.len() {
            return Ok(());
        }
        match client.read(&mut buf[taken..]) {
            Ok(0) => return Err(OpeningError::Closed { received: taken }),
            Ok(n) => taken += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(OpeningError::Failed(e)),
        }
    }
    Err(OpeningError::Closed { received: taken })
}
