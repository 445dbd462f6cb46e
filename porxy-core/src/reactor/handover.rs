//! Handing connections over to another process, and taking them in: the reactor side of
//! [`Session`]s.
//!
//! Export (`ReactorMsg::Export`): the reactor takes out every connection it can hand over and
//! sends it down the export channel. A relaying connection leaves with its sockets and its
//! user-space state; a client waiting for a backend slot leaves alone. Taking one out
//! deregisters its sockets first, so nothing here reads or writes them any more: bytes not yet
//! read stay in the kernel and travel with the socket, bytes read and not yet written travel in
//! the session. A connection whose upstream connect is in flight is exported as soon as the
//! connect completes (or, if every backend is full, as soon as it waits for one), while the
//! export lasts; a client accepted meanwhile leaves at once. The export ends
//! (the reactor drops its sender) once the proxy is stopping (so no client is on its way any
//! more) and no connect is in flight, or at the export's deadline; what is left then stays and
//! finishes here.
//!
//! An exported connection counts as closed with [`CloseReason::HandedOver`] and gives its
//! backend slot back.
//!
//! Fan-out connections leave and enter the same way, with every destination's socket
//! (`fan_handover.rs`); one with a destination still connecting leaves once every connect has
//! settled, like a relayed connection whose connect is in flight.
//!
//! Hold: from the export on, a stopping reactor does not end when its last connection leaves,
//! until `ReactorMsg::Release`: the caller may still give sessions back (a handover that
//! failed half-way), and they must find the reactor running.
//!
//! Import (`ReactorMsg::Import`): the reverse. Both sockets are registered (edge-triggered,
//! readable and writable, as for a new client), the connection enters the slab relaying, with
//! its pipes restored, takes a slot on its backend (whatever the limit: it exists already), and
//! is driven at once to write what it carried and read what the kernel holds. A waiting client
//! is taken in like a new one, and finds a backend here.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use mio::net::TcpStream;
use tracing::{debug, warn};

use super::socket::Socket;
use super::{reset, token, Accepted, Origin, Reactor, Slot};
use crate::balance::Tried;
use crate::conn::close::CloseReason;
use crate::conn::frozen::Frozen;
use crate::conn::{Conn, Phase, Side};
use crate::session::{Kind, Relay, Session};
use crate::tunnel::Tunnel;

/// An export in progress.
pub(super) struct Exporting {
    to: Sender<Session>,
    until: Instant,
}

impl Exporting {
    pub(super) fn until(&self) -> Instant {
        self.until
    }
}

/// What [`Reactor::export`] did with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exported {
    /// It stays here (no export on, or it cannot travel now).
    Stayed,
    /// It left its slot: nothing more is to be done with its key.
    Left,
}

impl Reactor {
    /// Starts an export to `to`: every connection that can leave now leaves.
    pub(super) fn begin_export(&mut self, to: Sender<Session>, until: Instant, now: Instant) {
        self.holding = true;
        self.exporting = Some(Exporting { to, until });
        let keys: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, s)| matches!(s.conn.phase(), Phase::Relaying | Phase::Queued))
            .map(|(k, _)| k)
            .collect();
        debug!(
            reactor = self.index,
            connections = keys.len(),
            "handing connections over"
        );
        for key in keys {
            self.export(key, now);
        }
        let fans: Vec<usize> = self.fans.iter().map(|(k, _)| k).collect();
        debug!(
            reactor = self.index,
            connections = fans.len(),
            "handing fan-out connections over"
        );
        for key in fans {
            self.export_fan(key, now);
        }
        self.end_export_if_done(now);
    }

    /// Ends the export when nothing more can come of it.
    pub(super) fn end_export_if_done(&mut self, now: Instant) {
        let Some(exporting) = &self.exporting else {
            return;
        };
        // While the proxy is not stopping, new clients may still come (from the listener
        // thread, or accepted here).
        let settled = self.stopping.is_stopping()
            && !self.slab.iter().any(|(_, s)| {
                // Still to leave, once connected or given a slot; unless it never can.
                matches!(s.conn.phase(), Phase::Connecting | Phase::Queued) && s.client.can_travel()
            })
            && !self.fans.iter().any(|(_, s)| s.conn.connecting());
        if settled || now >= exporting.until {
            debug!(
                reactor = self.index,
                left = self.slab.len() + self.fans.len(),
                "export over"
            );
            self.exporting = None;
        }
    }

    /// Takes connection `key` out of this reactor and sends it to the export, if an export is on
    /// and the connection can travel. [`Exported::Left`] if it left its slot (should nobody
    /// take it any more, it is back as a new connection, and the export is over).
    pub(super) fn export(&mut self, key: usize, now: Instant) -> Exported {
        let Some(exporting) = &self.exporting else {
            return Exported::Stayed;
        };
        // A socket that cannot travel (a TLS session) keeps its connection here to the end.
        let travels = |s: &Slot| {
            s.conn.can_travel()
                && s.client.can_travel()
                && s.upstream.as_ref().is_none_or(Socket::can_travel)
        };
        if !self.slab.get(key).is_some_and(travels) {
            return Exported::Stayed;
        }
        let to = exporting.to.clone();
        // Frozen first: should a kernel pipe not give back the bytes it holds (it never
        // should), the connection cannot travel, and is reset here instead.
        let frozen = match self.slab[key].conn.freeze(&mut self.pools, now) {
            Ok(Frozen::Stays) => return Exported::Stayed,
            Ok(frozen) => frozen,
            Err(error) => {
                warn!(conn = self.slab[key].id, error = %error, "cannot hand a connection over: its buffered bytes are unreadable; resetting it");
                let action = self.slab[key].conn.abort(CloseReason::LocalResource);
                self.finish(key, action, Some(&error), now);
                return Exported::Left;
            }
        };
        let mut slot = self.slab.remove(key);
        let registry = self.poll.registry();
        // Nothing may read or write the sockets here any more: the other process owns them now.
        for (side, socket) in [
            (Side::Client, Some(&mut slot.client)),
            (Side::Upstream, slot.upstream.as_mut()),
        ] {
            if let Some(socket) = socket {
                if let Err(e) = registry.deregister(socket) {
                    // Stale events for this key are recognised by the connection id, and ignored.
                    debug!(conn = slot.id, ?side, error = %e, "deregistering a handed-over socket failed");
                }
            }
        }
        let (to_upstream, to_client) = slot.conn.take_unreported();
        let backend = slot
            .backend_addr()
            .or_else(|| slot.upstream.as_ref().and_then(|u| u.peer_addr().ok()))
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        self.release_backend(&mut slot);
        let shard = slot.tunnel.stats.reactor(self.index);
        crate::status::bump(&shard.bytes_to_upstream, to_upstream);
        crate::status::bump(&shard.bytes_to_client, to_client);
        self.count_closed(&slot.tunnel, CloseReason::HandedOver);
        let Slot {
            id,
            client,
            upstream,
            peer,
            tunnel,
            span,
            ..
        } = slot;
        let client = client.into_std();
        let mut session = match (frozen, upstream) {
            (Frozen::Relaying(state), Some(upstream)) => {
                span.in_scope(|| debug!(buffered = state.buffered(), "handed over"));
                let relay = Relay { backend, state };
                Session::relaying(client, upstream.into_std(), id, tunnel.local, peer, relay)
            }
            (Frozen::Waiting, _) => {
                span.in_scope(|| debug!("handed over while waiting for a backend"));
                Session::waiting(client, id, tunnel.local, peer)
            }
            // A relaying connection always has its upstream socket: were it missing (a bug),
            // sending the client as a waiting one would lose the relayed state.
            (Frozen::Relaying(_) | Frozen::Stays, _) => {
                tracing::error!(
                    conn = id,
                    "a relaying connection without its upstream socket; a porxy bug: resetting it"
                );
                reset(&client);
                return Exported::Left;
            }
        };
        session.origin = Some((self.proxy, tunnel.clone()));
        self.send_export(to, session, tunnel, id, now);
        Exported::Left
    }

    /// Sends an exported session; should nobody take sessions any more, the connection goes on
    /// here (as connection `id` of `tunnel`), and the export is over.
    pub(super) fn send_export(
        &mut self,
        to: Sender<Session>,
        session: Session,
        tunnel: Arc<Tunnel>,
        id: u64,
        now: Instant,
    ) {
        if let Err(returned) = to.send(session) {
            debug!(
                reactor = self.index,
                "the export was abandoned; keeping the connection"
            );
            self.exporting = None;
            self.import(returned.0, tunnel, id, now);
        }
    }

    /// The channel exported sessions go to, while an export is on.
    pub(super) fn export_to(&self) -> Option<Sender<Session>> {
        self.exporting.as_ref().map(|e| e.to.clone())
    }

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
                let imported = super::fan_handover::Imported {
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
                let fanout = tunnel.fanout.is_some();
                let accepted = Accepted {
                    stream: client,
                    peer: session.peer,
                    tunnel,
                    id,
                    nodelay: false,
                };
                // The tunnel may have become a fan-out one across the upgrade.
                if fanout {
                    self.adopt_fanout(accepted, Origin::Imported, now)
                } else {
                    self.adopt(accepted, Origin::Imported, now)
                }
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
        let key = self.slab.vacant_key();
        let registry = self.poll.registry();
        let registered = registry
            .register(
                &mut client,
                token::token(key, Side::Client),
                super::SOCKET_INTEREST,
            )
            .and_then(|()| {
                registry.register(
                    &mut upstream,
                    token::token(key, Side::Upstream),
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
        let mut tried = Tried::default();
        if let Some(index) = backend {
            tried.add(index);
        }
        self.count_imported(&tunnel);
        span.in_scope(|| {
            debug!(
                previous_id,
                buffered = relay.state.buffered(),
                "taken over from another process"
            )
        });
        // Nothing entered the slab since `vacant_key`: the connection gets the key it polls with.
        let entry = self.slab.vacant_entry();
        debug_assert_eq!(entry.key(), key);
        entry.insert(Slot {
            id,
            conn,
            client: Socket::Tcp(client),
            upstream: Some(Socket::Tcp(upstream)),
            backend,
            tried,
            peer,
            tunnel,
            timer_armed: None,
            opened: now,
            span,
        });
        self.drive(key, now);
    }

    /// Counts a connection taken in from another process.
    pub(super) fn count_imported(&self, tunnel: &Tunnel) {
        let shard = tunnel.stats.reactor(self.index);
        shard.opened();
        crate::status::bump(&shard.imported, 1);
        tunnel.generation.opened();
        self.stats.imported();
        self.accepting.admission.add();
    }

    /// A handed-over connection that cannot go on here (its sockets are reset): count it.
    pub(super) fn refuse(&mut self, id: u64, tunnel: &Tunnel, peer: SocketAddr, error: &io::Error) {
        self.count_imported(tunnel);
        self.count_closed(tunnel, CloseReason::LocalResource);
        tracing::warn!(
            conn = id,
            tunnel = %tunnel.local,
            client = %peer,
            error = %error,
            "a handed-over connection cannot go on here; reset"
        );
    }
}
