//! What a connect's outcome means for the backend's passive health, and the log lines a user
//! sees when a backend goes down or comes back: the same for relayed and fan-out connections.

use std::io;
use std::time::Instant;

use tracing::{info, warn};

use super::Reactor;
use crate::balance::backend::Backend;
use crate::conn::close::CloseReason;
use crate::tunnel::Tunnel;

impl Reactor {
    /// A connect to `backend` of `tunnel` succeeded: it counts toward bringing the backend back.
    pub(super) fn connect_succeeded(tunnel: &Tunnel, backend: &Backend) {
        if backend.connect_succeeded(&tunnel.balancer.passive) {
            info!(tunnel = %tunnel.local, backend = %backend.addr, "backend is up again: a connect succeeded");
        }
    }

    /// A connect to `tunnel`'s backend failed for `reason` (with `error`, when there is one
    /// to tell): counted against the tunnel and, if given, the backend's health, which it may
    /// take down. Not for porxy's own shortage, which is no backend's fault.
    pub(super) fn connect_failed(
        &self,
        tunnel: &Tunnel,
        backend: Option<&Backend>,
        reason: CloseReason,
        error: Option<&io::Error>,
        now: Instant,
    ) {
        self.counts.connect_failed(tunnel);
        let Some(backend) = backend else {
            return;
        };
        if backend.connect_failed(now, &tunnel.balancer.passive) {
            let error = error.map(|e| e.to_string());
            warn!(
                tunnel = %tunnel.local,
                backend = %backend.addr,
                max_fails = tunnel.balancer.passive.max_fails,
                reason = %reason,
                error,
                "backend is down: connects fail"
            );
        }
    }
}
