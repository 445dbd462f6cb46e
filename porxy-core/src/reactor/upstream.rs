//! Getting a connection to a backend: choose one, connect without blocking, move on to another
//! when a connect fails, and wait in the queue while every backend is full.
//!
//! The connection's state machine decides whether another attempt is allowed
//! ([`Action::Reconnect`]); the balancer decides which backend. Every connect result also feeds
//! passive health: failures in a row take a backend down, a success brings it back.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

use super::handover::Exported;
use super::socket::Socket;
use mio::Registry;
use tracing::{debug, info};

use super::{token, Reactor, Slot};
use crate::balance::backend::Backend;
use crate::balance::Pick;
use crate::conn::close::CloseReason;
use crate::conn::{Action, AfterConnectFailure, ConnectFailure, Phase, Readiness, Side};

/// Where a connection stands after [`Reactor::assign_backend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Assigned {
    Connecting,
    Queued,
    Closed,
    /// It waited for a backend during an export, and left.
    HandedOver,
}

impl Reactor {
    /// Finds a backend for connection `key` (new, queued, or whose last connect failed with
    /// `failed`), reserves a slot on it and starts connecting. Failures of the connect call
    /// itself move on to the next backend while attempts remain.
    pub(super) fn assign_backend(
        &mut self,
        key: usize,
        mut failed: Option<CloseReason>,
        now: Instant,
    ) -> Assigned {
        // Every pick marks its backend tried, so this ends within one round of the backends.
        loop {
            let Some(slot) = self.slab.get_mut(key) else {
                return Assigned::Closed;
            };
            match slot.tunnel.balancer.pick(slot.peer.ip(), &slot.tried, now) {
                Pick::Chosen(index) => {
                    slot.tried.add(index);
                    slot.backend = Some(index);
                    let addr = slot.tunnel.balancer.backends[index].addr;
                    slot.span.record("upstream", tracing::field::display(addr));
                    let token = token::token(key, Side::Upstream);
                    match start_connect(self.poll.registry(), addr, token) {
                        Ok(stream) => {
                            slot.upstream = Some(Socket::Tcp(stream));
                            slot.conn.restart_connect(now);
                            self.arm_timer(key);
                            return Assigned::Connecting;
                        }
                        Err(error) => {
                            let failure = slot.conn.on_connect_failed(&error);
                            match self.after_connect_failure(key, failure, Some(&error), now) {
                                Some(reason) => failed = Some(reason),
                                None => return Assigned::Closed,
                            }
                        }
                    }
                }
                Pick::AllFull => {
                    let id = slot.id;
                    if slot.conn.phase() != Phase::Queued {
                        slot.conn.enqueue(now);
                    }
                    if self.export(key, now) == Exported::Left {
                        return Assigned::HandedOver;
                    }
                    if !self.queued.iter().any(|&(k, i)| k == key && i == id) {
                        self.queued.push_back((key, id));
                    }
                    self.arm_timer(key);
                    return Assigned::Queued;
                }
                Pick::NoneInService => {
                    let action = slot.conn.give_up(failed.unwrap_or(CloseReason::NoBackend));
                    self.finish(key, action, None, now);
                    return Assigned::Closed;
                }
            }
        }
    }

    /// The upstream socket of a connecting connection signalled: see how the connect went.
    pub(super) fn check_connect(&mut self, key: usize, now: Instant) {
        let Some(slot) = self.slab.get_mut(key) else {
            return;
        };
        let Some(stream) = &slot.upstream else {
            return;
        };
        match connect_outcome(stream, slot.conn.upstream_readiness()) {
            ConnectOutcome::Pending => {}
            ConnectOutcome::Connected => {
                if let Some(backend) = slot.backend.map(|i| &slot.tunnel.balancer.backends[i]) {
                    Reactor::connect_succeeded(&slot.tunnel, backend);
                }
                slot.span.in_scope(|| debug!("upstream connected"));
                slot.conn.on_connected(now);
                // During an export, a connection leaves as soon as it relays, before any byte.
                if self.export(key, now) == Exported::Left {
                    return;
                }
                // The client may have sent bytes while we connected.
                self.drive(key, now);
            }
            ConnectOutcome::Failed(error) => {
                let failure = slot.conn.on_connect_failed(&error);
                if let Some(failed) = self.after_connect_failure(key, failure, Some(&error), now) {
                    self.assign_backend(key, Some(failed), now);
                }
            }
        }
    }

    /// A connect attempt failed (`failure`, as the connection judged it): count it against the
    /// backend (unless it was porxy's own shortage), give the backend's slot back, and close the
    /// connection if no attempt is left. Returns the failure's reason when the connection is to
    /// try another backend.
    pub(super) fn after_connect_failure(
        &mut self,
        key: usize,
        failure: ConnectFailure,
        error: Option<&io::Error>,
        now: Instant,
    ) -> Option<CloseReason> {
        let slot = self.slab.get_mut(key)?;
        slot.upstream = None;
        let ConnectFailure { failed, next } = failure;
        // porxy's own shortage (descriptors, ports) is not the backend's failure.
        if failed != CloseReason::LocalResource {
            let tunnel = slot.tunnel.clone();
            let backend = slot.backend.map(|i| tunnel.balancer.backends[i].clone());
            self.connect_failed(&tunnel, backend.as_deref(), failed, error, now);
        }
        let slot = self.slab.get_mut(key)?;
        if release_backend(slot) {
            self.retry_queue = true;
        }
        match next {
            AfterConnectFailure::TryAnother => {
                let slot = &self.slab[key];
                slot.span.in_scope(
                    || debug!(reason = %failed, "connect failed; trying another backend"),
                );
                Some(failed)
            }
            AfterConnectFailure::Close { client, upstream } => {
                let close = Action::Close {
                    reason: failed,
                    client,
                    upstream,
                };
                self.finish(key, close, error, now);
                None
            }
        }
    }

    /// Gives queued connections the slots that may have freed up, oldest first; each waiting
    /// connection is looked at once per round.
    pub(super) fn serve_queue(&mut self, now: Instant) {
        self.retry_queue = false;
        for _ in 0..self.queued.len() {
            let Some((key, id)) = self.queued.pop_front() else {
                break;
            };
            let waiting = self
                .slab
                .get(key)
                .is_some_and(|s| s.id == id && s.conn.phase() == Phase::Queued);
            if !waiting {
                continue; // Timed out or closed meanwhile.
            }
            // Still full, it goes back to the end: the waiting connections keep their order,
            // and one tunnel's full backends hold up no other tunnel's clients.
            self.assign_backend(key, None, now);
        }
    }

    /// Gives back the backend slot a closing connection holds.
    pub(super) fn release_backend(&mut self, slot: &mut Slot) {
        if release_backend(slot) {
            self.retry_queue = true;
        }
    }
}

/// Gives back `slot`'s backend slot, if it holds one; true if it did.
fn release_backend(slot: &mut Slot) -> bool {
    let Some(index) = slot.backend.take() else {
        return false;
    };
    let backend: &Arc<Backend> = &slot.tunnel.balancer.backends[index];
    backend.release();
    report_removal(slot.tunnel.local, backend);
    true
}

/// After a slot of `backend` was given back: if that was the last connection of a backend being
/// removed, says so (once), as the operator was promised.
pub(super) fn report_removal(tunnel: SocketAddr, backend: &Backend) {
    if backend.removal_done() {
        info!(%tunnel, backend = %backend.addr, "backend removed: its last connection has ended");
    }
}

/// Starts a non-blocking connect to `addr`, registered under `token`.
pub(super) fn start_connect(
    registry: &Registry,
    addr: SocketAddr,
    token: mio::Token,
) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    let _ = stream.set_nodelay(true);
    registry.register(&mut stream, token, super::SOCKET_INTEREST)?;
    Ok(stream)
}

/// Where a non-blocking connect stands after the socket signalled.
pub(super) enum ConnectOutcome {
    Pending,
    Connected,
    Failed(io::Error),
}

/// How a non-blocking connect stands, given what the poller has reported for the socket since
/// the connect began.
///
/// On Linux a connecting TCP socket is reported writable only once the handshake is done (no
/// `EPOLLOUT` in `SYN_SENT`), and a failed one with an error or a hang-up; so writable without
/// either means connected, and two syscalls per connection are saved. Anything else takes the
/// portable recipe: `SO_ERROR` first, then `peer_addr` to tell a completed connect from a
/// spurious wake-up.
pub(super) fn connect_outcome(stream: &Socket, ready: Readiness) -> ConnectOutcome {
    let stream = stream.tcp();
    if cfg!(target_os = "linux") && ready.writable && !ready.failed {
        return ConnectOutcome::Connected;
    }
    match stream.take_error() {
        Ok(Some(error)) => return ConnectOutcome::Failed(error),
        Err(error) => return ConnectOutcome::Failed(error),
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(_) => ConnectOutcome::Connected,
        Err(e) if e.kind() == ErrorKind::NotConnected => ConnectOutcome::Pending,
        Err(e) => ConnectOutcome::Failed(e),
    }
}
