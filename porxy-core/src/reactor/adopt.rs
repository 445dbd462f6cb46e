//! Taking a client in, relayed or fan-out: counted as opened, its socket registered before it
//! enters the slab, then (once it is ready for one) a backend picked, or its destinations
//! opened. A client that cannot be taken in is turned away with a reset, and counted closed as
//! every connection is.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use tracing::debug;

use super::close_log::Ended;
use super::slot::Slot;
use super::socket::Socket;
use super::tally::Tally;
use super::upstreams::Upstreams;
use super::{reset, token, Accepted, Origin, Reactor, SOCKET_INTEREST};
use crate::conn::admission::Verdict;
use crate::conn::close::CloseReason;
use crate::conn::machine::{Machine, SocketIx};
use crate::conn::opening::{Opened, Opening};
use crate::conn::{Action, Closing, Conn};
use crate::tls::stream::TlsStream;
use crate::tunnel::Tunnel;

/// A connection with nothing to learn from its client picks at once.
const PICK: Action = Action::Pick { source: None };

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
            Origin::Accepted => self.counts.opened(tunnel),
            Origin::Imported => self.counts.imported(tunnel),
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
        let span = match (tunnel.fanout, &tunnel.opening) {
            (Some(_), _) => tracing::debug_span!(
                "conn",
                id,
                tunnel = %tunnel.local,
                client = %peer,
                source = tracing::field::Empty,
                fanout = true
            ),
            // `source`: the client its opening names, once read.
            (None, Some(_)) => tracing::debug_span!(
                "conn",
                id,
                tunnel = %tunnel.local,
                client = %peer,
                source = tracing::field::Empty,
                upstream = tracing::field::Empty
            ),
            (None, None) => tracing::debug_span!(
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
        if let Some(opening) = &tunnel.opening {
            if !opening.admits_sender(peer) {
                // Not a peer that may name another client: refused before a byte is read.
                let ended = Ended::without_upstream(&span, id, &tunnel, peer);
                self.turn_away(&client, ended, CloseReason::Denied, None, now);
                return;
            }
        }
        // A TLS listener's client speaks TLS from its first byte after any PROXY header: its
        // session is made now, and its handshake is done in the opening.
        let client = match (&tunnel.tls, origin) {
            (Some(tls), Origin::Accepted) => match tls.session() {
                Ok(session) => Socket::Tls(Box::new(TlsStream::server(client, session))),
                Err(error) => {
                    let ended = Ended::without_upstream(&span, id, &tunnel, peer);
                    let error = std::io::Error::other(error);
                    let reason = CloseReason::LocalResource;
                    self.turn_away(&client, ended, reason, Some(&error), now);
                    return;
                }
            },
            _ => Socket::Tcp(client),
        };
        span.in_scope(|| debug!("accepted"));
        // What the connection is until it picks: learning from its client first, if its tunnel
        // says so; else ready at once (a relayed one as it will stay, a fan-out one until its
        // destinations are opened).
        let (machine, action) = match (&tunnel.opening, tunnel.fanout.is_some()) {
            (Some(opening), _) => {
                let opening = Opening::new(opening, now);
                (Machine::Opening(Box::new(opening)), Action::Wait)
            }
            (None, true) => (Machine::Opened(Opened::default()), PICK),
            (None, false) => {
                let conn = Conn::queued(now, tunnel.settings, tunnel.attempts);
                (Machine::Relay(conn), PICK)
            }
        };
        let upstreams = match tunnel.fanout {
            Some(_) => Upstreams::fanout(Vec::new(), Vec::new()),
            None => Upstreams::relay(),
        };
        let mut slot = Slot::new(id, machine, client, upstreams, peer, tunnel, now, span);
        if origin == Origin::Imported {
            slot.tally = Tally::imported();
        }
        if origin == Origin::Imported && self.handing_over.exporting() {
            self.handing_over.given_back(key, id);
        }
        self.slots.insert_at(key, slot);
        self.after_step(key, action, None, now);
    }

    /// Connection `key` is ready for its upstreams (`source`: the client its opening named):
    /// the tunnel's rules judge the real client, its relay or fan-out machine is built with
    /// what the opening learned, then it picks a backend, or opens its destinations.
    pub(super) fn pick(&mut self, key: usize, source: Option<SocketAddr>, now: Instant) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if let Some(source) = source {
            // The pick, the rules and the close record take it for the client.
            slot.span.record("source", tracing::field::display(source));
            slot.peer = source;
        }
        if let Err(reason) = admit(slot, now) {
            let close = Action::Close {
                reason,
                client: Closing::Reset,
                upstream: Closing::Graceful,
            };
            return self.finish(key, close, None, now);
        }
        let opened = slot.machine.take_opened();
        if let Some(details) = opened.as_ref().and_then(|o| o.details.as_deref()) {
            slot.span
                .in_scope(|| debug!(details, "what the client's preamble says besides"));
        }
        let mut server_name = opened.as_ref().and_then(|o| o.server_name.as_deref());
        let mut client_subject = None;
        if let Socket::Tls(tls) = &slot.client {
            server_name = tls.server_name();
            client_subject = tls.client_subject();
            let sni = server_name.unwrap_or("");
            let client = client_subject.as_deref().unwrap_or("");
            slot.span
                .in_scope(|| debug!(sni, client_subject = client, "TLS handshake done"));
        }
        slot.tally.identified(server_name, client_subject);
        if let Some(routing) = &slot.tunnel.sni_routing {
            let sni = server_name.unwrap_or("");
            match routing.outside(server_name) {
                Some(outside) => {
                    slot.span.in_scope(|| debug!(sni, "routed by server name"));
                    slot.upstreams.rule_out(outside);
                }
                None => {
                    let why = match server_name {
                        Some(name) => format!("no route takes the server name {name:?}"),
                        None => "no server name given, and no `*` route".to_string(),
                    };
                    let close = Action::Close {
                        reason: CloseReason::UnknownServerName,
                        client: Closing::Reset,
                        upstream: Closing::Graceful,
                    };
                    return self.finish(key, close, Some(&io::Error::other(why)), now);
                }
            }
        }
        // (A relayed connection's backend gets its PROXY header, if any, once connected: it
        // depends on the backend.)
        if let Some(opened) = opened {
            if let Some(fan) = slot.tunnel.fanout {
                return self.open_fanout(key, fan, opened, now);
            }
            let tunnel = &slot.tunnel;
            let conn = Conn::opened(
                now,
                tunnel.settings,
                tunnel.attempts,
                &opened.early,
                opened.client_ready,
                &mut self.pools,
            );
            slot.machine = Machine::Relay(conn);
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
        let lived = conn.opened.map_or(std::time::Duration::ZERO, |at| {
            now.saturating_duration_since(at)
        });
        let opened = conn.opened.unwrap_or(now);
        self.record_unslotted(conn.id, tunnel, conn.peer, opened, false, reason, error);
        self.close_log.closed(conn, reason, error, now);
        reset(client);
        self.counts.closed(tunnel, reason, lived);
    }
}

/// The verdicts on a connection's real client before its pick, in order: the tunnel's access
/// rules, its per-client rate (a token taken), its per-client limit (a count taken, held until
/// the connection ends or leaves: `finish`, `export`). The first refusal is the reason to close.
fn admit(slot: &Slot, now: Instant) -> Result<(), CloseReason> {
    let (tunnel, client) = (&slot.tunnel, slot.tunnel.client_key(slot.peer.ip()));
    if let Verdict::Refuse(reason) = tunnel.admit(slot.peer) {
        return Err(reason);
    }
    if let Some((rate, burst)) = tunnel.rate_per_client {
        if !tunnel.rates.admit(client, now, rate, burst) {
            return Err(CloseReason::ClientRate);
        }
    }
    if let Some(max) = tunnel.max_conns_per_client {
        if !tunnel.clients.take(slot.id, client, max) {
            return Err(CloseReason::ClientLimit);
        }
    }
    Ok(())
}
