//! The control socket: a line protocol that a person drives with `nc`.
//!
//! `command` reads a line into a command (pure, no IO); `reply` carries it out on the proxy's
//! public API and writes the reply text; `server` owns the socket and the sessions.

pub mod command;
pub mod reply;
pub mod server;

pub use reply::Context;
pub use server::{serve, BoundControl, ControlAddr, ControlCloser, ControlError, ControlSocket};
