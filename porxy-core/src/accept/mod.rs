//! Who accepts new clients ([`AcceptMode`]), and what the accepting threads share.
//!
//! The listener thread owns every listening socket in both modes: it binds them, adds, changes
//! and removes tunnels, exports duplicates for an upgrade, and decides when accepting starts and
//! stops. In [`AcceptMode::Listener`] it also accepts, and hands each client to a reactor over a
//! channel. In [`AcceptMode::Reactors`] it hands each listening socket ([`ListenSocket`]) to
//! every reactor instead, and the reactors accept (`reactor/accept.rs`): the thread that relays a
//! connection is the one that accepted it, with no hand-over in between. In both modes the
//! accepting threads share [`Accepting`]: one [`Admission`] count for the connection limit
//! (taken before each accept, given back by the reactor when the connection ends) and for
//! spreading clients over the reactors, one set of rate-limited warnings, and one reading of
//! accept errors ([`AcceptFailure`]).

mod admission;
mod failure;
pub(crate) mod parking;
mod socket;

pub(crate) use crate::accept_mode::AcceptMode;
pub(crate) use admission::{within_share, Admission, LogLimit};
pub(crate) use failure::AcceptFailure;
pub(crate) use socket::ListenSocket;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What the accepting threads share (the listener thread's accepts too, in
/// [`AcceptMode::Listener`]), and what the reactors count their connections in.
pub(crate) struct Accepting {
    /// Connections open on all reactors, against the connection limit.
    pub(crate) admission: Admission,
    /// Connection ids, shared with the handle (which numbers connections taken over).
    pub(crate) conn_ids: Arc<AtomicU64>,
    /// Number of reactors, for each one's share of the connections.
    pub(crate) reactors: u64,
    /// One log line a second at most about running out of descriptors, whichever reactor hits it.
    pub(crate) shortage_log: Mutex<LogLimit>,
    /// One log line a second at most about the connection limit.
    pub(crate) capacity_log: Mutex<LogLimit>,
    /// One log line a second at most about accepts failing otherwise.
    pub(crate) error_log: Mutex<LogLimit>,
}

/// At most one warning a second of each kind, whichever thread meets the condition.
const LOG_PERIOD: Duration = Duration::from_secs(1);

impl Accepting {
    /// Out of descriptors or memory: accepting pauses. Rate-limited.
    pub(crate) fn warn_shortage(&self, error: &io::Error, now: Instant) {
        if let Some(times) = occurred(&self.shortage_log, now) {
            tracing::warn!(
                error = %error,
                times,
                "cannot accept: out of descriptors or memory; pausing accepts"
            );
        }
    }

    /// At the connection limit: new clients wait in the backlog. Rate-limited.
    pub(crate) fn warn_capacity(&self, now: Instant) {
        if occurred(&self.capacity_log, now).is_some() {
            tracing::warn!(
                max_connections = self.admission.limit(),
                "at the connection limit: new clients wait in the listen backlog"
            );
        }
    }

    /// An accept on `local` failed otherwise (see [`AcceptFailure::Broken`]). Rate-limited.
    pub(crate) fn warn_accept_failed(&self, local: SocketAddr, error: &io::Error, now: Instant) {
        if let Some(times) = occurred(&self.error_log, now) {
            tracing::warn!(tunnel = %local, error = %error, times, "accept failed; trying again shortly");
        }
    }

    pub(crate) fn new(max_connections: usize, reactors: usize, conn_ids: Arc<AtomicU64>) -> Self {
        Accepting {
            admission: Admission::new(max_connections as u64),
            conn_ids,
            reactors: reactors as u64,
            shortage_log: Mutex::new(LogLimit::default()),
            capacity_log: Mutex::new(LogLimit::default()),
            error_log: Mutex::new(LogLimit::default()),
        }
    }
}

/// Counts one occurrence in `log`; `Some(times)` when a line is due.
fn occurred(log: &Mutex<LogLimit>, now: Instant) -> Option<u64> {
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .occurred(now, LOG_PERIOD)
}
