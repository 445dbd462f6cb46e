//! The peers of the running porxy's upgrade socket, as its conversations share them: those
//! still waiting for their request, and the warnings about their faults, at most one per kind a
//! second.
//!
//! At most [`MAX_WAITING`] wait. A newcomer beyond that ends the one that has waited longest,
//! if it has waited [`MIN_WAIT`] at least; otherwise the newcomer itself is turned away. So a
//! crowd cannot end a peer before it has had time to speak, and a peer whose `TAKEOVER` is
//! already there when it is accepted never waits here at all (see `server.rs`).

use std::collections::VecDeque;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use porxy_core::LogLimit;

/// How long a peer has to send its whole request line.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most conversations waiting for their request at once.
pub(super) const MAX_WAITING: usize = 8;
/// How long a waiting peer is safe from being ended for a newcomer.
const MIN_WAIT: Duration = Duration::from_millis(100);
/// How long a newcomer that would be turned away is watched for a `TAKEOVER` on its way.
pub(super) const LAST_CHANCE: Duration = Duration::from_millis(20);
/// At most one warning per period for each kind of fault a peer can cause.
const WARN_PERIOD: Duration = Duration::from_secs(1);

/// The peers of one upgrade socket.
pub(super) struct Peers {
    /// The socket's path, for logs.
    pub(super) shown: String,
    waiting: Mutex<Waiting>,
    warnings: Mutex<Warnings>,
}

/// Conversations that have not yet sent their request, oldest first, each with a handle to
/// end it.
#[derive(Default)]
struct Waiting {
    next_id: u64,
    /// Each with when it came, and a handle to end it.
    queue: VecDeque<(u64, Instant, UnixStream)>,
}

/// The kinds of fault a peer can cause, each warned about at most once per [`WARN_PERIOD`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Fault {
    /// A process of another user connected.
    Stranger,
    /// A request that is not `TAKEOVER`, too long, too slow, or cut.
    BadRequest,
    /// A conversation ended to make room for a newer one.
    Crowded,
    /// A takeover asked while another runs, or after one is done.
    Refused,
    /// The socket itself failed to accept.
    Accept,
}

#[derive(Default)]
struct Warnings([LogLimit; 5]);

impl Peers {
    pub(super) fn new(shown: String) -> Peers {
        Peers {
            shown,
            waiting: Mutex::new(Waiting::default()),
            warnings: Mutex::new(Warnings::default()),
        }
    }

    /// Whether a newcomer at `now` would be turned away: as many wait as may, and none has
    /// waited [`MIN_WAIT`] yet.
    pub(super) fn crowded(&self, now: Instant) -> bool {
        let waiting = lock(&self.waiting);
        waiting.queue.len() >= MAX_WAITING
            && waiting
                .queue
                .front()
                .is_some_and(|(_, since, _)| now.saturating_duration_since(*since) < MIN_WAIT)
    }

    /// Puts `conn` among the waiting conversations at `now`, ending the oldest if there are
    /// too many and it has waited long enough. `None` if `conn` is turned away instead (or
    /// cannot be tracked): the caller drops it.
    pub(super) fn wait(&self, conn: &UnixStream, now: Instant) -> Option<u64> {
        let spare = conn.try_clone().ok()?;
        let mut waiting = lock(&self.waiting);
        if waiting.queue.len() >= MAX_WAITING {
            let oldest_since = waiting.queue.front().map_or(now, |(_, since, _)| *since);
            if now.saturating_duration_since(oldest_since) < MIN_WAIT {
                drop(waiting);
                if let Some(times) = self.due(Fault::Crowded) {
                    tracing::warn!(upgrade = %self.shown, times, waiting = MAX_WAITING, "too many silent peers on the upgrade socket; turned a newcomer away");
                }
                return None;
            }
            if let Some((_, _, oldest)) = waiting.queue.pop_front() {
                // Its blocked read returns at once; its thread then ends.
                let _ = oldest.shutdown(Shutdown::Both);
                if let Some(times) = self.due(Fault::Crowded) {
                    tracing::warn!(upgrade = %self.shown, times, waiting = MAX_WAITING, "too many silent peers on the upgrade socket; ended the oldest");
                }
            }
        }
        let id = waiting.next_id;
        waiting.next_id += 1;
        waiting.queue.push_back((id, now, spare));
        Some(id)
    }

    /// Conversation `id` has its request (or has failed): it can no longer be crowded out.
    pub(super) fn done_waiting(&self, id: u64) {
        lock(&self.waiting)
            .queue
            .retain(|(waiting, _, _)| *waiting != id);
    }

    /// Whether a warning about `fault` is due now; `Some(times)` counts the faults since the
    /// last one.
    pub(super) fn due(&self, fault: Fault) -> Option<u64> {
        lock(&self.warnings).0[fault as usize].occurred(Instant::now(), WARN_PERIOD)
    }
}

/// Locks, even after a conversation's thread panicked holding the lock: what is guarded here
/// (a queue of sockets, rate limits) stays consistent at every step.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn peer() -> (UnixStream, UnixStream) {
        UnixStream::pair().unwrap()
    }

    /// A crowd turns newcomers away while every waiting peer is young, and ends the oldest
    /// once it has had its time to speak.
    #[test]
    fn the_oldest_is_ended_only_after_its_time_to_speak() {
        let peers = Peers::new("test".into());
        let t0 = Instant::now();
        let mut far_ends = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..MAX_WAITING {
            let (ours, theirs) = peer();
            ids.push(peers.wait(&ours, t0).expect("room"));
            far_ends.push((ours, theirs));
        }
        let (late, _late_far) = peer();
        assert_eq!(peers.wait(&late, t0 + MIN_WAIT / 2), None, "all too young");

        let (later, _later_far) = peer();
        let id = peers
            .wait(&later, t0 + MIN_WAIT)
            .expect("the oldest makes room");
        assert!(!ids.contains(&id));
        // The oldest's stream was shut down: its reader sees the end at once.
        let mut byte = [0u8; 1];
        assert_eq!((&far_ends[0].0).read(&mut byte).unwrap(), 0);

        // One that has its request leaves the queue: a newcomer then finds room.
        peers.done_waiting(ids[1]);
        let (another, _another_far) = peer();
        assert!(peers.wait(&another, t0 + MIN_WAIT).is_some());
    }
}
