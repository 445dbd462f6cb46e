//! Opening a fan-out connection: a connect to every destination in service at once, each
//! holding a slot on its backend while its socket lives. Destination `i` is upstream `i` of the
//! connection, to backend `i` of the tunnel it started with.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use tracing::{debug, warn};

use super::close_log::Ended;
use super::slot::Slot;
use super::socket::Socket;
use super::token;
use super::upstream::start_connect;
use super::upstreams::{Target, Upstreams};
use super::Reactor;
use crate::conn::close::CloseReason;
use crate::conn::fanout::{FanConn, FanoutSettings};
use crate::conn::machine::{Machine, SocketIx};
use crate::conn::Action;
use crate::tunnel::Tunnel;

/// A fan-out client taken in, its socket registered under key `key`.
pub(super) struct FanClient {
    pub(super) key: usize,
    pub(super) client: TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) tunnel: Arc<Tunnel>,
    pub(super) id: u64,
    pub(super) span: tracing::Span,
}

impl Reactor {
    /// Opens fan-out connection `client` with `fan`: a connect to every destination in service;
    /// turned away if too few (or not the primary) could start.
    pub(super) fn open_fanout(&mut self, client: FanClient, fan: FanoutSettings, now: Instant) {
        let FanClient {
            key,
            client,
            peer,
            tunnel,
            id,
            span,
        } = client;
        let backends = &tunnel.balancer.backends;
        let mut dests: Vec<Option<Socket>> = Vec::with_capacity(backends.len());
        for (i, backend) in backends.iter().enumerate() {
            if backend.try_reserve(now, &tunnel.balancer.passive).is_err() {
                dests.push(None);
                continue;
            }
            let token = token::token(key, SocketIx::Upstream(i));
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
            for (i, stream) in dests.iter().enumerate() {
                if stream.is_some() {
                    backends[i].release();
                }
            }
            drop(dests);
            let ended = Ended::without_upstream(&span, id, &tunnel, peer);
            self.turn_away(&client, ended, CloseReason::NoBackend, None, now);
            return;
        }
        span.in_scope(|| debug!(destinations = live, "accepted"));
        let conn = FanConn::new(now, tunnel.settings, fan, &connecting);
        let targets = backends
            .iter()
            .enumerate()
            .map(|(i, b)| Target {
                addr: b.addr,
                backend: Some(i),
            })
            .collect();
        let slot = Slot::new(
            id,
            Machine::Fanout(conn),
            Socket::Tcp(client),
            Upstreams::fanout(dests, targets),
            peer,
            tunnel,
            now,
            span,
        );
        // Nothing else entered the slab since the key was taken.
        let inserted = self.slots.insert(slot);
        debug_assert_eq!(inserted, key);
        self.after_step(key, Action::Wait, None, now);
    }
}
