//! Carrying out an admin command on the proxy's public API ([`ProxyHandle`], [`Reloader`],
//! [`Stopper`]), for any front end: the result is typed ([`Outcome`] or [`AdminError`]), and
//! saying it to a client is the front end's ([`super::render`] for the line protocol).
//!
//! One thing is left to the front end: `STOP` only reports [`Outcome::Stopping`], and the front
//! end begins the stop once the client has its answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use porxy_core::{CloseMode, Endpoint, ProxyHandle, Remote};

use crate::reload::{ReloadMode, Reloader};
use crate::stopping::Stopper;

use super::command::{BackendAction, Command};
use super::outcome::{AdminError, Outcome, ServiceChange};

/// What the control commands need beside the handle.
#[derive(Clone)]
pub struct Context {
    pub stopper: Arc<Stopper>,
    pub reloader: Arc<Reloader>,
}

/// Carries out `command` on the proxy and says what came of it.
pub fn execute(
    command: Command,
    handle: &ProxyHandle,
    ctx: &Context,
) -> Result<Outcome, AdminError> {
    match command {
        Command::Help => Ok(Outcome::Help),
        Command::Status { full: false } => Ok(Outcome::Status(handle.status())),
        Command::Status { full: true } => Ok(Outcome::StatusFull(handle.status())),
        Command::Open(spec) => Ok(Outcome::Opened(handle.open(&spec)?)),
        Command::Close { local, now } => {
            let local = local.resolve()?;
            let mode = if now {
                CloseMode::CloseConnections
            } else {
                CloseMode::KeepConnections
            };
            let closed = handle.close(local, mode)?;
            Ok(Outcome::Closed {
                local,
                mode,
                closed,
            })
        }
        Command::Backend {
            local,
            remote,
            action,
        } => backend(handle, &local, remote, action),
        Command::Stop => Ok(Outcome::Stopping {
            open: handle.status().open_connections(),
            drain_timeout: ctx.stopper.drain_timeout(),
        }),
        Command::Reload { force } => {
            let mode = if force {
                ReloadMode::Force
            } else {
                ReloadMode::Guarded
            };
            Ok(Outcome::Reloaded(ctx.reloader.reload(mode)?))
        }
        Command::Exit => Ok(Outcome::Bye),
    }
}

/// Carries out ADD, REMOVE, DRAIN, ENABLE or DISABLE.
fn backend(
    handle: &ProxyHandle,
    local: &Endpoint,
    remote: Remote,
    action: BackendAction,
) -> Result<Outcome, AdminError> {
    let tunnel = local.resolve()?;
    let backend = remote.endpoint.resolve()?;
    let change = match action {
        BackendAction::Add => {
            let backend = handle.add_backend(tunnel, remote)?;
            return Ok(Outcome::BackendAdded { tunnel, backend });
        }
        BackendAction::Remove { deadline } => return remove(handle, tunnel, backend, deadline),
        BackendAction::Drain => ServiceChange::Drain,
        BackendAction::Enable => ServiceChange::Enable,
        BackendAction::Disable => ServiceChange::Disable,
    };
    let open = handle.change_backend(tunnel, backend, change.into())?;
    Ok(Outcome::BackendChanged {
        tunnel,
        backend,
        change,
        open,
    })
}

/// Carries out REMOVE; the outcome holds the deadline in force, which an earlier REMOVE may
/// have given (a deadline never moves later).
fn remove(
    handle: &ProxyHandle,
    tunnel: SocketAddr,
    backend: SocketAddr,
    asked: Option<Duration>,
) -> Result<Outcome, AdminError> {
    let removal = handle.remove_backend(tunnel, backend, asked)?;
    Ok(Outcome::Removed {
        tunnel,
        backend,
        asked,
        removal,
    })
}
