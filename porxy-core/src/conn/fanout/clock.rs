//! A fan-out connection's clock: the earliest moment something must happen (a connect, the
//! idle or half-closed timeout), and what happens then.

use std::time::Instant;

use super::{DestPhase, FanConn};
use crate::conn::close::CloseReason;
use crate::conn::pipe::PipeState;
use crate::conn::{relay_timeout, Action, Closing};
use crate::spec::Reply;

impl FanConn {
    /// The earliest moment something must happen if nothing else does.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let connect = self
            .dests
            .iter()
            .filter_map(|d| match d.phase {
                DestPhase::Connecting { since } => Some(since + self.settings.connect_timeout),
                _ => None,
            })
            .min();
        let idle = self.last_active + self.settings.idle_timeout;
        [connect, Some(idle), self.half_closed_until()]
            .into_iter()
            .flatten()
            .min()
    }

    /// When the half-closed timeout ends the connection, if one side only has sent its FIN:
    /// the client's starts `client_fin_timeout`; the server side's starts `server_fin_timeout`.
    /// The server side is the primary with `reply=primary` (a mirror's FIN says nothing about
    /// what the client waits for), and the FIN porxy sends the client once no destination can
    /// reply any more with `reply=none`.
    pub(super) fn half_closed_until(&self) -> Option<Instant> {
        let since = self.half_closed_since?;
        let server_fin = match self.fan.reply {
            Reply::Primary => self.down.state() != PipeState::Open,
            Reply::None => self.client_fin_sent,
        };
        Some(since + self.settings.fin_timeout(self.client_eof, server_fin)?)
    }

    /// Checks the deadlines at `now`: connects that took too long fail; an idle or too long
    /// half-closed connection ends.
    pub(crate) fn on_timer(&mut self, now: Instant) -> Action {
        if self.closed.is_some() {
            return Action::Wait;
        }
        for i in 0..self.dests.len() {
            if let DestPhase::Connecting { since } = self.dests[i].phase {
                if now >= since + self.settings.connect_timeout {
                    let action = self.connect_failed(i, CloseReason::ConnectTimeout);
                    if matches!(action, Action::Close { .. }) {
                        return action;
                    }
                }
            }
        }
        match relay_timeout(
            &self.settings,
            self.last_active,
            self.half_closed_until(),
            now,
        ) {
            Some(reason) => self.close(reason, Closing::Graceful, Closing::Graceful),
            None => Action::Wait,
        }
    }
}
