//! A closed loop of connection slots on one mio [`Poll`], as the short-connection workloads
//! drive them (plain, [`super::short`]; TLS, [`super::tls::handshakes`]): a fixed number of
//! connections in flight, each replaced by a new one when it ends.
//!
//! Slot `i`'s connection is registered as `Token(i)`, for reading and writing (edge-triggered).
//! One turn of a worker's loop is: [`Slots::fill`] starts a non-blocking connect ([`connect`])
//! in every free slot, then [`Slots::poll`] waits once and hands each slot with an event to the
//! workload, which moves its connection on until `WouldBlock` and says whether it is [`Turn::Over`];
//! an ended connection is deregistered and its slot freed, to be filled on the next turn. No
//! connection is opened inside an event batch, so an event for a slot freed earlier in the batch
//! finds it empty and is skipped; spurious events are harmless, the workload only retries its I/O.
//!
//! This is the workloads' own loop, moved here, not a layer over it: per connection it makes
//! the same system calls (`socket`, `connect`, one `epoll_ctl` to add and one to delete), per
//! turn one `epoll_wait`; the closures are generic, so nothing is called through a pointer.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};

use super::{Shared, WorkerReport};
use crate::histogram::Histogram;

/// The poll timeout while some slot is free and is to be refilled: soon, as a connect that
/// failed at once is retried on the next turn.
const REFILL_TIMEOUT: Duration = Duration::from_millis(1);

/// The poll timeout otherwise: only the connections in flight have anything to say.
const IDLE_TIMEOUT: Duration = Duration::from_millis(50);

/// What a workload keeps for one connection: at least its socket.
pub trait Slot {
    /// The connection's socket, registered as its slot's token.
    fn stream(&mut self) -> &mut TcpStream;
}

/// What became of a connection after the workload moved it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// It waits for its socket: the slot keeps it.
    Pending,
    /// The whole reply and the close arrived: its slot is freed.
    Done,
    /// It failed (refused, reset, a short or long reply): its slot is freed.
    Failed,
}

/// Whether the free slots are filled again on the next turn, which sets how long a poll waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refill {
    /// Yes: a free slot makes the poll short.
    Soon,
    /// No (the connections in flight are draining): wait for them only.
    Never,
}

/// A fixed number of connection slots on a poll of their own.
pub struct Slots<S> {
    poll: Poll,
    events: Events,
    slots: Vec<Option<S>>,
    opened: u64,
}

impl<S: Slot> Slots<S> {
    /// `count` free slots.
    pub fn new(count: usize) -> io::Result<Slots<S>> {
        Ok(Slots {
            poll: Poll::new()?,
            events: Events::with_capacity(count.max(16)),
            slots: (0..count).map(|_| None).collect(),
            opened: 0,
        })
    }

    /// Starts a connection in every free slot with `open(registry, i)`, which registers its
    /// socket as `Token(i)` (see [`connect`]). Returns how many failed at once; their slots
    /// stay free, to be retried on the next turn.
    pub fn fill<E>(&mut self, mut open: impl FnMut(&Registry, usize) -> Result<S, E>) -> u64 {
        let mut failed = 0;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.is_none() {
                match open(self.poll.registry(), i) {
                    Ok(opened) => {
                        *slot = Some(opened);
                        self.opened += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
        }
        failed
    }

    /// How many connections [`Slots::fill`] started, in the window or not.
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// Whether no connection is in flight.
    pub fn is_idle(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    /// Polls once (briefly if a free slot is to be refilled), then hands each slot with an
    /// event, and its index, to `advance`; a connection it says is no longer
    /// [`Progress::Pending`] is deregistered and dropped. An interrupted poll is an empty turn.
    pub fn poll(
        &mut self,
        refill: Refill,
        mut advance: impl FnMut(usize, &mut S) -> Progress,
    ) -> io::Result<()> {
        let timeout = if refill == Refill::Soon && self.slots.iter().any(Option::is_none) {
            REFILL_TIMEOUT
        } else {
            IDLE_TIMEOUT
        };
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
        for event in self.events.iter() {
            let i = event.token().0;
            let Some(slot) = self.slots[i].as_mut() else {
                continue;
            };
            if advance(i, slot) == Progress::Pending {
                continue;
            }
            if let Some(mut old) = self.slots[i].take() {
                let _ = self.poll.registry().deregister(old.stream());
            }
        }
        Ok(())
    }
}

/// What a slot workload counts inside the window: connections done, with their latency, and
/// failed ones (connects that failed at once among them).
#[derive(Debug, Default)]
pub struct Tally {
    work: u64,
    errors: u64,
    latency: Histogram,
}

impl Tally {
    /// Counts `failed` connects (as [`Slots::fill`] returns them) if the window is open.
    pub fn failed_connects(&mut self, failed: u64, shared: &Shared) {
        if failed > 0 && shared.recording() {
            self.errors += failed;
        }
    }

    /// Counts a connection, started at `started`, that ended with `progress` if the window is
    /// open. Returns what it counted, if anything, for the workload's own counts.
    pub fn count(
        &mut self,
        progress: Progress,
        started: Instant,
        shared: &Shared,
    ) -> Option<Progress> {
        match progress {
            Progress::Pending => return None,
            _ if !shared.recording() => return None,
            Progress::Done => {
                self.work += 1;
                self.latency.record(started.elapsed().as_nanos() as u64);
            }
            Progress::Failed => self.errors += 1,
        }
        Some(progress)
    }

    /// The worker's report, with `resumed` handshakes if it makes TLS handshakes, and the
    /// `connections` it opened ([`Slots::opened`]).
    pub fn report(self, resumed: Option<u64>, connections: u64) -> WorkerReport {
        WorkerReport {
            work: self.work,
            errors: self.errors,
            latency: Some(self.latency),
            resumed,
            connections,
        }
    }
}

/// Starts a non-blocking connect to `addr` for slot `i`, registered with `registry`.
pub fn connect(registry: &Registry, addr: SocketAddr, i: usize) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    registry.register(
        &mut stream,
        Token(i),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    Ok(stream)
}

/// Where a non-blocking connect is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    /// Not yet (a spurious event, or one for another step).
    Pending,
    /// Connected; TCP_NODELAY is set.
    Established,
    /// Refused, reset or timed out.
    Failed,
}

/// After a readiness event: whether the connect of `stream` is done (mio's recipe: no
/// pending error, then a peer address).
pub fn established(stream: &TcpStream) -> Connect {
    match stream.take_error() {
        Ok(None) => {}
        Ok(Some(_)) | Err(_) => return Connect::Failed,
    }
    match stream.peer_addr() {
        Ok(_) => {
            let _ = stream.set_nodelay(true);
            Connect::Established
        }
        Err(err) if err.kind() == io::ErrorKind::NotConnected => Connect::Pending,
        Err(_) => Connect::Failed,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn a_tally_counts_only_ended_connections_inside_the_window() {
        let shared = Shared::default();
        let mut tally = Tally::default();
        let started = Instant::now();
        tally.failed_connects(3, &shared);
        assert_eq!(tally.count(Progress::Done, started, &shared), None);
        shared.recording.store(true, Ordering::Relaxed);
        assert_eq!(tally.count(Progress::Pending, started, &shared), None);
        let counted = tally.count(Progress::Done, started, &shared);
        assert_eq!(counted, Some(Progress::Done));
        let counted = tally.count(Progress::Failed, started, &shared);
        assert_eq!(counted, Some(Progress::Failed));
        tally.failed_connects(2, &shared);
        let report = tally.report(None, 0);
        assert_eq!((report.work, report.errors), (1, 3));
        assert!(report.latency.and_then(|h| h.quantile(0.5)).is_some());
    }
}
