//! The control socket: a line protocol that a person drives with `nc`.
//!
//! A line goes through three steps, each in its own file: `command` reads it into a
//! [`command::Command`] (pure, no IO); `execute` carries the command out on the proxy's public
//! API and gives its typed result, an [`outcome::Outcome`] or an [`outcome::AdminError`]
//! (`outcome`: no IO, no text; what another front end, HTTP or JSON-RPC, would share); `render`
//! turns that result into the reply text. `server` owns the socket and accepts clients;
//! `session` serves one client and bounds how many there are; `stream` bounds a connection's
//! reads and writes in time. A Unix socket path is bound through `crate::socket_path`, which
//! the upgrade socket shares.

pub mod command;
pub mod execute;
mod lines;
pub mod outcome;
pub mod render;
pub mod server;
mod session;

pub use crate::clients::DEFAULT_IDLE_TIMEOUT;
pub use execute::Context;
pub use server::{serve, BoundControl, ControlAddr, ControlCloser, ControlError, ControlSocket};
