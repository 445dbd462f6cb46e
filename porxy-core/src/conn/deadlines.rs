//! A relayed connection's clock: when something must happen if nothing else does (the queue,
//! connect and handshake timeouts; the idle and half-closed timeouts; a bandwidth limit's next
//! share), and what a deadline that came does.

use std::time::Instant;

use super::close::CloseReason;
use super::pipe::{Pipe, PipeState};
use super::{Action, Closing, Conn, Phase};
use crate::config::TunnelSettings;

impl Conn {
    /// The earliest moment something must happen if nothing else does.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Queued => Some(self.since + self.settings.queue_timeout),
            Phase::Connecting | Phase::Handshaking => {
                Some(self.since + self.settings.connect_timeout)
            }
            Phase::Relaying => {
                let idle = self.last_active + self.settings.idle_timeout;
                let held_back = self.throttle.as_ref().and_then(|t| t.deadline());
                Some(
                    [self.half_closed_until(), held_back]
                        .into_iter()
                        .flatten()
                        .fold(idle, Instant::min),
                )
            }
            Phase::Closed(_) => None,
        }
    }

    /// Checks the deadlines at `now`; closes the connection if one has passed.
    pub(crate) fn on_timer(&mut self, now: Instant) -> Action {
        match self.phase {
            Phase::Queued if now >= self.since + self.settings.queue_timeout => {
                self.give_up(CloseReason::QueueTimeout)
            }
            Phase::Connecting | Phase::Handshaking
                if now >= self.since + self.settings.connect_timeout =>
            {
                Action::ConnectFailed(self.connect_attempt_failed(CloseReason::ConnectTimeout))
            }
            Phase::Relaying => {
                match relay_timeout(
                    &self.settings,
                    self.last_active,
                    self.half_closed_until(),
                    now,
                ) {
                    // A side whose bytes are still held loses them: it is reset, so that it
                    // cannot take what it got for the whole stream.
                    Some(reason) => {
                        let closing = |pipe: &Pipe| match pipe.held() {
                            0 => Closing::Graceful,
                            _ => Closing::Reset,
                        };
                        let (client, upstream) = (closing(&self.down), closing(&self.up));
                        self.close(reason, client, upstream)
                    }
                    // A direction held back by its bandwidth limit may read again.
                    None if self.throttle.as_mut().is_some_and(|t| t.on_timer(now)) => {
                        Action::Again
                    }
                    None => Action::Wait,
                }
            }
            _ => Action::Wait,
        }
    }

    /// When it became half-closed, if it is.
    pub(super) fn half_closed_since(&self) -> Option<Instant> {
        self.half_closed.then_some(self.since)
    }

    /// One direction is over, at `now` (if none was before).
    pub(super) fn mark_half_closed(&mut self, now: Instant) {
        if !self.half_closed {
            self.half_closed = true;
            self.since = now;
        }
    }

    /// When the half-closed timeout ends the connection, if one side only has sent its FIN:
    /// the client's (client → upstream no longer open) starts `client_fin_timeout`, the
    /// upstream's `server_fin_timeout` (see [`TunnelSettings::fin_timeout`]).
    fn half_closed_until(&self) -> Option<Instant> {
        let since = self.half_closed_since()?;
        let client_fin = self.up.state() != PipeState::Open;
        let server_fin = self.down.state() != PipeState::Open;
        Some(since + self.settings.fin_timeout(client_fin, server_fin)?)
    }
}

/// The relay timeout that has passed at `now`, if any: half-closed past `half_closed_until`
/// (the half-closed timeout that applies, from when the connection became half-closed), or
/// idle for too long. Relayed and fan-out connections share it.
pub(crate) fn relay_timeout(
    settings: &TunnelSettings,
    last_active: Instant,
    half_closed_until: Option<Instant>,
    now: Instant,
) -> Option<CloseReason> {
    if half_closed_until.is_some_and(|until| now >= until) {
        return Some(CloseReason::HalfClosedTimeout);
    }
    (now >= last_active + settings.idle_timeout).then_some(CloseReason::IdleTimeout)
}
