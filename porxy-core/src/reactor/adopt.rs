//! Taking a relayed client in: counted as opened, its socket registered before it enters the
//! slab, then a backend picked (or handed over, during an export). A client that cannot be
//! taken in is turned away with a reset, and counted closed as every connection is.

use std::io;
use std::time::Instant;

use mio::net::TcpStream;
use tracing::debug;

use super::close_log::Ended;
use super::handover::Exported;
use super::socket::Socket;
use super::{reset, token, Accepted, Origin, Reactor, Slot, SOCKET_INTEREST};
use crate::balance::Tried;
use crate::conn::close::CloseReason;
use crate::conn::{Conn, Side};
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

    /// Takes in a client (accepted, or handed over while it waited for a backend), then finds it
    /// a backend; during an export, it leaves again at once.
    pub(super) fn adopt(&mut self, accepted: Accepted, origin: Origin, now: Instant) {
        let Accepted {
            stream: mut client,
            peer,
            tunnel,
            id,
            nodelay,
        } = accepted;
        let span = tracing::debug_span!(
            "conn",
            id,
            tunnel = %tunnel.local,
            client = %peer,
            upstream = tracing::field::Empty
        );
        self.take_client(&mut client, &tunnel, origin, nodelay);
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        if let Err(error) = self.poll.registry().register(
            &mut client,
            token::token(key, Side::Client),
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
        span.in_scope(|| debug!("accepted"));
        let conn = Conn::queued(now, tunnel.settings, tunnel.attempts);
        entry.insert(Slot {
            id,
            conn,
            client: Socket::Tcp(client),
            upstream: None,
            backend: None,
            tried: Tried::default(),
            peer,
            tunnel,
            timer_armed: None,
            opened: now,
            span,
        });
        if self.export(key, now) == Exported::Left {
            return;
        }
        self.assign_backend(key, None, now);
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
