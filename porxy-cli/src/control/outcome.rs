//! What an admin command did, as typed data: the [`Outcome`] of one that was carried out, or the
//! [`AdminError`] that says why not.
//!
//! This is the seam between carrying a command out ([`super::execute`]) and saying so to a
//! client: the line protocol renders it as text ([`super::render`]); another front end (HTTP,
//! JSON-RPC) can render the same values its own way, and map each [`AdminError`] variant to a
//! code of its own. No IO and no text here.

use std::net::SocketAddr;
use std::time::Duration;

use porxy_core::{
    BackendChange, CloseMode, Closed, Error, OpenedTunnel, ReloadReport, Removal, Status,
};

use super::command::ParseError;
use crate::reload::ReloadError;

/// What a command did, one variant per kind of answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `HELP`: the commands are [`super::command::COMMANDS`].
    Help,
    /// `STATUS`: a snapshot, of which only the totals are asked for.
    Status(Status),
    /// `STATUS FULL`: a snapshot, every tunnel, backend, reactor and generation.
    StatusFull(Status, Option<crate::access_log::RecordCounts>),
    /// `OPEN`: a tunnel opened, or the one on its address changed.
    Opened(OpenedTunnel),
    /// `CLOSE`: the tunnel on `local` stopped listening, or only connections earlier tunnels
    /// there left going were reset (`closed.listening` says which).
    Closed {
        /// The address, resolved.
        local: SocketAddr,
        /// Whether its connections were to go on or be reset.
        mode: CloseMode,
        /// What the proxy did.
        closed: Closed,
    },
    /// `ADD`: a backend joined the tunnel on `tunnel`.
    BackendAdded {
        /// The tunnel's listen address.
        tunnel: SocketAddr,
        /// The backend's address, resolved.
        backend: SocketAddr,
    },
    /// `DRAIN`, `ENABLE` or `DISABLE` took effect on a backend.
    BackendChanged {
        /// The tunnel's listen address.
        tunnel: SocketAddr,
        /// The backend's address.
        backend: SocketAddr,
        /// What was done.
        change: ServiceChange,
        /// The connections the backend held when it was changed (those a `DISABLE` closed).
        open: u64,
    },
    /// `REMOVE`: a backend is out of the tunnel; `removal` states the deadline in force, which
    /// an earlier `REMOVE` may have set earlier than `asked` (a deadline never moves later).
    Removed {
        /// The tunnel's listen address.
        tunnel: SocketAddr,
        /// The backend's address.
        backend: SocketAddr,
        /// The deadline this command asked for (zero: now; `None`: none).
        asked: Option<Duration>,
        /// What the proxy did.
        removal: Removal,
    },
    /// `REOPEN`: the access log's files (this many) are open again.
    Reopened { files: usize },
    /// `RELOAD`: the file is applied.
    Reloaded(ReloadReport),
    /// `STOP`: a graceful stop is to begin. The front end begins it (`Stopper::graceful`) once
    /// the client has its answer: a stop with nothing to drain ends the process at once.
    Stopping {
        /// The connections open when the stop was asked for.
        open: u64,
        /// How long the stop lets them finish.
        drain_timeout: Duration,
    },
    /// `EXIT` or `QUIT`: the front end closes this client's connection after answering.
    Bye,
}

/// What `DRAIN`, `ENABLE` and `DISABLE` do to a backend (`REMOVE` is [`Outcome::Removed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceChange {
    /// No new connections; established ones go on.
    Drain,
    /// Back in service.
    Enable,
    /// No new connections, and its connections are closed now.
    Disable,
}

impl From<ServiceChange> for BackendChange {
    fn from(change: ServiceChange) -> Self {
        match change {
            ServiceChange::Drain => BackendChange::Drain,
            ServiceChange::Enable => BackendChange::Enable,
            ServiceChange::Disable => BackendChange::Disable,
        }
    }
}

/// Why a command was not carried out, by whose it is to act: the client's (a bad request, an
/// unusable value, a name not found, a state that refuses it), or nobody's in particular (a
/// stopping proxy, an internal failure).
///
/// Each variant keeps the error it stands for as its `source()`, and its message is that
/// error's own: [`crate::error::chain`] of an `AdminError` reads as the error itself would.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request is not a command: the line did not parse.
    #[error("{0}")]
    BadRequest(#[source] ParseError),
    /// A value the command names cannot be used: a host that does not resolve, a remote no
    /// server can have, a remote listed twice, options that do not fit together.
    #[error("{0}")]
    Invalid(#[source] Error),
    /// No tunnel listens on the address, or the tunnel has no such backend.
    #[error("{0}")]
    NotFound(#[source] Error),
    /// The state of the proxy refuses it (a remote that reaches porxy itself, a backend that
    /// exists already or is still being removed, the last backend of a tunnel), or the host's
    /// does (an address in use).
    #[error("{0}")]
    Conflict(#[source] Error),
    /// The proxy is stopping and takes no new work.
    #[error("{0}")]
    Stopping(#[source] Error),
    /// A reload was refused and changed nothing: no file to read, a file that would close
    /// every listener, a wrong file, or a set of tunnels the proxy refuses.
    #[error("reload failed, nothing changed: {0}")]
    ReloadRefused(#[source] ReloadError),
    /// An access log file could not be opened again: the old one stays in use.
    #[error("{0}; writing on to the old file")]
    ReopenFailed(#[source] crate::access_log::OpenError),
    /// Anything else the proxy reports: a resource of the OS, a thread that died (a bug).
    #[error("{0}")]
    Internal(#[source] Error),
}

impl From<ParseError> for AdminError {
    fn from(error: ParseError) -> Self {
        AdminError::BadRequest(error)
    }
}

impl From<ReloadError> for AdminError {
    fn from(error: ReloadError) -> Self {
        AdminError::ReloadRefused(error)
    }
}

impl From<Error> for AdminError {
    /// Sorts an error of the proxy's API by whose it is to act.
    fn from(error: Error) -> Self {
        variant(&error)(error)
    }
}

/// Whose it is to act on a core error: the sorting [`AdminError`] does, for a front end that
/// holds the error inside another (a reload's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Invalid,
    NotFound,
    Conflict,
    Stopping,
    Internal,
}

/// How `error` is sorted.
pub fn sort(error: &Error) -> Sort {
    match error {
        Error::NoSuchTunnel(_) | Error::NoSuchBackend { .. } => Sort::NotFound,
        Error::SelfLoop { .. }
        | Error::BackendExists { .. }
        | Error::BackendLeaving { .. }
        | Error::LastBackend { .. }
        | Error::AlreadyListening(_)
        | Error::Bind { .. } => Sort::Conflict,
        Error::Stopped => Sort::Stopping,
        Error::Spec(_)
        | Error::Resolve { .. }
        | Error::NoAddress { .. }
        | Error::DuplicateRemote { .. }
        | Error::UnusableRemote { .. }
        | Error::NoRemotes { .. }
        | Error::Options { .. }
        | Error::InvalidSetting { .. }
        | Error::Tls { .. } => Sort::Invalid,
        // One tunnel of several failed to open: what failed decides.
        Error::Tunnel { source, .. } => sort(source),
        _ => Sort::Internal,
    }
}

/// The [`AdminError`] variant for a core error.
fn variant(error: &Error) -> fn(Error) -> AdminError {
    match sort(error) {
        Sort::Invalid => AdminError::Invalid,
        Sort::NotFound => AdminError::NotFound,
        Sort::Conflict => AdminError::Conflict,
        Sort::Stopping => AdminError::Stopping,
        Sort::Internal => AdminError::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn core_errors_are_sorted_by_whose_it_is_to_act() {
        let (tunnel, backend) = (addr(8000), addr(7000));
        let cases: Vec<(Error, &str)> = vec![
            (Error::NoSuchTunnel(tunnel), "NotFound"),
            (Error::NoSuchBackend { tunnel, backend }, "NotFound"),
            (
                Error::SelfLoop {
                    tunnel,
                    remote: backend,
                    listener: backend,
                },
                "Conflict",
            ),
            (Error::BackendExists { tunnel, backend }, "Conflict"),
            (
                Error::BackendLeaving {
                    tunnel,
                    backend,
                    open: 1,
                },
                "Conflict",
            ),
            (Error::LastBackend { tunnel }, "Conflict"),
            (
                Error::Bind {
                    addr: tunnel,
                    source: std::io::ErrorKind::AddrInUse.into(),
                },
                "Conflict",
            ),
            (Error::Stopped, "Stopping"),
            (
                Error::NoAddress {
                    endpoint: "db:5432".into(),
                },
                "Invalid",
            ),
            (
                Error::DuplicateRemote {
                    local: "8000".into(),
                    remote: backend,
                },
                "Invalid",
            ),
            (
                Error::Tunnel {
                    spec: "8000=7000".into(),
                    source: Box::new(Error::AlreadyListening(tunnel)),
                },
                "Conflict",
            ),
            (Error::ThreadPanicked("listener".into()), "Internal"),
            (Error::NotStopping, "Internal"),
        ];
        for (error, want) in cases {
            let text = error.to_string();
            let admin = AdminError::from(error);
            let got = format!("{admin:?}");
            assert!(got.starts_with(want), "{text}: {got}");
            // The message is the core error's own, and the core error is its source.
            assert_eq!(admin.to_string(), text);
            let source = std::error::Error::source(&admin).expect("a source");
            assert_eq!(source.to_string(), text);
        }
    }

    #[test]
    fn the_error_chain_reads_as_the_core_error_alone() {
        let core = Error::Bind {
            addr: addr(8000),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let alone = crate::error::chain(&core);
        assert_eq!(crate::error::chain(&AdminError::from(core)), alone);
    }
}
