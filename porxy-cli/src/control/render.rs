//! The line protocol's text for a command's result ([`Outcome`] or [`AdminError`]): what a
//! client of the control socket reads. No IO, and nothing carried out here.
//!
//! Replies: a single line starting `OK` or `ERR: `; or, for `HELP` and `STATUS FULL`, an `OK`
//! line, body lines, and a line `END` that a script can wait for. An `ERR: ` line has its
//! control characters escaped ([`printable`]).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use porxy_core::units::format_duration;
use porxy_core::{CloseMode, Status, TunnelStatus};

use crate::error::chain;

use super::command::COMMANDS;
use super::outcome::{AdminError, Outcome, ServiceChange};

/// The line that ends every multi-line reply.
pub const END: &str = "END";

/// What the session must send, and whether it closes the connection afterwards.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    pub close: bool,
    /// Stop the proxy once the reply is written: a stop with nothing to drain ends the process
    /// at once, and the client must have its reply first.
    pub then_stop: bool,
}

impl Reply {
    fn line(text: String) -> Self {
        Reply {
            text: text + "\n",
            close: false,
            then_stop: false,
        }
    }

    fn ok(text: impl AsRef<str>) -> Self {
        let text = text.as_ref();
        Reply::line(if text.is_empty() {
            "OK".into()
        } else {
            format!("OK {text}")
        })
    }

    /// An `ERR: ` line. The message often echoes what the client typed, so every character
    /// that a terminal would act on is escaped (see [`printable`]): the reply stays one line,
    /// and no escape sequence reaches the operator's terminal.
    pub fn err(text: impl std::fmt::Display) -> Self {
        Reply::line(format!("ERR: {}", printable(&text.to_string())))
    }

    fn block(head: &str, body: &str) -> Self {
        Reply {
            text: format!("{head}\n{body}{END}\n"),
            close: false,
            then_stop: false,
        }
    }
}

/// `text` with control characters (newlines, escape, NUL, ...) and the invisible characters
/// that reorder text (bidirectional overrides) written as Rust escapes: `\n`, `\u{1b}`, ...
/// Everything else, non-ASCII letters included, is kept.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let reorders = matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        );
        if c.is_control() || reorders {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The line protocol's reply to a command's result.
pub fn render(result: &Result<Outcome, AdminError>) -> Reply {
    match result {
        Ok(outcome) => outcome_reply(outcome),
        Err(AdminError::BadRequest(e)) => Reply::err(e),
        Err(AdminError::ReloadRefused(why)) => {
            Reply::err(format!("reload failed, nothing changed: {}", chain(why)))
        }
        // The core error's message and its causes (the variant adds no text of its own).
        Err(e) => Reply::err(chain(e)),
    }
}

fn outcome_reply(outcome: &Outcome) -> Reply {
    match outcome {
        Outcome::Help => {
            let width = COMMANDS.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
            let mut body = String::new();
            for (syntax, what) in COMMANDS {
                let _ = writeln!(body, "{syntax:width$}  {what}");
            }
            Reply::block("OK commands:", &body)
        }
        Outcome::Status(status) => Reply::ok(summary(status)),
        Outcome::StatusFull(status, records) => {
            let mut body = full_status(status);
            if let Some(r) = records {
                body.push_str(&format!(
                    "access_log written={} dropped={} failed={}\n",
                    r.written, r.dropped, r.failed
                ));
            }
            Reply::block(&format!("OK {}", summary(status)), &body)
        }
        Outcome::Opened(opened) => {
            let remotes: Vec<String> = opened.remotes.iter().map(|r| r.to_string()).collect();
            let verb = if opened.replaced { "changed" } else { "opened" };
            Reply::ok(format!("{verb} {} -> {}", opened.local, remotes.join(",")))
        }
        Outcome::Closed {
            local,
            mode,
            closed,
        } => Reply::ok(closed_text(*local, *mode, closed.listening, closed.reset)),
        Outcome::BackendAdded { tunnel, backend } => {
            Reply::ok(format!("added {backend} to {tunnel}"))
        }
        Outcome::BackendChanged {
            tunnel,
            backend,
            change,
            open,
        } => Reply::ok(match change {
            ServiceChange::Drain => {
                format!("draining {backend} of {tunnel}: {open} connections go on until they end")
            }
            ServiceChange::Enable => format!("enabled {backend} of {tunnel}"),
            ServiceChange::Disable => {
                format!("disabled {backend} of {tunnel}: its {open} connections are closed")
            }
        }),
        Outcome::Removed {
            tunnel,
            backend,
            asked,
            removal,
        } => Reply::ok(removed_text(
            *tunnel,
            *backend,
            *asked,
            removal.open,
            removal.deadline,
        )),
        Outcome::Reopened { files } => Reply::ok(format!("reopened {files} access log files")),
        Outcome::Reloaded(r) => Reply::ok(format!(
            "reloaded: generation {}, opened {}, changed {}, unchanged {}, closed {}",
            r.generation,
            r.opened.len(),
            r.changed.len(),
            r.unchanged.len(),
            r.closed.len()
        )),
        Outcome::Stopping {
            open,
            drain_timeout,
        } => {
            let mut reply = Reply::ok(format!(
                "stopping: {open} connections to drain, for at most {}",
                format_duration(*drain_timeout)
            ));
            reply.then_stop = true;
            reply
        }
        Outcome::Bye => Reply {
            text: "OK bye\n".into(),
            close: true,
            then_stop: false,
        },
    }
}

/// CLOSE's answer: the tunnel closed (its connections going on or reset), or, with no tunnel
/// on the address, how many connections earlier tunnels there left going were reset.
/// (Taking the fields of [`porxy_core::Closed`], which only the core can build.)
fn closed_text(local: SocketAddr, mode: CloseMode, listening: bool, reset: u64) -> String {
    if !listening {
        return format!(
            "no tunnel listens on {local}; connections earlier tunnels there left going, reset: \
             {reset}"
        );
    }
    match mode {
        CloseMode::CloseConnections => format!("closed {local} and its connections"),
        CloseMode::KeepConnections => format!("closed {local}; established connections go on"),
    }
}

/// REMOVE's answer, with the deadline in force: `deadline` as [`porxy_core::Removal`] has it
/// (whose fields these are), `asked` the one this REMOVE asked for.
fn removed_text(
    tunnel: SocketAddr,
    backend: SocketAddr,
    asked: Option<Duration>,
    open: u64,
    deadline: Option<Duration>,
) -> String {
    let head = format!("removing {backend} from {tunnel}");
    match deadline {
        None => format!("{head}: {open} connections go on until they end"),
        Some(Duration::ZERO) => format!("{head}: its {open} connections are closed"),
        Some(left) if Some(left) == asked => format!(
            "{head}: {open} connections go on for at most {}",
            format_duration(left)
        ),
        Some(left) => {
            // Whole milliseconds, rounded up: still "at most".
            let left = Duration::from_millis(left.as_nanos().div_ceil(1_000_000) as u64);
            format!(
                "{head}: {open} connections go on for at most {}: the deadline of an earlier \
                 REMOVE stands",
                format_duration(left)
            )
        }
    }
}

/// `tunnels=N open=N accepted=N bytes_up=N bytes_down=N connect_failures=N`.
fn summary(status: &Status) -> String {
    let sum = |f: fn(&TunnelStatus) -> u64| status.tunnels.iter().map(f).sum::<u64>();
    format!(
        "tunnels={} open={} accepted={} bytes_up={} bytes_down={} connect_failures={}{}",
        status.tunnels.len(),
        status.open_connections(),
        sum(|t| t.accepted),
        sum(|t| t.bytes_to_upstream),
        sum(|t| t.bytes_to_client),
        sum(|t| t.connect_failures),
        if status.stopping { " stopping" } else { "" },
    )
}

/// One line per tunnel, then one per reactor.
fn full_status(status: &Status) -> String {
    let mut out = String::new();
    for t in &status.tunnels {
        let remotes: Vec<String> = t.remotes.iter().map(|r| r.to_string()).collect();
        let closes: Vec<String> = t
            .closes
            .nonzero()
            .map(|(reason, n)| format!("{reason}:{n}"))
            .collect();
        let how = match t.reply {
            Some(reply) => format!("mode=fanout reply={reply}"),
            None => format!("strategy={}", t.strategy),
        };
        let _ = writeln!(
            out,
            "tunnel {} remotes={} {} open={} accepted={} imported={} bytes_up={} bytes_down={} connect_failures={} closes={}",
            t.local,
            remotes.join(","),
            how,
            t.open,
            t.accepted,
            t.imported,
            t.bytes_to_upstream,
            t.bytes_to_client,
            t.connect_failures,
            if closes.is_empty() { "-".to_string() } else { closes.join(",") },
        );
        for b in &t.backends {
            let _ = write!(
                out,
                "  backend {} state={} weight={} open={} total={} failures={}",
                b.addr, b.state, b.weight, b.open, b.total, b.failures
            );
            if t.reply.is_some() {
                let _ = write!(
                    out,
                    " bytes_sent={} lag_drops={}",
                    b.bytes_sent, b.lag_drops
                );
            }
            out.push('\n');
        }
        let now = std::time::SystemTime::now();
        for c in &t.certificates {
            let _ = writeln!(
                out,
                "  certificate {} {} serial={} names={} not_after={} days_left={}",
                c.role,
                c.path.display(),
                c.serial,
                if c.names.is_empty() {
                    "-".to_string()
                } else {
                    c.names.join(",")
                },
                humantime::format_rfc3339_seconds(c.not_after),
                c.days_left(now),
            );
        }
    }
    for r in &status.reactors {
        let _ = writeln!(
            out,
            "reactor {} open={} adopted={}",
            r.index, r.open, r.adopted
        );
    }
    for g in &status.generations {
        let current = if g.current { " current" } else { "" };
        let _ = writeln!(out, "generation {} open={}{current}", g.id, g.open);
    }
    out
}

#[cfg(test)]
mod tests;
