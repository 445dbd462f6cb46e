//! The library's error type: what went wrong at the API, with the address or name involved.
//!
//! A connection ending is not an error: it is a [`CloseReason`](crate::CloseReason), counted
//! per tunnel. Errors here are what a caller of the API must act on.

use std::io;
use std::net::SocketAddr;

use crate::spec::{OptionsConflict, RemoteFault, SpecError};

/// An error from building, starting or driving a proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tunnel expression did not parse.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A host name in a tunnel could not be resolved.
    #[error("cannot resolve `{endpoint}`: {source}")]
    Resolve {
        /// The endpoint as written.
        endpoint: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// A host name resolved to no address at all.
    #[error("`{endpoint}` resolved to no address")]
    NoAddress {
        /// The endpoint as written.
        endpoint: String,
    },
    /// A tunnel lists the same remote twice.
    #[error("tunnel on {local} lists remote {remote} twice; give it a weight instead (`*N`)")]
    DuplicateRemote {
        /// The tunnel's listen address, as written.
        local: String,
        /// The remote that appears twice.
        remote: SocketAddr,
    },
    /// A remote (or a backend added) is an address no TCP connect reaches as one server: port
    /// 0, the unspecified, broadcast or a multicast address (seen after name resolution).
    #[error("tunnel on {tunnel}: remote {remote} cannot be connected to: {fault}")]
    UnusableRemote {
        /// The tunnel's listen address, as written.
        tunnel: String,
        /// The remote, resolved.
        remote: SocketAddr,
        /// What is wrong with it.
        fault: RemoteFault,
    },
    /// A remote reaches one of the proxy's own listening sockets (its own tunnel's, or
    /// another's; through a wildcard listener, any address of the machine): every connection
    /// would come back to the proxy as a new client, until the chain fills `max_connections`.
    /// Refused both ways: for a new remote, and for a new listener that a remote reaches.
    #[error(
        "tunnel {tunnel} would forward to porxy itself: its remote {remote} reaches porxy's \
         listener {listener}; a remote must be a server elsewhere"
    )]
    SelfLoop {
        /// The listen address of the tunnel whose remote it is.
        tunnel: SocketAddr,
        /// The remote.
        remote: SocketAddr,
        /// The listening socket it reaches (the bound address).
        listener: SocketAddr,
    },
    /// A tunnel was given no remote address.
    #[error("tunnel on {local} has no remote address")]
    NoRemotes {
        /// The tunnel's listen address, as written.
        local: String,
    },
    /// A tunnel's options do not fit together (a fan-out option without `mode=fanout`, ...).
    #[error("tunnel on {local}: {conflict}")]
    Options {
        /// The tunnel's listen address, as written.
        local: String,
        /// What does not fit.
        conflict: OptionsConflict,
    },
    /// A TLS listener's certificate or key cannot be used (missing, not PEM, not a pair).
    #[error("tunnel on {local}: TLS: {source}")]
    Tls {
        /// The tunnel's listen address, as written.
        local: String,
        /// What is wrong, with the file's path (boxed: it is large, and rare).
        #[source]
        source: Box<crate::cert_error::CertError>,
    },
    /// The listening socket could not be set up (address in use, no permission, ...).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Opening one of the builder's tunnels failed; `source` says why.
    #[error("tunnel `{spec}`: {source}")]
    Tunnel {
        /// The tunnel expression.
        spec: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// Two of the builder's tunnels ask for the same listen address.
    #[error("another tunnel already listens on {0}")]
    AlreadyListening(SocketAddr),
    /// The tunnel already has a backend at this address.
    #[error("tunnel {tunnel} already has backend {backend}")]
    BackendExists {
        /// The tunnel's listen address.
        tunnel: SocketAddr,
        /// The backend's address.
        backend: SocketAddr,
    },
    /// The tunnel has no backend at this address.
    #[error("tunnel {tunnel} has no backend {backend}")]
    NoSuchBackend {
        /// The tunnel's listen address.
        tunnel: SocketAddr,
        /// The backend's address.
        backend: SocketAddr,
    },
    /// The backend was removed from the tunnel and still holds connections: it cannot be changed,
    /// nor, once they are to be closed at a deadline, added again, until they have ended.
    #[error(
        "backend {backend} of tunnel {tunnel} is still being removed ({open} connections left); \
         wait for them to end, or REMOVE it with a deadline (or NOW) to close them"
    )]
    BackendLeaving {
        /// The tunnel's listen address.
        tunnel: SocketAddr,
        /// The backend's address.
        backend: SocketAddr,
        /// Its connections left.
        open: u64,
    },
    /// The last backend of a tunnel cannot be removed (close the tunnel instead).
    #[error("backend is the last of tunnel {tunnel}; close the tunnel instead")]
    LastBackend {
        /// The tunnel's listen address.
        tunnel: SocketAddr,
    },
    /// No tunnel listens on this address.
    #[error("no tunnel listens on {0}")]
    NoSuchTunnel(SocketAddr),
    /// A setting is out of its range.
    #[error("invalid setting `{name}`: {reason}")]
    InvalidSetting {
        /// The setting's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The proxy is stopping or stopped and takes no new work.
    #[error("the proxy is stopping")]
    Stopped,
    /// Connections are handed over only by a stopping proxy: otherwise new ones would keep
    /// arriving.
    #[error("the proxy is not stopping; stop it before handing its connections over")]
    NotStopping,
    /// An OS resource needed to start (an event queue, a waker, a thread) could not be had.
    #[error("cannot start {what}: {source}")]
    Start {
        /// What was being started.
        what: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// One of the proxy's threads ended by a panic (a bug in porxy).
    #[error("the {0} thread panicked")]
    ThreadPanicked(String),
}
