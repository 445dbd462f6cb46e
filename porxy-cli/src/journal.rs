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

use crate::control::command::{BackendAction, Command};
use crate::control::outcome::{Outcome, ServiceChange};

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
    /// Records what `command` did, if it changed the routing table; `name_of` names a
    /// tunnel by its address.
    pub(crate) fn record(
        &self,
        command: &Command,
        outcome: &Outcome,
        now: Instant,
        name_of: &dyn Fn(SocketAddr) -> Option<String>,
    ) {
        if let Some(change) = change_of(command, outcome, now, name_of) {
            self.push(change);
        }
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

/// The change `command` made, with the addresses its outcome says it bound and resolved.
fn change_of(
    command: &Command,
    outcome: &Outcome,
    now: Instant,
    name_of: &dyn Fn(SocketAddr) -> Option<String>,
) -> Option<Change> {
    let line = |line: String| Some(Change::Line { line, until: None });
    match (command, outcome) {
        (Command::Open(spec), Outcome::Opened(opened)) => {
            let mut bound = (**spec).clone();
            bound.local = opened.local.into();
            line(format!("OPEN {bound}"))
        }
        (Command::Close { .. }, Outcome::Closed { local, closed, .. }) if closed.listening => {
            Some(Change::Close {
                addr: *local,
                name: name_of(*local),
            })
        }
        (
            Command::Backend {
                remote,
                action: BackendAction::Add,
                ..
            },
            Outcome::BackendAdded { tunnel, .. },
        ) => line(format!("ADD {tunnel} {remote}")),
        (
            Command::Backend { .. },
            Outcome::BackendChanged {
                tunnel,
                backend,
                change,
                ..
            },
        ) => {
            let verb = match change {
                ServiceChange::Drain => "DRAIN",
                ServiceChange::Enable => "ENABLE",
                ServiceChange::Disable => "DISABLE",
            };
            line(format!("{verb} {tunnel} {backend}"))
        }
        (
            Command::Backend { .. },
            Outcome::Removed {
                tunnel,
                backend,
                removal,
                ..
            },
        ) => Some(Change::Line {
            line: format!("REMOVE {tunnel} {backend}"),
            until: removal.deadline.map(|left| now + left),
        }),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::command::parse;
    use porxy_core::{Closed, OpenedTunnel, Removal};

    #[test]
    fn changes_are_kept_as_lines_that_parse_back() {
        let journal = Journal::default();
        let now = Instant::now();
        let open =
            parse(b"OPEN 127.0.0.1:0=127.0.0.1:7000,127.0.0.1:7001*3[idle_timeout=5s]").unwrap();
        let bound = "127.0.0.1:8001".parse().unwrap();
        let opened = OpenedTunnel::new(bound, Vec::new(), false);
        journal.record(&open, &Outcome::Opened(opened), now, &|_| None);
        let drain = parse(b"DRAIN 8001 7000").unwrap();
        let changed = Outcome::BackendChanged {
            tunnel: bound,
            backend: "127.0.0.1:7000".parse().unwrap(),
            change: ServiceChange::Drain,
            open: 0,
        };
        journal.record(&drain, &changed, now, &|_| None);
        let remove = parse(b"REMOVE 8001 7001 30s").unwrap();
        let removed = Outcome::Removed {
            tunnel: bound,
            backend: "127.0.0.1:7001".parse().unwrap(),
            asked: Some(Duration::from_secs(30)),
            removal: Removal::new(2, Some(Duration::from_secs(30))),
        };
        journal.record(&remove, &removed, now, &|_| None);
        journal.record(
            &Command::Status { full: false },
            &Outcome::Help,
            now,
            &|_| None,
        );
        let status = parse(b"CLOSE 8001").unwrap();
        let not_listening = Outcome::Closed {
            local: bound,
            mode: porxy_core::CloseMode::KeepConnections,
            closed: Closed::new(false, 0),
        };
        journal.record(&status, &not_listening, now, &|_| None);
        let closed = Outcome::Closed {
            local: bound,
            mode: porxy_core::CloseMode::KeepConnections,
            closed: Closed::new(true, 0),
        };
        journal.record(&status, &closed, now, &|_| Some("web".into()));

        let later = now + Duration::from_secs(10);
        let sent = journal.to_json(later);
        let changes = Journal::parse(&sent, later).unwrap();
        let lines: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Line { line, until: None } => line.clone(),
                Change::Line {
                    line,
                    until: Some(until),
                } => remove_line(line, *until, later),
                Change::Close { addr, name } => format!("CLOSE {addr} ({name:?})"),
                Change::Routes(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            lines,
            [
                "OPEN 127.0.0.1:8001=127.0.0.1:7000,127.0.0.1:7001*3[idle_timeout=5s]",
                "DRAIN 127.0.0.1:8001 127.0.0.1:7000",
                "REMOVE 127.0.0.1:8001 127.0.0.1:7001 20000ms",
                "CLOSE 127.0.0.1:8001 (Some(\"web\"))",
            ]
        );
        for line in &lines[..3] {
            assert!(parse(line.as_bytes()).is_ok(), "{line}");
        }
        assert_eq!(
            remove_line("REMOVE a b", now, later),
            "REMOVE a b NOW",
            "a deadline that has passed"
        );
    }

    #[test]
    fn a_routing_table_replaces_what_came_before_and_a_reload_clears_all() {
        let journal = Journal::default();
        let now = Instant::now();
        let drain = parse(b"DRAIN 8001 7000").unwrap();
        let changed = Outcome::BackendChanged {
            tunnel: "127.0.0.1:8001".parse().unwrap(),
            backend: "127.0.0.1:7000".parse().unwrap(),
            change: ServiceChange::Drain,
            open: 0,
        };
        journal.record(&drain, &changed, now, &|_| None);
        journal.set_routes(json!({"routes": []}));
        let changes = Journal::parse(&journal.to_json(now), now).unwrap();
        assert_eq!(changes, [Change::Routes(json!({"routes": []}))]);
        journal.clear();
        assert_eq!(Journal::parse(&journal.to_json(now), now).unwrap(), []);
        assert!(Journal::parse(&json!({"format": "x"}), now).is_err());
    }
}
