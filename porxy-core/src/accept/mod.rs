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
//! spreading clients over the reactors, one [`Rate`] of accepts (`max_accept_rate`), one set of
//! rate-limited warnings, and one reading of accept errors ([`AcceptFailure`]).

mod admission;
mod failure;
pub(crate) mod parking;
mod socket;

pub(crate) use crate::accept_mode::AcceptMode;
pub(crate) use crate::accept_pauses::{Pause, PauseCounts};
pub(crate) use admission::{within_share, Admission, LogLimit};
pub(crate) use failure::AcceptFailure;
pub(crate) use socket::ListenSocket;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::rate::Rate;

/// What the accepting threads share (the listener thread's accepts too, in
/// [`AcceptMode::Listener`]), and what the reactors count their connections in.
pub(crate) struct Accepting {
    /// Connections open on all reactors, against the connection limit.
    pub(crate) admission: Admission,
    /// The proxy-wide accept rate (clients a second), if limited.
    rate: Rate,
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
    /// One log line a second at most about the accept rate.
    pub(crate) rate_log: Mutex<LogLimit>,
    /// Times accepting paused, by cause.
    pub(crate) pauses: PauseCounts,
}

/// Why an accept may not be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoTurn {
    /// The proxy holds `max_connections`.
    Full,
    /// Over `max_accept_rate`: the next client is due then.
    Rate { until: Instant },
}

impl Accepting {
    /// Takes what one accept needs: a turn under the accept rate, then a place under the
    /// connection limit. An accept that finds nobody gives both back ([`Accepting::release_turn`]);
    /// a connection accepted holds its place until it ends.
    pub(crate) fn take_turn(&self, now: Instant) -> Result<(), NoTurn> {
        self.rate
            .take(now, 1, 1)
            .map_err(|until| NoTurn::Rate { until })?;
        if !self.admission.try_admit() {
            self.rate.give_back(1);
            return Err(NoTurn::Full);
        }
        Ok(())
    }

    /// Gives back what [`Accepting::take_turn`] took, for an accept that found nobody.
    pub(crate) fn release_turn(&self) {
        self.admission.release();
        self.rate.give_back(1);
    }

    /// Limits accepts to `per_second` clients a second across the proxy (`None`: no limit):
    /// after a quiet spell a tenth of a second's worth at once, then one every `1/per_second`.
    pub(crate) fn set_rate(&self, per_second: Option<u32>) {
        let burst = per_second.map_or(1, |r| r.div_ceil(10).max(1));
        self.rate.set(per_second.map(u64::from), u64::from(burst));
    }
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

    /// Over `max_accept_rate`: new clients wait in the backlog until `until`. Rate-limited.
    pub(crate) fn note_rate(&self, now: Instant, until: Instant) {
        if let Some(times) = occurred(&self.rate_log, now) {
            tracing::warn!(
                wait_ms = until.saturating_duration_since(now).as_millis() as u64,
                times,
                "at max_accept_rate: new clients wait in the listen backlog"
            );
        }
    }

    /// An accept on `local` failed otherwise (see [`AcceptFailure::Broken`]). Rate-limited.
    pub(crate) fn warn_accept_failed(&self, local: SocketAddr, error: &io::Error, now: Instant) {
        if let Some(times) = occurred(&self.error_log, now) {
            tracing::warn!(tunnel = %local, error = %error, times, "accept failed; trying again shortly");
        }
    }

    pub(crate) fn new(
        max_connections: usize,
        max_accept_rate: Option<u32>,
        reactors: usize,
        conn_ids: Arc<AtomicU64>,
    ) -> Self {
        let accepting = Accepting {
            admission: Admission::new(max_connections as u64),
            rate: Rate::new(Instant::now()),
            conn_ids,
            reactors: reactors as u64,
            shortage_log: Mutex::new(LogLimit::default()),
            capacity_log: Mutex::new(LogLimit::default()),
            error_log: Mutex::new(LogLimit::default()),
            rate_log: Mutex::new(LogLimit::default()),
            pauses: PauseCounts::default(),
        };
        accepting.set_rate(max_accept_rate);
        accepting
    }
}

/// Counts one occurrence in `log`; `Some(times)` when a line is due.
fn occurred(log: &Mutex<LogLimit>, now: Instant) -> Option<u64> {
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .occurred(now, LOG_PERIOD)
}
