//! Which commands change the routing table, and the journal entry each makes (see
//! `journal.rs`): the control line that makes the change again, with the addresses the
//! outcome says were bound and resolved.

use std::net::SocketAddr;
use std::time::Instant;

use super::command::{BackendAction, Command};
use super::outcome::{Outcome, ServiceChange};
use crate::journal::Change;

/// The change `command` made, with the addresses its outcome says it bound and resolved.
pub(crate) fn change_of(
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::control::command::parse;
    use crate::journal::{remove_line, Journal};
    use porxy_core::{Closed, OpenedTunnel, Removal};

    /// Records what `command` did, as `execute` does.
    fn record(
        journal: &Journal,
        command: &Command,
        outcome: &Outcome,
        now: Instant,
        name_of: &dyn Fn(SocketAddr) -> Option<String>,
    ) {
        if let Some(change) = change_of(command, outcome, now, name_of) {
            journal.record(change);
        }
    }

    #[test]
    fn changes_are_kept_as_lines_that_parse_back() {
        let journal = Journal::default();
        let now = Instant::now();
        let open =
            parse(b"OPEN 127.0.0.1:0=127.0.0.1:7000,127.0.0.1:7001*3[idle_timeout=5s]").unwrap();
        let bound = "127.0.0.1:8001".parse().unwrap();
        let opened = OpenedTunnel::new(bound, Vec::new(), false);
        record(&journal, &open, &Outcome::Opened(opened), now, &|_| None);
        let drain = parse(b"DRAIN 8001 7000").unwrap();
        let changed = Outcome::BackendChanged {
            tunnel: bound,
            backend: "127.0.0.1:7000".parse().unwrap(),
            change: ServiceChange::Drain,
            open: 0,
        };
        record(&journal, &drain, &changed, now, &|_| None);
        let remove = parse(b"REMOVE 8001 7001 30s").unwrap();
        let removed = Outcome::Removed {
            tunnel: bound,
            backend: "127.0.0.1:7001".parse().unwrap(),
            asked: Some(Duration::from_secs(30)),
            removal: Removal::new(2, Some(Duration::from_secs(30))),
        };
        record(&journal, &remove, &removed, now, &|_| None);
        record(
            &journal,
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
        record(&journal, &status, &not_listening, now, &|_| None);
        let closed = Outcome::Closed {
            local: bound,
            mode: porxy_core::CloseMode::KeepConnections,
            closed: Closed::new(true, 0),
        };
        record(&journal, &status, &closed, now, &|_| Some("web".into()));

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
        record(&journal, &drain, &changed, now, &|_| None);
        journal.set_routes(json!({"routes": []}));
        let changes = Journal::parse(&journal.to_json(now), now).unwrap();
        assert_eq!(changes, [Change::Routes(json!({"routes": []}))]);
        journal.clear();
        assert_eq!(Journal::parse(&journal.to_json(now), now).unwrap(), []);
        assert!(Journal::parse(&json!({"format": "x"}), now).is_err());
    }
}
