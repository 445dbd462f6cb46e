//! The mio glue around [`FanConn`]: a fan-out connection's client socket, one socket per
//! destination, their registration, connects, timers and closing.
//!
//! Fan-out connections live in their own slab and timer queue beside the relayed ones, with
//! tokens of their own ([`token::fan_token`]). Destination `i` goes to `targets[i]`: for a
//! connection accepted here, backend `i` of the tunnel it started with; for one taken over from
//! another process (`fan_handover.rs`), the backend with the destination's address in the tunnel
//! it was taken into, or no backend when that tunnel has none there. It holds a connection slot
//! on its backend while its socket lives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handover::Exported;
use super::socket::Socket;
use tracing::{debug, info, warn};

use super::close_log::Ended;
use super::token::{self, FanSocket};
use super::upstream::{connect_outcome, start_connect, ConnectOutcome};
use super::{reset, Accepted, Origin, Reactor};
use crate::balance::backend::Backend;
use crate::conn::close::CloseReason;
use crate::conn::{Action, Closing, Readiness};
use crate::fanout::{DestEnd, FanConn};
use crate::tunnel::Tunnel;

/// One fan-out connection's sockets and bookkeeping around its state machine.
pub(super) struct FanSlot {
    pub(super) id: u64,
    pub(super) conn: FanConn,
    pub(super) client: Socket,
    /// Destination `i`'s socket while it is connecting or open.
    pub(super) dests: Vec<Option<Socket>>,
    /// Where destination `i` goes.
    pub(super) targets: Vec<Target>,
    pub(super) peer: SocketAddr,
    pub(super) tunnel: Arc<Tunnel>,
    /// The earliest deadline armed in the fan-out timer queue for this connection.
    pub(super) timer_armed: Option<Instant>,
    /// When this process took the connection in (accepted, or imported).
    pub(super) opened: Instant,
    pub(super) span: tracing::Span,
}

/// Where one destination of a fan-out connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) addr: SocketAddr,
    /// The backend (an index into `tunnel.balancer.backends`) whose slot it holds while its
    /// socket lives; `None` for a destination taken over to a tunnel without that backend.
    pub(super) backend: Option<usize>,
}

impl FanSlot {
    /// The destination whose socket lives on `backend`, if one does.
    fn on_backend(&self, backend: &Arc<Backend>) -> Option<usize> {
        (0..self.dests.len()).find(|&i| {
            self.dests[i].is_some()
                && self
                    .backend(i)
                    .is_some_and(|(_, b)| Arc::ptr_eq(b, backend))
        })
    }

    /// Destination `i`'s backend, with its index in the tunnel, if it has one.
    pub(super) fn backend(&self, i: usize) -> Option<(usize, &Arc<Backend>)> {
        let index = self.targets.get(i)?.backend?;
        Some((index, self.tunnel.balancer.backends.get(index)?))
    }

    /// Gives destination `i`'s backend slot back, if it holds one.
    pub(super) fn release_dest(&self, i: usize) {
        if let Some((_, backend)) = self.backend(i) {
            backend.release();
            super::upstream::report_removal(self.tunnel.local, backend);
        }
    }
}

impl Reactor {
    /// Takes in a client of a fan-out tunnel and starts a connect to every destination in
    /// service.
    pub(super) fn adopt_fanout(&mut self, accepted: Accepted, origin: Origin, now: Instant) {
        let Accepted {
            stream: mut client,
            peer,
            tunnel,
            id,
            nodelay,
        } = accepted;
        let Some(fan) = tunnel.fanout else {
            return;
        };
        let span =
            tracing::debug_span!("conn", id, tunnel = %tunnel.local, client = %peer, fanout = true);
        self.take_client(&mut client, &tunnel, origin, nodelay);
        // Nothing else enters the slab before the insert below, so the key holds.
        let key = self.fans.vacant_key();
        let registered = self.poll.registry().register(
            &mut client,
            token::fan_token(key, FanSocket::Client),
            super::SOCKET_INTEREST,
        );
        let backends = &tunnel.balancer.backends;
        let mut dests: Vec<Option<Socket>> = Vec::with_capacity(backends.len());
        let mut failure = None;
        if let Err(error) = registered {
            failure = Some((CloseReason::LocalResource, Some(error)));
        } else {
            for (i, backend) in backends.iter().enumerate() {
                if backend.try_reserve(now, &tunnel.balancer.passive).is_err() {
                    dests.push(None);
                    continue;
                }
                let token = token::fan_token(key, FanSocket::Dest(i));
                match start_connect(self.poll.registry(), backend.addr, token) {
                    Ok(stream) => dests.push(Some(Socket::Tcp(stream))),
                    Err(error) => {
                        let reason = crate::conn::connect_failure_reason(&error);
                        if reason != CloseReason::LocalResource {
                            self.connect_failed(
                                &tunnel,
                                Some(backend.as_ref()),
                                reason,
                                Some(&error),
                                now,
                            );
                        }
                        match self.close_log.destination_failure_due(now) {
                            Some(times) => span.in_scope(|| {
                                warn!(destination = %backend.addr, error = %error, times, "fan-out destination: connect failed")
                            }),
                            None => span.in_scope(|| {
                                debug!(destination = %backend.addr, error = %error, "fan-out destination: connect failed")
                            }),
                        }
                        backend.release();
                        dests.push(None);
                    }
                }
            }
            let connecting: Vec<bool> = dests.iter().map(Option::is_some).collect();
            let primary_missing = fan.reply == crate::spec::Reply::Primary && !connecting[0];
            let live = connecting.iter().filter(|c| **c).count();
            if primary_missing || live < fan.min_live as usize {
                failure = Some((CloseReason::NoBackend, None));
            }
        }
        if let Some((reason, error)) = failure {
            for (i, stream) in dests.iter().enumerate() {
                if stream.is_some() {
                    backends[i].release();
                }
            }
            drop(dests);
            let ended = Ended::without_upstream(&span, id, &tunnel, peer);
            self.turn_away(&client, ended, reason, error.as_ref(), now);
            return;
        }
        span.in_scope(|| debug!(destinations = dests.iter().flatten().count(), "accepted"));
        let connecting: Vec<bool> = dests.iter().map(Option::is_some).collect();
        let conn = FanConn::new(now, tunnel.settings, fan, &connecting);
        let targets = backends
            .iter()
            .enumerate()
            .map(|(i, b)| Target {
                addr: b.addr,
                backend: Some(i),
            })
            .collect();
        self.fans.insert(FanSlot {
            id,
            conn,
            client: Socket::Tcp(client),
            dests,
            targets,
            peer,
            tunnel,
            timer_armed: None,
            opened: now,
            span,
        });
        self.arm_fan_timer(key);
    }

    /// A readiness event for one of a fan-out connection's sockets.
    pub(super) fn on_fan_event(
        &mut self,
        key: usize,
        socket: FanSocket,
        ready: Readiness,
        now: Instant,
    ) {
        let Some(slot) = self.fans.get_mut(key) else {
            return;
        };
        match socket {
            FanSocket::Client => slot.conn.on_client_ready(ready),
            FanSocket::Dest(i) => {
                if slot.dests.get(i).is_none_or(Option::is_none) {
                    return; // A stale event for a socket already closed.
                }
                slot.conn.on_dest_ready(i, ready);
                if slot.conn.dest_connecting(i) {
                    if ready.writable || ready.failed {
                        self.check_fan_connect(key, i, ready, now);
                    }
                    return;
                }
            }
        }
        self.drive_fan(key, now);
    }

    /// Destination `i` of connection `key` signalled `ready` while connecting: see how it went.
    fn check_fan_connect(&mut self, key: usize, i: usize, ready: Readiness, now: Instant) {
        let Some(slot) = self.fans.get_mut(key) else {
            return;
        };
        let Some(stream) = slot.dests.get(i).and_then(Option::as_ref) else {
            return;
        };
        match connect_outcome(stream, ready) {
            ConnectOutcome::Pending => {}
            ConnectOutcome::Connected => {
                if let Some((_, backend)) = slot.backend(i) {
                    Reactor::connect_succeeded(&slot.tunnel, backend);
                }
                let addr = slot.targets.get(i).map(|t| t.addr);
                slot.span
                    .in_scope(|| debug!(destination = ?addr, "destination connected"));
                slot.conn.on_connected(i);
                self.drive_fan(key, now);
            }
            ConnectOutcome::Failed(error) => {
                slot.span.in_scope(
                    || debug!(destination = i, error = %error, "destination connect failed"),
                );
                let action = slot.conn.on_connect_failed(i, &error);
                self.after_fan_step(key, action, now);
            }
        }
    }

    /// Relays what readiness allows on connection `key`.
    pub(super) fn drive_fan(&mut self, key: usize, now: Instant) {
        let Some(slot) = self.fans.get_mut(key) else {
            return;
        };
        let action = {
            let _enter = slot.span.enter();
            slot.conn
                .drive(&mut slot.client, &mut slot.dests, &mut self.pools, now)
        };
        self.after_fan_step(key, action, now);
    }

    /// Carries out what the connection answered: counts bytes, closes the destinations that
    /// left, and waits, drives again or closes. During an export, a connection whose
    /// destinations have all settled leaves then.
    pub(super) fn after_fan_step(&mut self, key: usize, action: Action, now: Instant) {
        self.count_fan_bytes(key);
        let departed = self.close_departed(key, now);
        if self.exporting.is_some() && !matches!(action, Action::Close { .. }) {
            // Whatever the connection asked for (another drive, a timer) it does in the
            // process it goes to.
            if self.export_fan(key, now) == Exported::Left {
                return;
            }
        }
        match action {
            // A destination left outside a drive (a connect failed or timed out, an operator
            // took it out): what the others wait for may be complete now, so drive again.
            Action::Wait if departed => {
                if let Some(slot) = self.fans.get(key) {
                    self.fan_again.push((key, slot.id));
                }
                self.arm_fan_timer(key);
            }
            Action::Wait => self.arm_fan_timer(key),
            Action::Again => {
                if let Some(slot) = self.fans.get(key) {
                    self.fan_again.push((key, slot.id));
                }
                self.arm_fan_timer(key);
            }
            Action::Close { .. } => self.finish_fan(key, action),
            // Never from a fan-out machine: a destination's failed connect is a departure.
            Action::ConnectFailed(_) => {}
        }
    }

    pub(super) fn count_fan_bytes(&mut self, key: usize) {
        let Some(slot) = self.fans.get_mut(key) else {
            return;
        };
        let ((from_client, to_client), per_dest) = slot.conn.take_unreported();
        if from_client + to_client > 0 {
            let shard = slot.tunnel.stats.reactor(self.index);
            crate::status::bump(&shard.bytes_to_upstream, from_client);
            crate::status::bump(&shard.bytes_to_client, to_client);
        }
        for (i, sent) in per_dest.into_iter().enumerate() {
            if let Some((_, backend)) = slot.backend(i) {
                backend.add_sent(sent);
            }
        }
    }

    /// Closes and counts the destinations that left connection `key`; true if any did.
    pub(super) fn close_departed(&mut self, key: usize, now: Instant) -> bool {
        let Some(slot) = self.fans.get_mut(key) else {
            return false;
        };
        let departures = slot.conn.take_departures();
        if departures.is_empty() {
            return false;
        }
        let tunnel = slot.tunnel.clone();
        let span = slot.span.clone();
        let mut closed = Vec::with_capacity(departures.len());
        for departure in departures {
            // Dropping a mio socket closes it, which also takes it out of the epoll set.
            if let Some(stream) = slot.dests.get_mut(departure.dest).and_then(Option::take) {
                if departure.closing == Closing::Reset {
                    reset(&stream);
                }
                slot.release_dest(departure.dest);
                let backend = slot.backend(departure.dest).map(|(index, _)| index);
                let addr = slot.targets.get(departure.dest).map(|t| t.addr);
                closed.push((departure.end, backend, addr));
            }
        }
        let _enter = span.enter();
        for (end, backend, addr) in closed {
            let destination = addr.map_or_else(|| "-".to_string(), |a| a.to_string());
            match end {
                DestEnd::Lagged => {
                    if let Some(index) = backend {
                        tunnel.balancer.backends[index].lag_dropped();
                    }
                    warn!(%destination, "fan-out destination dropped from this connection: too far behind");
                }
                DestEnd::ConnectFailed(reason) => {
                    match self.close_log.destination_failure_due(now) {
                        Some(times) => {
                            warn!(%destination, reason = %reason, times, "fan-out destination: connect failed")
                        }
                        None => {
                            debug!(%destination, reason = %reason, "fan-out destination: connect failed")
                        }
                    }
                    // porxy's own shortage (descriptors, ports) is not the backend's failure.
                    if let (Some(index), true) = (backend, reason != CloseReason::LocalResource) {
                        let backend = tunnel.balancer.backends.get(index).map(AsRef::as_ref);
                        self.connect_failed(&tunnel, backend, reason, None, now);
                    }
                }
                DestEnd::CutShort => {
                    debug!(%destination, "destination reset: the connection ended before its stream did")
                }
                DestEnd::Failed => {
                    info!(%destination, "fan-out destination failed or was taken out; the others go on")
                }
                DestEnd::Finished | DestEnd::Skipped | DestEnd::Left => {
                    debug!(%destination, "destination done")
                }
            }
        }
        true
    }

    /// Closes connection `key` as `action` says, counts it and takes it out of the slab.
    fn finish_fan(&mut self, key: usize, action: Action) {
        let Some((reason, client, upstream)) = action.closing() else {
            return;
        };
        let Some(mut slot) = self.fans.try_remove(key) else {
            return;
        };
        if client == Closing::Reset {
            reset(&slot.client);
        }
        for i in 0..slot.dests.len() {
            if let Some(stream) = slot.dests[i].take() {
                if upstream == Closing::Reset {
                    reset(&stream);
                }
                slot.release_dest(i);
            }
        }
        slot.conn.release(&mut self.pools);
        self.count_closed(&slot.tunnel, reason);
        let ended = Ended::without_upstream(&slot.span, slot.id, &slot.tunnel, slot.peer)
            .opened_at(slot.opened);
        self.close_log.closed(ended, reason, None, Instant::now());
    }

    /// Ends every fan-out connection `select` picks, with `reason`; returns how many it picked.
    pub(super) fn abort_fans_where(
        &mut self,
        select: impl Fn(&Tunnel) -> bool,
        reason: CloseReason,
    ) -> usize {
        let keys: Vec<usize> = self
            .fans
            .iter()
            .filter(|(_, s)| select(&s.tunnel))
            .map(|(k, _)| k)
            .collect();
        for &key in &keys {
            let Some(slot) = self.fans.get_mut(key) else {
                continue;
            };
            let action = slot.conn.abort(reason);
            self.after_fan_step(key, action, Instant::now());
        }
        keys.len()
    }

    /// Takes `backend` out of every fan-out connection that sends to it (an operator disabled
    /// or removed it); a connection whose primary it is ends.
    pub(super) fn close_fan_backend(&mut self, backend: &Arc<Backend>, now: Instant) {
        let hit: Vec<(usize, usize)> = self
            .fans
            .iter()
            .filter_map(|(k, s)| s.on_backend(backend).map(|i| (k, i)))
            .collect();
        for (key, i) in hit {
            let Some(slot) = self.fans.get_mut(key) else {
                continue;
            };
            let action = slot.conn.remove_dest(i).unwrap_or(Action::Wait);
            self.after_fan_step(key, action, now);
        }
    }

    /// Makes sure the fan-out timer queue holds an entry no later than the connection's
    /// deadline.
    pub(super) fn arm_fan_timer(&mut self, key: usize) {
        let Some(slot) = self.fans.get_mut(key) else {
            return;
        };
        let Some(deadline) = slot.conn.deadline() else {
            return;
        };
        if slot.timer_armed.is_none_or(|armed| deadline < armed) {
            slot.timer_armed = Some(deadline);
            self.fan_timers.arm(deadline, key, slot.id);
        }
    }

    /// Handles the fan-out deadlines that have come, a bounded number per round.
    pub(super) fn fire_fan_timers(&mut self, now: Instant, limit: usize) {
        for _ in 0..limit {
            let Some((key, id, at)) = self.fan_timers.pop_due(now) else {
                return;
            };
            let Some(slot) = self.fans.get_mut(key) else {
                continue;
            };
            if slot.id != id {
                continue;
            }
            if slot.timer_armed == Some(at) {
                slot.timer_armed = None;
            }
            let action = slot.conn.on_timer(now);
            if action == Action::Wait && slot.conn.deadline().is_some_and(|d| d <= now) {
                // Nothing was due though the deadline passed (a bug): look again a little
                // later rather than at once, in a spin.
                tracing::error!(
                    conn = id,
                    "a fan-out deadline passed but nothing was due; a porxy bug"
                );
                let later = now + Duration::from_millis(1);
                slot.timer_armed = Some(later);
                self.fan_timers.arm(later, key, id);
                continue;
            }
            self.after_fan_step(key, action, now);
        }
    }

    /// Drives again the fan-out connections whose budget ran out.
    pub(super) fn drive_fans_again(&mut self, now: Instant) {
        for (key, id) in std::mem::take(&mut self.fan_again) {
            if self.fans.get(key).is_some_and(|s| s.id == id) {
                self.drive_fan(key, now);
            }
        }
    }
}
