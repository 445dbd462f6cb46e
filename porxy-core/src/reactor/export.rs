//! Handing connections over to another process: the reactor side of an export of
//! [`Session`]s, one path for relayed and fan-out connections alike.
//!
//! `ReactorMsg::Export` starts it: every connection that can leave now leaves. One that cannot
//! yet (an upstream connect in flight, a fan-out destination still connecting) leaves from
//! [`after_step`](super::after_step) as soon as it can, while the export lasts, and so does a
//! client accepted meanwhile, which leaves waiting for a backend. Taking a connection out
//! deregisters its sockets first, so nothing here reads or writes them any more: bytes not yet
//! read stay in the kernel and travel with the sockets, bytes read and not yet written travel
//! in the session (its machine's frozen state). It counts as closed with
//! [`CloseReason::HandedOver`] and gives its backend slots back.
//!
//! What travels, by kind: a relaying connection, its two sockets and both pipes' bytes; a
//! client waiting for a backend slot, its socket alone; a fan-out connection, its client and
//! every open destination, with the log of client bytes some destination lacks (destinations
//! that had left stay behind, and never come back).
//!
//! The export ends (the reactor drops its sender) once the proxy is stopping (so no client is
//! on its way any more) and no connection still waits for an upstream, or at the export's
//! deadline; what is left then stays and finishes here.
//!
//! Hold: from the export on, a stopping reactor does not end when its last connection leaves,
//! until `ReactorMsg::Release`: the caller may still give sessions back (a handover that
//! failed half-way), and they must find the reactor running.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use tracing::{debug, error, warn};

use super::slot::Slot;
use super::{reset, Reactor};
use crate::conn::close::CloseReason;
use crate::conn::fanout::frozen::FrozenPhase;
use crate::conn::frozen::Frozen;
use crate::session::{Fanout, Relay, Session};
use crate::tunnel::Tunnel;

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
        self.handing_over.begin(to, until);
        let keys = self.slots.keys_where(|_| true);
        debug!(
            reactor = self.counts.shard(),
            connections = keys.len(),
            "handing connections over"
        );
        for key in keys {
            self.export(key, now);
        }
        self.end_export_if_done(now);
    }

    /// Ends the export when nothing more can come of it.
    pub(super) fn end_export_if_done(&mut self, now: Instant) {
        let Some(until) = self.handing_over.until() else {
            return;
        };
        // While the proxy is not stopping, new clients may still come (from the listener
        // thread, or accepted here).
        let settled = self.stopping.is_stopping()
            && !self.slots.iter().any(|(_, s)| {
                // Still to leave, once its upstream settles; unless it never can.
                s.machine.awaiting_upstream() && s.sockets_travel()
            });
        if settled || now >= until {
            debug!(
                reactor = self.counts.shard(),
                left = self.slots.len(),
                "export over"
            );
            self.handing_over.end();
        }
    }

    /// Takes connection `key` out of this reactor and sends it to the export, if an export is on
    /// and the connection can travel. [`Exported::Left`] if it left its slot (should nobody
    /// take it any more, it is back as a new connection, and the export is over).
    pub(super) fn export(&mut self, key: usize, now: Instant) -> Exported {
        let Some(to) = self.handing_over.sender() else {
            return Exported::Stayed;
        };
        // A socket that cannot travel (a TLS session) keeps its connection here to the end.
        let travels = |s: &Slot| s.machine.can_travel() && s.sockets_travel();
        match self.slots.get(key) {
            // Given back during this export (a handover that failed half-way): it goes on
            // here rather than leaving again, and again.
            Some(slot) if travels(slot) && !self.handing_over.gave_back(key, slot.id) => {}
            _ => return Exported::Stayed,
        }
        // Whatever the connection relayed or let go of is counted here, before it leaves.
        if let Some(slot) = self.slots.get_mut(key) {
            slot.count_bytes(self.counts.shard());
        }
        self.close_departed(key, now);
        let Some(slot) = self.slots.get_mut(key) else {
            return Exported::Stayed;
        };
        // Frozen first: should a kernel pipe not give back the bytes it holds (it never
        // should), the connection cannot travel, and is reset here instead.
        let frozen = match slot.machine.freeze(&mut self.pools, now) {
            Ok(Frozen::Stays) => return Exported::Stayed,
            Ok(frozen) => frozen,
            Err(error) => {
                warn!(conn = slot.id, error = %error, "cannot hand a connection over: its buffered bytes are unreadable; resetting it");
                let action = slot.machine.abort(CloseReason::LocalResource);
                self.finish(key, action, Some(&error), now);
                return Exported::Left;
            }
        };
        let Some(mut slot) = self.slots.remove(key) else {
            return Exported::Stayed;
        };
        let registry = self.poll.registry();
        // Nothing may read or write the sockets here any more: the other process owns them now.
        let sockets = std::iter::once(&mut slot.client)
            .chain(slot.upstreams.sockets_mut().iter_mut().flatten());
        for socket in sockets {
            if let Err(e) = registry.deregister(socket) {
                // Stale events for this key are recognised by the connection id, and ignored.
                debug!(conn = slot.id, error = %e, "deregistering a handed-over socket failed");
            }
        }
        // The relay's backend, by address (should the tunnel no longer have it, whatever the
        // socket is connected to); each destination's.
        let relay_backend = slot
            .upstreams
            .logged_addr(&slot.tunnel)
            .or_else(|| slot.upstreams.socket(0).and_then(|u| u.peer_addr().ok()))
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        let targets = slot.upstreams.addrs(&slot.tunnel);
        let mut upstreams = Vec::with_capacity(slot.upstreams.sockets().len());
        for i in 0..slot.upstreams.sockets().len() {
            let (socket, released) = slot.upstreams.take(i, &slot.tunnel);
            self.queue.slot_freed(released);
            upstreams.push(socket);
        }
        slot.release_client_count();
        // It goes on elsewhere: no lifetime is recorded here.
        self.counts.closed(
            &slot.tunnel,
            CloseReason::HandedOver,
            std::time::Duration::ZERO,
        );
        let (id, peer, tunnel, span) = (slot.id, slot.peer, slot.tunnel, slot.span);
        let client = slot.client.into_std();
        let mut session = match frozen {
            Frozen::Relaying(state) => {
                let Some(Some(upstream)) = upstreams.pop() else {
                    // A relaying connection always has its upstream socket: were it missing (a
                    // bug), sending the client as a waiting one would lose the relayed state.
                    error!(
                        conn = id,
                        "a relaying connection without its upstream socket; a porxy bug: resetting it"
                    );
                    reset(&client);
                    return Exported::Left;
                };
                span.in_scope(|| debug!(buffered = state.buffered(), "handed over"));
                let relay = Relay {
                    backend: relay_backend,
                    state,
                };
                Session::relaying(client, upstream.into_std(), id, tunnel.local, peer, relay)
            }
            Frozen::Waiting => {
                span.in_scope(|| debug!("handed over while waiting for a backend"));
                Session::waiting(client, id, tunnel.local, peer)
            }
            Frozen::Fanout(settings, mut state) => {
                let mut dests = Vec::with_capacity(state.open_dests());
                for (i, frozen) in state.dests.iter_mut().enumerate() {
                    match (frozen.phase, upstreams.get_mut(i).and_then(Option::take)) {
                        (FrozenPhase::Open, Some(socket)) => dests.push(socket.into_std()),
                        (FrozenPhase::Open, None) => {
                            // Cannot happen: an open destination has its socket.
                            error!(
                                conn = id,
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
                span.in_scope(|| {
                    debug!(
                        buffered = state.buffered(),
                        destinations = dests.len(),
                        "handed over"
                    )
                });
                let fan = Fanout {
                    settings,
                    dests: targets,
                    state: *state,
                };
                Session::fanout(client, dests, id, tunnel.local, peer, fan)
            }
            // Ruled out above, before anything was taken out.
            Frozen::Stays => {
                error!(
                    conn = id,
                    "a connection that stays was taken out; a porxy bug: resetting it"
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
    fn send_export(
        &mut self,
        to: Sender<Session>,
        session: Session,
        tunnel: Arc<Tunnel>,
        id: u64,
        now: Instant,
    ) {
        if let Err(returned) = to.send(session) {
            debug!(
                reactor = self.counts.shard(),
                "the export was abandoned; keeping the connection"
            );
            self.handing_over.end();
            self.import(returned.0, tunnel, id, now);
        }
    }
}
