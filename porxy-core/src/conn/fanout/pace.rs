//! The pace of a fan-out connection: which destination sets it (the primary, or the one
//! furthest ahead), which ones fall so far behind that they are dropped, how few may be left,
//! and how much of the client's log can be let go.

use super::{DestEnd, DestPhase, FanConn};
use crate::conn::close::CloseReason;
use crate::conn::hold::Pools;
use crate::conn::{Action, Closing};
use crate::spec::Reply;

impl FanConn {
    /// Drops every destination, other than the pace-setter, more than `max_lag` behind.
    pub(super) fn drop_laggards(&mut self) -> Option<Action> {
        let head = self.log.head();
        let max_lag = self.fan.max_lag as u64;
        let pacer = self.pacer();
        for i in 0..self.dests.len() {
            let d = &self.dests[i];
            if Some(i) == pacer || !d.live() || head - d.sent <= max_lag {
                continue;
            }
            tracing::debug!(
                dest = i,
                behind = head - d.sent,
                "destination dropped: too far behind"
            );
            self.depart(i, DestEnd::Lagged, Closing::Reset);
        }
        self.check_live(CloseReason::UpstreamReset)
    }

    /// Ends the connection when fewer than `min_live` destinations are left (finished ones
    /// count as alive).
    pub(super) fn check_live(&mut self, reason: CloseReason) -> Option<Action> {
        let alive = self
            .dests
            .iter()
            .filter(|d| d.live() || d.phase == DestPhase::Ended(DestEnd::Finished))
            .count();
        if alive < self.fan.min_live as usize {
            return Some(self.close(reason, Closing::Reset, Closing::Reset));
        }
        None
    }

    /// The destination whose pace the client is read at: the primary, or the live one furthest
    /// ahead.
    pub(super) fn pacer(&self) -> Option<usize> {
        match self.fan.reply {
            Reply::Primary => self.dests.first().filter(|d| d.live()).map(|_| 0),
            Reply::None => self
                .dests
                .iter()
                .enumerate()
                .filter(|(_, d)| d.live())
                .max_by_key(|(_, d)| d.sent)
                .map(|(i, _)| i),
        }
    }

    /// How far the pace-setter is behind the client, if there is one.
    pub(super) fn pace_lag(&self) -> Option<u64> {
        self.pacer().map(|i| self.log.head() - self.dests[i].sent)
    }

    /// Frees the log up to the live destination furthest behind.
    pub(super) fn trim(&mut self, pools: &mut Pools) {
        let behind = self
            .dests
            .iter()
            .filter(|d| d.live())
            .map(|d| d.sent)
            .min()
            .unwrap_or(self.log.head());
        self.log.trim(behind, &mut pools.buffers);
    }
}
