//! Replaying the runtime journal a predecessor sent (`journal.rs`) on top of this process's
//! configuration, after the tunnels are open and before the first client is accepted: each
//! change is carried out as the control command it is, so it is checked as one and lands in
//! this process's own journal for the next upgrade. A change that no longer applies (a backend
//! the new configuration does not name, a tunnel it already has) is said, not fatal.
//!
//! A `REMOVE` with a deadline drains its backend at once (a backend removed with no connection
//! would be gone before the ones coming over could find it), and is carried out with the time
//! left once the connections have come over, so that they end at the same deadline.

use std::time::{Duration, Instant};

use porxy_core::ProxyHandle;

use crate::control::command::parse;
use crate::control::execute::{execute, Context};
use crate::control::outcome::AdminError;
use crate::journal::{remove_line, Change};
use crate::route_table::lift;
use crate::state_file;

/// What the replay did, and what it leaves for after the connections have come over.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    applied: usize,
    /// Each change not applied, with why.
    failed: Vec<(String, String)>,
    /// `REMOVE`s whose deadline is to be given again, and when it falls.
    timed: Vec<(String, Instant)>,
}

/// Carries out `changes` in order.
pub(crate) fn replay(changes: Vec<Change>, handle: &ProxyHandle, ctx: &Context) -> Replayed {
    let mut replayed = Replayed::default();
    for change in changes {
        let (shown, result) = match change {
            Change::Line { line, until } => {
                let now = match (until, line.strip_prefix("REMOVE ")) {
                    (Some(until), Some(rest)) => {
                        replayed.timed.push((line.clone(), until));
                        format!("DRAIN {rest}")
                    }
                    _ => line.clone(),
                };
                let result = parse(now.as_bytes())
                    .map_err(|e| e.to_string())
                    .and_then(|command| {
                        execute(command, handle, ctx)
                            .map(drop)
                            .map_err(|e| e.to_string())
                    });
                (line, result)
            }
            Change::Close { addr, name } => {
                // A listener on port 0 has another port here: found by its name.
                let bound = name.as_ref().and_then(|name| {
                    let bound = ctx.reloader.bound.lock().unwrap_or_else(|p| p.into_inner());
                    bound.get(name).copied()
                });
                let line = format!("CLOSE {}", bound.unwrap_or(addr));
                let result = parse(line.as_bytes())
                    .map_err(|e| e.to_string())
                    .and_then(|c| execute(c, handle, ctx).map(drop).map_err(|e| e.to_string()));
                (line, result)
            }
            Change::Routes(routes) => ("a routing table set as a whole".to_string(), {
                routes_again(&routes, handle, ctx)
            }),
        };
        match result {
            Ok(()) => replayed.applied += 1,
            Err(why) => replayed.failed.push((shown, why)),
        }
    }
    replayed
}

/// A routing table set through the admin API, applied again with its backends' states.
fn routes_again(
    routes: &serde_json::Value,
    handle: &ProxyHandle,
    ctx: &Context,
) -> Result<(), String> {
    let tunnels = lift::routes(routes).map_err(|e| e.to_string())?;
    ctx.reloader.apply(tunnels).map_err(|e| e.to_string())?;
    ctx.reloader.journal.set_routes(routes.clone());
    let bound = ctx
        .reloader
        .bound
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    state_file::restore_states(handle, &state_file::states_of(routes), |name| {
        bound.get(name).copied()
    });
    Ok(())
}

/// How long the reactors may take to take in the connections handed to them.
const IMPORT_WAIT: Duration = Duration::from_secs(5);
/// How often the wait looks.
const IMPORT_LOOK: Duration = Duration::from_millis(5);

/// Waits until the reactors have taken in `imported` connections (they take them in a moment
/// after they are handed over), at most [`IMPORT_WAIT`]: a removal given its deadline before
/// would find its backend with no connection and end at once, leaving them no deadline.
fn wait_for_imports(handle: &ProxyHandle, imported: u64) {
    let until = Instant::now() + IMPORT_WAIT;
    // A bounded look at counters another thread updates: there is nothing to wait on.
    while Instant::now() < until {
        let taken: u64 = handle.status().tunnels.iter().map(|t| t.imported).sum();
        if taken >= imported {
            return;
        }
        std::thread::sleep(IMPORT_LOOK);
    }
    tracing::warn!(
        imported,
        "the reactors were slow to take in the connections handed over"
    );
}

impl Replayed {
    /// Once the connections have come over: gives each timed `REMOVE` its deadline again, and
    /// says in one line what was taken over, and in one more per change what was not.
    pub(crate) fn finish(mut self, handle: &ProxyHandle, ctx: &Context, imported: u64) {
        if !self.timed.is_empty() {
            wait_for_imports(handle, imported);
        }
        let now = Instant::now();
        for (line, until) in std::mem::take(&mut self.timed) {
            let again = remove_line(&line, until, now);
            let result = match parse(again.as_bytes()) {
                Ok(command) => execute(command, handle, ctx).map(drop),
                Err(e) => Err(AdminError::BadRequest(e)),
            };
            match result {
                // No connection on it came over: the removal is complete.
                Ok(()) | Err(AdminError::NotFound(_)) => {}
                Err(why) => self.failed.push((again, why.to_string())),
            }
        }
        tracing::info!(
            applied = self.applied,
            not_applied = self.failed.len(),
            "took over the changes made at runtime in the previous porxy"
        );
        for (change, why) in &self.failed {
            tracing::warn!(change = %change, error = %why, "a change made at runtime in the previous porxy does not apply here");
        }
    }
}
