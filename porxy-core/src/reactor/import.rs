//! Taking connections in from another process (or given back by a handover that failed): the
//! reactor side of an import of [`Session`]s.
//!
//! Every socket is registered (edge-triggered, readable and writable, as for a new client)
//! before the connection enters the slab. A relaying connection enters relaying, with its pipes
//! restored; a fan-out connection with its log and every destination's position. Each upstream
//! finds its backend by address in the tunnel it is taken into and takes a slot there whatever
//! the limit (it exists already); one whose backend that tunnel does not have goes on all the
//! same to its address, without a slot or counters. A fan-out connection keeps the fan-out
//! settings it ran with (`reply`, `max_lag`, `min_live`) and takes its timeouts from the tunnel
//! here. Either is driven at once, to write what it carried and read what the kernel holds. A
//! waiting client is taken in like a new one, and finds a backend here.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use tracing::{debug, warn};

use super::slot::Slot;
use super::socket::Socket;
use super::tally::Tally;
use super::token;
use super::upstreams::{Target, Upstreams};
use super::{reset, Accepted, Origin, Reactor};
use crate::conn::close::CloseReason;
use crate::conn::fanout::frozen::FrozenPhase;
use crate::conn::fanout::FanConn;
use crate::conn::machine::{Machine, SocketIx};
use crate::conn::Conn;
use crate::session::{Fanout, Kind, Relay, Session};
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
    /// Takes in a session (from another process, or given back), on `tunnel`, as connection
    /// `id`.
    pub(super) fn import(
        &mut self,
        mut session: Session,
        tunnel: Arc<Tunnel>,
        id: u64,
        now: Instant,
    ) {
        let Some((client, upstreams)) = session.take_sockets() else {
            return;
        };
        // mio needs non-blocking sockets; the flag lives with the socket, so it is usually set.
        let usable = client
            .set_nonblocking(true)
            .and_then(|()| upstreams.iter().try_for_each(|u| u.set_nonblocking(true)));
        if let Err(e) = usable {
            reset(&client);
            upstreams.iter().for_each(reset);
            return self.refuse(id, &tunnel, session.peer, &e);
        }
        let client = TcpStream::from_std(client);
        let mut upstreams: Vec<TcpStream> =
            upstreams.into_iter().map(TcpStream::from_std).collect();
        match std::mem::replace(&mut session.kind, Kind::Waiting) {
            Kind::Relaying(relay) if upstreams.len() == 1 => {
                let upstream = upstreams.remove(0);
                self.import_relaying(
                    client,
                    upstream,
                    relay,
                    session.id,
                    session.peer,
                    tunnel,
                    id,
                    now,
                )
            }
            Kind::Fanout(fan) => {
                let imported = Imported {
                    client,
                    dests: upstreams,
                    fan,
                    previous_id: session.id,
                    peer: session.peer,
                };
                self.import_fan(imported, tunnel, id, now)
            }
            // A waiting client, taken in like a new one. (A session always has the sockets its
            // kind needs: the wire format checks it.)
            _ => {
                let accepted = Accepted {
                    stream: client,
                    peer: session.peer,
                    tunnel,
                    id,
                    nodelay: false,
                };
                // (The tunnel may have become a fan-out one across the upgrade.)
                self.adopt(accepted, Origin::Imported, now)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn import_relaying(
        &mut self,
        mut client: TcpStream,
        mut upstream: TcpStream,
        relay: Relay,
        previous_id: u64,
        peer: SocketAddr,
        tunnel: Arc<Tunnel>,
        id: u64,
        now: Instant,
    ) {
        let span = tracing::debug_span!(
            "conn",
            id,
            tunnel = %tunnel.local,
            client = %peer,
            upstream = %relay.backend
        );
        let key = self.slots.vacant_key();
        let registry = self.poll.registry();
        let registered = registry
            .register(
                &mut client,
                token::token(key, SocketIx::Client),
                super::SOCKET_INTEREST,
            )
            .and_then(|()| {
                registry.register(
                    &mut upstream,
                    token::token(key, SocketIx::Upstream(0)),
                    super::SOCKET_INTEREST,
                )
            });
        if let Err(e) = registered {
            let _ = registry.deregister(&mut client);
            reset(&client);
            reset(&upstream);
            return self.refuse(id, &tunnel, peer, &e);
        }
        let conn = Conn::restored(now, tunnel.settings, &relay.state, &mut self.pools);
        // The connection exists already: it takes its slot whatever the backend's limit or
        // state. A backend this tunnel does not have (any more) gets no slot.
        let backend = tunnel
            .balancer
            .backends
            .iter()
            .position(|b| b.addr == relay.backend);
        if let Some(index) = backend {
            tunnel.balancer.backends[index].adopt_slot();
        }
        self.counts.imported(&tunnel);
        span.in_scope(|| {
            debug!(
                previous_id,
                buffered = relay.state.buffered(),
                "taken over from another process"
            )
        });
        let mut slot = Slot::new(
            id,
            Machine::Relay(conn),
            Socket::Tcp(client),
            Upstreams::relay_taken_over(Socket::Tcp(upstream), backend),
            peer,
            tunnel,
            now,
            span,
        );
        slot.tally = Tally::imported();
        self.enter(key, slot, now);
    }

    /// A handed-over connection that cannot go on here (its sockets are reset): count it.
    pub(super) fn refuse(&mut self, id: u64, tunnel: &Tunnel, peer: SocketAddr, error: &io::Error) {
        self.counts.imported(tunnel);
        // Refused as it came in: it lived here for no time.
        self.counts.closed(
            tunnel,
            CloseReason::LocalResource,
            std::time::Duration::ZERO,
        );
        let now = std::time::Instant::now();
        let reason = CloseReason::LocalResource;
        self.record_unslotted(id, tunnel, peer, now, true, reason, Some(error));
        tracing::warn!(
            conn = id,
            tunnel = %tunnel.local,
            client = %peer,
            error = %error,
            "a handed-over connection cannot go on here; reset"
        );
    }

    /// Takes in a fan-out session on `tunnel`, as connection `id`.
    fn import_fan(&mut self, imported: Imported, tunnel: Arc<Tunnel>, id: u64, now: Instant) {
        let Imported {
            mut client,
            dests: sockets,
            fan,
            previous_id,
            peer,
        } = imported;
        let span =
            tracing::debug_span!("conn", id, tunnel = %tunnel.local, client = %peer, fanout = true);
        let key = self.slots.vacant_key();
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
            token::token(key, SocketIx::Client),
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
                    token::token(key, SocketIx::Upstream(i)),
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
        self.counts.imported(&tunnel);
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
        let mut slot = Slot::new(
            id,
            Machine::Fanout(Box::new(conn)),
            Socket::Tcp(client),
            Upstreams::fanout(
                dests.into_iter().map(|d| d.map(Socket::Tcp)).collect(),
                targets,
            ),
            peer,
            tunnel,
            now,
            span,
        );
        slot.tally = Tally::imported();
        self.enter(key, slot, now);
    }

    /// A connection taken over enters the slab at `key` (its sockets' token) and is driven at
    /// once: to write what it carried and read what the kernel holds.
    fn enter(&mut self, key: usize, slot: Slot, now: Instant) {
        if self.handing_over.exporting() {
            self.handing_over.given_back(key, slot.id);
        }
        // It counts against its client's limit here too, whatever the limit: it exists.
        if slot.tunnel.max_conns_per_client.is_some() {
            let client = slot.tunnel.client_key(slot.peer.ip());
            slot.tunnel.clients.adopt(slot.id, client);
        }
        // And it relays within this tunnel's bandwidth limits.
        let mut slot = slot;
        slot.limit_bandwidth(now);
        self.slots.insert_at(key, slot);
        self.drive(key, now);
    }
}
