//! Taking a client in, relayed or fan-out: counted as opened, its socket registered before it
//! enters the slab, then (once it is ready for one) a backend picked, or its destinations
//! opened. A client that cannot be taken in is turned away with a reset, and counted closed as
//! every connection is.

use std::io;
use std::time::Instant;

use mio::net::TcpStream;
use tracing::debug;

use super::close_log::Ended;
use super::fanout::FanClient;
use super::slot::Slot;
use super::socket::Socket;
use super::upstreams::Upstreams;
use super::{reset, token, Accepted, Origin, Reactor, SOCKET_INTEREST};
use crate::conn::close::CloseReason;
use crate::conn::machine::{Machine, SocketIx};
use crate::conn::{Action, Conn};
use crate::tunnel::Tunnel;

impl Reactor {
    /// What every client taken in goes through, relayed or fan-out: counted as opened (or as
    /// imported, when handed over), and TCP_NODELAY set unless it came with it.
    pub(super) fn take_client(
        &mut self,
        client: &mut TcpStream,
        tunnel: &Tunnel,
        origin: Origin,
        nodelay: bool,
    ) {
        match origin {
            Origin::Accepted => {
                tunnel.stats.reactor(self.index).opened();
                tunnel.generation.opened();
                self.stats.opened();
            }
            Origin::Imported => self.count_imported(tunnel),
        }
        if !nodelay {
            let _ = client.set_nodelay(true);
        }
    }

    /// Takes in a client (accepted, or handed over while it waited for a backend); during an
    /// export, a relayed one leaves again at once.
    pub(super) fn adopt(&mut self, accepted: Accepted, origin: Origin, now: Instant) {
        let Accepted {
            stream: mut client,
            peer,
            tunnel,
            id,
            nodelay,
        } = accepted;
        let span = match tunnel.fanout {
            Some(_) => {
                tracing::debug_span!("conn", id, tunnel = %tunnel.local, client = %peer, fanout = true)
            }
            None => tracing::debug_span!(
                "conn",
                id,
                tunnel = %tunnel.local,
                client = %peer,
                upstream = tracing::field::Empty
            ),
        };
        self.take_client(&mut client, &tunnel, origin, nodelay);
        // Nothing else enters the slab before the insert, so the key holds.
        let key = self.slots.vacant_key();
        if let Err(error) = self.poll.registry().register(
            &mut client,
            token::token(key, SocketIx::Client),
            SOCKET_INTEREST,
        ) {
            let ended = Ended::without_upstream(&span, id, &tunnel, peer);
            self.turn_away(
                &client,
                ended,
                CloseReason::LocalResource,
                Some(&error),
                now,
            );
            return;
        }
        if let Some(fan) = tunnel.fanout {
            let client = FanClient {
                key,
                client,
                peer,
                tunnel,
                id,
                span,
            };
            return self.open_fanout(client, fan, now);
        }
        span.in_scope(|| debug!("accepted"));
        let conn = Conn::queued(now, tunnel.settings, tunnel.attempts);
        let slot = Slot::new(
            id,
            Machine::Relay(conn),
            Socket::Tcp(client),
            Upstreams::relay(),
            peer,
            tunnel,
            now,
            span,
        );
        let inserted = self.slots.insert(slot);
        debug_assert_eq!(inserted, key);
        self.after_step(key, Action::Pick, None, now);
    }

    /// Ends a client taken in but never given a connection (no descriptor to watch it, no
    /// destination for it): logs the end of `conn` for `reason`, resets the client and counts
    /// the close, as every such refusal must.
    pub(super) fn turn_away(
        &mut self,
        client: &impl std::os::fd::AsFd,
        conn: Ended<'_>,
        reason: CloseReason,
        error: Option<&io::Error>,
        now: Instant,
    ) {
        let tunnel = conn.tunnel;
        self.close_log.closed(conn, reason, error, now);
        reset(client);
        self.count_closed(tunnel, reason);
    }

    /// Counts a connection of this reactor as ended for `reason`: in its tunnel (the reason
    /// before the open count, see `status.rs`), its generation, this reactor and the
    /// proxy-wide count against the connection limit.
    pub(super) fn count_closed(&self, tunnel: &Tunnel, reason: CloseReason) {
        tunnel.stats.reactor(self.index).closed(reason);
        tunnel.generation.closed();
        self.stats.closed();
        self.accepting.admission.release();
    }
}
