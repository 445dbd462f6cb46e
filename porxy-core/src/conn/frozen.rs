//! A relaying connection frozen to move to another process, and thawed there.
//!
//! What the proxy keeps of a connection in user space is small: per direction, how far the end
//! of stream has got and the bytes read but not yet written; and two clocks (idle, half-closed).
//! Everything else lives in the kernel with the sockets: bytes not yet read, bytes not yet
//! sent, a FIN already sent (`shutdown_write`). So [`Conn::freeze`] at a moment when nothing is
//! being read or written, then [`Conn::restored`] with the same sockets, goes on exactly where
//! the connection was: no byte lost or written twice, and each FIN passed on once.

use std::time::{Duration, Instant};

use super::close::CloseReason;
use super::fanout::frozen::FanState;
use super::fanout::FanoutSettings;
use super::hold::{Mode, Pools};
use super::pipe::{Pipe, PipeSnapshot, PipeState};
use super::{Conn, Phase, Readiness};
use crate::config::TunnelSettings;

/// The user-space state of a relaying connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelayState {
    /// Client → upstream.
    pub(crate) up: PipeSnapshot,
    /// Upstream → client.
    pub(crate) down: PipeSnapshot,
    /// Time since the last byte or FIN either way.
    pub(crate) idle_for: Duration,
    /// Time since one direction ended, while the other goes on.
    pub(crate) half_closed_for: Option<Duration>,
}

impl RelayState {
    /// Bytes held in user space, both directions.
    pub(crate) fn buffered(&self) -> usize {
        self.up.pending.len() + self.down.pending.len()
    }

    /// True when a direction has ended (its source sent EOF).
    pub(crate) fn half_closed(&self) -> bool {
        self.up.state != PipeState::Open || self.down.state != PipeState::Open
    }
}

/// What [`Conn::freeze`] took out of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frozen {
    /// It cannot travel now (its connect is in flight, or it is over): it stays, unchanged.
    Stays,
    /// A client waiting for a backend slot: nothing but its socket travels.
    Waiting,
    /// A relaying connection: its sockets travel with this state.
    Relaying(RelayState),
    /// A fan-out connection: its client and open destinations travel with the settings it runs
    /// with and this state (never from [`Conn::freeze`]).
    Fanout(FanoutSettings, Box<FanState>),
}

impl Conn {
    /// Whether the connection can move to another process now: it relays, or waits for a
    /// backend slot with nothing behind it. A waiting client travels alone and is taken in
    /// there like a new one, so one whose opening was read here (a PROXY header that would
    /// not come again, bytes past it) stays. Not while its upstream connect is in flight (it
    /// would have to start over) nor once it is over.
    pub(crate) fn can_travel(&self) -> bool {
        match self.phase {
            Phase::Relaying => true,
            Phase::Queued => !self.opened_here && self.up.held() == 0,
            Phase::Connecting | Phase::Handshaking | Phase::Closed(_) => false,
        }
    }

    /// Takes the state of a connection out, to carry it to another process; buffers and kernel
    /// pipes go back to `pools` (the bytes in a pipe are read out into the state). Unless it
    /// [`Stays`](Frozen::Stays), the connection is over here (`Closed(HandedOver)`): the caller
    /// stops polling its sockets before anything else reads or writes them. Relayed bytes not
    /// yet reported must be taken first ([`Conn::take_unreported`]).
    ///
    /// An error (a kernel pipe that could not be read) means its bytes cannot travel: the
    /// caller resets it.
    pub(crate) fn freeze(&mut self, pools: &mut Pools, now: Instant) -> std::io::Result<Frozen> {
        match self.phase {
            Phase::Relaying => {}
            Phase::Queued if !self.opened_here && self.up.held() == 0 => {
                self.set_phase(Phase::Closed(CloseReason::HandedOver));
                return Ok(Frozen::Waiting);
            }
            Phase::Queued => return Ok(Frozen::Stays),
            Phase::Connecting | Phase::Handshaking | Phase::Closed(_) => return Ok(Frozen::Stays),
        }
        let state = RelayState {
            up: self.up.freeze(pools)?,
            down: self.down.freeze(pools)?,
            idle_for: now.saturating_duration_since(self.last_active),
            half_closed_for: self
                .half_closed_since()
                .map(|since| now.saturating_duration_since(since)),
        };
        self.set_phase(Phase::Closed(CloseReason::HandedOver));
        Ok(Frozen::Relaying(state))
    }

    /// A relaying connection that goes on from `state` (frozen by [`Conn::freeze`], maybe in
    /// another process) at `now`. Both sides are taken as readable and writable, so that the
    /// first drive writes the pending bytes and reads whatever the kernel holds; a call that
    /// would block clears that as usual.
    pub(crate) fn restored(
        now: Instant,
        settings: TunnelSettings,
        state: &RelayState,
        pools: &mut Pools,
    ) -> Self {
        let mode = if settings.splice {
            Mode::Splice
        } else {
            Mode::Copy
        };
        let ready = Readiness {
            readable: true,
            writable: true,
            failed: false,
        };
        // Clocks from another process cannot be compared: elapsed times travel instead.
        let since = |elapsed: Duration| now.checked_sub(elapsed).unwrap_or(now);
        // Limits are the importing tunnel's: the reactor sets them (`Conn::set_throttle`).
        let mut conn = Conn {
            phase: Phase::Relaying,
            settings,
            client: ready,
            upstream: ready,
            up: Pipe::restore(&state.up, mode, pools),
            down: Pipe::restore(&state.down, mode, pools),
            since: state.half_closed_for.map_or(now, since),
            half_closed: state.half_closed_for.is_some(),
            attempts_left: 0,
            last_active: since(state.idle_for),
            opened_here: false,
            unreported: (0, 0),
            throttle: None,
        };
        // A direction already over is half-closed whatever the sender said.
        if state.half_closed() {
            conn.mark_half_closed(now);
        }
        tracing::trace!(to = ?conn.phase, "conn restored");
        conn
    }
}
