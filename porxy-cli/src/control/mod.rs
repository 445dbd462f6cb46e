//! The control socket: a line protocol that a person drives with `nc`.
//!
//! `command` reads a line into a command (pure, no IO); `reply` carries it out on the proxy's
//! public API and writes the reply text; `server` owns the socket and accepts clients;
//! `session` serves one client and bounds how many there are; `stream` bounds a connection's
//! reads and writes in time. A Unix socket path is bound through `crate::socket_path`, which
//! the upgrade socket shares.

pub mod command;
pub mod reply;
pub mod server;
mod session;
mod stream;

pub use reply::Context;
pub use server::{serve, BoundControl, ControlAddr, ControlCloser, ControlError, ControlSocket};
pub use session::DEFAULT_IDLE_TIMEOUT;
