//! The opening phase: what a connection learns from its client before a backend is picked.
//!
//! Between accept and the backend pick a connection may have to read what its client sends
//! ahead of the stream (a PROXY protocol header), look at the start of the stream itself (the
//! server name in a TLS ClientHello, to route by), wait for a TLS handshake, and be admitted or
//! refused on the real client's address. The hash strategy, access rules, limits and logs all
//! need that address, and the pick needs the name, so none of it can wait for the relay.
//! [`Opening`] reads its preambles in order through the [`Transport`] seam, then drives the
//! transport's own handshake (which takes the bytes read past the preambles that are its own),
//! and says when the connection is open, with what the preambles said and the bytes that came
//! past them, which stay pending for the upstream; or why it failed. No sockets here: it is
//! tested with fakes.
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
    /// What they send ahead of the stream (a PROXY header) or at its start (a ClientHello),
    /// read in this order.
    pub(crate) preambles: Arc<[Arc<dyn Preamble>]>,
    /// The peers that may send it (`None`: any); any other is refused before a byte is read,
    /// since a preamble lets its sender name any client.
    pub(crate) senders: Option<Networks>,
    /// Whether their transport has a handshake of its own to complete (TLS), after the
    /// preambles (see [`Transport::handshake`]), and the close reason if it fails.
    pub(crate) handshake: Option<CloseReason>,
    /// How long a client has for all of it, from accept.
    pub(crate) timeout: Duration,
}

/// A preamble a client sends ahead of its stream, and how to read it.
pub(crate) trait Preamble: Send + Sync {
    /// The most bytes a complete preamble takes: more without one is an error.
    fn max_len(&self) -> usize;

    /// What it is, for the logs (`PROXY header`).
    fn name(&self) -> &'static str;

    /// Looks at the first bytes the client sent (all of them so far).
    fn parse(&self, received: &[u8]) -> Parsed;

    /// The close reason for a client whose preamble failed (each kind has its own, so that
    /// logs and counters tell them apart).
    fn failure_reason(&self) -> CloseReason;
}

/// What [`Preamble::parse`] made of the bytes so far.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Not enough bytes yet to tell.
    Incomplete,
    /// A complete preamble of `len` bytes (0 for one that is the start of the stream, left
    /// for the upstream), naming `source` as the client (`None`: the connection's own peer,
    /// as a PROXY v2 `LOCAL` header says).
    Complete {
        len: usize,
        source: Option<SocketAddr>,
        /// What else the preamble says that is worth a log line (a PROXY v2 header's
        /// authority, ALPN, unique id), if anything.
        details: Option<String>,
        /// The server name the client asked for (a ClientHello's SNI), if the preamble says.
        server_name: Option<String>,
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
            OpeningError::Timeout | OpeningError::HandshakeTimeout => {
                f.write_str("not complete within the timeout")
            }
            OpeningError::Closed { received } => write!(
                f,
                "the client closed after {received} bytes, before it was complete"
            ),
            OpeningError::TooLong { max } => write!(f, "{max} bytes came, not complete"),
            OpeningError::Malformed(e) => write!(f, "{e}"),
            OpeningError::Failed(e) => write!(f, "reading failed: {e}"),
            OpeningError::Handshake(e) => write!(f, "{e}"),
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
    /// What else the preambles said, for the logs.
    pub(crate) details: Option<String>,
    /// The server name the client asked for, if a preamble said (a peeked ClientHello's).
    pub(crate) server_name: Option<String>,
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

/// One connection's opening: its preambles read, then its transport's handshake done, or
/// refused, or too late.
pub(crate) struct Opening {
    preambles: Arc<[Arc<dyn Preamble>]>,
    /// The index of the preamble being read: `preambles.len()` once all are.
    next: usize,
    /// The transport's handshake still to complete, if any, and the reason if it fails.
    handshake: Option<CloseReason>,
    received: Vec<u8>,
    /// What the preambles named, once read.
    source: Option<SocketAddr>,
    /// What else they said, for the logs.
    details: Option<String>,
    server_name: Option<String>,
    /// The transport can peek (until it says otherwise).
    peeks: bool,
    /// Why it failed, once it has, for the close log.
    failure: Option<String>,
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
            preambles: config.preambles.clone(),
            next: 0,
            handshake: config.handshake,
            received: Vec::new(),
            source: None,
            details: None,
            server_name: None,
            peeks: true,
            failure: None,
            client: Readiness::default(),
            deadline: now + config.timeout,
        }
    }

    /// The close reason for a connection whose opening failed with `error`: the handshake's,
    /// or that of the preamble being read.
    pub(crate) fn failure_reason(&self, error: &OpeningError) -> CloseReason {
        let preamble = self.preambles.get(self.next).or(self.preambles.last());
        match (error, self.handshake, preamble) {
            (OpeningError::Handshake(_) | OpeningError::HandshakeTimeout, Some(reason), _) => {
                reason
            }
            (_, _, Some(preamble)) => preamble.failure_reason(),
            // Not reached: a failure comes from a preamble or the handshake.
            (_, handshake, None) => handshake.unwrap_or(CloseReason::ClientReset),
        }
    }

    /// Notes that it failed with `error`, named by what failed (a PROXY header, a
    /// ClientHello, the handshake).
    pub(crate) fn failed(&mut self, error: &OpeningError) {
        let what = match error {
            OpeningError::Handshake(_) | OpeningError::HandshakeTimeout => "handshake",
            _ => self
                .preambles
                .get(self.next)
                .map_or("opening", |preamble| preamble.name()),
        };
        self.failure = Some(format!("{what}: {error}"));
    }

    /// Why it failed, if it has.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
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
        let preambles_read = self.next >= self.preambles.len();
        if now >= self.deadline && preambles_read && self.handshake.is_some() {
            OpeningStep::Fail(OpeningError::HandshakeTimeout)
        } else if now >= self.deadline {
            OpeningStep::Fail(OpeningError::Timeout)
        } else {
            OpeningStep::Wait
        }
    }

    /// Goes on with the opening as far as the client allows (within the drive budget): reads
    /// the preambles, then drives the transport's handshake, and says whether it is over.
    pub(crate) fn read(&mut self, client: &mut impl Transport) -> OpeningStep {
        while let Some(preamble) = self.preambles.get(self.next).cloned() {
            match self.read_preamble(preamble.as_ref(), client) {
                Some(step) => return step,
                None => self.next += 1,
            }
        }
        if self.handshake.is_some() {
            // Bytes read past the preambles may be the handshake's: the transport takes them.
            match client.handshake(&mut self.received) {
                Ok(()) => {
                    self.handshake = None;
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
            server_name: self.server_name.take(),
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
        // Bytes read past an earlier preamble come first: they may hold all of this one.
        if !self.received.is_empty() {
            if let Some(step) = self.parsed(preamble.parse(&self.received)) {
                return step;
            }
        }
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
            if let Some(step) = self.parsed(preamble.parse(&self.received)) {
                return step;
            }
        }
        Some(OpeningStep::Again)
    }

    /// What `parsed` comes to: `Some(None)` for a complete preamble (what it said kept, its
    /// bytes gone from `received`), `Some(Some(step))` for a failure, and `None` for an
    /// incomplete one.
    fn parsed(&mut self, parsed: Parsed) -> Option<Option<OpeningStep>> {
        match parsed {
            Parsed::Incomplete => None,
            Parsed::Invalid(e) => Some(Some(OpeningStep::Fail(OpeningError::Malformed(e)))),
            Parsed::Complete {
                len,
                source,
                details,
                server_name,
            } => {
                self.source = source.or(self.source);
                self.details = match (self.details.take(), details) {
                    (Some(before), Some(more)) => Some(format!("{before} {more}")),
                    (before, more) => more.or(before),
                };
                self.server_name = server_name.or(self.server_name.take());
                self.received.drain(..len.min(self.received.len()));
                Some(None)
            }
        }
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
        // Most preambles are small (a ClientHello under 2 KiB): the buffer starts at a read's
        // size and grows only when a peek fills it.
        let mut size = READ_CHUNK.min(max);
        for _ in 0..DRIVE_BUDGET {
            if !self.client.readable {
                return Ok(Some(OpeningStep::Wait));
            }
            self.received.resize(size, 0);
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
            let parsed = preamble.parse(&self.received[..seen]);
            if let Parsed::Complete { len, .. } = &parsed {
                let len = (*len).min(seen);
                if let Err(error) = take_exactly(client, &mut self.received[..len]) {
                    return fail(error);
                }
                self.received.truncate(len);
                // Bytes seen past the preamble are still in the kernel, and raise no new
                // event: the relay must read them.
                self.client.readable = seen > len || self.client.failed;
            }
            match parsed {
                Parsed::Incomplete if seen >= max => {
                    return fail(OpeningError::TooLong { max });
                }
                // The buffer was full: more may be there already.
                Parsed::Incomplete if seen == size => {
                    size = (size * 4).min(max);
                    continue;
                }
                // An EOF or error waits behind these bytes: no more will come.
                Parsed::Incomplete if self.client.failed => {
                    return fail(OpeningError::Closed { received: seen });
                }
                Parsed::Incomplete => {
                    // Peeking took nothing: the next bytes to arrive raise a new event. The
                    // kernel keeps what came; the buffer is not held while the client waits.
                    self.client.readable = false;
                    self.received = Vec::new();
                    return Ok(Some(OpeningStep::Wait));
                }
                parsed => return Ok(self.parsed(parsed).flatten()),
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
