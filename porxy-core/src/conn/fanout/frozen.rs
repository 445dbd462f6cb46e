//! A fan-out connection frozen to move to another process, and thawed there.
//!
//! What [`FanConn`] keeps in user space: the client's bytes some open destination still lacks
//! (the log, from the position of the destination furthest behind to the head), per
//! destination how far it has got (its position, whether it has had the FIN, whether its
//! replies are over), how far the client's end of stream has got both ways, the primary's
//! reply bytes read and not yet written to the client (the `down` pipe), and two clocks.
//! Everything else lives in the kernel with the sockets, as for a relayed connection (see
//! `conn/frozen.rs`). So [`FanConn::freeze`] at a moment when nothing reads or writes the
//! sockets, then [`FanConn::restored`] with the same sockets, goes on exactly where the
//! connection was: each destination at its own position, no byte lost or sent twice to anyone,
//! each FIN passed on once.
//!
//! A destination still connecting cannot travel (its connect's outcome would be lost on the
//! way): [`FanConn::freeze`] refuses such a connection, which leaves once every connect has
//! settled. A destination that had already left (dropped for lag, failed, skipped) travels as
//! gone, without a socket, and never comes back mid-stream.

use std::io;
use std::time::{Duration, Instant};

use super::log::Log;
use super::{Dest, DestEnd, DestPhase, FanConn, FanoutSettings};
use crate::config::{TunnelSettings, MAX_BUFFER_SIZE};
use crate::conn::close::CloseReason;
use crate::conn::hold::{Mode, Pools};
use crate::conn::pipe::{Pipe, PipeSnapshot, PipeState};
use crate::conn::Readiness;
use crate::spec::{Reply, MAX_FANOUT};

/// How far a destination had got when its connection was frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrozenPhase {
    /// Connected and taking part: its socket travels with the connection.
    Open,
    /// It had every byte and the FIN, and its replies were over: it left cleanly (it still
    /// counts towards `min_live`). No socket.
    Finished,
    /// It had left for any other reason (dropped for lag, failed, never connected). No socket;
    /// it never comes back.
    Gone,
}

/// One destination of a frozen fan-out connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrozenDest {
    pub(crate) phase: FrozenPhase,
    /// Position in the client's stream up to which it had been sent everything.
    pub(crate) sent: u64,
    /// It had been sent the FIN.
    pub(crate) fin_sent: bool,
    /// It had sent its EOF: its replies were over.
    pub(crate) eof: bool,
}

/// The user-space state of a fan-out connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FanState {
    /// Position in the client's stream of `log[0]`: that of the open destination furthest
    /// behind (the head when none is open).
    pub(crate) base: u64,
    /// The client's bytes from `base` to the head.
    pub(crate) log: Vec<u8>,
    /// Every destination, in the connection's order (with `reply=primary`, the primary first).
    pub(crate) dests: Vec<FrozenDest>,
    /// The client's EOF had been read.
    pub(crate) client_eof: bool,
    /// With `reply=none`: the client had been sent FIN.
    pub(crate) client_fin_sent: bool,
    /// Primary → client, with `reply=primary` (open and empty otherwise).
    pub(crate) down: PipeSnapshot,
    /// Time since the last byte or FIN any way.
    pub(crate) idle_for: Duration,
    /// Time since the client or the replies ended.
    pub(crate) half_closed_for: Option<Duration>,
}

impl FanState {
    /// Bytes held in user space: the log and the primary's reply bytes.
    pub(crate) fn buffered(&self) -> usize {
        self.log.len() + self.down.pending.len()
    }

    /// True when the client's stream or the replies have ended while the other goes on.
    pub(crate) fn half_closed(&self) -> bool {
        self.client_eof || self.client_fin_sent || self.down.state != PipeState::Open
    }

    /// Destinations whose sockets travel.
    pub(crate) fn open_dests(&self) -> usize {
        self.dests
            .iter()
            .filter(|d| d.phase == FrozenPhase::Open)
            .count()
    }

    /// Checks what a frozen connection always keeps, so that one read off the wire cannot
    /// make the state machine index outside its log or pass a FIN on twice. `fan` are the
    /// settings it ran with.
    pub(crate) fn check(&self, fan: &FanoutSettings) -> Result<(), &'static str> {
        if self.dests.is_empty() || self.dests.len() > MAX_FANOUT {
            return Err("a fan-out connection has from 1 to 64 destinations");
        }
        if fan.min_live == 0 || fan.min_live as usize > self.dests.len() {
            return Err("min_live out of range");
        }
        // The destination furthest behind is at most max_lag behind; the pace-setter, a
        // couple of buffers.
        if self.log.len() > fan.max_lag + 2 * MAX_BUFFER_SIZE {
            return Err("a fan-out log longer than max_lag and two buffers");
        }
        let Some(head) = self.base.checked_add(self.log.len() as u64) else {
            return Err("a fan-out log beyond the largest position");
        };
        let mut lowest_open = None::<u64>;
        for d in &self.dests {
            if d.sent > head {
                return Err("a destination beyond the head of the client's stream");
            }
            if d.fin_sent && !(self.client_eof && d.sent == head) {
                return Err("a destination sent FIN before the client's last byte");
            }
            match d.phase {
                FrozenPhase::Open => {
                    if d.sent < self.base {
                        return Err("an open destination lacks bytes the log does not hold");
                    }
                    lowest_open = Some(lowest_open.map_or(d.sent, |l| l.min(d.sent)));
                }
                FrozenPhase::Finished if !(d.fin_sent && d.eof) => {
                    return Err("a finished destination without its FIN or its EOF");
                }
                FrozenPhase::Finished | FrozenPhase::Gone => {}
            }
        }
        if lowest_open.unwrap_or(head) != self.base {
            return Err("the log does not start at the open destination furthest behind");
        }
        match fan.reply {
            Reply::Primary => {
                let primary = self.dests[0];
                let replies_over = self.down.state != PipeState::Open;
                match primary.phase {
                    FrozenPhase::Gone => return Err("the primary is gone"),
                    FrozenPhase::Finished if self.down.state != PipeState::Done => {
                        return Err("the primary finished before its replies were passed on")
                    }
                    _ if primary.eof != replies_over => {
                        return Err("the primary's EOF and its reply pipe disagree")
                    }
                    _ => {}
                }
                if self.client_fin_sent {
                    return Err("FIN to the client outside a one-way feed");
                }
            }
            Reply::None => {
                if self.down.state != PipeState::Open || !self.down.pending.is_empty() {
                    return Err("reply bytes in a one-way feed");
                }
            }
        }
        Ok(())
    }
}

impl FanConn {
    /// Whether a destination is still connecting (the connection cannot be frozen yet).
    pub(crate) fn connecting(&self) -> bool {
        self.dests
            .iter()
            .any(|d| matches!(d.phase, DestPhase::Connecting { .. }))
    }

    /// The fan-out settings it runs with (those it started with, wherever it runs now).
    pub(crate) fn fanout_settings(&self) -> FanoutSettings {
        self.fan
    }

    /// Takes the connection's state out, to carry it to another process; its buffers and
    /// kernel pipe go back to `pools`. The connection is over here (closed as
    /// [`CloseReason::HandedOver`]): the caller stops polling its sockets before anything
    /// else reads or writes them, and closes those of the destinations that are not
    /// [`FrozenPhase::Open`]. Bytes not yet counted ([`FanConn::take_unreported`]) and
    /// departures ([`FanConn::take_departures`]) must be taken first.
    ///
    /// `Ok(None)` (and no change) for a connection that has ended or has a destination still
    /// connecting. An error (a kernel pipe that could not be read) means its bytes cannot
    /// travel: the caller resets it.
    pub(crate) fn freeze(
        &mut self,
        pools: &mut Pools,
        now: Instant,
    ) -> io::Result<Option<FanState>> {
        if self.closed.is_some() || self.connecting() {
            return Ok(None);
        }
        let head = self.log.head();
        let base = self
            .dests
            .iter()
            .filter(|d| d.open())
            .map(|d| d.sent)
            .min()
            .unwrap_or(head);
        // Before anything changes: every position below the head that an open destination
        // lacks is held (trimming keeps them).
        let log = self.log.copy_from(base).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the fan-out log lacks bytes a destination has not had",
            )
        })?;
        let down = self.down.freeze(pools)?;
        self.log.release(&mut pools.buffers);
        let dests = self
            .dests
            .iter()
            .map(|d| FrozenDest {
                phase: match d.phase {
                    DestPhase::Open => FrozenPhase::Open,
                    DestPhase::Ended(DestEnd::Finished) => FrozenPhase::Finished,
                    // Connecting ones were ruled out above.
                    DestPhase::Ended(_) | DestPhase::Connecting { .. } => FrozenPhase::Gone,
                },
                sent: d.sent,
                fin_sent: d.fin_sent,
                eof: d.eof,
            })
            .collect();
        let state = FanState {
            base,
            log,
            dests,
            client_eof: self.client_eof,
            client_fin_sent: self.client_fin_sent,
            down,
            idle_for: now.saturating_duration_since(self.last_active),
            half_closed_for: self
                .half_closed_since
                .map(|since| now.saturating_duration_since(since)),
        };
        self.closed = Some(CloseReason::HandedOver);
        tracing::trace!(to = "closed(handed_over)", "fan-out connection frozen");
        Ok(Some(state))
    }

    /// A fan-out connection that goes on from `state` (frozen by [`FanConn::freeze`], maybe in
    /// another process, and [checked](FanState::check) against `fan`) at `now`. The client and
    /// every open destination are taken as readable and writable, so that the first drive
    /// sends each destination what it lacks, writes the pending replies, and reads whatever
    /// the kernel holds; a call that would block clears that as usual.
    pub(crate) fn restored(
        now: Instant,
        settings: TunnelSettings,
        fan: FanoutSettings,
        state: &FanState,
        pools: &mut Pools,
    ) -> FanConn {
        let ready = Readiness {
            readable: true,
            writable: true,
            failed: false,
        };
        // Clocks from another process cannot be compared: elapsed times travel instead.
        let since = |elapsed: Duration| now.checked_sub(elapsed).unwrap_or(now);
        let dests = state
            .dests
            .iter()
            .map(|d| Dest {
                phase: match d.phase {
                    FrozenPhase::Open => DestPhase::Open,
                    FrozenPhase::Finished => DestPhase::Ended(DestEnd::Finished),
                    FrozenPhase::Gone => DestPhase::Ended(DestEnd::Left),
                },
                ready: if d.phase == FrozenPhase::Open {
                    ready
                } else {
                    Readiness::default()
                },
                sent: d.sent,
                fin_sent: d.fin_sent,
                eof: d.eof,
                unreported: 0,
            })
            .collect();
        let mode = if settings.splice {
            Mode::Splice
        } else {
            Mode::Copy
        };
        let mut conn = FanConn {
            closed: None,
            settings,
            fan,
            client: ready,
            client_eof: state.client_eof,
            client_fin_sent: state.client_fin_sent,
            log: Log::restored(state.base, &state.log, &mut pools.buffers),
            dests,
            down: Pipe::restore(&state.down, mode, pools),
            last_active: since(state.idle_for),
            half_closed_since: state.half_closed_for.map(since),
            departures: Vec::new(),
            unreported: (0, 0),
        };
        if state.half_closed() {
            conn.half_closed_since.get_or_insert(now);
        }
        tracing::trace!(to = "open", "fan-out connection restored");
        conn
    }
}
