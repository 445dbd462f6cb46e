//! One upstream server as the balancer sees it: its address, its operator state, its health, and
//! how many connections it holds.
//!
//! A `Backend` is shared (as `Arc`) by every reactor, by the health checker and by every version
//! of its tunnel, so its state lives in atomics. It is touched once per connection (reserve a
//! slot, release it, count a failure), never per byte; a fan-out destination also adds the bytes
//! it was sent once per drive.

use super::backend_bytes::BackendBytes;
use crate::histogram::{Buckets, Histogram, CONNECT_BOUNDS};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// What an operator has decided about a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminState {
    /// In service.
    Enabled,
    /// No new connections; established ones go on.
    Draining,
    /// Out of service: no new connections, established ones were closed.
    Disabled,
    /// Being removed: no new connections; it leaves the tunnel when its last one ends.
    Removing,
}

/// What health checks (active, or passive from connect failures) say about a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Takes connections.
    Up,
    /// Failed its checks (or too many connects in a row); takes none until it recovers.
    Down,
}

/// A backend's state as status shows it: the operator's word first, then health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendState {
    /// Enabled and healthy.
    Up,
    /// Enabled, but down by health checks or connect failures.
    Down,
    /// Draining by an operator.
    Draining,
    /// Disabled by an operator.
    Disabled,
    /// Being removed by an operator.
    Removing,
}

impl BackendState {
    /// A stable lower-case name for status output.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Up => "up",
            BackendState::Down => "down",
            BackendState::Draining => "draining",
            BackendState::Disabled => "disabled",
            BackendState::Removing => "removing",
        }
    }
}

impl std::fmt::Display for BackendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Passive health settings: when connect failures take a backend out, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PassiveHealth {
    /// Consecutive connect failures that mark the backend down.
    pub(crate) max_fails: u32,
    /// Without active checks, how long a passively-down backend rests before it is tried again.
    pub(crate) fail_timeout: Duration,
    /// True when active checks decide when the backend comes back.
    pub(crate) active_checks: bool,
}

/// The shared runtime state of one upstream server.
pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    /// Share of the load (at least 1); an operator may change it while the backend serves.
    weight: AtomicU32,
    /// Most connections at once; 0 for no limit. Changeable like `weight`.
    max_conns: AtomicU32,
    admin: AtomicU8,
    health: AtomicU8,
    /// How many times it went from up to down, by checks or by connect failures: lets the
    /// checker see a fall it did not cause.
    downs: AtomicU64,
    /// Its removal has been reported (its last connection ended, or it had none).
    removal_reported: AtomicBool,
    /// When its connections are to be closed (ns after `epoch`; [`NO_CLOSE`] while none is
    /// ordered): the earliest deadline a REMOVE gave, sent to the reactors. It cannot be
    /// cancelled, so a backend being removed with one is not taken back into service.
    close_at_nanos: AtomicI64,
    fails_in_row: AtomicU32,
    /// Without active checks: when a passively-down backend may be tried again (ns after `epoch`).
    retry_at_nanos: AtomicI64,
    epoch: Instant,
    open: AtomicU64,
    total: AtomicU64,
    failures: AtomicU64,
    /// Fan-out: bytes sent to it.
    sent: AtomicU64,
    /// Fan-out: connections it was dropped from for falling too far behind.
    lag_drops: AtomicU64,
    /// How long its successful connects took (every reactor records here).
    connect_time: Buckets,
    /// Bytes relayed to it and from it.
    bytes: BackendBytes,
}

/// No close ordered: the largest value, so that any deadline is earlier.
const NO_CLOSE: i64 = i64::MAX;

/// What came of ordering a backend's connections closed at a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseOrder {
    /// This deadline is the one in force now: the reactors must be told.
    Set(Instant),
    /// An earlier deadline was ordered, and stays in force.
    Kept(Instant),
}

/// Why a slot could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// Down, draining, disabled or being removed.
    OutOfService,
    /// At its `max_conns`.
    Full,
}

impl Backend {
    pub(crate) fn new(addr: SocketAddr, weight: u32, max_conns: Option<u32>) -> Self {
        Backend {
            addr,
            weight: AtomicU32::new(weight.max(1)),
            max_conns: AtomicU32::new(max_conns.unwrap_or(0)),
            admin: AtomicU8::new(AdminState::Enabled as u8),
            health: AtomicU8::new(Health::Up as u8),
            downs: AtomicU64::new(0),
            removal_reported: AtomicBool::new(false),
            close_at_nanos: AtomicI64::new(NO_CLOSE),
            fails_in_row: AtomicU32::new(0),
            retry_at_nanos: AtomicI64::new(i64::MIN),
            epoch: Instant::now(),
            open: AtomicU64::new(0),
            total: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            lag_drops: AtomicU64::new(0),
            connect_time: Buckets::new(CONNECT_BOUNDS),
            bytes: BackendBytes::default(),
        }
    }

    /// A connect to it succeeded after `took`.
    pub(crate) fn connected_after(&self, took: std::time::Duration) {
        self.connect_time.record_shared(took);
    }

    /// How long its successful connects took.
    pub(crate) fn connect_time(&self) -> Histogram {
        let mut histogram = Histogram::new(CONNECT_BOUNDS);
        self.connect_time.add_into(&mut histogram);
        histogram
    }

    pub(crate) fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub(crate) fn max_conns(&self) -> Option<u32> {
        match self.max_conns.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// Changes the weight and connection limit; connections and health go on as they are.
    pub(crate) fn set_limits(&self, weight: u32, max_conns: Option<u32>) {
        self.weight.store(weight.max(1), Ordering::Relaxed);
        self.max_conns
            .store(max_conns.unwrap_or(0), Ordering::Relaxed);
    }

    pub(crate) fn admin(&self) -> AdminState {
        match self.admin.load(Ordering::Relaxed) {
            0 => AdminState::Enabled,
            1 => AdminState::Draining,
            2 => AdminState::Disabled,
            _ => AdminState::Removing,
        }
    }

    pub(crate) fn set_admin(&self, state: AdminState) {
        if state == AdminState::Removing {
            self.removal_reported.store(false, Ordering::SeqCst);
        }
        // SeqCst, with the loads in `removal_done` and the decrement in `release`: of the
        // remover and the reactor releasing the last slot, at least one sees both changes.
        self.admin.store(state as u8, Ordering::SeqCst);
    }

    /// True, once per removal, when the backend is being removed and holds no connection any
    /// more: whoever sees that first (the reactor that closed its last connection, or the
    /// remove itself when there was none) reports it.
    pub(crate) fn removal_done(&self) -> bool {
        self.admin.load(Ordering::SeqCst) == AdminState::Removing as u8
            && self.open.load(Ordering::SeqCst) == 0
            && !self.removal_reported.swap(true, Ordering::SeqCst)
    }

    /// Orders its connections closed at `at`, unless an earlier deadline is in force: a
    /// deadline never moves later. The caller tells the reactors of a [`CloseOrder::Set`] one.
    pub(crate) fn order_close(&self, at: Instant) -> CloseOrder {
        let wanted = self.nanos(at).min(NO_CLOSE - 1);
        let before = self.close_at_nanos.fetch_min(wanted, Ordering::SeqCst);
        if before <= wanted {
            CloseOrder::Kept(self.instant(before))
        } else {
            CloseOrder::Set(at)
        }
    }

    /// When its connections are to be closed, if a deadline was ordered: see
    /// [`Backend::order_close`].
    pub(crate) fn close_deadline(&self) -> Option<Instant> {
        match self.close_at_nanos.load(Ordering::SeqCst) {
            NO_CLOSE => None,
            nanos => Some(self.instant(nanos)),
        }
    }

    /// True once its connections are to be closed at a deadline.
    pub(crate) fn close_ordered(&self) -> bool {
        self.close_deadline().is_some()
    }

    pub(crate) fn health(&self) -> Health {
        if self.health.load(Ordering::Relaxed) == Health::Up as u8 {
            Health::Up
        } else {
            Health::Down
        }
    }

    /// Sets health; returns the previous value.
    pub(crate) fn set_health(&self, health: Health) -> Health {
        let before = self.health.swap(health as u8, Ordering::AcqRel);
        if health == Health::Up {
            self.fails_in_row.store(0, Ordering::Relaxed);
        } else if before == Health::Up as u8 {
            self.downs.fetch_add(1, Ordering::AcqRel);
        }
        if before == Health::Up as u8 {
            Health::Up
        } else {
            Health::Down
        }
    }

    /// How many times it has gone from up to down.
    pub(crate) fn downs(&self) -> u64 {
        self.downs.load(Ordering::Acquire)
    }

    pub(crate) fn state(&self) -> BackendState {
        match (self.admin(), self.health()) {
            (AdminState::Enabled, Health::Up) => BackendState::Up,
            (AdminState::Enabled, Health::Down) => BackendState::Down,
            (AdminState::Draining, _) => BackendState::Draining,
            (AdminState::Disabled, _) => BackendState::Disabled,
            (AdminState::Removing, _) => BackendState::Removing,
        }
    }

    /// True when new connections may go here (ignoring `max_conns`).
    pub(crate) fn in_service(&self, now: Instant, passive: &PassiveHealth) -> bool {
        if self.admin() != AdminState::Enabled {
            return false;
        }
        match self.health() {
            Health::Up => true,
            // Without active checks, a passively-down backend gets a trial once it has rested.
            // Without active checks, a passively-down backend that has rested gets one trial
            // connection at a time: the caller that claims it moves the next trial on.
            Health::Down => !passive.active_checks && self.claim_trial(now, passive),
        }
    }

    /// Claims the trial connection of a resting backend, if its rest is over and nobody else
    /// has claimed it.
    fn claim_trial(&self, now: Instant, passive: &PassiveHealth) -> bool {
        let now = self.nanos(now);
        let due = self.retry_at_nanos.load(Ordering::Acquire);
        if now < due {
            return false;
        }
        let next = now.saturating_add(passive.fail_timeout.as_nanos() as i64);
        self.retry_at_nanos
            .compare_exchange(due, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes a connection slot, unless the backend is out of service or full. A slot taken
    /// must be given back with [`Backend::release`].
    pub(crate) fn try_reserve(
        &self,
        now: Instant,
        passive: &PassiveHealth,
    ) -> Result<(), Unavailable> {
        if !self.in_service(now, passive) {
            return Err(Unavailable::OutOfService);
        }
        let reserved = match self.max_conns() {
            None => {
                self.open.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(max) => self
                .open
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                    (open < u64::from(max)).then_some(open + 1)
                })
                .is_ok(),
        };
        if reserved {
            self.total.fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else {
            Err(Unavailable::Full)
        }
    }

    /// Takes a slot for a connection that exists already (taken over from another process):
    /// whatever the limit or the state, since refusing it would end a live connection. Given
    /// back with [`Backend::release`] like any other.
    pub(crate) fn adopt_slot(&self) {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives a slot back; returns the connections left.
    pub(crate) fn release(&self) -> u64 {
        self.open.fetch_sub(1, Ordering::SeqCst).saturating_sub(1)
    }

    /// A connect succeeded: the failure streak ends, and a resting backend is up again.
    pub(crate) fn connect_succeeded(&self, passive: &PassiveHealth) -> bool {
        self.fails_in_row.store(0, Ordering::Relaxed);
        !passive.active_checks && self.set_health(Health::Up) == Health::Down
    }

    /// A connect failed; returns true when this failure marked the backend down.
    pub(crate) fn connect_failed(&self, now: Instant, passive: &PassiveHealth) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let in_row = self.fails_in_row.fetch_add(1, Ordering::Relaxed) + 1;
        if in_row < passive.max_fails.max(1) {
            return false;
        }
        self.retry_at_nanos.store(
            self.nanos(now)
                .saturating_add(passive.fail_timeout.as_nanos() as i64),
            Ordering::Relaxed,
        );
        self.set_health(Health::Down) == Health::Up
    }

    pub(crate) fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Reactor `reactor` relayed `to` bytes to it and `from` bytes from it.
    #[inline]
    pub(crate) fn add_bytes(&self, reactor: usize, to: u64, from: u64) {
        self.bytes.add(reactor, to, from);
    }

    /// Bytes relayed to it and from it, so far.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        self.bytes.totals()
    }

    /// Fan-out: counts `n` more bytes sent to it.
    pub(crate) fn add_sent(&self, n: u64) {
        if n > 0 {
            self.sent.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Fan-out: counts a connection it was dropped from for lagging.
    pub(crate) fn lag_dropped(&self) {
        self.lag_drops.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn lag_drops(&self) -> u64 {
        self.lag_drops.load(Ordering::Relaxed)
    }

    /// The moment `nanos` after the backend's creation (the inverse of [`Backend::nanos`]).
    fn instant(&self, nanos: i64) -> Instant {
        let offset = Duration::from_nanos(nanos.unsigned_abs());
        let moment = if nanos >= 0 {
            self.epoch.checked_add(offset)
        } else {
            self.epoch.checked_sub(offset)
        };
        // Only a moment the clock cannot show (centuries away) has none; a deadline is at most
        // `MAX_DURATION` ahead.
        moment.unwrap_or(self.epoch)
    }

    /// Nanoseconds from the backend's creation to `now` (negative for an earlier `now`).
    fn nanos(&self, now: Instant) -> i64 {
        match now.checked_duration_since(self.epoch) {
            Some(after) => after.as_nanos() as i64,
            None => -(self.epoch.duration_since(now).as_nanos() as i64),
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("addr", &self.addr)
            .field("state", &self.state())
            .field("open", &self.open())
            .finish()
    }
}

#[cfg(test)]
mod tests;
