//! The control socket: a line protocol that a person drives with `nc`.
//!
//! A line goes through three steps, each in its own file:
//!
//! - `command` reads it into a [`command::Command`] (pure, no IO);
//! - `execute` carries the command out on the proxy's public API (`ProxyHandle`, `Reloader`,
//!   `Stopper`) and gives its typed result: an [`outcome::Outcome`], or an
//!   [`outcome::AdminError`] sorted by kind (`outcome` holds both, with no IO and no text: it is
//!   what another front end, HTTP or JSON-RPC, shares with this one);
//! - `render` turns that result into the reply text.
//!
//! `server` owns the socket and accepts clients; `session` serves one client: it reads lines
//! (bounded in length, each due by the idle deadline), answers them, and tells its client why
//! it is cut off. How many clients are served at once, which one makes room for a newcomer,
//! the deadlines of a request and of a reply, and the line reader are `crate::clients`'. A Unix socket path is bound through `crate::socket_path`, which the
//! upgrade socket shares.

pub mod command;
pub mod execute;
pub mod journaled;
pub mod outcome;
pub mod render;
pub mod server;
mod session;

pub use crate::clients::DEFAULT_IDLE_TIMEOUT;
pub use execute::Context;
pub use server::{serve, ROLE};
