//! The HTTP admin endpoint (`--admin ADDR`, `[admin]`): the routing table, backends, status,
//! reload and stop over HTTP/1.1 and JSON, for tools, scripts and dashboards, beside the
//! control socket and driving the same commands.
//!
//! - `http`: requests read bounded in size and time, answers written (httparse underneath);
//! - `router`: which endpoint a method and path are for;
//! - `auth`: the bearer token;
//! - `api`: what each endpoint does, through the [`crate::reload::Reloader`] (the routing
//!   table) and the control commands ([`crate::control::execute`]);
//! - `json`: the routing table, status and outcomes as JSON;
//! - `session` serves one client, `server` owns the socket (shared code with the control
//!   socket's in `crate::clients`).

pub mod api;
pub mod auth;
pub mod http;
pub mod json;
pub mod plan;
pub mod router;
pub mod rpc;
pub mod server;
pub mod session;
pub mod start;

pub use server::{bind, serve};
