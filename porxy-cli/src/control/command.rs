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
    /// `RELOAD`: read the configuration file again and apply it (like SIGHUP).
    Reload,
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
    ("STATUS", "tunnels and totals, one line"),
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
        "REMOVE LOCAL REMOTE [DEADLINE]",
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
    /// An address is malformed.
    Address(SpecError),
    /// `REMOVE`'s deadline is no duration.
    Deadline(String),
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
            ParseError::Address(e) => write!(f, "{e}"),
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
            let local = local.parse().map_err(ParseError::Address)?;
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
        "RELOAD" => no_more("RELOAD", rest, Command::Reload),
        "STOP" => no_more("STOP", rest, Command::Stop),
        "EXIT" | "QUIT" => no_more("EXIT", rest, Command::Exit),
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
    let local = local.parse().map_err(ParseError::Address)?;
    let remote: Remote = remote.parse().map_err(ParseError::Address)?;
    if remote.weight != 1 && action != BackendAction::Add {
        return Err(ParseError::Unexpected {
            command,
            found: format!("*{}", remote.weight),
        });
    }
    // Only REMOVE takes a further word, its deadline.
    if let BackendAction::Remove { deadline } = &mut action {
        if let Some(word) = words.next() {
            *deadline = Some(parse_duration(word).map_err(ParseError::Deadline)?);
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands_parse_case_insensitively() {
        let open: TunnelSpec = "8000=9000".parse().unwrap();
        let local: Endpoint = "8000".parse().unwrap();
        let cases: &[(&str, Command)] = &[
            ("HELP", Command::Help),
            ("help", Command::Help),
            ("  Status  ", Command::Status { full: false }),
            ("status full", Command::Status { full: true }),
            ("STATUS Full\r", Command::Status { full: true }),
            ("OPEN 8000=9000", Command::Open(Box::new(open.clone()))),
            ("open   8000 = 9000", Command::Open(Box::new(open))),
            (
                "CLOSE 8000",
                Command::Close {
                    local: local.clone(),
                    now: false,
                },
            ),
            ("close 8000 now", Command::Close { local, now: true }),
            ("STOP", Command::Stop),
            ("reload", Command::Reload),
            (
                "add 8000 7001*3",
                Command::Backend {
                    local: "8000".parse().unwrap(),
                    remote: "7001*3".parse().unwrap(),
                    action: BackendAction::Add,
                },
            ),
            (
                "REMOVE 8000 [::1]:7001 30s",
                Command::Backend {
                    local: "8000".parse().unwrap(),
                    remote: "[::1]:7001".parse().unwrap(),
                    action: BackendAction::Remove {
                        deadline: Some(Duration::from_secs(30)),
                    },
                },
            ),
            (
                "drain 8000 7001",
                Command::Backend {
                    local: "8000".parse().unwrap(),
                    remote: "7001".parse().unwrap(),
                    action: BackendAction::Drain,
                },
            ),
            ("exit", Command::Exit),
            ("QUIT", Command::Exit),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line.as_bytes()).as_ref(), Ok(want), "{line:?}");
        }
    }

    /// Each bad line and a fragment its error message must contain.
    #[test]
    fn rejections_say_what_was_wrong() {
        let long = "x".repeat(MAX_LINE + 1);
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty line"),
            (b"   ", "empty line"),
            (b"\xff\xfe", "not UTF-8"),
            (long.as_bytes(), "too long"),
            (b"STAUTS", "unknown command `STAUTS`"),
            (b"STATUS FUL", "STATUS does not take `FUL`"),
            (b"HELP me", "HELP does not take `me`"),
            (b"OPEN", "OPEN needs a tunnel"),
            (b"OPEN 8000=foo:bar", "column 10"),
            (
                b"OPEN 8000=9000[conect_timeout=1s]",
                "unknown option `conect_timeout`",
            ),
            (b"CLOSE", "CLOSE needs the tunnel's LOCAL"),
            (b"CLOSE 8000 later", "CLOSE does not take `later`"),
            (b"CLOSE 8000 NOW please", "CLOSE does not take `please`"),
            (b"CLOSE 99999", "out of range"),
            (b"STOP now", "STOP does not take `now`"),
            (
                b"ADD 8000",
                "ADD needs a tunnel's LOCAL address and a backend's address",
            ),
            (b"DRAIN 8000 7001*2", "DRAIN does not take `*2`"),
            (
                b"REMOVE 8000 7001 soon",
                "REMOVE deadline: `soon` is not a duration",
            ),
            (b"ENABLE 8000 7001 please", "ENABLE does not take `please`"),
            (b"ADD 8000 host", "needs a port"),
        ];
        for (line, fragment) in cases {
            let err = parse(line).expect_err(&String::from_utf8_lossy(line));
            let text = err.to_string();
            assert!(
                text.contains(fragment),
                "{line:?}: {text:?} lacks {fragment:?}"
            );
        }
    }

    fn near_valid() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            Just("OPEN"),
            Just("open"),
            Just("CLOSE"),
            Just("STATUS"),
            Just("HELP"),
            Just("STOP"),
            Just("EXIT"),
            Just("ADD"),
            Just("REMOVE"),
            Just("OPN"),
        ];
        (word, "[0-9a-z:=,\\[\\]._ \\-]{0,40}").prop_map(|(w, rest)| format!("{w} {rest}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(line in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Err(e) = parse(&line) {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn near_valid_lines_parse_or_say_why(line in near_valid()) {
            match parse(line.as_bytes()) {
                Ok(_) => {}
                Err(e) => {
                    let text = e.to_string();
                    // Every rejection names a command, a column, or the word it did not know.
                    prop_assert!(
                        text.contains("column") || text.contains("needs") || text.contains("does not take")
                            || text.contains("deadline")
                            || text.contains("unknown command") || text.contains("empty"),
                        "vague error for {:?}: {}", line, text
                    );
                }
            }
        }
    }
}
