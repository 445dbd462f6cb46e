//! porxy-core: an embeddable, multi-reactor TCP proxy.
//!
//! ```text
//!            ProxyHandle (any thread: open / close / status / stop)
//!                 │ messages + Waker
//!                 ▼
//!            listener thread (owns every listening socket: add, change, remove, export, stop)
//!                 │ each listening socket, shared
//!                 ▼
//!   clients ──► reactor 0 … reactor N-1 (each accepts from every listening socket, woken one
//!               at a time: EPOLLEXCLUSIVE; one mio Poll and one slab of connections each)
//!                 ◄──► upstreams
//! ```
//!
//! With [`AcceptMode::Listener`] the listener thread accepts instead, and deals the clients to
//! the reactors in turn over a channel and a Waker. A connection lives on one reactor from
//! accept to close. Its logic (what to read, write, shut
//! down or close; timeouts) is a state machine with no sockets inside (`conn`), driven by thin
//! mio glue (`reactor`). Tunnels are immutable and shared; changing one builds a new one for new
//! connections. Counters are sharded per thread, so nothing on the data path takes a lock.
//!
//! A stopping proxy can hand its established connections, sockets and buffered bytes and all,
//! to another process ([`ProxyHandle::export_sessions`], [`ProxyHandle::import_sessions`], and
//! [`session::wire`] for the transport): a zero-downtime upgrade where the old process exits at
//! once.
//!
//! Start with [`Proxy::builder`]; the [`TunnelSpec`] grammar is `LOCAL=REMOTE[,REMOTE...][opts]`.

#![deny(missing_docs)]
// Denied, not forbidden: the splice(2) calls in `splice/kernel.rs`, `epoll_ctl` with
// EPOLLEXCLUSIVE in `reactor/epoll.rs` and `malloc_trim` in `memory.rs` need it, and those
// three modules alone allow it.
#![deny(unsafe_code)]

mod accept;
mod accept_mode;
mod accept_pauses;
mod access_record;
mod balance;
mod buffer;
mod cert_error;
mod cert_status;
mod config;
mod conn;
mod counter;
mod error;
mod generation;
mod handle;
mod histogram;
mod listener;
mod log_limit;
mod mailbox;
mod memory;
mod proxy;
mod rate;
mod reactor;
pub mod session;
mod spec;
mod splice;
mod status;
mod timer;
mod tls;
mod tunnel;
pub mod units;

pub use accept_mode::{AcceptMode, AcceptModeError};
pub use accept_pauses::AcceptPauses;
pub use access_record::{AccessSink, ConnectionRecord, DestinationOutcome, DestinationRecord};
pub use balance::backend::BackendState;
pub use cert_error::CertError;
pub use cert_status::{CertificateRole, CertificateStatus};
pub use config::{
    ProxyConfig, DEFAULT_BACKLOG, DEFAULT_BUFFER_SIZE, DEFAULT_CHECK_INTERVAL,
    DEFAULT_CHECK_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_FAIL_TIMEOUT, DEFAULT_FALL,
    DEFAULT_HALF_CLOSED_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FAILS, DEFAULT_PIPE_SIZE,
    DEFAULT_QUEUE_TIMEOUT, DEFAULT_RISE, MAX_BUFFER_SIZE, MAX_PIPES_PER_REACTOR, MAX_PIPE_SIZE,
    MIN_BUFFER_SIZE, MIN_PIPE_SIZE, RESERVED_DESCRIPTORS,
};
pub use conn::close::{CloseReason, Fault};
pub use conn::fanout::DEFAULT_MAX_LAG;
pub use error::Error;
pub use generation::GenerationStatus;
pub use handle::{
    BackendChange, CloseMode, Closed, ImportReport, OpenedTunnel, ProxyHandle, ReloadReport,
    Removal, SessionExport, StopMode,
};
pub use histogram::{Histogram, CONNECT_BOUNDS, LIFETIME_BOUNDS};
pub use log_limit::LogLimit;
pub use proxy::{Proxy, ProxyBuilder, StopReport};
pub use session::Session;
pub use spec::{
    AcceptProxy, ClientAuth, Endpoint, NetworkError, Networks, OptionError, OptionErrorKind,
    OptionKey, OptionsConflict, Remote, RemoteFault, RemoteTls, Reply, SendProxy, SniRoute,
    SniRouteError, SniRoutes, SpecError, SpecErrorKind, Strategy, TlsVersion, TunnelMode,
    TunnelOptions, TunnelSpec, UnknownName, UnknownOption, MAX_WEIGHT, OPTION_KEYS,
};
pub use splice::SpliceFallbacks;
pub use status::{BackendStatus, CloseCounts, ReactorStatus, Status, TunnelStatus};
pub use tunnel::reach::reached_listener;
