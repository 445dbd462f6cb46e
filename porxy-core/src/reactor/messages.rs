//! What other threads ask of a reactor ([`ReactorMsg`], over its mailbox), and how it answers,
//! a bounded number per round.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Sender, TryRecvError};
use tracing::debug;

use super::{Accepted, Origin, Reactor, MESSAGES_PER_ROUND};
use crate::accept::ListenSocket;
use crate::balance::backend::Backend;
use crate::conn::close::CloseReason;
use crate::session::Session;
use crate::tunnel::Tunnel;

/// What other threads ask of a reactor.
pub(crate) enum ReactorMsg {
    /// Take over a freshly accepted client.
    Adopt(Accepted),
    /// Accept from this listening socket too (when reactors accept).
    Listen(Arc<ListenSocket>),
    /// Stop accepting from the listening socket with this id, and let go of it.
    Unlisten(usize),
    /// Close now every connection that came in on this listen address, through whichever
    /// tunnel (listening still or closed); how many goes to `done`.
    CloseListen {
        local: SocketAddr,
        done: Sender<usize>,
    },
    /// Close every connection on this backend at this moment (now, if it has passed).
    CloseBackend { backend: Arc<Backend>, at: Instant },
    /// Finish: when every connection has ended, or at the deadline (`None`: at once).
    Stop { deadline: Option<Instant> },
    /// Hand the connections over to `to` (see `export.rs`), until `until` at the latest; a
    /// stopping reactor then holds on, even with no connection left, until `Release`.
    Export { to: Sender<Session>, until: Instant },
    /// End the export now; what has not left stays here.
    EndExport,
    /// The export's caller is done: a stopping reactor may end once it has no connection.
    Release,
    /// Take in a connection handed over from another process (or given back), on `tunnel`, as
    /// connection `id`.
    Import {
        session: Box<Session>,
        tunnel: Arc<Tunnel>,
        id: u64,
    },
}

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
                        self.backend_deadlines.push((at, backend));
                    }
                }
                Ok(ReactorMsg::Stop { deadline }) => {
                    debug!(
                        reactor = self.index,
                        open = self.slots.len(),
                        "reactor stopping"
                    );
                    self.stopping = self.stopping.merge(deadline);
                    // Out of the epoll now: after an upgrade the new process accepts instead.
                    self.unlisten_all();
                }
                Ok(ReactorMsg::Export { to, until }) => self.begin_export(to, until, now),
                Ok(ReactorMsg::EndExport) => self.exporting = None,
                Ok(ReactorMsg::Release) => {
                    self.exporting = None;
                    self.holding = false;
                }
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
