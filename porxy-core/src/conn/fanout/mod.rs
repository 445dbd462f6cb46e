//! The fan-out connection state machine: one client, N destinations, every client byte to all
//! of them. No sockets, no mio (the reactor drives it through [`Machine`](super::machine::Machine)).
//!
//! The client's bytes are held once, in a [`Log`], with each destination's position in it. One
//! destination sets the pace: the primary with `reply=primary`, the one furthest ahead with
//! `reply=none`. The client is read only while the pace-setter is less than a buffer behind, so a
//! slow primary slows the client down as a plain tunnel would; any other destination that falls
//! more than `max_lag` bytes behind is dropped for this connection (reset, counted), so it never
//! holds up the client or the others, and memory stays within `max_lag` and a buffer.
//!
//! Replies: with `reply=primary` the primary's bytes go to the client through a [`Pipe`], as in a
//! plain tunnel; every other reply is read and thrown away, so a chatty destination cannot
//! block. A destination is done once it has every byte and the FIN, and has sent its own EOF;
//! the connection is done once the client has finished and every destination is done or gone.
//!
//! Faults: the client resetting resets every destination; the primary failing resets the client
//! (as a plain tunnel does) and the rest; any other destination failing is dropped alone. The
//! connection ends (client reset) when fewer than `min_live` destinations are left.
//!
//! Handover: a connection whose destinations have all settled (none connecting) can be frozen
//! and restored in another process, every destination at its own position (`frozen.rs`).

mod clock;
mod dest;
pub(crate) mod frozen;
pub(crate) mod log;
mod pace;
mod replies;

#[cfg(test)]
mod tests;

use std::time::Instant;

use crate::config::TunnelSettings;
use crate::conn::close::CloseReason;
use crate::conn::hold::{Mode, Pools};
use crate::conn::opening::Opened;
use crate::conn::pipe::{Pipe, PipeState};
use crate::conn::step::{self, End, Read, Write};
use crate::conn::transport::Transport;
use crate::conn::{connect_failure_reason, Action, Closing, Readiness, DRIVE_BUDGET};
use crate::spec::Reply;
pub(crate) use dest::{Departure, DestEnd};
use dest::{Dest, DestPhase};
use log::Log;

/// A fan-out tunnel's settings, fixed when it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FanoutSettings {
    pub(crate) reply: Reply,
    /// Bytes a destination other than the pace-setter may be behind before it is dropped.
    pub(crate) max_lag: usize,
    /// Fewest destinations alive for the client connection to go on.
    pub(crate) min_live: u32,
}

/// Default `max_lag`.
pub const DEFAULT_MAX_LAG: usize = 1 << 20;

/// One fan-out connection's state.
pub(crate) struct FanConn {
    closed: Option<CloseReason>,
    settings: TunnelSettings,
    fan: FanoutSettings,
    client: Readiness,
    client_eof: bool,
    /// With `reply=none`: the client has been sent FIN.
    client_fin_sent: bool,
    log: Log,
    dests: Vec<Dest>,
    /// Primary → client, with `reply=primary`.
    down: Pipe,
    last_active: Instant,
    half_closed_since: Option<Instant>,
    /// Destinations that left since the reactor last asked.
    departures: Vec<Departure>,
    /// Client bytes read and bytes sent to the client, not yet counted.
    unreported: (u64, u64),
}

impl FanConn {
    /// A connection to `dests` destinations, each connecting from `now` (`connecting[i]`), or
    /// skipped. With `reply=primary`, destination 0 is the primary.
    pub(crate) fn new(
        now: Instant,
        settings: TunnelSettings,
        fan: FanoutSettings,
        connecting: &[bool],
    ) -> FanConn {
        let dests = connecting
            .iter()
            .map(|&c| Dest {
                phase: if c {
                    DestPhase::Connecting { since: now }
                } else {
                    DestPhase::Ended(DestEnd::Skipped)
                },
                ready: Readiness::default(),
                sent: 0,
                fin_sent: false,
                eof: false,
                unreported: 0,
            })
            .collect();
        FanConn {
            closed: None,
            settings,
            fan,
            client: Readiness::default(),
            client_eof: false,
            client_fin_sent: false,
            log: Log::new(),
            dests,
            // The primary's replies may be spliced like a plain tunnel's.
            down: Pipe::new(if settings.splice {
                Mode::Splice
            } else {
                Mode::Copy
            }),
            last_active: now,
            half_closed_since: None,
            departures: Vec::new(),
            unreported: (0, 0),
        }
    }

    /// A connection whose opening is over ([`Opened`]), to `dests` destinations as
    /// [`FanConn::new`]: the bytes that came past the client's preamble start the log, for
    /// every destination.
    ///
    /// `preface`: a PROXY header, and which destinations get it. It starts the log, ahead of
    /// the client's bytes; a destination that does not get it starts past it.
    pub(crate) fn opened(
        now: Instant,
        settings: TunnelSettings,
        fan: FanoutSettings,
        connecting: &[bool],
        opened: Opened,
        preface: Option<(&[u8], &[bool])>,
        pools: &mut Pools,
    ) -> FanConn {
        let mut conn = FanConn::new(now, settings, fan, connecting);
        conn.client = opened.client_ready;
        let (header, gets) = preface.unwrap_or_default();
        let mut start = header.to_vec();
        start.extend_from_slice(&opened.early);
        if !start.is_empty() {
            conn.log = Log::restored(0, &start, &mut pools.buffers);
            conn.unreported.0 += opened.early.len() as u64;
        }
        for (i, dest) in conn.dests.iter_mut().enumerate() {
            if !gets.get(i).copied().unwrap_or(false) {
                dest.sent = header.len() as u64;
            }
        }
        conn
    }

    /// The reason it ended, once it has.
    #[cfg(test)]
    pub(crate) fn closed(&self) -> Option<CloseReason> {
        self.closed
    }

    /// Whether destination `i` still has a socket (connecting or open).
    pub(crate) fn dest_live(&self, i: usize) -> bool {
        self.dests.get(i).is_some_and(Dest::live)
    }

    /// Whether destination `i` is connecting (a writable event means: check the connect).
    pub(crate) fn dest_connecting(&self, i: usize) -> bool {
        self.dests
            .get(i)
            .is_some_and(|d| matches!(d.phase, DestPhase::Connecting { .. }))
    }

    /// Records readiness reported for the client.
    pub(crate) fn on_client_ready(&mut self, ready: Readiness) {
        self.client.merge(ready);
    }

    /// Records readiness reported for destination `i`.
    pub(crate) fn on_dest_ready(&mut self, i: usize, ready: Readiness) {
        if let Some(d) = self.dests.get_mut(i) {
            d.ready.merge(ready);
        }
    }

    /// Destination `i`'s connect completed.
    pub(crate) fn on_connected(&mut self, i: usize) {
        if let Some(d) = self.dests.get_mut(i) {
            if matches!(d.phase, DestPhase::Connecting { .. }) {
                d.phase = DestPhase::Open;
            }
        }
    }

    /// Destination `i`'s connect failed.
    pub(crate) fn on_connect_failed(&mut self, i: usize, error: &std::io::Error) -> Action {
        self.connect_failed(i, connect_failure_reason(error))
    }

    fn connect_failed(&mut self, i: usize, reason: CloseReason) -> Action {
        if !self.dest_connecting(i) {
            return Action::Wait;
        }
        self.depart(i, DestEnd::ConnectFailed(reason), Closing::Graceful);
        if self.is_primary(i) {
            // As in a plain tunnel: the client is reset at once.
            return self.close(reason, Closing::Reset, Closing::Reset);
        }
        self.check_live(reason).unwrap_or(Action::Wait)
    }

    /// Destinations that left since the last call, for the reactor to close and count.
    pub(crate) fn take_departures(&mut self) -> Vec<Departure> {
        std::mem::take(&mut self.departures)
    }

    /// Bytes not yet counted: (read from the client, sent to the client), and per destination.
    pub(crate) fn take_unreported(&mut self) -> ((u64, u64), Vec<u64>) {
        let per_dest = self
            .dests
            .iter_mut()
            .map(|d| std::mem::take(&mut d.unreported))
            .collect();
        (std::mem::take(&mut self.unreported), per_dest)
    }

    /// Bytes of buffer memory the connection holds (the log and the reply pipe).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.log.held()
    }

    /// Relays what readiness allows: client bytes to every destination, replies back or away.
    pub(crate) fn drive<S: Transport>(
        &mut self,
        client: &mut S,
        dests: &mut [Option<S>],
        pools: &mut Pools,
        now: Instant,
    ) -> Action {
        if self.closed.is_some() {
            return Action::Wait;
        }
        let mut budget = DRIVE_BUDGET;
        let mut active = false;
        let mut yielded = false;
        let chunk = pools.buffers.buffer_size();
        loop {
            let mut progressed = false;
            // Every destination gets what it has not had, then its FIN once the client's is in.
            for i in 0..self.dests.len() {
                let Some(stream) = dests.get_mut(i).and_then(Option::as_mut) else {
                    continue;
                };
                match self.send(i, stream, &mut budget) {
                    Ok(moved) => progressed |= moved,
                    Err(()) => {
                        if let Some(action) = self.dest_failed(i) {
                            return action;
                        }
                    }
                }
            }
            // More from the client, while the pace-setter keeps up.
            let pace = self.pace_lag();
            let can_read = !self.client_eof
                && self.client.readable
                && pace.is_some_and(|lag| lag < chunk as u64);
            if can_read {
                if budget == 0 {
                    yielded = true;
                    break;
                }
                budget -= 1;
                let spare = self.log.spare(&mut pools.buffers);
                match step::read_into(client, spare, &mut self.client) {
                    Read::Eof => {
                        self.client_eof = true;
                        self.half_closed_since.get_or_insert(now);
                        progressed = true;
                    }
                    Read::Data(n) => {
                        self.log.filled(n);
                        self.unreported.0 += n as u64;
                        progressed = true;
                    }
                    Read::Idle => {}
                    Read::Failed(e) => {
                        tracing::debug!(error = %e, "client failed");
                        return self.close(
                            CloseReason::ClientReset,
                            Closing::Graceful,
                            Closing::Reset,
                        );
                    }
                }
                if let Some(action) = self.drop_laggards() {
                    return action;
                }
            }
            self.trim(pools);
            active |= progressed;
            if !progressed {
                break;
            }
            if budget == 0 {
                yielded = true;
                break;
            }
        }
        match self.replies(client, dests, pools, &mut budget) {
            Ok((moved, more)) => {
                active |= moved;
                yielded |= more;
            }
            Err(action) => return action,
        }
        if active {
            self.last_active = now;
        }
        if let Some(action) = self.finish_dests() {
            return action;
        }
        if self.all_done() {
            self.log.release(&mut pools.buffers);
            return self.close(CloseReason::Completed, Closing::Graceful, Closing::Graceful);
        }
        if yielded {
            Action::Again
        } else {
            Action::Wait
        }
    }

    /// Sends destination `i` what it lacks, then FIN; true if a byte or a FIN went out.
    fn send<S: Transport>(
        &mut self,
        i: usize,
        stream: &mut S,
        budget: &mut u32,
    ) -> Result<bool, ()> {
        let head = self.log.head();
        let client_eof = self.client_eof;
        let d = &mut self.dests[i];
        if !d.open() {
            return Ok(false);
        }
        let mut moved = false;
        while d.ready.writable && d.sent < head && *budget > 0 {
            let bytes = self.log.from(d.sent);
            if bytes.is_empty() {
                break; // Cannot happen: every position below the head is held.
            }
            *budget -= 1;
            match step::write_from(stream, bytes, &mut d.ready.writable) {
                Write::Wrote(n) => {
                    d.sent += n as u64;
                    d.unreported += n as u64;
                    moved = true;
                }
                Write::Idle => {}
                Write::Failed(e) => {
                    tracing::debug!(dest = i, error = %e, "destination failed");
                    return Err(());
                }
            }
        }
        if client_eof && d.sent == head && !d.fin_sent && *budget > 0 {
            *budget -= 1;
            match step::end_stream(stream, &mut d.ready.writable) {
                End::Done => {
                    d.fin_sent = true;
                    moved = true;
                }
                // Tried again at the next drive, once writable.
                End::Idle => {}
                End::Failed(e) => {
                    tracing::debug!(dest = i, error = %e, "destination failed");
                    return Err(());
                }
            }
        }
        Ok(moved)
    }

    /// Destinations that have every byte, the FIN, and whose replies are over leave cleanly.
    fn finish_dests(&mut self) -> Option<Action> {
        for i in 0..self.dests.len() {
            let d = &self.dests[i];
            if !d.open() || !d.fin_sent || !d.eof {
                continue;
            }
            if self.is_primary(i) && self.down.state() != PipeState::Done {
                continue; // Its last reply bytes are still on their way to the client.
            }
            self.depart(i, DestEnd::Finished, Closing::Graceful);
        }
        None
    }

    /// True once the client has finished both ways and no destination is left.
    fn all_done(&self) -> bool {
        let replies_done = match self.fan.reply {
            Reply::Primary => self.down.state() == PipeState::Done || !self.dests[0].live(),
            Reply::None => self.client_fin_sent,
        };
        self.client_eof && replies_done && self.dests.iter().all(|d| !d.live())
    }

    /// Destination `i` failed mid-stream: it leaves with a reset; for the primary, or when too
    /// few are left, the whole connection ends.
    fn dest_failed(&mut self, i: usize) -> Option<Action> {
        self.depart(i, DestEnd::Failed, Closing::Reset);
        if self.is_primary(i) {
            return Some(self.close(CloseReason::UpstreamReset, Closing::Reset, Closing::Reset));
        }
        self.check_live(CloseReason::UpstreamReset)
    }

    fn is_primary(&self, i: usize) -> bool {
        i == 0 && self.fan.reply == Reply::Primary
    }

    fn depart(&mut self, i: usize, end: DestEnd, closing: Closing) {
        let Some(d) = self.dests.get_mut(i) else {
            return;
        };
        if !d.live() {
            return;
        }
        d.phase = DestPhase::Ended(end);
        self.departures.push(Departure {
            dest: i,
            end,
            closing,
        });
    }

    /// An operator or the proxy ends the connection.
    pub(crate) fn abort(&mut self, reason: CloseReason) -> Action {
        self.close(reason, Closing::Reset, Closing::Reset)
    }

    /// An operator took destination `i` out (disabled or removed its backend): it leaves with a
    /// reset; for the primary, the whole connection ends.
    pub(crate) fn remove_dest(&mut self, i: usize) -> Option<Action> {
        if !self.dest_live(i) {
            return None;
        }
        self.depart(i, DestEnd::Failed, Closing::Reset);
        if self.is_primary(i) {
            return Some(self.close(CloseReason::BackendRemoved, Closing::Reset, Closing::Reset));
        }
        self.check_live(CloseReason::BackendRemoved)
    }

    /// Gives back the log's buffers; call when the connection is removed.
    pub(crate) fn release(&mut self, pools: &mut Pools) {
        self.log.release(&mut pools.buffers);
    }

    fn close(&mut self, reason: CloseReason, client: Closing, dests: Closing) -> Action {
        if dests == Closing::Graceful {
            // A graceful end (a timeout) must not pass a cut-short stream off as whole: a
            // destination that has not had every byte and the FIN is reset.
            for i in 0..self.dests.len() {
                if self.dests[i].live() && !self.dests[i].fin_sent {
                    self.depart(i, DestEnd::CutShort, Closing::Reset);
                }
            }
        }
        self.closed = Some(reason);
        Action::Close {
            reason,
            client,
            upstream: dests,
        }
    }
}
