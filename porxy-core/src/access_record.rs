//! The record of a connection's end, for an access log: what an operator asks about one
//! client's connection (who, where to, how long, how many bytes, why it ended and whose fault
//! that was), typed, and handed to the embedding application's [`AccessSink`].
//!
//! A reactor builds one record per connection as it ends, in the process where it ends: a
//! connection handed to a successor during an upgrade is recorded there, not here.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::conn::close::{CloseReason, Fault};

/// Where connection records go. Given to [`ProxyBuilder::access_sink`](crate::ProxyBuilder).
///
/// Called on a reactor thread as each connection ends: an implementation must not block (hand
/// the record to another thread, over a bounded queue, and count what does not fit).
pub trait AccessSink: Send + Sync {
    /// Whether connections of the tunnel listening on `tunnel` are recorded: when false, no
    /// record is built for them.
    fn wants(&self, tunnel: SocketAddr) -> bool {
        let _ = tunnel;
        true
    }

    /// Takes the record of a connection that ended.
    fn record(&self, record: ConnectionRecord);
}

/// One connection, as it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionRecord {
    /// The process-wide connection id (the one its log lines carry).
    pub id: u64,
    /// The tunnel's listen address.
    pub tunnel: SocketAddr,
    /// The client: the one a PROXY protocol header named, else the TCP peer.
    pub client: SocketAddr,
    /// The backend a relayed connection went to, or the last one it tried when every connect
    /// failed (`None`: it never got as far, or fan-out).
    pub backend: Option<SocketAddr>,
    /// A fan-out connection's destinations, in the tunnel's order, each with its own outcome
    /// (empty for a relayed connection).
    pub destinations: Vec<DestinationRecord>,
    /// The configuration generation its tunnel version belongs to.
    pub generation: u64,
    /// When the connection was accepted (by the process before, for one taken over).
    pub started: SystemTime,
    /// When it ended.
    pub ended: SystemTime,
    /// How long the connect to its backend took (`None`: no connect completed here).
    pub connect_time: Option<Duration>,
    /// Bytes relayed from the client to its upstream(s).
    pub bytes_to_upstream: u64,
    /// Bytes relayed from the upstream to the client.
    pub bytes_to_client: u64,
    /// Why it ended.
    pub reason: CloseReason,
    /// What went wrong, in words, when a socket error or a failed opening ended it.
    pub error: Option<String>,
    /// The server name the client asked for (TLS SNI), when it sent one.
    pub server_name: Option<String>,
    /// The subject of the certificate a TLS client showed, when it showed one.
    pub tls_client_subject: Option<String>,
    /// Taken over from the porxy process this one replaced.
    pub imported: bool,
}

impl ConnectionRecord {
    /// How long the connection lived.
    pub fn duration(&self) -> Duration {
        self.ended
            .duration_since(self.started)
            .unwrap_or(Duration::ZERO)
    }

    /// Whose fault the end was.
    pub fn fault(&self) -> Fault {
        self.reason.fault()
    }
}

/// One destination of a fan-out connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DestinationRecord {
    /// Its backend's address.
    pub addr: SocketAddr,
    /// Bytes of the client's stream sent to it.
    pub bytes_sent: u64,
    /// How it ended.
    pub outcome: DestinationOutcome,
}

/// How a fan-out destination ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DestinationOutcome {
    /// It got the whole stream and the FIN, and sent its EOF.
    Finished,
    /// It fell more than `max_lag` behind and was dropped.
    Lagged,
    /// Its connect failed, for this reason.
    ConnectFailed(CloseReason),
    /// It reset or its socket failed, or an operator took it out.
    Failed,
    /// It was not connected: out of service or full when the client came.
    Skipped,
    /// The connection ended (a timeout) before its stream did: it was reset.
    CutShort,
    /// It had left in the process the connection was taken over from.
    Left,
    /// Still open when the connection ended, for the connection's reason.
    WithConnection(CloseReason),
}

impl DestinationOutcome {
    /// A stable snake_case name, for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            DestinationOutcome::Finished => "finished",
            DestinationOutcome::Lagged => "lagged",
            DestinationOutcome::ConnectFailed(reason) => reason.as_str(),
            DestinationOutcome::Failed => "failed",
            DestinationOutcome::Skipped => "skipped",
            DestinationOutcome::CutShort => "cut_short",
            DestinationOutcome::Left => "left",
            DestinationOutcome::WithConnection(reason) => reason.as_str(),
        }
    }
}
