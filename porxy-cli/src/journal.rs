//! The runtime journal: the changes made to the routing table at runtime (the control socket,
//! the admin API, JSON-RPC) since the configuration was last applied, in order. A successor
//! that takes over asks for it (`porxy-runtime/1`) and replays it on top of its own
//! configuration, so that what an operator did (a drained backend, a tunnel opened, a removal
//! under way) survives an upgrade as it survives a reload.
//!
//! Each change is kept as the control line that makes it, with the addresses as they were
//! bound and resolved, so that replaying it means what it meant; a `REMOVE` keeps when its
//! deadline falls, and a routing table set as a whole (`PUT /routes`) replaces what came
//! before. A reload clears the journal: the file is the routing table again.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The format a successor asks for, and the journal's JSON carries.
pub(crate) const FORMAT: &str = "porxy-runtime/1";
/// The most changes a journal keeps: past this, the oldest are dropped (said in the log).
const MAX_CHANGES: usize = 10_000;

/// One change.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// A control line, and for a `REMOVE` with a deadline, when it falls.
    Line {
        line: String,
        until: Option<Instant>,
    },
    /// A tunnel closed: its address, and its name if it had one (a listener on port 0 gets
    /// another port in the new process, found by its name).
    Close {
        addr: SocketAddr,
        name: Option<String>,
    },
    /// A routing table set as a whole: the admin API's routes JSON.
    Routes(Value),
}

/// The journal of one process.
#[derive(Debug, Default)]
pub(crate) struct Journal(Mutex<Vec<Change>>);

impl Journal {
    /// Records a change (`control/journaled.rs` says which commands make one).
    pub(crate) fn record(&self, change: Change) {
        self.push(change);
    }

    /// A routing table set as a whole: it replaces every change before it.
    pub(crate) fn set_routes(&self, routes: Value) {
        let mut changes = self.lock();
        changes.clear();
        changes.push(Change::Routes(routes));
    }

    /// The configuration was applied again: nothing is a runtime change any more.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// The changes, as JSON, with deadlines as time left from `now`.
    pub(crate) fn to_json(&self, now: Instant) -> Value {
        let changes: Vec<Value> = self
            .lock()
            .iter()
            .map(|change| match change {
                Change::Line { line, until: None } => json!({ "command": line }),
                Change::Line {
                    line,
                    until: Some(until),
                } => json!({
                    "command": line,
                    "deadline_ms": until.saturating_duration_since(now).as_millis() as u64,
                }),
                Change::Close { addr, name } => {
                    json!({ "close": addr.to_string(), "tunnel": name })
                }
                Change::Routes(routes) => json!({ "routes": routes }),
            })
            .collect();
        json!({ "format": FORMAT, "changes": changes })
    }

    /// Reads a journal another process sent, its deadlines counted from `now`.
    pub(crate) fn parse(value: &Value, now: Instant) -> Result<Vec<Change>, String> {
        if value["format"] != FORMAT {
            return Err(format!("not {FORMAT}: format {}", value["format"]));
        }
        let Some(changes) = value["changes"].as_array() else {
            return Err("no `changes` list".into());
        };
        changes
            .iter()
            .enumerate()
            .map(|(i, change)| {
                if let Some(routes) = change.get("routes") {
                    return Ok(Change::Routes(routes.clone()));
                }
                if let Some(addr) = change.get("close") {
                    let addr = addr
                        .as_str()
                        .and_then(|a| a.parse().ok())
                        .ok_or_else(|| format!("changes[{i}].close: not an address"))?;
                    let name = change["tunnel"].as_str().map(str::to_string);
                    return Ok(Change::Close { addr, name });
                }
                let Some(line) = change["command"].as_str() else {
                    return Err(format!("changes[{i}]: neither `command` nor `routes`"));
                };
                let until = match &change["deadline_ms"] {
                    Value::Null => None,
                    ms => Some(
                        ms.as_u64()
                            .map(|ms| now + Duration::from_millis(ms))
                            .ok_or_else(|| format!("changes[{i}].deadline_ms: not a number"))?,
                    ),
                };
                Ok(Change::Line {
                    line: line.to_string(),
                    until,
                })
            })
            .collect()
    }

    fn push(&self, change: Change) {
        let mut changes = self.lock();
        if changes.len() >= MAX_CHANGES {
            changes.remove(0);
            tracing::warn!(
                max = MAX_CHANGES,
                "the runtime journal is full; its oldest change will not survive an upgrade"
            );
        }
        changes.push(change);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Change>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The control line that replays a `REMOVE` whose deadline falls at `until`, from `now`:
/// with the time left, or `NOW` once it has passed.
pub(crate) fn remove_line(line: &str, until: Instant, now: Instant) -> String {
    let left = until.saturating_duration_since(now);
    if left.is_zero() {
        format!("{line} NOW")
    } else {
        // Whole milliseconds, rounded up: never earlier than the operator asked.
        let ms = left.as_nanos().div_ceil(1_000_000) as u64;
        format!("{line} {ms}ms")
    }
}
