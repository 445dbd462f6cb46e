//! The running porxy's upgrade socket: bound at start, then served by a thread that accepts
//! peers, checks who they are, and gives each its own conversation (`conversation.rs`).
//!
//! Several conversations run at once, so a peer that says nothing (or trickles) cannot keep a
//! successor waiting: each has [`REQUEST_TIMEOUT`] for its request as a whole, and at most
//! [`MAX_WAITING`] wait for one; a newcomer beyond that ends the conversation that has waited
//! longest. A real successor says `TAKEOVER` as soon as it connects, so it is past this stage
//! before any flood can reach it.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use porxy_core::{LogLimit, ProxyHandle};

use super::conversation::{Conversation, Gate};
use super::peer::Peer;
use super::UpgradeError;
use crate::reload::Reloader;
use crate::socket_path;
use crate::stopping::Stopper;

/// The socket's name in errors and logs.
const ROLE: &str = "upgrade socket";
/// How long a peer has to send its whole request line.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most conversations waiting for their request at once.
pub(super) const MAX_WAITING: usize = 8;
/// At most one warning per period for each kind of fault a peer can cause.
const WARN_PERIOD: Duration = Duration::from_secs(1);
/// The pause after accept fails for want of descriptors, instead of spinning.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The upgrade socket, bound and not yet served.
///
/// A porxy that took over from another binds it under a temporary name beside the final one,
/// before it confirms the takeover (so that a failure to bind stops the takeover, not a
/// running service), and renames it into place afterwards: the path always leads to a porxy
/// that can be taken over. Only a socket is ever replaced (`crate::socket_path`).
pub(crate) struct UpgradeSocket {
    listener: UnixListener,
    path: PathBuf,
    /// The temporary name to rename from, for a successor; removed if never renamed.
    staged: Option<PathBuf>,
}

impl Drop for UpgradeSocket {
    fn drop(&mut self) {
        if let Some(staged) = self.staged.take() {
            let _ = std::fs::remove_file(staged);
        }
    }
}

impl UpgradeSocket {
    /// Binds the upgrade socket at `path` (owner-only). A successor (`staged`) binds beside it.
    pub(crate) fn bind(path: &Path, staged: bool) -> Result<UpgradeSocket, UpgradeError> {
        let (listener, staged) = if staged {
            let (listener, at) = socket_path::bind_beside(path, ROLE)?;
            (listener, Some(at))
        } else {
            (socket_path::bind_unix(path, ROLE)?, None)
        };
        Ok(UpgradeSocket {
            listener,
            path: path.to_path_buf(),
            staged,
        })
    }

    /// Puts the socket in place (a successor's replaces its predecessor's) and serves takeover
    /// requests until the process ends. Never fails the running proxy: a problem is logged.
    pub(crate) fn serve(
        mut self,
        handle: ProxyHandle,
        stopper: Arc<Stopper>,
        reloader: Arc<Reloader>,
    ) {
        if let Some(staged) = &self.staged {
            if let Err(e) = socket_path::replace(staged, &self.path, ROLE) {
                tracing::error!(error = %e, "cannot put the upgrade socket in place; this porxy cannot be taken over");
                return; // Drop removes the staged file.
            }
            self.staged = None;
        }
        let listener = match self.listener.try_clone() {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, "cannot serve the upgrade socket; this porxy cannot be taken over");
                return;
            }
        };
        let server = Arc::new(Server {
            shown: self.path.display().to_string(),
            handle,
            stopper,
            reloader,
            gate: Gate::default(),
            waiting: Mutex::new(Waiting::default()),
            warnings: Mutex::new(Warnings::default()),
        });
        let spawned = std::thread::Builder::new()
            .name("porxy-upgrade".into())
            .spawn(move || server.accept_all(listener));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot serve the upgrade socket; this porxy cannot be taken over");
        }
    }
}

/// What every conversation of one upgrade socket shares.
pub(super) struct Server {
    pub(super) shown: String,
    pub(super) handle: ProxyHandle,
    pub(super) stopper: Arc<Stopper>,
    pub(super) reloader: Arc<Reloader>,
    /// One takeover at a time.
    pub(super) gate: Gate,
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

impl Server {
    /// Accepts peers until the process ends.
    fn accept_all(self: Arc<Self>, listener: UnixListener) {
        for conn in listener.incoming() {
            match conn {
                Ok(conn) => self.admit(conn),
                Err(e) => {
                    if let Some(times) = self.due(Fault::Accept) {
                        tracing::warn!(upgrade = %self.shown, error = %e, times, "cannot accept on the upgrade socket");
                    }
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                        || e.kind() == ErrorKind::OutOfMemory
                    {
                        std::thread::sleep(ACCEPT_PAUSE);
                    }
                }
            }
        }
    }

    /// Checks who connected, then gives it a conversation of its own.
    fn admit(self: &Arc<Self>, conn: UnixStream) {
        let peer = match Peer::of(&conn) {
            Ok(peer) if peer.trusted() => peer,
            Ok(peer) => {
                if let Some(times) = self.due(Fault::Stranger) {
                    tracing::warn!(upgrade = %self.shown, pid = peer.pid, uid = peer.uid, times, "a process of another user connected to the upgrade socket; refused unheard");
                }
                return;
            }
            Err(e) => {
                if let Some(times) = self.due(Fault::Stranger) {
                    tracing::warn!(upgrade = %self.shown, error = %e, times, "cannot tell who connected to the upgrade socket; refused unheard");
                }
                return;
            }
        };
        let Some(id) = self.wait(&conn) else {
            return;
        };
        let server = self.clone();
        let spawned = std::thread::Builder::new()
            .name("porxy-upgrade-peer".into())
            .spawn(move || {
                Conversation::new(conn, peer, id).run(&server);
            });
        if let Err(e) = spawned {
            self.done_waiting(id);
            tracing::warn!(upgrade = %self.shown, error = %e, "cannot start a thread for an upgrade conversation; dropped");
        }
    }

    /// Puts `conn` among the waiting conversations, ending the oldest if there are too many.
    /// `None` if it cannot be tracked (it is then dropped).
    fn wait(&self, conn: &UnixStream) -> Option<u64> {
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
