//! Getting a connection to a backend: choose one, connect without blocking, move on to another
//! when a connect fails, and wait in the queue while every backend is full.
//!
//! The connection's state machine decides whether another attempt is allowed
//! ([`Action::Reconnect`]); the balancer decides which backend. Every connect result also feeds
//! passive health: failures in a row take a backend down, a success brings it back.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::Registry;
use tracing::debug;

use super::socket::Socket;
use super::{token, Reactor};
use crate::balance::Pick;
use crate::conn::close::CloseReason;
use crate::conn::machine::SocketIx;
use crate::conn::{Action, AfterConnectFailure, ConnectFailure, Phase, Readiness};
use crate::tls::stream::TlsStream;

impl Reactor {
    /// Finds a backend for relayed connection `key` (new, queued, or whose last connect failed
    /// with `failed`), reserves a slot on it and starts connecting. Failures of the connect
    /// call itself move on to the next backend while attempts remain.
    pub(super) fn assign_backend(&mut self, key: usize, failed: Option<CloseReason>, now: Instant) {
        self.pick_backend(key, failed, now, false);
    }

    /// [`Reactor::assign_backend`]; `from_queue` for a connection that waited already, whose
    /// wait was counted when it began.
    fn pick_backend(
        &mut self,
        key: usize,
        mut failed: Option<CloseReason>,
        now: Instant,
        from_queue: bool,
    ) {
        // Every pick marks its backend tried, so this ends within one round of the backends.
        loop {
            let Some(slot) = self.slots.get_mut(key) else {
                return;
            };
            let Some(tried) = slot.upstreams.tried() else {
                return; // A fan-out connection picks no backend.
            };
            match slot.tunnel.balancer.pick(slot.peer.ip(), tried, now) {
                Pick::Chosen(index) => {
                    slot.upstreams.picked(index);
                    let addr = slot.tunnel.balancer.backends[index].addr;
                    slot.span.record("upstream", tracing::field::display(addr));
                    let token = token::token(key, SocketIx::Upstream(0));
                    // A TLS backend's session is made with the connect; its handshake follows
                    // it (`Phase::Handshaking`).
                    let started =
                        start_connect(self.poll.registry(), addr, token).and_then(|stream| {
                            let client_alpn = match &slot.client {
                                Socket::Tls(tls) => tls.alpn_protocol(),
                                _ => None,
                            };
                            match slot.tunnel.backend_tls.as_ref() {
                                None => Ok(Socket::Tcp(stream)),
                                Some(tls) => match tls.session(index, client_alpn) {
                                    Some(Ok(session)) => Ok(Socket::Tls(Box::new(
                                        TlsStream::client(stream, session),
                                    ))),
                                    Some(Err(e)) => Err(io::Error::other(e)),
                                    None => Ok(Socket::Tcp(stream)),
                                },
                            }
                        });
                    match started {
                        Ok(socket) => {
                            slot.upstreams.connecting(0, socket);
                            if let Some(conn) = slot.machine.relay() {
                                conn.restart_connect(now);
                            }
                            self.slots.arm_timer(key);
                            return;
                        }
                        Err(error) => {
                            let Action::ConnectFailed(failure) =
                                slot.machine.on_connect_failed(0, &error)
                            else {
                                return;
                            };
                            match self.after_connect_failure(key, failure, Some(&error), now) {
                                Some(reason) => failed = Some(reason),
                                None => return,
                            }
                        }
                    }
                }
                Pick::AllFull => {
                    let id = slot.id;
                    if let Some(conn) = slot.machine.relay() {
                        if conn.phase() != Phase::Queued {
                            conn.enqueue(now);
                        }
                    }
                    if !from_queue {
                        self.counts.queued(&slot.tunnel);
                    }
                    self.queue.wait(key, id);
                    // It waits: for a slot, up to the queue timeout; or, during an export, in
                    // the process it goes to.
                    self.after_step(key, Action::Wait, None, now);
                    return;
                }
                Pick::NoneInService => {
                    let reason = failed.unwrap_or(CloseReason::NoBackend);
                    if let Some(conn) = slot.machine.relay() {
                        let action = conn.give_up(reason);
                        self.finish(key, action, None, now);
                    }
                    return;
                }
            }
        }
    }

    /// Upstream `i` of connection `key` signalled `ready` while connecting: see how the
    /// connect went.
    pub(super) fn check_connect(&mut self, key: usize, i: usize, ready: Readiness, now: Instant) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let Some(stream) = slot.upstreams.socket(i) else {
            return;
        };
        match connect_outcome(stream, ready) {
            ConnectOutcome::Pending => {}
            ConnectOutcome::Connected => {
                let mut header = None;
                // A relayed connection knows when this attempt began (fan-out ones: not kept).
                let began = slot.machine.relay().and_then(|conn| conn.connect_began());
                if let Some((index, backend)) = slot.upstreams.backend(i, &slot.tunnel) {
                    Reactor::connect_succeeded(&slot.tunnel, backend);
                    if let Some(began) = began {
                        let took = now.saturating_duration_since(began);
                        backend.connected_after(took);
                        slot.tally.connected_after(took);
                    }
                    if slot.tunnel.fanout.is_none() {
                        header = slot.proxy_header_to(index);
                    }
                }
                let addr = slot.upstreams.addr(i, &slot.tunnel);
                slot.span
                    .in_scope(|| debug!(upstream = ?addr, "upstream connected"));
                let tls = slot
                    .upstreams
                    .sockets_mut()
                    .get_mut(i)
                    .and_then(Option::as_mut)
                    .and_then(|socket| match socket {
                        Socket::Tls(tls) => Some(tls),
                        Socket::Tcp(_) => None,
                    });
                if let Some(tls) = tls {
                    // A PROXY header goes in the clear, ahead of the ClientHello.
                    tls.set_preface(header.unwrap_or_default());
                    if let Some(conn) = slot.machine.relay() {
                        conn.on_connected_handshaking(now);
                    }
                } else {
                    let connected =
                        slot.machine
                            .on_connected(i, now, header.as_deref(), &mut self.pools);
                    if let Some(close) = connected {
                        return self.after_step(key, close, None, now);
                    }
                }
                slot.limit_bandwidth(now);
                // Drive at once: the client may have sent bytes while it connected. (During an
                // export, the step's funnel sends it off after this first drive, with what it
                // read.)
                self.drive(key, now);
            }
            ConnectOutcome::Failed(error) => {
                slot.span
                    .in_scope(|| debug!(upstream = i, error = %error, "connect failed"));
                let action = slot.machine.on_connect_failed(i, &error);
                self.after_step(key, action, Some(&error), now);
            }
        }
    }

    /// A relayed connection's connect attempt failed (`failure`, as the connection judged
    /// it): count it against the backend (unless it was porxy's own shortage), give the
    /// backend's slot back, and close the connection if no attempt is left. Returns the
    /// failure's reason when the connection is to try another backend.
    pub(super) fn after_connect_failure(
        &mut self,
        key: usize,
        failure: ConnectFailure,
        error: Option<&io::Error>,
        now: Instant,
    ) -> Option<CloseReason> {
        let slot = self.slots.get_mut(key)?;
        let ConnectFailure { failed, next } = failure;
        let tunnel = slot.tunnel.clone();
        let backend = slot.upstreams.backend(0, &tunnel).map(|(_, b)| b.clone());
        if let Some(backend) = &backend {
            slot.tally.tried(backend.addr);
        }
        let (_closed, released) = slot.upstreams.take(0, &tunnel);
        self.queue.slot_freed(released);
        // porxy's own shortage (descriptors, ports) is not the backend's failure.
        if failed != CloseReason::LocalResource {
            self.connect_failed(&tunnel, backend.as_deref(), failed, error, now);
        }
        match next {
            AfterConnectFailure::TryAnother => {
                let slot = self.slots.get(key)?;
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
        for (key, id) in self.queue.take_round() {
            let waiting = self.slots.holds(key, id)
                && self
                    .slots
                    .get(key)
                    .is_some_and(|s| s.machine.relay_phase() == Some(Phase::Queued));
            if !waiting {
                continue; // Timed out, closed or handed over meanwhile.
            }
            // Still full, it goes back to the end: the waiting connections keep their order,
            // and one tunnel's full backends hold up no other tunnel's clients.
            self.pick_backend(key, None, now, true);
        }
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
