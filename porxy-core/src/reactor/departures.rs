//! Upstreams leaving a connection that goes on: a fan-out destination that failed, lagged, was
//! taken out by an operator or finished; and every connection's upstream on a backend an
//! operator removed or disabled.

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::{reset, Reactor};
use crate::balance::backend::Backend;
use crate::conn::close::CloseReason;
use crate::conn::fanout::DestEnd;
use crate::conn::{Action, Closing};

impl Reactor {
    /// Closes and counts the upstreams that left connection `key`; true if any did.
    #[inline]
    pub(super) fn close_departed(&mut self, key: usize, now: Instant) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        let departures = slot.machine.take_departures();
        if departures.is_empty() {
            return false;
        }
        let tunnel = slot.tunnel.clone();
        let span = slot.span.clone();
        let mut closed = Vec::with_capacity(departures.len());
        for departure in departures {
            let backend = slot
                .upstreams
                .backend(departure.dest, &tunnel)
                .map(|(index, _)| index);
            let addr = slot.upstreams.addr(departure.dest, &tunnel);
            // Dropping a mio socket closes it, which also takes it out of the epoll set.
            let (socket, released) = slot.upstreams.take(departure.dest, &tunnel);
            slot.tally.dest_left(departure.dest, departure.end);
            if let Some(socket) = socket {
                if departure.closing == Closing::Reset {
                    reset(&socket);
                }
                closed.push((departure.end, backend, addr));
            }
            self.queue.slot_freed(released);
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

    /// Takes `backend` out of every connection with an upstream on it (an operator disabled
    /// or removed it): a relayed connection ends, as does a fan-out connection whose primary
    /// it is; other fan-out connections go on without it.
    pub(super) fn remove_backend(&mut self, backend: &Arc<Backend>, now: Instant) {
        let hit = self
            .slots
            .keys_where(|s| s.upstreams.on_backend(&s.tunnel, backend).is_some());
        for key in hit {
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            let Some(i) = slot.upstreams.on_backend(&slot.tunnel, backend) else {
                continue;
            };
            let action = slot.machine.remove_upstream(i).unwrap_or(Action::Wait);
            self.after_step(key, action, None, now);
        }
    }
}
