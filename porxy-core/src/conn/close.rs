//! Why a connection ended, and whose fault that was.
//!
//! Every connection ends with exactly one [`CloseReason`]; tunnels count them, logs name them.

use std::fmt;

/// Why a proxied connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// Both sides finished cleanly (FIN both ways, every byte delivered).
    Completed,
    /// The client reset the connection or its socket failed.
    ClientReset,
    /// The upstream reset the connection or its socket failed.
    UpstreamReset,
    /// The upstream refused the connection.
    ConnectRefused,
    /// The upstream did not answer within the connect timeout.
    ConnectTimeout,
    /// The upstream connect failed otherwise (unreachable, no route, ...).
    ConnectError,
    /// The upstream's TLS handshake failed (its certificate did not verify, no common
    /// protocol, ...): a failed connect.
    UpstreamTls,
    /// No byte passed either way for the idle timeout.
    IdleTimeout,
    /// One side closed and the other did not follow in time: `client_fin_timeout` after the
    /// client's FIN, `server_fin_timeout` after the upstream's.
    HalfClosedTimeout,
    /// porxy ran short of a local resource (descriptors, memory, ports).
    LocalResource,
    /// No backend was in service (all down, draining or disabled).
    NoBackend,
    /// Every backend stayed at its connection limit for the queue timeout.
    QueueTimeout,
    /// An operator disabled or removed the backend the connection was on.
    BackendRemoved,
    /// An operator closed the tunnel together with its connections.
    TunnelClosed,
    /// The proxy stopped (at once, or when the drain deadline passed).
    ProxyStopped,
    /// The client's PROXY protocol header was malformed, too long, cut short or did not come
    /// within `proxy_timeout`.
    ProxyHeader,
    /// An access rule (`allow`, `deny`) refused the client, or its peer may not send a PROXY
    /// header (`proxy_from`).
    Denied,
    /// The client already held `max_conns_per_client` connections.
    ClientLimit,
    /// The client opened new connections faster than `rate_per_client` (and `rate_burst`).
    ClientRate,
    /// The client's TLS handshake failed (not TLS, a protocol the listener does not take, a
    /// bad record) or did not end within `tls_handshake_timeout`; on a listener that routes by
    /// server name, its ClientHello was not one, or did not come whole in that time.
    TlsHandshake,
    /// The client asked for a server name (or for none) that no route of `sni_routes` takes.
    UnknownServerName,
    /// Not an end: the connection was handed over, sockets and all, to another porxy process
    /// (a zero-downtime upgrade), where it goes on.
    HandedOver,
}

/// Who caused a connection to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// Nobody: the connection ended normally.
    None,
    /// The client.
    Client,
    /// The upstream.
    Upstream,
    /// porxy itself (resources).
    Local,
    /// An operator's decision.
    Operator,
    /// Nobody in particular: a deadline passed (no byte for the idle timeout, a half-closed
    /// connection whose other side did not follow in time).
    Timeout,
}

impl Fault {
    /// A stable snake_case name, for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Client => "client",
            Fault::Upstream => "upstream",
            Fault::Local => "local",
            Fault::Operator => "operator",
            Fault::Timeout => "timeout",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CloseReason {
    /// Every reason, in counter order.
    pub const ALL: [CloseReason; 22] = [
        CloseReason::Completed,
        CloseReason::ClientReset,
        CloseReason::UpstreamReset,
        CloseReason::ConnectRefused,
        CloseReason::ConnectTimeout,
        CloseReason::ConnectError,
        CloseReason::UpstreamTls,
        CloseReason::IdleTimeout,
        CloseReason::HalfClosedTimeout,
        CloseReason::LocalResource,
        CloseReason::NoBackend,
        CloseReason::QueueTimeout,
        CloseReason::BackendRemoved,
        CloseReason::TunnelClosed,
        CloseReason::ProxyStopped,
        CloseReason::ProxyHeader,
        CloseReason::Denied,
        CloseReason::ClientLimit,
        CloseReason::ClientRate,
        CloseReason::TlsHandshake,
        CloseReason::UnknownServerName,
        CloseReason::HandedOver,
    ];

    /// Position in [`CloseReason::ALL`], for counter arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// A stable snake_case name, for status output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Completed => "completed",
            CloseReason::ClientReset => "client_reset",
            CloseReason::UpstreamReset => "upstream_reset",
            CloseReason::ConnectRefused => "connect_refused",
            CloseReason::ConnectTimeout => "connect_timeout",
            CloseReason::ConnectError => "connect_error",
            CloseReason::UpstreamTls => "upstream_tls",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::HalfClosedTimeout => "half_closed_timeout",
            CloseReason::LocalResource => "local_resource",
            CloseReason::NoBackend => "no_backend",
            CloseReason::QueueTimeout => "queue_timeout",
            CloseReason::BackendRemoved => "backend_removed",
            CloseReason::TunnelClosed => "tunnel_closed",
            CloseReason::ProxyStopped => "proxy_stopped",
            CloseReason::ProxyHeader => "proxy_header",
            CloseReason::Denied => "denied",
            CloseReason::ClientLimit => "client_limit",
            CloseReason::ClientRate => "client_rate",
            CloseReason::TlsHandshake => "tls_handshake",
            CloseReason::UnknownServerName => "sni_unknown",
            CloseReason::HandedOver => "handed_over",
        }
    }

    /// Whose fault the ending was.
    pub fn fault(self) -> Fault {
        match self {
            // A handed-over connection did not end: it goes on in another process.
            CloseReason::Completed | CloseReason::HandedOver => Fault::None,
            CloseReason::ClientReset => Fault::Client,
            CloseReason::UpstreamReset
            | CloseReason::ConnectRefused
            | CloseReason::ConnectTimeout
            | CloseReason::ConnectError
            | CloseReason::UpstreamTls
            | CloseReason::NoBackend
            | CloseReason::QueueTimeout => Fault::Upstream,
            CloseReason::IdleTimeout | CloseReason::HalfClosedTimeout => Fault::Timeout,
            CloseReason::ProxyHeader
            | CloseReason::ClientLimit
            | CloseReason::ClientRate
            | CloseReason::TlsHandshake
            | CloseReason::UnknownServerName => Fault::Client,
            CloseReason::LocalResource => Fault::Local,
            CloseReason::TunnelClosed
            | CloseReason::ProxyStopped
            | CloseReason::BackendRemoved
            | CloseReason::Denied => Fault::Operator,
        }
    }

    /// True for the failures of the upstream connect.
    pub fn is_connect_failure(self) -> bool {
        matches!(
            self,
            CloseReason::ConnectRefused
                | CloseReason::ConnectTimeout
                | CloseReason::ConnectError
                | CloseReason::UpstreamTls
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason}");
        }
    }
}
