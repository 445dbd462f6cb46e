//! The replies of a fan-out connection's destinations: the primary's go to the client through
//! a pipe, as in a plain tunnel; every other one is read and thrown away, so that a chatty
//! destination cannot block; with `reply=none` the client hears FIN once no destination can
//! say more.

use std::time::Instant;

use super::{Dest, FanConn};
use crate::conn::close::CloseReason;
use crate::conn::hold::Pools;
use crate::conn::pipe::PipeError;
use crate::conn::step::{self, End, Read};
use crate::conn::transport::Transport;
use crate::conn::{Action, Closing, DRIVE_BUDGET};
use crate::spec::Reply;

impl FanConn {
    /// Replies: the primary's to the client, every other one thrown away. Returns whether
    /// anything moved, and whether the budget ran out with work left.
    pub(super) fn replies<S: Transport>(
        &mut self,
        client: &mut S,
        dests: &mut [Option<S>],
        pools: &mut Pools,
        budget: &mut u32,
    ) -> Result<(bool, bool), Action> {
        let mut moved = false;
        let mut yielded = false;
        *budget = (*budget).max(DRIVE_BUDGET / 4);
        let primary = self.fan.reply == Reply::Primary;
        if primary && self.dests.first().is_some_and(Dest::open) {
            if let Some(Some(stream)) = dests.first_mut() {
                let d = &mut self.dests[0];
                let (pumped, result) = self.down.pump(
                    stream,
                    &mut d.ready,
                    client,
                    &mut self.client,
                    pools,
                    budget,
                    u64::MAX,
                );
                self.unreported.1 += pumped.moved;
                moved |= pumped.moved + pumped.read > 0 || pumped.finished;
                yielded |= pumped.yielded;
                if pumped.finished {
                    d.eof = true;
                    self.half_closed_since.get_or_insert(Instant::now());
                }
                match result {
                    Ok(()) => {}
                    Err(PipeError::Source(e)) => {
                        tracing::debug!(error = %e, "primary failed");
                        return Err(self.dest_failed(0).unwrap_or(Action::Wait));
                    }
                    Err(PipeError::Sink(e)) => {
                        tracing::debug!(error = %e, "client failed");
                        return Err(self.close(
                            CloseReason::ClientReset,
                            Closing::Graceful,
                            Closing::Reset,
                        ));
                    }
                }
            }
        }
        let first_discarded = usize::from(primary);
        let mut scratch = None;
        for i in first_discarded..self.dests.len() {
            let Some(stream) = dests.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            let d = &mut self.dests[i];
            let mut failed = false;
            // After its EOF, a destination is read again only when the poller reports a fault,
            // so that a reset is noticed without a write.
            while d.open() && d.ready.readable && (!d.eof || d.ready.failed) {
                if *budget == 0 {
                    yielded = true;
                    break;
                }
                *budget -= 1;
                let buf = scratch.get_or_insert_with(|| pools.buffers.take());
                match step::read_into(stream, buf.spare(), &mut d.ready) {
                    Read::Eof if d.eof => {
                        // Nothing wrong after all: a hang-up after its FIN.
                        d.ready.failed = false;
                        d.ready.readable = false;
                    }
                    Read::Eof => {
                        d.eof = true;
                        moved = true;
                    }
                    Read::Data(_) => moved = true,
                    Read::Idle => {}
                    Read::Failed(e) => {
                        tracing::debug!(dest = i, error = %e, "destination failed");
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                if let Some(action) = self.dest_failed(i) {
                    if let Some(buf) = scratch.take() {
                        pools.buffers.give(buf);
                    }
                    return Err(action);
                }
            }
        }
        if let Some(buf) = scratch {
            pools.buffers.give(buf);
        }
        // One-way feed: the client hears FIN once no destination can say anything more.
        if !primary && !self.client_fin_sent && self.dests.iter().all(|d| !d.live() || d.eof) {
            match step::end_stream(client, &mut self.client.writable) {
                End::Done => {
                    self.client_fin_sent = true;
                    self.half_closed_since.get_or_insert(Instant::now());
                    moved = true;
                }
                // Tried again at the next drive, once writable.
                End::Idle => {}
                End::Failed(e) => {
                    tracing::debug!(error = %e, "client failed");
                    return Err(self.close(
                        CloseReason::ClientReset,
                        Closing::Graceful,
                        Closing::Reset,
                    ));
                }
            }
        }
        Ok((moved, yielded))
    }
}
