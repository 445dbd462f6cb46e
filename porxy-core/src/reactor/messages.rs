//! How a reactor answers what other threads ask of it ([`ReactorMsg`]), a bounded number per
//! round.

use std::time::Instant;

use crossbeam_channel::TryRecvError;
use tracing::debug;

use super::accepted::Origin;
use super::mail::ReactorMsg;
use super::{Reactor, MESSAGES_PER_ROUND};
use crate::conn::close::CloseReason;

impl Reactor {
    /// Handles the messages waiting, at most [`MESSAGES_PER_ROUND`]; more are left for the
    /// next round (`more_messages`).
    pub(super) fn handle_messages(&mut self, now: Instant) {
        self.more_messages = false;
        for _ in 0..MESSAGES_PER_ROUND {
            match self.rx.try_recv() {
                Ok(ReactorMsg::Adopt(accepted)) => self.adopt(accepted, Origin::Accepted, now),
                Ok(ReactorMsg::Listen(socket)) => self.listen(socket),
                Ok(ReactorMsg::Unlisten(id)) => self.unlisten(id),
                Ok(ReactorMsg::CloseListen { local, done }) => {
                    let closed = self.abort_where(
                        |s| s.tunnel.local == local,
                        CloseReason::TunnelClosed,
                        now,
                    );
                    let _ = done.send(closed);
                }
                Ok(ReactorMsg::CloseBackend { backend, at }) => {
                    if at <= now {
                        self.remove_backend(&backend, now);
                    } else {
                        self.removals.schedule(at, backend);
                    }
                }
                Ok(ReactorMsg::Stop { deadline }) => {
                    debug!(
                        reactor = self.counts.shard(),
                        open = self.slots.len(),
                        "reactor stopping"
                    );
                    self.stopping = self.stopping.merge(deadline);
                    // Out of the epoll now: after an upgrade the new process accepts instead.
                    self.unlisten_all();
                }
                Ok(ReactorMsg::Export { to, until }) => self.begin_export(to, until, now),
                Ok(ReactorMsg::EndExport) => self.handing_over.end(),
                Ok(ReactorMsg::Ping { index, answer }) => {
                    let _ = answer.send(index);
                }
                Ok(ReactorMsg::Release) => self.handing_over.release(),
                Ok(ReactorMsg::Import {
                    session,
                    tunnel,
                    id,
                }) => self.import(*session, tunnel, id, now),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    // Every sender is gone: nobody can stop us any other way.
                    self.stopping = self.stopping.orphaned();
                    return;
                }
            }
        }
        self.more_messages = true;
    }
}
