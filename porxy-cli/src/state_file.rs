//! The state file (`--state-file PATH`, `[state] file`): the routing table as it runs, written
//! after every change made at runtime (the control socket, the admin API, JSON-RPC, a reload),
//! and read at the next start in place of the configuration's tunnels, so that changes made at
//! runtime survive a restart.
//!
//! It is the admin API's routes JSON (`GET /routes`), backends' operator states included
//! (drained and disabled ones are so again after the start). It is written atomically (a
//! temporary file beside it, written, synced, renamed over it, the directory synced), so a
//! crash leaves the old one or the new one, never half of either. A state file that cannot be
//! read is refused with its path and the line, or the field, that is wrong: nothing of it is
//! applied, and porxy does not start.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use porxy_core::{BackendChange, ProxyHandle, Status};
use serde_json::Value;

use crate::named_tunnel::NamedTunnel;
use crate::route_table::{lift, show};

/// Why a state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    #[error("state file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {}:{line}:{column}: not JSON: {message}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("state file {}: {error}", path.display())]
    Field {
        path: PathBuf,
        error: lift::LiftError,
    },
}

/// A state file's routes and the operator states of their backends.
pub(crate) struct Saved {
    pub(crate) tunnels: Vec<NamedTunnel>,
    /// By route name: each backend (as written) that is drained or disabled.
    pub(crate) states: Vec<(String, String, BackendChange)>,
}

/// Reads the state file at `path`: `None` if there is none yet.
pub(crate) fn load(path: &Path) -> Result<Option<Saved>, StateError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| StateError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let tunnels = lift::routes(&value).map_err(|error| StateError::Field {
        path: path.to_path_buf(),
        error,
    })?;
    let states = states_of(&value);
    Ok(Some(Saved { tunnels, states }))
}

/// The operator states (drained, disabled) of the backends in a routes JSON, by route name.
pub(crate) fn states_of(value: &Value) -> Vec<(String, String, BackendChange)> {
    let mut states = Vec::new();
    for route in value["routes"].as_array().into_iter().flatten() {
        let name = route["name"].as_str().unwrap_or_default();
        for remote in route["remotes"].as_array().into_iter().flatten() {
            let change = match remote["state"].as_str() {
                Some("draining") => BackendChange::Drain,
                Some("disabled") => BackendChange::Disable,
                _ => continue,
            };
            let address = remote["address"].as_str().unwrap_or_default();
            states.push((name.to_string(), address.to_string(), change));
        }
    }
    states
}

/// Puts the saved operator states back on the started tunnels (`bound`: each tunnel's bound
/// address by name). A backend that is gone is skipped, said in the log.
pub(crate) fn restore_states(
    handle: &ProxyHandle,
    states: &[(String, String, BackendChange)],
    bound: impl Fn(&str) -> Option<SocketAddr>,
) {
    for (route, backend, change) in states {
        let resolved = backend
            .parse::<porxy_core::Endpoint>()
            .ok()
            .and_then(|e| e.resolve().ok());
        let (Some(tunnel), Some(backend)) = (bound(route), resolved) else {
            tracing::warn!(
                route,
                backend,
                "a saved backend state has no backend to go to"
            );
            continue;
        };
        if let Err(e) = handle.change_backend(tunnel, backend, *change) {
            tracing::warn!(route, %backend, error = %e, "a saved backend state could not be restored");
        }
    }
}

/// Writes the routing table `tunnels` (with their backends' states from `status`) to `path`,
/// atomically.
pub(crate) fn save(path: &Path, tunnels: &[NamedTunnel], status: &Status) -> std::io::Result<()> {
    let value = show::routes(tunnels, &status.tunnels);
    let mut text = serde_json::to_vec_pretty(&value).map_err(std::io::Error::other)?;
    text.push(b'\n');
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(".{}.tmp", name.unwrap_or_else(|| "state".into())));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)?;
    file.write_all(&text)?;
    file.sync_all()?;
    fs::rename(&temp, path)?;
    // The rename itself is durable once the directory is.
    File::open(dir)?.sync_all()
}
