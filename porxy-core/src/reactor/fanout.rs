//! Opening a fan-out connection: a connect to every destination in service at once, each
//! holding a slot on its backend while its socket lives. Destination `i` is upstream `i` of the
//! connection, to backend `i` of the tunnel it started with.

use std::time::Instant;

use tracing::{debug, warn};

use super::socket::Socket;
use super::token;
use super::upstream::start_connect;
use super::upstreams::{Target, Upstreams};
use super::Reactor;
use crate::conn::close::CloseReason;
use crate::conn::fanout::{FanConn, FanoutSettings};
use crate::conn::machine::{Machine, SocketIx};
use crate::conn::opening::Opened;
use crate::conn::{Action, Closing};

impl Reactor {
    /// Opens fan-out connection `key` with `fan` and what its opening learned: a connect to
    /// every destination in service; closed if too few (or not the primary) could start.
    pub(super) fn open_fanout(
        &mut self,
        key: usize,
        fan: FanoutSettings,
        opened: Opened,
        now: Instant,
    ) {
        let Some(slot) = self.slots.get(key) else {
            return;
        };
        let (tunnel, span) = (slot.tunnel.clone(), slot.span.clone());
        let backends = &tunnel.balancer.backends;
        // Every destination that gets a PROXY header gets the same one (one version per
        // fan-out tunnel: `TunnelSpec::check`), at the start of the one copy of the stream.
        let header = (0..backends.len()).find_map(|i| slot.proxy_header_to(i));
        let gets_header: Vec<bool> = (0..backends.len())
            .map(|i| tunnel.send_proxy_to(i).is_some())
            .collect();
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
            let close = Action::Close {
                reason: CloseReason::NoBackend,
                client: Closing::Reset,
                upstream: Closing::Graceful,
            };
            return self.finish(key, close, None, now);
        }
        span.in_scope(|| debug!(destinations = live, "destinations opened"));
        let preface = header
            .as_deref()
            .map(|header| (header, gets_header.as_slice()));
        let conn = FanConn::opened(
            now,
            tunnel.settings,
            fan,
            &connecting,
            opened,
            preface,
            &mut self.pools,
        );
        let targets = Target::every_backend(&tunnel);
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        slot.machine = Machine::Fanout(Box::new(conn));
        slot.upstreams = Upstreams::fanout(dests, targets);
        self.after_step(key, Action::Wait, None, now);
    }
}
