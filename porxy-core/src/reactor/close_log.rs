//! The log line for a connection's end, with failures rate-limited per reactor.
//!
//! A connection that fails (its upstream connect fails, no backend takes it, porxy has no
//! descriptor for its upstream) is worth a warning. But failures come in floods: when
//! descriptors run out, every client accepted is reset for want of one, and when a backend
//! refuses everything, every client fails alike. So each reactor warns about each kind of
//! failure at most once per [`LOG_PERIOD`], with how many there were since its last warning
//! (`times`), and logs the others at debug level. Ends that are no failure are logged at
//! debug level (an upstream reset at info), one line each, as before.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::conn::close::CloseReason;
use crate::log_limit::LogLimit;
use crate::tunnel::Tunnel;

/// At most one warning per kind of failure per reactor in this period.
pub(super) const LOG_PERIOD: Duration = Duration::from_secs(1);

/// A reactor's rate limits for failure warnings.
#[derive(Debug, Default)]
pub(super) struct CloseLog {
    /// Connections that failed, one limit per [`CloseReason`] (by its index).
    failures: [LogLimit; CloseReason::ALL.len()],
    /// Fan-out destinations whose connect failed (the connection itself may go on).
    destinations: LogLimit,
}

/// The connection whose end is logged.
pub(super) struct Ended<'a> {
    pub(super) span: &'a tracing::Span,
    pub(super) id: u64,
    pub(super) tunnel: &'a Tunnel,
    pub(super) peer: SocketAddr,
    pub(super) upstream: Option<SocketAddr>,
    /// When this process took the connection in; `None` for a client turned away at once.
    pub(super) opened: Option<Instant>,
}

impl<'a> Ended<'a> {
    /// A connection with no one upstream to name (logged as `upstream=-`): a client turned
    /// away before it had one, or a fan-out connection, which has many.
    pub(super) fn without_upstream(
        span: &'a tracing::Span,
        id: u64,
        tunnel: &'a Tunnel,
        peer: SocketAddr,
    ) -> Self {
        Ended {
            span,
            id,
            tunnel,
            peer,
            upstream: None,
            opened: None,
        }
    }
}

/// True for the ends that are failures worth a (rate-limited) warning.
fn is_failure(reason: CloseReason) -> bool {
    reason.is_connect_failure()
        || matches!(
            reason,
            CloseReason::LocalResource
                | CloseReason::NoBackend
                | CloseReason::QueueTimeout
                | CloseReason::ProxyHeader
                | CloseReason::Denied
                | CloseReason::ClientLimit
                | CloseReason::ClientRate
                | CloseReason::TlsHandshake
                | CloseReason::UnknownServerName
        )
}

impl CloseLog {
    /// Counts a failure of kind `reason` at `now`; `Some(times)` when a warning is due, for the
    /// `times` failures of that kind since the last one. `None` for ends that are no failure.
    fn failure_due(&mut self, reason: CloseReason, now: Instant) -> Option<u64> {
        if !is_failure(reason) {
            return None;
        }
        self.failures[reason.index()].occurred(now, LOG_PERIOD)
    }

    /// Counts a fan-out destination's failed connect at `now`; `Some(times)` when a warning is
    /// due.
    pub(super) fn destination_failure_due(&mut self, now: Instant) -> Option<u64> {
        self.destinations.occurred(now, LOG_PERIOD)
    }

    /// Logs the end of `conn` for `reason` (with the socket `error` that caused it, if any):
    /// the one line every connection ends with, relayed or fan-out, with how long it lasted in
    /// this process (`duration_ms`).
    pub(super) fn closed(
        &mut self,
        conn: Ended<'_>,
        reason: CloseReason,
        error: Option<&io::Error>,
        now: Instant,
    ) {
        let _enter = conn.span.enter();
        let duration_ms = conn.opened.map_or(0, |opened| {
            now.saturating_duration_since(opened).as_millis() as u64
        });
        if !is_failure(reason) {
            match reason {
                CloseReason::UpstreamReset => info!(
                    conn = conn.id,
                    tunnel = %conn.tunnel.local,
                    upstream = %display_upstream(conn.upstream),
                    reason = %reason,
                    duration_ms,
                    "upstream reset the connection"
                ),
                _ => debug!(
                    conn = conn.id,
                    tunnel = %conn.tunnel.local,
                    client = %conn.peer,
                    reason = %reason,
                    duration_ms,
                    "closed"
                ),
            }
            return;
        }
        let error = error.map(|e| e.to_string());
        let error = error.as_deref().unwrap_or("");
        let upstream = display_upstream(conn.upstream);
        match self.failure_due(reason, now) {
            Some(times) => warn!(
                conn = conn.id,
                tunnel = %conn.tunnel.local,
                client = %conn.peer,
                %upstream,
                reason = %reason,
                error,
                times,
                duration_ms,
                "connection failed"
            ),
            None => debug!(
                conn = conn.id,
                client = %conn.peer,
                %upstream,
                reason = %reason,
                error,
                duration_ms,
                "connection failed"
            ),
        }
    }
}

fn display_upstream(upstream: Option<SocketAddr>) -> String {
    upstream.map_or_else(|| "-".to_string(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_warns_once_a_period_with_a_count() {
        let mut log = CloseLog::default();
        let t0 = Instant::now();
        let soon = t0 + Duration::from_millis(10);
        assert_eq!(log.failure_due(CloseReason::LocalResource, t0), Some(1));
        for _ in 0..100 {
            assert_eq!(log.failure_due(CloseReason::LocalResource, soon), None);
        }
        // Another kind of failure is not hidden by the flood.
        assert_eq!(log.failure_due(CloseReason::ConnectRefused, soon), Some(1));
        assert_eq!(
            log.failure_due(CloseReason::LocalResource, t0 + LOG_PERIOD),
            Some(101),
            "the next warning counts those logged at debug level"
        );
    }

    #[test]
    fn ends_that_are_no_failure_are_never_counted() {
        let mut log = CloseLog::default();
        let now = Instant::now();
        for reason in [
            CloseReason::Completed,
            CloseReason::ClientReset,
            CloseReason::UpstreamReset,
            CloseReason::IdleTimeout,
        ] {
            assert_eq!(log.failure_due(reason, now), None, "{reason}");
        }
        for reason in [
            CloseReason::ConnectRefused,
            CloseReason::ConnectTimeout,
            CloseReason::ConnectError,
            CloseReason::NoBackend,
            CloseReason::QueueTimeout,
        ] {
            assert_eq!(log.failure_due(reason, now), Some(1), "{reason}");
        }
    }
}
