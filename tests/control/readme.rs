//! The README's control socket section stays true: its transcript is replayed against a real
//! porxy and every `HELP` command is in its table.

use std::collections::BTreeMap;

use crate::support::client::{connect, round_trip};
use crate::support::control::{porxy_with_control, ControlClient};
use crate::support::Backend;

const README: &str = include_str!("../../README.md");

/// The lines of the `## Control socket` section.
fn control_section() -> Vec<&'static str> {
    README
        .lines()
        .skip_while(|l| *l != "## Control socket")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect()
}

/// The transcript: each command with the reply lines shown for it.
fn transcript() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut lines = control_section()
        .into_iter()
        .skip_while(|l| *l != "$ nc 127.0.0.1 9999")
        .skip(1)
        .take_while(|l| *l != "```");
    let mut exchanges = Vec::new();
    while let Some(command) = lines.next() {
        let mut reply = vec![lines.next().expect("a reply line")];
        if is_block(command) {
            loop {
                let line = lines.next().expect("an END line");
                reply.push(line);
                if line == "END" {
                    break;
                }
            }
        }
        exchanges.push((command, reply));
    }
    assert!(exchanges.len() >= 5, "no transcript found: {exchanges:?}");
    exchanges
}

/// Commands whose reply is an `OK` line, body lines and `END`.
fn is_block(command: &str) -> bool {
    let upper = command.to_ascii_uppercase();
    upper == "HELP" || upper == "STATUS FULL"
}

/// Every run of digits as `#`: addresses, ports and counters vary between runs.
fn masked(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('#') {
            out.push('#');
        }
    }
    out
}

/// A reply, masked, with each tunnel's lines (its `tunnel` line and the `backend` lines under
/// it) in a fixed order: tunnels are listed by port, and the ports here are not the README's.
fn shape(reply: &[impl AsRef<str>]) -> Vec<String> {
    let masked: Vec<String> = reply.iter().map(|l| masked(l.as_ref())).collect();
    let mut head = Vec::new();
    let mut tunnels: Vec<Vec<String>> = Vec::new();
    let mut tail = Vec::new();
    for line in masked {
        if line.starts_with("tunnel ") {
            tunnels.push(vec![line]);
        } else if line.starts_with("  ") && tail.is_empty() && !tunnels.is_empty() {
            tunnels.last_mut().unwrap().push(line);
        } else if tunnels.is_empty() {
            head.push(line);
        } else {
            tail.push(line);
        }
    }
    tunnels.sort();
    head.into_iter()
        .chain(tunnels.into_iter().flatten())
        .chain(tail)
        .collect()
}

/// Rewrites the README's ports to this run's: known ones through `ports`; the LOCAL port of an
/// `OPEN` not seen yet becomes 0, and `pending` notes it, to learn the port from the reply.
fn localize(
    command: &str,
    ports: &BTreeMap<String, String>,
    pending: &mut Option<String>,
) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let opening = command.to_ascii_uppercase().starts_with("OPEN ");
    let mut flush = |digits: &mut String, out: &mut String| {
        if digits.is_empty() {
            return;
        }
        let is_open_local = opening && !out.contains('=');
        match ports.get(digits.as_str()) {
            Some(port) => out.push_str(port),
            None if is_open_local => {
                *pending = Some(digits.clone());
                out.push('0');
            }
            None => out.push_str(digits),
        }
        digits.clear();
    };
    for c in command.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

#[test]
fn readme_transcript_matches_a_real_session() {
    // The demo: a tunnel on 8000 to an echo on 7000, one client connected that sent 12 bytes;
    // 7001 is a second backend the transcript adds.
    let echo = Backend::echo();
    let second = Backend::echo();
    let spec = format!("127.0.0.1:0={}", echo.addr());
    let (porxy, control_addr) = porxy_with_control(&["--tunnel", &spec]);
    let tunnel = porxy.tunnel("cli-1");
    let mut client = connect(tunnel);
    round_trip(&mut client, b"hello porxy\n");

    let mut ports: BTreeMap<String, String> = [
        ("8000", tunnel.port()),
        ("7000", echo.addr().port()),
        ("7001", second.addr().port()),
    ]
    .into_iter()
    .map(|(from, to)| (from.to_string(), to.to_string()))
    .collect();
    let mut control = ControlClient::connect(control_addr);
    for (command, want) in transcript() {
        let mut pending = None;
        let sent = localize(command, &ports, &mut pending);
        let got = if is_block(command) {
            let mut lines = control.block(&sent);
            lines.push("END".into());
            lines
        } else {
            vec![control.cmd(&sent)]
        };
        if let (Some(readme_port), Some(opened)) = (pending, got[0].strip_prefix("OK opened ")) {
            let addr: std::net::SocketAddr =
                opened.split_whitespace().next().unwrap().parse().unwrap();
            ports.insert(readme_port, addr.port().to_string());
        }
        assert_eq!(
            shape(&got),
            shape(&want),
            "`{command}` (sent as `{sent}`): the README shows\n{}\na real session says\n{}",
            want.join("\n"),
            got.join("\n")
        );
    }
}

#[test]
fn every_help_command_is_in_the_readme_table() {
    let (_porxy, control_addr) = porxy_with_control(&[]);
    let mut control = ControlClient::connect(control_addr);
    let help = control.block("HELP");
    // `SYNTAX  what it does`: the syntax has single spaces only.
    let mut from_help: Vec<&str> = help[1..]
        .iter()
        .map(|l| l.split("  ").next().unwrap())
        .collect();
    // `| `SYNTAX` ... | does |`: the first code span of each row (a `|` in a table cell is
    // written `\|`).
    let from_readme: Vec<String> = control_section()
        .into_iter()
        .filter_map(|l| l.strip_prefix("| `"))
        .map(|l| l.split('`').next().unwrap().replace("\\|", "|"))
        .collect();
    let mut from_readme: Vec<&str> = from_readme.iter().map(String::as_str).collect();
    from_help.sort_unstable();
    from_readme.sort_unstable();
    assert_eq!(
        from_help, from_readme,
        "HELP against the README's command table"
    );
}
