//! Carrying out a control command on the proxy, and the text of the reply.
//!
//! Replies: a single line starting `OK` or `ERR: `; or, for `HELP` and `STATUS FULL`, an `OK`
//! line, body lines, and a line `END` that a script can wait for.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use porxy_core::{BackendChange, CloseMode, Endpoint, ProxyHandle, Remote, Status, TunnelStatus};

use crate::error::chain;
use crate::reload::{ReloadMode, Reloader};
use crate::stopping::Stopper;

use super::command::{BackendAction, Command, ParseError, COMMANDS};

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

/// What the control commands need beside the handle.
#[derive(Clone)]
pub struct Context {
    pub stopper: Arc<Stopper>,
    pub reloader: Arc<Reloader>,
}

/// The reply to one line that did or did not parse.
pub fn answer(parsed: Result<Command, ParseError>, handle: &ProxyHandle, ctx: &Context) -> Reply {
    match parsed {
        Ok(command) => execute(command, handle, ctx),
        Err(e) => Reply::err(e),
    }
}

fn execute(command: Command, handle: &ProxyHandle, ctx: &Context) -> Reply {
    match command {
        Command::Help => {
            let width = COMMANDS.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
            let mut body = String::new();
            for (syntax, what) in COMMANDS {
                let _ = writeln!(body, "{syntax:width$}  {what}");
            }
            Reply::block("OK commands:", &body)
        }
        Command::Status { full: false } => Reply::ok(summary(&handle.status())),
        Command::Status { full: true } => {
            let status = handle.status();
            Reply::block(&format!("OK {}", summary(&status)), &full_status(&status))
        }
        Command::Open(spec) => match handle.open(&spec) {
            Ok(opened) => {
                let remotes: Vec<String> = opened.remotes.iter().map(|r| r.to_string()).collect();
                let verb = if opened.replaced { "changed" } else { "opened" };
                Reply::ok(format!("{verb} {} -> {}", opened.local, remotes.join(",")))
            }
            Err(e) => Reply::err(chain(&e)),
        },
        Command::Close { local, now } => {
            let addr = match local.resolve() {
                Ok(addr) => addr,
                Err(e) => return Reply::err(chain(&e)),
            };
            let mode = if now {
                CloseMode::CloseConnections
            } else {
                CloseMode::KeepConnections
            };
            match handle.close(addr, mode) {
                Ok(closed) if !closed.listening => Reply::ok(format!(
                    "no tunnel listens on {addr}; connections earlier tunnels there left going, reset: {}",
                    closed.reset
                )),
                Ok(_) if now => Reply::ok(format!("closed {addr} and its connections")),
                Ok(_) => Reply::ok(format!("closed {addr}; established connections go on")),
                Err(e) => Reply::err(chain(&e)),
            }
        }
        Command::Backend {
            local,
            remote,
            action,
        } => backend(handle, &local, remote, action),
        Command::Stop => {
            let open = handle.status().open_connections();
            let mut reply = Reply::ok(format!(
                "stopping: {open} connections to drain, for at most {}",
                porxy_core::units::format_duration(ctx.stopper.drain_timeout())
            ));
            reply.then_stop = true;
            reply
        }
        Command::Reload { force } => {
            let mode = if force {
                ReloadMode::Force
            } else {
                ReloadMode::Guarded
            };
            match ctx.reloader.reload(mode) {
                Ok(r) => Reply::ok(format!(
                    "reloaded: generation {}, opened {}, changed {}, unchanged {}, closed {}",
                    r.generation,
                    r.opened.len(),
                    r.changed.len(),
                    r.unchanged.len(),
                    r.closed.len()
                )),
                Err(why) => Reply::err(format!("reload failed, nothing changed: {}", chain(&why))),
            }
        }
        Command::Exit => Reply {
            text: "OK bye\n".into(),
            close: true,
            then_stop: false,
        },
    }
}

/// Carries out ADD, REMOVE, DRAIN, ENABLE or DISABLE.
fn backend(handle: &ProxyHandle, local: &Endpoint, remote: Remote, action: BackendAction) -> Reply {
    let resolved = local
        .resolve()
        .and_then(|l| Ok((l, remote.endpoint.resolve()?)));
    let (tunnel, addr) = match resolved {
        Ok(pair) => pair,
        Err(e) => return Reply::err(chain(&e)),
    };
    let change = match action {
        BackendAction::Add => {
            return match handle.add_backend(tunnel, remote) {
                Ok(addr) => Reply::ok(format!("added {addr} to {tunnel}")),
                Err(e) => Reply::err(chain(&e)),
            }
        }
        BackendAction::Remove { deadline } => return remove(handle, tunnel, addr, deadline),
        BackendAction::Drain => BackendChange::Drain,
        BackendAction::Enable => BackendChange::Enable,
        BackendAction::Disable => BackendChange::Disable,
    };
    match handle.change_backend(tunnel, addr, change) {
        Ok(open) => Reply::ok(match change {
            // Answered by `remove`, with the deadline in force.
            BackendChange::Remove { .. } => format!("removing {addr} from {tunnel}"),
            BackendChange::Drain => {
                format!("draining {addr} of {tunnel}: {open} connections go on until they end")
            }
            BackendChange::Enable => format!("enabled {addr} of {tunnel}"),
            BackendChange::Disable => {
                format!("disabled {addr} of {tunnel}: its {open} connections are closed")
            }
        }),
        Err(e) => Reply::err(chain(&e)),
    }
}

/// Carries out REMOVE; the reply states the deadline in force, which an earlier REMOVE may
/// have given (a deadline never moves later).
fn remove(
    handle: &ProxyHandle,
    tunnel: SocketAddr,
    addr: SocketAddr,
    asked: Option<Duration>,
) -> Reply {
    let removal = match handle.remove_backend(tunnel, addr, asked) {
        Ok(removal) => removal,
        Err(e) => return Reply::err(chain(&e)),
    };
    let open = removal.open;
    let head = format!("removing {addr} from {tunnel}");
    Reply::ok(match removal.deadline {
        None => format!("{head}: {open} connections go on until they end"),
        Some(Duration::ZERO) => format!("{head}: its {open} connections are closed"),
        Some(left) if Some(left) == asked => format!(
            "{head}: {open} connections go on for at most {}",
            porxy_core::units::format_duration(left)
        ),
        Some(left) => {
            // Whole milliseconds, rounded up: still "at most".
            let left = Duration::from_millis(left.as_nanos().div_ceil(1_000_000) as u64);
            format!(
                "{head}: {open} connections go on for at most {}: the deadline of an earlier \
                 REMOVE stands",
                porxy_core::units::format_duration(left)
            )
        }
    })
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
