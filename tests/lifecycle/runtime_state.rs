//! What an operator changed at runtime survives an upgrade: the new porxy replays the old
//! one's runtime journal on top of its own configuration before it accepts anybody, says in
//! one line what it took over and warns about each change that no longer applies.
//! `--takeover-config-only` starts from the configuration alone.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::chain::{assert_exits_cleanly, assert_took_over, Chain};
use super::{control_addr, WAIT};
use crate::support::client::{connect, read_greeting, refused, round_trip};
use crate::support::control::ControlClient;
use crate::support::process::{Porxy, TempDir};
use crate::support::{wait_until, Backend};

/// The `  backend ADDR ...` line of `STATUS FULL` for `backend`.
fn backend_line(control: SocketAddr, backend: SocketAddr) -> String {
    ControlClient::connect(control)
        .block("STATUS FULL")
        .into_iter()
        .find(|l| l.starts_with(&format!("  backend {backend} ")))
        .unwrap_or_else(|| panic!("no line for backend {backend}"))
}

/// The operator's drain goes on across two upgrades under load: from the drain on, no new
/// connection reaches the drained backend, in the old porxy or in either successor.
#[test]
fn a_drained_backend_stays_drained_across_upgrades_under_load() {
    let a = Backend::greeting_echo(b"A");
    let b = Backend::greeting_echo(b"B");
    let mut chain = Chain::with_spec(format!("127.0.0.1:0={},{}", a.addr(), b.addr()));
    let mut old = chain.first();
    let tunnel = old.tunnel("cli-1");
    let control = control_addr(&old);
    let drained = ControlClient::connect(control).cmd(&format!("DRAIN {tunnel} {}", a.addr()));
    assert!(drained.starts_with("OK draining"), "{drained}");
    let reached_a = a.accepted();

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut greetings = Vec::new();
            // Bounded: a few thousand clients at most, whatever the upgrades take.
            while !stop.load(Ordering::Relaxed) && greetings.len() < 5_000 {
                let mut client = connect(tunnel);
                greetings.push(read_greeting(&mut client));
                round_trip(&mut client, b"under load");
            }
            greetings
        })
    };
    for round in 0..2 {
        let new = chain.successor();
        assert_took_over(&new, &old);
        assert_exits_cleanly(&mut old, "the old porxy");
        assert!(
            new.stderr()
                .contains("took over the changes made at runtime in the previous porxy applied=1 not_applied=0"),
            "round {round}: {}",
            new.stderr()
        );
        old = new;
    }
    stop.store(true, Ordering::Relaxed);
    let greetings = load.join().unwrap();
    assert!(!greetings.is_empty());
    assert!(
        greetings.iter().all(|&g| g == b'B'),
        "a client reached the drained backend"
    );
    assert_eq!(a.accepted(), reached_a, "no new connection reached A");
    let line = backend_line(control, a.addr());
    assert!(line.contains(" state=draining "), "{line}");
}

/// Changes of every kind come over: a tunnel opened at runtime (it keeps its port and serves
/// from the new porxy), a backend added, one disabled, a removal with its deadline. One that
/// the new configuration makes moot (a backend it no longer names) is warned about; the rest
/// apply. With `--takeover-config-only` none of them is made.
#[test]
fn runtime_changes_apply_on_the_new_configuration() {
    let [a, b, c, d] = [b"A", b"B", b"C", b"D"].map(|g| Backend::greeting_echo(g));
    let dir = TempDir::new();
    let up = dir.path().join("up.sock");
    let config = |backends: &[&Backend]| {
        let mut text = String::new();
        let mut names = Vec::new();
        for (i, backend) in backends.iter().enumerate() {
            text.push_str(&format!(
                "[backends.b{i}]\naddress = \"{}\"\n",
                backend.addr()
            ));
            names.push(format!("\"b{i}\""));
        }
        text.push_str(&format!(
            "[listeners.web]\nlisten = \"127.0.0.1:0\"\nbackends = [{}]\n",
            names.join(", ")
        ));
        text.push_str("[listeners.db]\nlisten = \"127.0.0.1:0\"\nbackends = [\"b0\"]\n");
        text
    };
    let first = dir.write("first.toml", &config(&[&a, &b, &c]));
    let up = up.to_str().unwrap();
    let args = |file: &std::path::Path| {
        vec![
            "--config".to_string(),
            file.display().to_string(),
            "--control".into(),
            "127.0.0.1:0".into(),
            "--upgrade-socket".into(),
            up.into(),
        ]
    };
    let as_strs = |v: &[String]| v.iter().map(String::clone).collect::<Vec<_>>();
    let first_args = args(&first);
    let mut old = Porxy::start(&first_args.iter().map(String::as_str).collect::<Vec<_>>());
    let web = old.tunnel("web");
    let control = control_addr(&old);
    // A client on C, which the removal below leaves going until its deadline.
    let mut on_c = (0..100)
        .map(|_| connect(web))
        .find_map(|mut client| (read_greeting(&mut client) == b'C').then_some(client))
        .expect("a client balanced to C");
    round_trip(&mut on_c, b"before");
    let mut session = ControlClient::connect(control);
    let opened = session.cmd(&format!("OPEN 127.0.0.1:0={}", d.addr()));
    let runtime_tunnel: SocketAddr = crate::support::control::opened_addr(&opened);
    let db = old.tunnel("db");
    for (command, expect) in [
        (format!("CLOSE {db}"), "OK closed"),
        (format!("ADD {web} {}", d.addr()), "OK added"),
        (format!("DISABLE {web} {}", b.addr()), "OK disabled"),
        (format!("REMOVE {web} {} 5m", c.addr()), "OK removing"),
    ] {
        let reply = session.cmd(&command);
        assert!(reply.starts_with(expect), "{command}: {reply}");
    }
    drop(session);

    // The new configuration no longer names B: its DISABLE does not apply.
    let second = dir.write("second.toml", &config(&[&a, &c]));
    let mut second_args = as_strs(&args(&second));
    second_args.extend(["--takeover".to_string(), up.to_string()]);
    let new = Porxy::start(&second_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(new.tunnel("web"), web);
    assert_exits_cleanly(&mut old, "the old porxy");
    let log = new.stderr();
    assert!(
        log.contains(
            "took over the changes made at runtime in the previous porxy applied=4 not_applied=1"
        ),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains(" WARN ")
            && l.contains("does not apply here")
            && l.contains(&format!("DISABLE {web} {}", b.addr()))),
        "{log}"
    );
    // The listener closed at runtime stays closed (on port 0, it was found by its name).
    assert!(refused(new.tunnel("db")), "db was closed at runtime");
    // The tunnel opened at runtime serves from the new porxy, on its port.
    let mut client = connect(runtime_tunnel);
    assert_eq!(read_greeting(&mut client), b'D');
    round_trip(&mut client, b"opened at runtime");
    let control = control_addr(&new);
    assert!(backend_line(control, d.addr()).contains(" state=up "));
    let removing = backend_line(control, c.addr());
    assert!(
        removing.contains(" state=removing ") && removing.contains(" open=1 "),
        "{removing}"
    );
    round_trip(&mut on_c, b"after the upgrade, until the deadline");
    // Clients go to A and D only.
    for _ in 0..10 {
        let mut client = connect(web);
        let greeting = read_greeting(&mut client);
        assert!(matches!(greeting, b'A' | b'D'), "{}", greeting as char);
    }

    // The next successor, from the configuration alone.
    let mut third_args = second_args.clone();
    third_args.push("--takeover-config-only".into());
    let mut new = new;
    let third = Porxy::start(&third_args.iter().map(String::as_str).collect::<Vec<_>>());
    drop(on_c);
    assert_exits_cleanly(&mut new, "the second porxy");
    assert!(!third.stderr().contains("took over the changes"));
    let control = control_addr(&third);
    wait_until(WAIT, "C back in service", || {
        backend_line(control, c.addr()).contains(" state=up ")
    });
    let full = ControlClient::connect(control).block("STATUS FULL");
    assert!(
        !full
            .iter()
            .any(|l| l.starts_with(&format!("tunnel {runtime_tunnel} "))),
        "the tunnel opened at runtime is not there: {full:#?}"
    );
}

/// A running porxy of an older version does not know the request for the runtime journal and
/// refuses it: the successor asks again without, warns that the changes made at runtime do not
/// come over, and takes over all the same.
#[test]
fn an_older_predecessor_is_asked_again_without_the_journal() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::fd::AsRawFd;

    use porxy_core::session::wire::FORMAT;
    use sendfd::SendWithFd;

    let backend = Backend::greeting_echo(b"X");
    let super::FakePredecessor {
        dir: _dir,
        path,
        upgrade,
        tunnel,
        tunnel_addr,
    } = super::FakePredecessor::bind();
    let older = std::thread::spawn(move || {
        let mut heard = Vec::new();
        // First the request it does not know; then the one it does.
        for _ in 0..2 {
            let (conn, _) = upgrade.accept().unwrap();
            conn.set_read_timeout(Some(WAIT)).unwrap();
            let mut lines = BufReader::new(conn.try_clone().unwrap());
            let mut out = &conn;
            let mut line = String::new();
            lines.read_line(&mut line).unwrap();
            heard.push(line.clone());
            if line != "TAKEOVER\n" {
                let why = format!("ERR expected TAKEOVER, got {:?}\n", line.trim_end());
                out.write_all(why.as_bytes()).unwrap();
                continue;
            }
            let text = format!("tunnel cli-1 {tunnel_addr}\nEND\n");
            conn.send_with_fd(text.as_bytes(), &[tunnel.as_raw_fd()])
                .unwrap();
            for (expect, answer) in [
                ("READY\n".to_string(), "OK\n".to_string()),
                (
                    format!("SESSIONS {FORMAT}\n"),
                    format!("SESSIONS {FORMAT}\n"),
                ),
            ] {
                line.clear();
                lines.read_line(&mut line).unwrap();
                assert_eq!(line, expect);
                out.write_all(answer.as_bytes()).unwrap();
            }
            // The end of the frames: no connection to hand over.
            let mut end = b"PXS2".to_vec();
            end.extend([0u8; 12]);
            out.write_all(&end).unwrap();
        }
        heard
    });
    let path_arg = path.display().to_string();
    let spec = format!("127.0.0.1:0={}", backend.addr());
    let new = Porxy::start(&["--tunnel", &spec, "--takeover", &path_arg]);
    assert_eq!(
        older.join().unwrap(),
        ["TAKEOVER porxy-runtime/1\n", "TAKEOVER\n"]
    );
    assert_eq!(new.tunnel("cli-1"), tunnel_addr);
    assert!(
        new.stderr().contains(
            "the running porxy cannot send the changes made at runtime (an older version); \
             starting from the configuration alone"
        ),
        "{}",
        new.stderr()
    );
    let mut client = connect(tunnel_addr);
    assert_eq!(read_greeting(&mut client), b'X');
}
