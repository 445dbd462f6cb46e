//! Zero-downtime upgrade: a new porxy takes over the listening sockets of the running one.
//!
//! The running porxy, started with `--upgrade-socket PATH`, listens there (a Unix socket,
//! owner-only; `server.rs`). A new porxy started with `--takeover PATH` (`successor.rs`):
//!
//! 1. connects and sends `TAKEOVER`;
//! 2. receives one message: lines `tunnel NAME ADDR`, then `control tcp ADDR` or
//!    `control unix PATH` if there is a control socket, then `END`, with the listening sockets
//!    themselves attached (SCM_RIGHTS) in the same order; or `ERR why` when the running porxy
//!    will not be taken over now (another takeover is under way, say);
//! 3. starts its proxy on those sockets: both processes now accept on them, so no client is
//!    refused at any moment;
//! 4. sends `READY`. The old porxy answers `OK` and stops accepting (closing only its own
//!    copies);
//! 5. and 6. asks for the old porxy's established connections and takes them over, so that the
//!    old one exits at once (`handover.rs`), or leaves them with the old one, which drains them
//!    and exits.
//!
//! If the new porxy goes away before `READY`, the old one carries on as if nothing had happened.
//!
//! A stranger cannot get in the way: each side checks that the other runs as the same user or
//! as root before it reads a byte (`peer.rs`); the running porxy holds several conversations at
//! once (`server.rs`, `peers.rs`), reads each line with a length bound and one deadline for the
//! whole line (`line.rs`), and lets one takeover run at a time (`gate.rs`), answering any other
//! `ERR` (`conversation.rs`).

mod conversation;
mod gate;
mod handover;
mod inherit;
pub(crate) mod line;
mod peer;
mod peers;
mod raw;
mod server;
mod successor;

use std::io;
use std::time::Duration;

pub(crate) use inherit::{control_matches, inherit};
pub(crate) use server::UpgradeSocket;
pub(crate) use successor::{take_over, Takeover};

use crate::socket_path::SocketPathError;

/// The socket's name in errors and logs.
pub(crate) const ROLE: &str = "upgrade socket";
/// How long each side waits for the other's next line.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a takeover failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpgradeError {
    #[error("upgrade socket {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("upgrade socket {path}: {what}")]
    Protocol { path: String, what: String },
    #[error(transparent)]
    Path(#[from] SocketPathError),
}
