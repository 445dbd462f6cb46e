//! The connection state machine: one client, one upstream, two pipes. No sockets, no mio.
//!
//! The reactor feeds it inputs (readiness per side, the outcome of the upstream connect, the
//! time) and gets back what to do ([`Action`]). Everything that decides what to read, write, shut
//! down or close is here, so it is tested with fake streams (see `tests/`), on both data paths:
//! copying through a buffer, and splicing through a kernel pipe (the tunnel's `splice` setting).
//!
//! Phases: `Queued` → `Connecting` (→ `Handshaking`, to a TLS backend) → `Relaying` →
//! `Closed(reason)`. Every change goes through
//! [`Conn::set_phase`], which traces `from => to`. A relaying connection may also be frozen to
//! move to another process, and start there in `Relaying` (see `frozen.rs`).

pub(crate) mod access_rules;
mod action;
pub(crate) mod admission;
pub(crate) mod client_limits;
pub(crate) mod client_rate;
pub(crate) mod close;
mod deadlines;
pub(crate) mod fanout;
pub(crate) mod frozen;
pub(crate) mod hold;
pub(crate) mod machine;
pub(crate) mod opening;
pub(crate) mod pipe;
pub(crate) mod proxy_header;
mod readiness;
pub(crate) mod step;
pub(crate) mod throttle;
pub(crate) mod transport;

#[cfg(test)]
mod tests;

use std::io::{self, ErrorKind};
use std::time::Instant;

use crate::config::TunnelSettings;
pub(crate) use action::{Action, AfterConnectFailure, Closing, ConnectFailure};
use close::CloseReason;
pub(crate) use deadlines::relay_timeout;
use hold::{Mode, Pools};
use pipe::{Pipe, PipeError, PipeState};
pub(crate) use readiness::Readiness;
use throttle::{Throttle, Way};
use transport::Transport;

/// Syscalls one [`Conn::drive`] may spend before it yields to other connections.
pub(crate) const DRIVE_BUDGET: u32 = 64;

/// Which socket of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Upstream,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Every backend is at its connection limit: waiting for a slot, up to the queue timeout.
    Queued,
    /// The upstream connect is in flight.
    Connecting,
    /// The upstream is connected and its TLS handshake is under way (a TLS backend); the
    /// client's bytes wait. It counts as part of the connect: a failure tries another backend.
    Handshaking,
    /// Bytes flow between the two sides.
    Relaying,
    /// Ended; the reactor closes the sockets as [`Action::Close`] said.
    Closed(CloseReason),
}

/// One proxied connection's state.
pub(crate) struct Conn {
    phase: Phase,
    settings: TunnelSettings,
    client: Readiness,
    upstream: Readiness,
    /// Client → upstream.
    up: Pipe,
    /// Upstream → client.
    down: Pipe,
    /// While it waits: when queueing or the current connect attempt began. While it relays:
    /// when it became half-closed, if `half_closed` (one field for both keeps every
    /// connection's slot smaller).
    since: Instant,
    /// It relays, and one direction is over (see `since`).
    half_closed: bool,
    /// Connect attempts left after the current one.
    attempts_left: u32,
    last_active: Instant,
    /// Its client went through an opening here (a preamble read, a handshake): what that
    /// consumed would not come again, so it cannot travel as a waiting client.
    opened_here: bool,
    /// Bytes relayed and not yet added to the tunnel's counters: (to upstream, to client).
    unreported: (u64, u64),
    /// Its bandwidth limits, if it has any.
    throttle: Option<Box<Throttle>>,
}

impl Conn {
    /// A connection whose first upstream connect has just been started; it may make
    /// `attempts` connects in all. (The reactor starts every connection queued, then connects.)
    #[cfg(test)]
    pub(crate) fn new(now: Instant, settings: TunnelSettings, attempts: u32) -> Self {
        Conn::with_phase(Phase::Connecting, now, settings, attempts)
    }

    /// A connection that waits for a backend slot; [`Conn::restart_connect`] ends the wait.
    pub(crate) fn queued(now: Instant, settings: TunnelSettings, attempts: u32) -> Self {
        Conn::with_phase(Phase::Queued, now, settings, attempts)
    }

    /// A connection whose opening is over: it waits for a backend slot like [`Conn::queued`],
    /// with `early` (the bytes that came past the client's preamble) pending for the upstream,
    /// and what the client's socket reported and the opening did not use up.
    pub(crate) fn opened(
        now: Instant,
        settings: TunnelSettings,
        attempts: u32,
        early: &[u8],
        client_ready: Readiness,
        pools: &mut Pools,
    ) -> Self {
        let mut conn = Conn::queued(now, settings, attempts);
        let mode = if settings.splice {
            Mode::Splice
        } else {
            Mode::Copy
        };
        conn.up = Pipe::with_pending(early, mode, pools);
        conn.client = client_ready;
        conn.opened_here = true;
        conn
    }

    fn with_phase(phase: Phase, now: Instant, settings: TunnelSettings, attempts: u32) -> Self {
        let mode = if settings.splice {
            Mode::Splice
        } else {
            Mode::Copy
        };
        Conn {
            phase,
            settings,
            attempts_left: attempts.saturating_sub(1),
            client: Readiness::default(),
            upstream: Readiness::default(),
            up: Pipe::new(mode),
            down: Pipe::new(mode),
            since: now,
            half_closed: false,
            last_active: now,
            opened_here: false,
            unreported: (0, 0),
            throttle: None,
        }
    }

    /// Holds its reads to `throttle`'s limits from now on.
    pub(crate) fn set_throttle(&mut self, throttle: Box<Throttle>) {
        self.throttle = Some(throttle);
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// How each direction moves its bytes now: (client → upstream, upstream → client).
    #[cfg(test)]
    pub(crate) fn modes(&self) -> (Mode, Mode) {
        (self.up.mode(), self.down.mode())
    }

    /// Records readiness reported for one side. Readiness is only ever added here; it is
    /// cleared by the pipes when a call says `WouldBlock`.
    pub(crate) fn on_ready(&mut self, side: Side, ready: Readiness) {
        match side {
            Side::Client => self.client.merge(ready),
            Side::Upstream => self.upstream.merge(ready),
        }
    }

    /// What the upstream socket has reported since the current connect attempt began.
    pub(crate) fn upstream_readiness(&self) -> Readiness {
        self.upstream
    }

    /// True when the upstream socket has reported something worth a connect check.
    pub(crate) fn upstream_signalled(&self) -> bool {
        self.upstream.writable || self.upstream.failed
    }

    /// The upstream connect completed; `preface` (a PROXY header) goes to it before any byte
    /// of the client's. `Some(close)` only if the bytes held could not be taken out to put it
    /// ahead of them (see [`Pipe::prepend`]).
    pub(crate) fn on_connected(
        &mut self,
        now: Instant,
        preface: Option<&[u8]>,
        pools: &mut Pools,
    ) -> Option<Action> {
        if self.phase != Phase::Connecting {
            return None;
        }
        self.last_active = now;
        self.set_phase(Phase::Relaying);
        self.prepend(preface, pools)
    }

    /// The upstream connect completed and the upstream's own handshake (TLS) is to be done
    /// before any byte is relayed, within what is left of the connect timeout.
    pub(crate) fn on_connected_handshaking(&mut self, now: Instant) {
        if self.phase == Phase::Connecting {
            self.last_active = now;
            self.set_phase(Phase::Handshaking);
        }
    }

    /// Puts `preface` ahead of the client's bytes for the upstream.
    fn prepend(&mut self, preface: Option<&[u8]>, pools: &mut Pools) -> Option<Action> {
        let preface = preface?;
        match self.up.prepend(preface, pools) {
            Ok(()) => None,
            Err(_) => Some(self.close(CloseReason::LocalResource, Closing::Reset, Closing::Reset)),
        }
    }

    /// The upstream connect failed: try another backend while attempts remain, else reset the
    /// client at once.
    pub(crate) fn on_connect_failed(&mut self, error: &io::Error) -> ConnectFailure {
        self.connect_attempt_failed(connect_failure_reason(error))
    }

    fn connect_attempt_failed(&mut self, reason: CloseReason) -> ConnectFailure {
        // Out of descriptors or ports is porxy's own shortage: another backend would not help.
        let next = if self.attempts_left > 0 && reason != CloseReason::LocalResource {
            self.attempts_left -= 1;
            AfterConnectFailure::TryAnother
        } else {
            let (client, upstream) = (Closing::Reset, Closing::Graceful);
            self.close(reason, client, upstream);
            AfterConnectFailure::Close { client, upstream }
        };
        ConnectFailure {
            failed: reason,
            next,
        }
    }

    /// When the connect under way began, while it connects.
    pub(crate) fn connect_began(&self) -> Option<Instant> {
        (self.phase == Phase::Connecting).then_some(self.since)
    }

    /// A new connect has started (after [`AfterConnectFailure::TryAnother`], or for a queued
    /// connection that got a slot); its connect timeout counts from `now`.
    pub(crate) fn restart_connect(&mut self, now: Instant) {
        self.since = now;
        self.upstream = Readiness::default();
        if self.phase != Phase::Connecting {
            self.set_phase(Phase::Connecting);
        }
    }

    /// Every backend is full: wait for a slot, up to the queue timeout from `now`.
    pub(crate) fn enqueue(&mut self, now: Instant) {
        self.since = now;
        self.upstream = Readiness::default();
        self.set_phase(Phase::Queued);
    }

    /// No backend can take the connection: reset the client.
    pub(crate) fn give_up(&mut self, reason: CloseReason) -> Action {
        self.close(reason, Closing::Reset, Closing::Graceful)
    }

    /// An operator or the proxy ends the connection (tunnel closed now, stop deadline).
    pub(crate) fn abort(&mut self, reason: CloseReason) -> Action {
        self.close(reason, Closing::Reset, Closing::Reset)
    }

    /// Relays what readiness allows, and says what the reactor must do next.
    pub(crate) fn drive(
        &mut self,
        client: &mut impl Transport,
        upstream: &mut impl Transport,
        pools: &mut Pools,
        now: Instant,
    ) -> Action {
        if self.phase == Phase::Handshaking {
            match upstream.handshake(&mut Vec::new()) {
                Ok(()) => self.set_phase(Phase::Relaying),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Action::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Action::Again,
                Err(e) => {
                    tracing::debug!(error = %e, "upstream TLS handshake failed");
                    let failure = self.connect_attempt_failed(CloseReason::UpstreamTls);
                    return Action::ConnectFailed(failure);
                }
            }
        }
        if self.phase != Phase::Relaying {
            return Action::Wait;
        }
        // Client → upstream may spend half the budget, so that a client that always has data
        // cannot starve the other direction; upstream → client gets the rest.
        let mut budget = DRIVE_BUDGET / 2;
        self.up.set_last(self.down.state() == PipeState::Done);
        let cap = self.read_cap(Way::Up, now);
        let (up, result) = self.up.pump(
            client,
            &mut self.client,
            upstream,
            &mut self.upstream,
            pools,
            &mut budget,
            cap,
        );
        let mut again = self.read_done(Way::Up, cap, up.read, now);
        // Bytes written before a failure were relayed: count them either way.
        self.unreported.0 += up.moved;
        if let Err(e) = result {
            return self.pipe_failed(e, Side::Client);
        }
        budget += DRIVE_BUDGET - DRIVE_BUDGET / 2;
        self.down.set_last(self.up.state() == PipeState::Done);
        let cap = self.read_cap(Way::Down, now);
        let (down, result) = self.down.pump(
            upstream,
            &mut self.upstream,
            client,
            &mut self.client,
            pools,
            &mut budget,
            cap,
        );
        again |= self.read_done(Way::Down, cap, down.read, now);
        self.unreported.1 += down.moved;
        if let Err(e) = result {
            return self.pipe_failed(e, Side::Upstream);
        }
        // Bytes either way, or a FIN, are activity.
        if up.moved + up.read + down.moved + down.read > 0 || up.finished || down.finished {
            self.last_active = now;
        }
        match (self.up.state(), self.down.state()) {
            (PipeState::Done, PipeState::Done) => {
                return self.close(CloseReason::Completed, Closing::Graceful, Closing::Graceful)
            }
            (PipeState::Open, PipeState::Open) => {}
            _ => {
                self.mark_half_closed(now);
            }
        }
        if up.yielded || down.yielded || again {
            Action::Again
        } else {
            Action::Wait
        }
    }

    /// Bytes `way` may read in this drive: what its limits grant, if it has limits and its
    /// source has bytes to read (else no grant is taken: it would only be given back).
    #[inline]
    fn read_cap(&mut self, way: Way, now: Instant) -> u64 {
        let Some(throttle) = self.throttle.as_mut() else {
            return u64::MAX;
        };
        let (source, pipe) = match way {
            Way::Up => (self.client, &self.up),
            Way::Down => (self.upstream, &self.down),
        };
        if !source.readable || pipe.state() != PipeState::Open {
            return u64::MAX;
        }
        throttle.allow(way, now)
    }

    /// `way` read `read` bytes of its grant `cap`; true if it used it up and may read more at
    /// once (see [`Throttle::used`]).
    #[inline]
    fn read_done(&mut self, way: Way, cap: u64, read: u64, now: Instant) -> bool {
        let Some(throttle) = self.throttle.as_mut() else {
            return false;
        };
        let (source, pipe) = match way {
            Way::Up => (self.client, &self.up),
            Way::Down => (self.upstream, &self.down),
        };
        let more = source.readable && pipe.state() == PipeState::Open;
        throttle.used(way, cap, read, more, now)
    }

    /// Bytes relayed since the last call: (to upstream, to client).
    pub(crate) fn take_unreported(&mut self) -> (u64, u64) {
        std::mem::take(&mut self.unreported)
    }

    /// A read or write failed: whoever failed is reset-closed by the peer's reset.
    fn pipe_failed(&mut self, error: PipeError, source_side: Side) -> Action {
        let failed_side = match (&error, source_side) {
            (PipeError::Source(_), side) => side,
            (PipeError::Sink(_), Side::Client) => Side::Upstream,
            (PipeError::Sink(_), Side::Upstream) => Side::Client,
        };
        let io_error = match &error {
            PipeError::Source(e) | PipeError::Sink(e) => e,
        };
        tracing::debug!(side = ?failed_side, error = %io_error, "socket failed");
        match failed_side {
            Side::Client => self.close(CloseReason::ClientReset, Closing::Graceful, Closing::Reset),
            Side::Upstream => self.close(
                CloseReason::UpstreamReset,
                Closing::Reset,
                Closing::Graceful,
            ),
        }
    }

    fn close(&mut self, reason: CloseReason, client: Closing, upstream: Closing) -> Action {
        self.set_phase(Phase::Closed(reason));
        Action::Close {
            reason,
            client,
            upstream,
        }
    }

    fn set_phase(&mut self, to: Phase) {
        tracing::trace!(from = ?self.phase, to = ?to, "conn phase");
        self.phase = to;
    }
}

/// Maps a connect error to the reason counted for it.
pub(crate) fn connect_failure_reason(error: &io::Error) -> CloseReason {
    match error.kind() {
        ErrorKind::ConnectionRefused => CloseReason::ConnectRefused,
        ErrorKind::TimedOut => CloseReason::ConnectTimeout,
        _ if is_resource_shortage(error) => CloseReason::LocalResource,
        _ => CloseReason::ConnectError,
    }
}

/// Out of descriptors, memory, buffers or local ports: porxy's own shortage, not the peer's.
pub(crate) fn is_resource_shortage(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    ) || error.kind() == ErrorKind::AddrNotAvailable
        || error.kind() == ErrorKind::OutOfMemory
}
