//! The control protocol's parser: every command, and what each mistake is told.

use super::super::render::Reply;
use super::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

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
        ("reopen", Command::Reopen),
        ("reload", Command::Reload { force: false }),
        ("RELOAD force", Command::Reload { force: true }),
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
            "remove 8000 7001 now",
            Command::Backend {
                local: "8000".parse().unwrap(),
                remote: "7001".parse().unwrap(),
                action: BackendAction::Remove {
                    deadline: Some(Duration::ZERO),
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

/// Each bad line and a fragment of the reply the client sees.
#[test]
fn rejections_say_what_was_wrong() {
    let long = "x".repeat(MAX_LINE + 1);
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty line"),
        (b"   ", "empty line"),
        (b"\xff\xfe", "not UTF-8 (bad byte at offset 0)"),
        (b"HELP \xe9", "not UTF-8 (bad byte at offset 5)"),
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
        (
            b"CLOSE 99999",
            "bad address `99999` at column 1: port `99999` is out of range",
        ),
        (b"CLOSE foo", "ERR: bad address `foo` at column "),
        (b"STOP now", "STOP does not take `now`"),
        (b"RELOAD now", "RELOAD does not take `now`"),
        (b"quit now", "QUIT does not take `now`"),
        (b"EXIT now", "EXIT does not take `now`"),
        (
            b"ADD 8000",
            "ADD needs a tunnel's LOCAL address and a backend's address",
        ),
        (
            b"ADD 8000 7001*0",
            "ERR: bad address `7001*0` at column 6: ",
        ),
        (b"DRAIN 8000 7001*2", "DRAIN does not take `*2`"),
        (
            b"REMOVE 8000 7001 soon",
            "REMOVE deadline: `soon` is not a duration",
        ),
        (b"ENABLE 8000 7001 please", "ENABLE does not take `please`"),
        (b"ADD 8000 host", "needs a port"),
        // What the client typed comes back escaped, never as raw terminal control.
        (
            b"FROB\x1b[2J",
            "ERR: unknown command `FROB\\u{1b}[2J`; try HELP\n",
        ),
        (b"HELP\x00", "ERR: unknown command `HELP\\u{0}`; try HELP\n"),
        (
            b"STATUS \x07\x07",
            "ERR: STATUS does not take `\\u{7}\\u{7}`\n",
        ),
        (
            b"OPEN 8000=9000\x1b]0;owned\x07",
            "ERR: bad tunnel `8000=9000\\u{1b}]0;owned\\u{7}` at column 6: ",
        ),
        (
            b"CLOSE \xe2\x80\xae8000",
            "ERR: bad address `\\u{202e}8000` at column 1",
        ),
    ];
    for (line, fragment) in cases {
        let err = parse(line).expect_err(&String::from_utf8_lossy(line));
        let text = Reply::err(&err).text;
        assert!(
            text.contains(fragment),
            "{line:?}: {text:?} lacks {fragment:?}"
        );
    }
}

/// The line as text, trimmed, split into its first word and the rest (as `parse` reads it).
fn words(line: &[u8]) -> (&str, &str) {
    let text = std::str::from_utf8(line).expect("UTF-8").trim();
    match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim_start()),
        None => (text, ""),
    }
}

/// A 1-based `column` points into `input` or just past its end, and the message says so.
fn points_into(column: usize, input: &str, message: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        (1..=input.chars().count() + 1).contains(&column),
        "column {} outside {:?}",
        column,
        input
    );
    let said = format!("at column {column}: ");
    prop_assert!(message.contains(&said), "{} lacks {}", message, said);
    Ok(())
}

/// Checks that a rejection of `line` names what was wrong: the offset of the first bad
/// byte, the unknown word, the command and what it lacked or did not take, the column of a
/// malformed tunnel or address; and that the reply is one printable line.
fn names_what_was_wrong(line: &[u8], err: &ParseError) -> Result<(), TestCaseError> {
    let message = err.to_string();
    let reply = Reply::err(err).text;
    prop_assert!(reply.starts_with("ERR: ") && reply.ends_with('\n'));
    prop_assert!(
        !reply[..reply.len() - 1].chars().any(char::is_control),
        "raw control characters in {:?}",
        reply
    );
    match err {
        ParseError::TooLong { len } => prop_assert_eq!(*len, line.len()),
        ParseError::NotUtf8 { at } => {
            let valid = std::str::from_utf8(line)
                .expect_err("not UTF-8")
                .valid_up_to();
            prop_assert_eq!(*at, valid);
            let said = format!("offset {at}");
            prop_assert!(message.contains(&said), "{} lacks {}", message, said);
        }
        ParseError::Empty => {
            prop_assert_eq!(words(line), ("", ""), "a line with words is not empty")
        }
        ParseError::Unknown { word } => {
            prop_assert_eq!(word.as_str(), words(line).0);
            let said = format!("`{}`", shorten(word));
            prop_assert!(message.contains(&said), "{} lacks {}", message, said);
        }
        ParseError::Missing { command, what } => {
            prop_assert_eq!(words(line).0.to_ascii_uppercase(), *command);
            prop_assert!(message.starts_with(command) && message.contains(what));
        }
        ParseError::Unexpected { command, found } => {
            let (word, rest) = words(line);
            prop_assert_eq!(word.to_ascii_uppercase(), *command);
            // The word it did not take, as written (or a weight, as read).
            prop_assert!(rest.contains(found.as_str()) || found.starts_with('*'));
            let said = format!("`{}`", shorten(found));
            prop_assert!(message.contains(&said), "{} lacks {}", message, said);
        }
        ParseError::Tunnel(e) => {
            let (word, rest) = words(line);
            prop_assert_eq!(word.to_ascii_uppercase(), "OPEN");
            let said = format!("bad tunnel `{rest}` ");
            prop_assert!(message.starts_with(&said), "{} lacks {}", message, said);
            points_into(e.column(), rest, &message)?;
        }
        ParseError::Address { input, error } => {
            prop_assert!(words(line).1.split_whitespace().any(|w| w == input));
            let said = format!("bad address `{input}` ");
            prop_assert!(message.starts_with(&said), "{} lacks {}", message, said);
            points_into(error.column(), input, &message)?;
        }
        ParseError::Deadline(why) => {
            let (word, rest) = words(line);
            prop_assert_eq!(word.to_ascii_uppercase(), "REMOVE");
            let written = rest.split_whitespace().nth(2).expect("a deadline word");
            let said = format!("`{written}`");
            prop_assert!(why.to_string().contains(&said), "{} lacks {}", why, said);
        }
    }
    Ok(())
}

/// A valid line of every command, with the spellings an operator uses.
const VALID: &[&str] = &[
    "HELP",
    "status",
    "STATUS FULL",
    "status\tfull",
    "OPEN 8000=9000",
    "open 0.0.0.0:8000 = 10.0.0.5:80,[::1]:81*3[strategy=least_conn,idle_timeout=10m]",
    "OPEN 8000=7001,7002[mode=fanout,reply=none,max_lag=4MiB]",
    "CLOSE 8000",
    "close 127.0.0.1:8000 NOW",
    "ADD 8000 7001*2",
    "add [::1]:8000 db.internal:5432",
    "REMOVE 8000 7001",
    "REMOVE 8000 [::1]:7001 1m30s",
    "DRAIN 8000 7001",
    "ENABLE 8000 7001",
    "DISABLE 8000 localhost:7001",
    "RELOAD",
    "reload FORCE",
    "REOPEN",
    "STOP",
    "EXIT",
    "quit",
];

/// Pieces that edits insert: the protocol's punctuation, digits, letters, white space,
/// multi-byte and invisible characters, control bytes and a byte that is never UTF-8.
const PIECES: &[&[u8]] = &[
    b"=",
    b",",
    b"[",
    b"]",
    b":",
    b"*",
    b".",
    b" ",
    b"\t",
    b"0",
    b"9",
    b"99999",
    b"x",
    b"NOW",
    b"FULL",
    b"FORCE",
    b"30s",
    "é".as_bytes(),
    "\u{202e}".as_bytes(),
    b"\x1b[2J",
    b"\0",
    b"\r",
    b"\xff",
];

/// One small edit of a line.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, usize),
    Delete(usize),
    Replace(usize, usize),
    FlipCase(usize),
    AddWord(usize),
    /// Turns one `=`, `,`, `[`, `]`, `:` or `*` into another.
    Swap(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let (at, piece) = (any::<usize>(), 0..PIECES.len());
    prop_oneof![
        (at, piece.clone()).prop_map(|(a, p)| Edit::Insert(a, p)),
        at.prop_map(Edit::Delete),
        (at, piece.clone()).prop_map(|(a, p)| Edit::Replace(a, p)),
        at.prop_map(Edit::FlipCase),
        piece.prop_map(Edit::AddWord),
        (at, 0..6usize).prop_map(|(a, p)| Edit::Swap(a, p)),
    ]
}

fn apply(line: &mut Vec<u8>, edit: &Edit) {
    const STRUCTURE: &[u8] = b"=,[]:*";
    let at = |i: usize, len: usize| i % (len + 1);
    match *edit {
        Edit::Insert(i, p) => {
            let i = at(i, line.len());
            line.splice(i..i, PIECES[p].iter().copied());
        }
        Edit::Delete(i) if !line.is_empty() => {
            line.remove(i % line.len());
        }
        Edit::Replace(i, p) if !line.is_empty() => {
            let i = i % line.len();
            line.splice(i..=i, PIECES[p].iter().copied());
        }
        Edit::FlipCase(i) if !line.is_empty() => {
            let i = i % line.len();
            let b = line[i];
            line[i] = if b.is_ascii_lowercase() {
                b.to_ascii_uppercase()
            } else {
                b.to_ascii_lowercase()
            };
        }
        Edit::AddWord(p) => {
            line.push(b' ');
            line.extend_from_slice(PIECES[p]);
        }
        Edit::Swap(i, p) => {
            let marks: Vec<usize> = (0..line.len())
                .filter(|&j| STRUCTURE.contains(&line[j]))
                .collect();
            if !marks.is_empty() {
                line[marks[i % marks.len()]] = STRUCTURE[p];
            }
        }
        _ => {}
    }
}

/// A valid line changed by one to three small edits.
fn near_valid() -> impl Strategy<Value = Vec<u8>> {
    (0..VALID.len(), proptest::collection::vec(edit(), 1..=3)).prop_map(|(which, edits)| {
        let mut line = VALID[which].as_bytes().to_vec();
        for e in &edits {
            apply(&mut line, e);
        }
        line
    })
}

#[test]
fn the_valid_lines_parse() {
    for line in VALID {
        assert!(parse(line.as_bytes()).is_ok(), "{line:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_parsed_or_rejected_with_the_reason(
        line in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            // A command word first, so that more than the unknown-word path is reached.
            (0..VALID.len(), proptest::collection::vec(any::<u8>(), 0..60)).prop_map(
                |(which, tail)| [words(VALID[which].as_bytes()).0.as_bytes(), b" ", &tail].concat()
            ),
        ]
    ) {
        if let Err(e) = parse(&line) {
            names_what_was_wrong(&line, &e)?;
        }
    }

    #[test]
    fn near_valid_lines_parse_or_say_what_was_wrong(line in near_valid()) {
        if let Err(e) = parse(&line) {
            names_what_was_wrong(&line, &e)?;
        }
    }
}
