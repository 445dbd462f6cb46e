//! The peers of the running porxy's upgrade socket, as its conversations share them: those
//! still waiting for their request (at most [`MAX_WAITING`]; a newcomer beyond that ends the
//! one that has waited longest), and the warnings about their faults, at most one per kind a
//! second.

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
    queue: VecDeque<(u64, UnixStream)>,
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

    /// Puts `conn` among the waiting conversations, ending the oldest if there are too many.
    /// `None` if it cannot be tracked (it is then dropped).
    pub(super) fn wait(&self, conn: &UnixStream) -> Option<u64> {
        let spare = conn.try_clone().ok()?;
        let mut waiting = lock(&self.waiting);
        let id = waiting.next_id;
        waiting.next_id += 1;
        waiting.queue.push_back((id, spare));
        if waiting.queue.len() > MAX_WAITING {
            if let Some((_, oldest)) = waiting.queue.pop_front() {
                // Its blocked read returns at once; its thread then ends.
                let _ = oldest.shutdown(Shutdown::Both);
                drop(waiting);
                if let Some(times) = self.due(Fault::Crowded) {
                    tracing::warn!(upgrade = %self.shown, times, waiting = MAX_WAITING, "too many silent peers on the upgrade socket; ended the oldest");
                }
            }
        }
        Some(id)
    }

    /// Conversation `id` has its request (or has failed): it can no longer be crowded out.
    pub(super) fn done_waiting(&self, id: u64) {
        lock(&self.waiting)
            .queue
            .retain(|(waiting, _)| *waiting != id);
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
