//! Handing fan-out connections over to another process, and taking them in: the fan-out side of
//! `handover.rs`, with the same rules.
//!
//! Export: a fan-out connection leaves once none of its destinations is connecting (at once, or
//! as soon as the last connect settles, while the export lasts). Its sockets are deregistered
//! first, then its state is frozen (`fanout/frozen.rs`): the log of client bytes some open
//! destination lacks, every destination's position, FIN and EOF, the primary's reply bytes. It
//! counts as closed with [`CloseReason::HandedOver`], each open destination gives its backend
//! slot back, and the session carries the client's socket and one per open destination, each
//! with its backend's address. Destinations that had left stay behind, and never come back.
//!
//! Import: the client and every open destination are registered under fan-out tokens, before the
//! connection enters the fan-out slab. Each destination finds its backend by address in the
//! tunnel it is taken into, and takes a slot there whatever the limit (it exists already), as a
//! relayed connection does; a destination whose backend that tunnel does not have goes on all
//! the same to its address, without a slot or counters (like a relayed connection to a backend
//! removed since). The connection keeps the fan-out settings it ran with (`reply`, `max_lag`,
//! `min_live`), whatever the tunnel here says, and takes its timeouts from the tunnel here. It
//! is driven at once: each destination gets what it lacks, the client its pending replies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use tracing::{debug, error, warn};

use super::fanout::{FanSlot, Target};
use super::handover::Exported;
use super::socket::Socket;
use super::token::{self, FanSocket};
use super::{reset, Reactor};
use crate::conn::close::CloseReason;
use crate::fanout::frozen::FrozenPhase;
use crate::fanout::FanConn;
use crate::session::{Fanout, Session};
use crate::tunnel::Tunnel;

/// A fan-out session's parts, sockets made non-blocking, on their way into a reactor.
pub(super) struct Imported {
    pub(super) client: TcpStream,
    /// One per open destination, in order.
    pub(super) dests: Vec<TcpStream>,
    pub(super) fan: Fanout,
    /// Its id in the process it comes from, for logs.
    pub(super) previous_id: u64,
    pub(super) peer: SocketAddr,
}

impl Reactor {
    /// Takes fan-out connection `key` out of this reactor and sends it to the export, if an
    /// export is on, none of its destinations is connecting and its sockets can travel.
    pub(super) fn export_fan(&mut self, key: usize, now: Instant) -> Exported {
        let Some(to) = self.export_to() else {
            return Exported::Stayed;
        };
        let travels = |s: &FanSlot| {
            !s.conn.connecting()
                && s.client.can_travel()
                && s.dests.iter().flatten().all(Socket::can_travel)
        };
        if !self.fans.get(key).is_some_and(travels) {
            return Exported::Stayed;
        }
        // Whatever the connection relayed or let go of is counted here, before it leaves.
        self.count_fan_bytes(key);
        self.close_departed(key, now);
        let Some(slot) = self.fans.get_mut(key) else {
            return Exported::Stayed;
        };
        // Frozen first: should a kernel pipe not give back the bytes it holds (it never
        // should), the connection cannot travel, and is reset here instead.
        let state = match slot.conn.freeze(&mut self.pools, now) {
            Ok(Some(state)) => state,
            Ok(None) => return Exported::Stayed,
            Err(error) => {
                warn!(conn = slot.id, error = %error, "cannot hand a fan-out connection over: its buffered bytes are unreadable; resetting it");
                let action = slot.conn.abort(CloseReason::LocalResource);
                self.after_fan_step(key, action, now);
                return Exported::Left;
            }
        };
        let mut slot = self.fans.remove(key);
        let registry = self.poll.registry();
        // Nothing may read or write the sockets here any more: the other process owns them now.
        let sockets = std::iter::once(&mut slot.client).chain(slot.dests.iter_mut().flatten());
        for socket in sockets {
            if let Err(e) = registry.deregister(socket) {
                debug!(conn = slot.id, error = %e, "deregistering a handed-over socket failed");
            }
        }
        let mut dests = Vec::with_capacity(state.open_dests());
        let mut state = state;
        for (i, frozen) in state.dests.iter_mut().enumerate() {
            let socket = slot.dests.get_mut(i).and_then(Option::take);
            if socket.is_some() {
                slot.release_dest(i);
            }
            match (frozen.phase, socket) {
                (FrozenPhase::Open, Some(socket)) => dests.push(socket.into_std()),
                (FrozenPhase::Open, None) => {
                    // Cannot happen: an open destination has its socket.
                    error!(
                        conn = slot.id,
                        dest = i,
                        "an open fan-out destination without a socket; a porxy bug"
                    );
                    frozen.phase = FrozenPhase::Gone;
                }
                // Cannot happen either (its departure closed it): it does not travel.
                (_, Some(socket)) => reset(&socket),
                (_, None) => {}
            }
        }
        self.count_closed(&slot.tunnel, CloseReason::HandedOver);
        let settings = slot.conn.fanout_settings();
        let FanSlot {
            id,
            client,
            targets,
            peer,
            tunnel,
            span,
            ..
        } = slot;
        span.in_scope(|| {
            debug!(
                buffered = state.buffered(),
                destinations = dests.len(),
                "handed over"
            )
        });
        let fan = Fanout {
            settings,
            dests: targets.iter().map(|t| t.addr).collect(),
            state,
        };
        let client = client.into_std();
        let mut session = Session::fanout(client, dests, id, tunnel.local, peer, fan);
        session.origin = Some((self.proxy, tunnel.clone()));
        self.send_export(to, session, tunnel, id, now);
        Exported::Left
    }

    /// Takes in a fan-out session on `tunnel`, as connection `id`.
    pub(super) fn import_fan(
        &mut self,
        imported: Imported,
        tunnel: Arc<Tunnel>,
        id: u64,
        now: Instant,
    ) {
        let Imported {
            mut client,
            dests: sockets,
            fan,
            previous_id,
            peer,
        } = imported;
        let span =
            tracing::debug_span!("conn", id, tunnel = %tunnel.local, client = %peer, fanout = true);
        let key = self.fans.vacant_key();
        let registry = self.poll.registry();
        // One socket per open destination, in order: the wire format checks the count.
        let mut open = fan
            .state
            .dests
            .iter()
            .enumerate()
            .filter(|(_, d)| d.phase == FrozenPhase::Open)
            .map(|(i, _)| i);
        let mut dests: Vec<Option<TcpStream>> = (0..fan.dests.len()).map(|_| None).collect();
        let mut registered = registry.register(
            &mut client,
            token::fan_token(key, FanSocket::Client),
            super::SOCKET_INTEREST,
        );
        for mut socket in sockets {
            let Some(i) = open.next() else {
                reset(&socket);
                continue;
            };
            if registered.is_ok() {
                registered = registry.register(
                    &mut socket,
                    token::fan_token(key, FanSocket::Dest(i)),
                    super::SOCKET_INTEREST,
                );
            }
            dests[i] = Some(socket);
        }
        if let Err(e) = registered {
            let _ = registry.deregister(&mut client);
            reset(&client);
            for socket in dests.iter_mut().flatten() {
                let _ = registry.deregister(socket);
                reset(socket);
            }
            return self.refuse(id, &tunnel, peer, &e);
        }
        // Each destination's backend here, by address; it takes its slot whatever the limit.
        let targets: Vec<Target> = fan
            .dests
            .iter()
            .map(|&addr| Target {
                addr,
                backend: tunnel.balancer.backends.iter().position(|b| b.addr == addr),
            })
            .collect();
        let mut without_backend = Vec::new();
        for (target, socket) in targets.iter().zip(&dests) {
            match (socket, target.backend) {
                (Some(_), Some(index)) => tunnel.balancer.backends[index].adopt_slot(),
                (Some(_), None) => without_backend.push(target.addr),
                (None, _) => {}
            }
        }
        let conn = FanConn::restored(
            now,
            tunnel.settings,
            fan.settings,
            &fan.state,
            &mut self.pools,
        );
        self.count_imported(&tunnel);
        span.in_scope(|| {
            debug!(
                previous_id,
                buffered = fan.state.buffered(),
                destinations = fan.state.open_dests(),
                "taken over from another process"
            );
            if !without_backend.is_empty() {
                warn!(
                    destinations = ?without_backend,
                    "fan-out destinations of a handed-over connection are not backends of this \
                     tunnel here; they go on without a backend slot"
                );
            }
        });
        // Nothing entered the fan-out slab since `vacant_key`: the connection gets the key it
        // polls with.
        let entry = self.fans.vacant_entry();
        debug_assert_eq!(entry.key(), key);
        entry.insert(FanSlot {
            id,
            conn,
            client: Socket::Tcp(client),
            dests: dests.into_iter().map(|d| d.map(Socket::Tcp)).collect(),
            targets,
            peer,
            tunnel,
            timer_armed: None,
            opened: now,
            span,
        });
        self.drive_fan(key, now);
    }
}
