//! The running porxy's upgrade socket: bound at start, then served by a thread that accepts
//! peers, checks who they are, and gives each a conversation of its own on its own thread
//! (`conversation.rs`).
//!
//! Several conversations run at once, so a peer that says nothing (or trickles) cannot keep a
//! successor waiting (`peers.rs` bounds how many wait, and for how long). A successor says
//! `TAKEOVER` as soon as it connects: one whose request is already there when it is accepted
//! (or arrives within a moment, when the waiting room is full) does not wait among the silent
//! ones at all, so no crowd of them can end it.

use std::io::ErrorKind;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use porxy_core::ProxyHandle;

use super::conversation::{Context, Conversation};
use super::gate::Gate;
use super::peer::Peer;
use super::peers::{Fault, Peers, LAST_CHANCE};
use super::{UpgradeError, ROLE};
use crate::reload::Reloader;
use crate::socket_path;
use crate::stopping::Stopper;

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
        let context = Arc::new(Context {
            handle,
            stopper,
            reloader,
            gate: Gate::default(),
            peers: Peers::new(self.path.display().to_string()),
        });
        let spawned = std::thread::Builder::new()
            .name("porxy-upgrade".into())
            .spawn(move || accept_all(&context, listener));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot serve the upgrade socket; this porxy cannot be taken over");
        }
    }
}

/// Accepts peers until the process ends.
fn accept_all(context: &Arc<Context>, listener: UnixListener) {
    let peers = &context.peers;
    for conn in listener.incoming() {
        match conn {
            Ok(conn) => admit(context, conn),
            Err(e) => {
                if let Some(times) = peers.due(Fault::Accept) {
                    tracing::warn!(upgrade = %peers.shown, error = %e, times, "cannot accept on the upgrade socket");
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
fn admit(context: &Arc<Context>, conn: UnixStream) {
    let peers = &context.peers;
    let peer = match Peer::of(&conn) {
        Ok(peer) if peer.trusted() => peer,
        Ok(peer) => {
            if let Some(times) = peers.due(Fault::Stranger) {
                tracing::warn!(upgrade = %peers.shown, pid = peer.pid, uid = peer.uid, times, "a process of another user connected to the upgrade socket; refused unheard");
            }
            return;
        }
        Err(e) => {
            if let Some(times) = peers.due(Fault::Stranger) {
                tracing::warn!(upgrade = %peers.shown, error = %e, times, "cannot tell who connected to the upgrade socket; refused unheard");
            }
            return;
        }
    };
    // A successor says TAKEOVER as soon as it connects: one whose request is already here
    // need not wait among the silent ones, where a crowd could end it.
    let now = Instant::now();
    let announced = Peer::announced_takeover(&conn)
        || (peers.crowded(now) && Peer::announces_takeover_within(&conn, LAST_CHANCE));
    let id = if announced {
        None
    } else {
        match peers.wait(&conn, now) {
            Some(id) => Some(id),
            None => return,
        }
    };
    let shared = context.clone();
    let spawned = std::thread::Builder::new()
        .name("porxy-upgrade-peer".into())
        .spawn(move || Conversation::new(conn, peer, id).run(&shared));
    if let Err(e) = spawned {
        if let Some(id) = id {
            peers.done_waiting(id);
        }
        tracing::warn!(upgrade = %peers.shown, error = %e, "cannot start a thread for an upgrade conversation; dropped");
    }
}
