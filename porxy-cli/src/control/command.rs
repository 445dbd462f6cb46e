//! The control protocol's commands, and the pure function that reads one from a line.
//!
//! `parse` takes the raw bytes of one line (without its newline) and gives a [`Command`] or a
//! [`ParseError`] that says what was wrong; it never panics and does no IO, so it is tested on
//! its own, table-style and with arbitrary bytes.

use std::fmt;

use std::time::Duration;

use porxy_core::units::parse_duration;
use porxy_core::{Endpoint, Remote, SpecError, TunnelSpec};

/// Longest line the control socket reads; longer ones are refused whole.
pub const MAX_LINE: usize = 4096;

/// One control command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `HELP`: every command with its syntax.
    Help,
    /// `STATUS` (totals) or `STATUS FULL` (per tunnel and per reactor).
    Status { full: bool },
    /// `OPEN SPEC`: open a tunnel, or change the one on SPEC's LOCAL. (Boxed: a spec with all
    /// its options is much bigger than any other command.)
    Open(Box<TunnelSpec>),
    /// `CLOSE LOCAL [NOW]`: stop listening; with NOW, close its connections too.
    Close { local: Endpoint, now: bool },
    /// `ADD`, `REMOVE`, `DRAIN`, `ENABLE`, `DISABLE`: an operator's word on one backend.
    Backend {
        local: Endpoint,
        remote: Remote,
        action: BackendAction,
    },
    /// `RELOAD [FORCE]`: read the configuration file again and apply it (like SIGHUP); with
    /// FORCE, even a file without listeners, which closes every listener.
    Reload { force: bool },
    /// `REOPEN`: open the access log's files again (like SIGUSR1), after logrotate moved them.
    Reopen,
    /// `STOP`: graceful stop of the whole proxy.
    Stop,
    /// `EXIT` or `QUIT`: close this control connection.
    Exit,
}

/// What `ADD`, `REMOVE`, `DRAIN`, `ENABLE` and `DISABLE` do to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendAction {
    Add,
    Remove { deadline: Option<Duration> },
    Drain,
    Enable,
    Disable,
}

/// Every command: its syntax and what it does, for `HELP` and the docs.
pub const COMMANDS: &[(&str, &str)] = &[
    ("HELP", "list the commands"),
    (
        "STATUS",
        "tunnels listening now and the sums of their counters, one line",
    ),
    ("STATUS FULL", "every tunnel and reactor with its counters"),
    (
        "OPEN LOCAL=REMOTE[,REMOTE...][key=value,...]",
        "open a tunnel; on an existing LOCAL, change its remotes and options for new connections",
    ),
    (
        "CLOSE LOCAL",
        "stop listening on LOCAL; established connections go on",
    ),
    (
        "CLOSE LOCAL NOW",
        "stop listening on LOCAL and close its connections",
    ),
    (
        "ADD LOCAL REMOTE[*WEIGHT]",
        "add a backend to the tunnel on LOCAL",
    ),
    (
        "REMOVE LOCAL REMOTE [DEADLINE|NOW]",
        "take a backend out; its connections go on, until DEADLINE (like 30s) if given",
    ),
    (
        "DRAIN LOCAL REMOTE",
        "no new connections to a backend; established ones go on",
    ),
    (
        "ENABLE LOCAL REMOTE",
        "put a drained or disabled backend back in service",
    ),
    (
        "DISABLE LOCAL REMOTE",
        "no new connections to a backend, and close its connections",
    ),
    (
        "RELOAD",
        "read the config file again and apply it; on error nothing changes (like SIGHUP)",
    ),
    (
        "RELOAD FORCE",
        "the same, even for a file without listeners: every listener closes",
    ),
    (
        "REOPEN",
        "open the access log's files again, after logrotate moved them (like SIGUSR1)",
    ),
    ("STOP", "stop the proxy gracefully (like SIGTERM)"),
    ("EXIT", "close this control connection (also QUIT)"),
];

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseError {
    /// Nothing but white space.
    Empty,
    /// Bytes that are not UTF-8.
    NotUtf8 { at: usize },
    /// Over [`MAX_LINE`] bytes.
    TooLong { len: usize },
    /// The first word is no command.
    Unknown { word: String },
    /// The command needs an argument it did not get.
    Missing {
        command: &'static str,
        what: &'static str,
    },
    /// The command got words it does not take.
    Unexpected {
        command: &'static str,
        found: String,
    },
    /// `OPEN`'s tunnel expression is malformed.
    Tunnel(SpecError),
    /// An address (`CLOSE`'s LOCAL, a backend command's LOCAL or REMOTE) is malformed; `input`
    /// is the word as written, which the error's column counts in.
    Address { input: String, error: SpecError },
    /// `REMOVE`'s deadline is no duration.
    Deadline(porxy_core::units::UnitError),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => write!(f, "empty line; try HELP"),
            ParseError::NotUtf8 { at } => write!(f, "line is not UTF-8 (bad byte at offset {at})"),
            ParseError::TooLong { len } => {
                write!(f, "line too long: {len} bytes, the limit is {MAX_LINE}")
            }
            ParseError::Unknown { word } => {
                write!(f, "unknown command `{}`; try HELP", shorten(word))
            }
            ParseError::Missing { command, what } => write!(f, "{command} needs {what}"),
            ParseError::Unexpected { command, found } => {
                write!(f, "{command} does not take `{}`", shorten(found))
            }
            ParseError::Tunnel(e) => write!(f, "{e}"),
            ParseError::Address { input, error } => write!(
                f,
                "bad address `{input}` at column {}: {}",
                error.column(),
                error.message()
            ),
            ParseError::Deadline(why) => write!(f, "REMOVE deadline: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Reads one command from one line (no newline; a trailing `\r` is ignored).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    if line.len() > MAX_LINE {
        return Err(ParseError::TooLong { len: line.len() });
    }
    let text = std::str::from_utf8(line).map_err(|e| ParseError::NotUtf8 {
        at: e.valid_up_to(),
    })?;
    let text = text.trim();
    let (word, rest) = match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim_start()),
        None => (text, ""),
    };
    if word.is_empty() {
        return Err(ParseError::Empty);
    }
    match word.to_ascii_uppercase().as_str() {
        "HELP" => no_more("HELP", rest, Command::Help),
        "STATUS" => match rest.to_ascii_uppercase().as_str() {
            "" => Ok(Command::Status { full: false }),
            "FULL" => Ok(Command::Status { full: true }),
            _ => Err(ParseError::Unexpected {
                command: "STATUS",
                found: rest.to_string(),
            }),
        },
        "OPEN" => {
            if rest.is_empty() {
                return Err(ParseError::Missing {
                    command: "OPEN",
                    what: "a tunnel: OPEN LOCAL=REMOTE[,REMOTE...][key=value,...]",
                });
            }
            rest.parse()
                .map(|spec| Command::Open(Box::new(spec)))
                .map_err(ParseError::Tunnel)
        }
        "CLOSE" => {
            let mut words = rest.split_whitespace();
            let Some(local) = words.next() else {
                return Err(ParseError::Missing {
                    command: "CLOSE",
                    what: "the tunnel's LOCAL address: CLOSE LOCAL [NOW]",
                });
            };
            let local = address(local)?;
            let now = match words.next() {
                None => false,
                Some(w) if w.eq_ignore_ascii_case("NOW") => true,
                Some(w) => {
                    return Err(ParseError::Unexpected {
                        command: "CLOSE",
                        found: w.to_string(),
                    })
                }
            };
            match words.next() {
                None => Ok(Command::Close { local, now }),
                Some(w) => Err(ParseError::Unexpected {
                    command: "CLOSE",
                    found: w.to_string(),
                }),
            }
        }
        "ADD" => backend_command("ADD", rest, BackendAction::Add),
        "REMOVE" => backend_command("REMOVE", rest, BackendAction::Remove { deadline: None }),
        "DRAIN" => backend_command("DRAIN", rest, BackendAction::Drain),
        "ENABLE" => backend_command("ENABLE", rest, BackendAction::Enable),
        "DISABLE" => backend_command("DISABLE", rest, BackendAction::Disable),
        "RELOAD" => match rest.to_ascii_uppercase().as_str() {
            "" => Ok(Command::Reload { force: false }),
            "FORCE" => Ok(Command::Reload { force: true }),
            _ => Err(ParseError::Unexpected {
                command: "RELOAD",
                found: rest.to_string(),
            }),
        },
        "REOPEN" => no_more("REOPEN", rest, Command::Reopen),
        "STOP" => no_more("STOP", rest, Command::Stop),
        "EXIT" => no_more("EXIT", rest, Command::Exit),
        "QUIT" => no_more("QUIT", rest, Command::Exit),
        _ => Err(ParseError::Unknown {
            word: word.to_string(),
        }),
    }
}

/// `LOCAL REMOTE` (and, for REMOVE, an optional deadline).
fn backend_command(
    command: &'static str,
    rest: &str,
    mut action: BackendAction,
) -> Result<Command, ParseError> {
    let mut words = rest.split_whitespace();
    let (Some(local), Some(remote)) = (words.next(), words.next()) else {
        return Err(ParseError::Missing {
            command,
            what: "a tunnel's LOCAL address and a backend's address: LOCAL REMOTE",
        });
    };
    let local = address(local)?;
    let remote: Remote = address(remote)?;
    if remote.weight != 1 && action != BackendAction::Add {
        return Err(ParseError::Unexpected {
            command,
            found: format!("*{}", remote.weight),
        });
    }
    // Only REMOVE takes a further word, its deadline (NOW for none at all).
    if let BackendAction::Remove { deadline } = &mut action {
        if let Some(word) = words.next() {
            *deadline = Some(if word.eq_ignore_ascii_case("NOW") {
                Duration::ZERO
            } else {
                parse_duration(word).map_err(ParseError::Deadline)?
            });
        }
    }
    match words.next() {
        None => Ok(Command::Backend {
            local,
            remote,
            action,
        }),
        Some(w) => Err(ParseError::Unexpected {
            command,
            found: w.to_string(),
        }),
    }
}

/// One address word (an [`Endpoint`], or a [`Remote`] with its weight).
fn address<T: std::str::FromStr<Err = SpecError>>(word: &str) -> Result<T, ParseError> {
    word.parse().map_err(|error| ParseError::Address {
        input: word.to_string(),
        error,
    })
}

fn no_more(command: &'static str, rest: &str, ok: Command) -> Result<Command, ParseError> {
    if rest.is_empty() {
        Ok(ok)
    } else {
        Err(ParseError::Unexpected {
            command,
            found: rest.to_string(),
        })
    }
}

/// Echoed user text is cut short, so an error line stays readable.
fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests;
