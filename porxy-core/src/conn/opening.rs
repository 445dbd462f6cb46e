//! The opening phase: what a connection learns from its client before a backend is picked.
//!
//! Between accept and the backend pick a connection may have to read a preamble its client sends
//! ahead of the stream (a PROXY protocol header), wait for a TLS handshake, and be admitted or
//! refused on the real client's address. The hash strategy, access rules, limits and logs all
//! need that address, so none of it can wait for the relay. [`Opening`] reads the preamble
//! through the [`Transport`] seam and says when the connection is open, with the client the
//! preamble names and the bytes that came past it, which stay pending for the upstream; or why
//! it failed. No sockets here: it is tested with fakes.
//!
//! A tunnel with nothing to learn first never builds one: its clients go straight to the pick,
//! with no extra syscall and no extra wake-up.

use std::error::Error;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::close::CloseReason;
use super::step::{self, Read};
use super::transport::Transport;
use super::{Readiness, DRIVE_BUDGET};

/// Bytes read per call while the preamble is incomplete (at most what it may still take).
const READ_CHUNK: usize = 4096;

/// What a tunnel's clients must go through before a backend is picked.
#[derive(Clone)]
pub(crate) struct OpeningConfig {
    pub(crate) preamble: Arc<dyn Preamble>,
    /// How long a client has for it, from accept.
    pub(crate) timeout: Duration,
}

/// A preamble a client sends ahead of its stream, and how to read it.
pub(crate) trait Preamble: Send + Sync {
    /// The most bytes a complete preamble takes: more without one is an error.
    fn max_len(&self) -> usize;

    /// Looks at the first bytes the client sent (all of them so far).
    fn parse(&self, received: &[u8]) -> Parsed;

    /// The close reason for a connection whose opening failed with `error`: each kind of
    /// preamble names its own, so that logs and counters tell them apart.
    fn failure_reason(&self, error: &OpeningError) -> CloseReason;
}

/// What [`Preamble::parse`] made of the bytes so far.
#[derive(Debug)]
// Made by preambles: the PROXY header's, next; until then, the tests'.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Parsed {
    /// Not enough bytes yet to tell.
    Incomplete,
    /// A complete preamble of `len` bytes, naming `source` as the client (`None`: the
    /// connection's own peer, as a PROXY v2 `LOCAL` header says).
    Complete {
        len: usize,
        source: Option<SocketAddr>,
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
        }
    }
}

impl Error for OpeningError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            OpeningError::Malformed(e) => Some(e.as_ref()),
            OpeningError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// A connection whose opening is over.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Opened {
    /// The client the preamble named, if it named one.
    pub(crate) source: Option<SocketAddr>,
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

/// One connection's opening: reading its preamble until complete, refused or too late.
pub(crate) struct Opening {
    preamble: Arc<dyn Preamble>,
    received: Vec<u8>,
    client: Readiness,
    deadline: Instant,
}

impl Opening {
    /// An opening that reads `preamble`, from `now`, for at most `timeout`.
    pub(crate) fn new(preamble: Arc<dyn Preamble>, now: Instant, timeout: Duration) -> Opening {
        Opening {
            preamble,
            received: Vec::new(),
            client: Readiness::default(),
            deadline: now + timeout,
        }
    }

    /// The preamble it reads.
    pub(crate) fn preamble(&self) -> &dyn Preamble {
        self.preamble.as_ref()
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
        if now >= self.deadline {
            OpeningStep::Fail(OpeningError::Timeout)
        } else {
            OpeningStep::Wait
        }
    }

    /// Reads what the client has sent, as far as readiness allows (within the drive budget),
    /// and says whether the preamble is complete.
    pub(crate) fn read(&mut self, client: &mut impl Transport) -> OpeningStep {
        let max = self.preamble.max_len();
        for _ in 0..DRIVE_BUDGET {
            if !self.client.readable {
                return OpeningStep::Wait;
            }
            let room = (max - self.received.len().min(max)).min(READ_CHUNK);
            if room == 0 {
                return OpeningStep::Fail(OpeningError::TooLong { max });
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
                    return OpeningStep::Fail(OpeningError::Closed { received });
                }
                Read::Failed(e) => return OpeningStep::Fail(OpeningError::Failed(e)),
            }
            match self.preamble.parse(&self.received) {
                Parsed::Incomplete => {}
                Parsed::Complete { len, source } => {
                    let early = self.received.split_off(len.min(self.received.len()));
                    return OpeningStep::Open(Opened {
                        source,
                        early,
                        client_ready: self.client,
                    });
                }
                Parsed::Invalid(e) => return OpeningStep::Fail(OpeningError::Malformed(e)),
            }
        }
        OpeningStep::Again
    }
}
