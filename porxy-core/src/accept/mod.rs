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
mod socket;

pub(crate) use admission::{within_share, Admission, LogLimit};
pub(crate) use failure::AcceptFailure;
pub(crate) use socket::ListenSocket;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Which threads accept new clients.
///
/// Both modes keep the same guarantees: the connection limit (clients past it wait in the listen
/// backlog), the pause when descriptors run out, process-wide connection ids, per-tunnel counts
/// and a graceful stop that accepts nobody after it has begun. They differ in cost and in how
/// clients are spread over the reactors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcceptMode {
    /// The listener thread accepts every client and deals them to the reactors strictly in turn.
    /// Each connection costs a hand-over: a channel message and a wake-up of the reactor (a
    /// thread switch when they share a CPU).
    Listener,
    /// Every reactor accepts from every listening socket (each socket is in every reactor's
    /// epoll with `EPOLLEXCLUSIVE`, so the kernel wakes one reactor per new client, not all).
    /// No hand-over: measured with `bench/run.sh`, about a quarter less CPU per short
    /// connection.
    /// A reactor that holds more than its share of the open connections (the average over the
    /// reactors plus a few) steps aside until the others catch up, so the spread stays even
    /// within a few connections. Linux only; elsewhere this means [`AcceptMode::Listener`].
    #[default]
    Reactors,
}

impl AcceptMode {
    /// The mode's name in configuration files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            AcceptMode::Listener => "listener",
            AcceptMode::Reactors => "reactors",
        }
    }

    /// The mode this platform runs when `self` is asked for: reactors accept only where the
    /// kernel has epoll with `EPOLLEXCLUSIVE` (Linux).
    pub(crate) fn effective(self) -> AcceptMode {
        if cfg!(any(target_os = "linux", target_os = "android")) {
            self
        } else {
            AcceptMode::Listener
        }
    }
}

impl fmt::Display for AcceptMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no [`AcceptMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown accept mode `{0}`; expected `reactors` or `listener`")]
pub struct AcceptModeError(String);

impl FromStr for AcceptMode {
    type Err = AcceptModeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "listener" => Ok(AcceptMode::Listener),
            "reactors" => Ok(AcceptMode::Reactors),
            other => Err(AcceptModeError(other.to_string())),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for mode in [AcceptMode::Listener, AcceptMode::Reactors] {
            assert_eq!(mode.as_str().parse::<AcceptMode>(), Ok(mode));
            assert_eq!(mode.to_string(), mode.as_str());
        }
        let err = "kernel".parse::<AcceptMode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown accept mode `kernel`; expected `reactors` or `listener`"
        );
    }
}
