//! A takeover that fails: the new process must leave the old one serving as if nothing had
//! happened, without a client noticing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::chain::{assert_exits_cleanly, assert_no_failure, assert_took_over, start, Chain};
use super::upgrade::{CLIENTS, EXCHANGES};
use super::{connect_to, control_addr, finish, spec_to, WAIT};
use crate::support::client::connect;
use crate::support::control::ControlClient;
use crate::support::load::Load;
use crate::support::process::{run, Porxy, TempDir};
use crate::support::{wait_until, Backend};

/// The longest a failing start may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// A config file with one listener on `listen`, forwarding to `backend`.
fn blocked_config(dir: &TempDir, listen: &str, backend: &Backend) -> String {
    let text = format!(
        "[backends.b]\naddress = \"{}\"\n\n[listeners.blocked]\nlisten = \"{listen}\"\n\
         backends = [\"b\"]\n",
        backend.addr()
    );
    dir.write("blocked.toml", &text).display().to_string()
}

/// The new process receives the sockets but cannot start (a listener of its config file is on
/// a port in use): it exits 1, and the old one goes on serving its clients and its control
/// socket as if nothing had happened. A correct takeover afterwards works.
#[test]
fn failed_takeover_leaves_old_process_serving() {
    let backend = Backend::greeting_echo(b"X");
    let dir = TempDir::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let mut chain = Chain::new(&backend);
    let mut old = chain.first();
    let tunnel = old.tunnel("cli-1");
    let control = control_addr(&old);

    let load = Load::start(tunnel, CLIENTS, b'X');
    load.wait_completed(EXCHANGES, WAIT);
    let mut failing = chain.successor_args();
    // File listeners open before `--tunnel` ones: this one fails before any socket accepts.
    let config = blocked_config(&dir, &taken_addr.to_string(), &backend);
    failing.extend(["--config".to_string(), config]);
    let out = run(
        &failing.iter().map(String::as_str).collect::<Vec<_>>(),
        RUN_TIMEOUT,
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("cannot listen on {taken_addr}")),
        "the error names the port in use: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "no READY line: {out:?}");

    wait_until(WAIT, "the old porxy to log the abandoned takeover", || {
        old.stderr().contains("takeover abandoned; carrying on")
    });
    let after_failure = load.completed();
    load.wait_completed(after_failure + EXCHANGES, WAIT);
    assert!(
        old.exit_status().is_none(),
        "the old porxy stopped; stderr:\n{}",
        old.stderr()
    );
    let status = ControlClient::connect(control).cmd("STATUS");
    assert!(
        status.starts_with("OK tunnels=1 ") && !status.contains("stopping"),
        "the old porxy still serves its control socket: {status}"
    );

    let new = chain.successor();
    assert_took_over(&new, &old);
    assert_exits_cleanly(&mut old, "the old porxy");
    let at_old_exit = load.completed();
    load.wait_completed(at_old_exit + EXCHANGES, WAIT);
    assert_no_failure(&load.finish());
    drop(taken);
}

/// Tunnels the failing successor below opens before the one that fails: they widen the moment
/// in which it accepts on the socket it inherited.
const TUNNELS_BEFORE_FAILURE: usize = 20;

/// The same failure, but the failing listener comes after the inherited one: the new process
/// must not accept (and then reset) clients the old one would have served. Clients are made to
/// wait in the shared listen backlog: the old porxy is at its connection limit.
#[test]
fn failed_takeover_resets_no_waiting_client() {
    let backend = Backend::greeting_echo(b"X");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let chain = Chain::new(&backend);
    let mut first = chain.first_args();
    first.extend(["--max-connections", "1"].map(String::from));
    let old = start(&first);
    let tunnel = old.tunnel("cli-1");
    let holding = connect_to(tunnel, b'X', "holds the only slot");
    let waiting: Vec<_> = (0..4).map(|_| connect(tunnel)).collect();

    let mut failing = chain.successor_args();
    for _ in 0..TUNNELS_BEFORE_FAILURE {
        failing.extend(["--tunnel".to_string(), spec_to(&backend)]);
    }
    failing.extend([
        "--tunnel".to_string(),
        format!("{taken_addr}={}", backend.addr()),
        "--bind-wait".to_string(),
        "1s".to_string(),
    ]);
    let out = run(
        &failing.iter().map(String::as_str).collect::<Vec<_>>(),
        RUN_TIMEOUT,
    );
    assert_eq!(out.code, Some(1), "{out:?}");

    finish(holding);
    // One at a time: the old porxy takes one connection at once.
    for (i, mut stream) in waiting.into_iter().enumerate() {
        let served = exchange(&mut stream);
        assert!(
            served.is_ok(),
            "waiting client {i} was not served by the old porxy: {served:?}"
        );
        finish(stream);
    }
    drop(taken);
}

/// Reads the greeting and does one echo round trip.
fn exchange(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut hello = [0u8; 1];
    stream.read_exact(&mut hello)?;
    let msg = b"served by the old porxy";
    stream.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back)?;
    assert_eq!(
        (&hello, back.as_slice()),
        (b"X", &msg[..]),
        "greeting and echo"
    );
    Ok(())
}

/// A successor that confirms the takeover and only then fails (here: its own upgrade socket
/// cannot be bound) must not leave the port with nobody to serve it.
#[test]
fn successor_failing_after_confirming_leaves_a_server() {
    let backend = Backend::greeting_echo(b"X");
    let dir = TempDir::new();
    let mut chain = Chain::new(&backend);
    let mut old = chain.first();
    let tunnel = old.tunnel("cli-1");
    let unusable = dir.path().join("no-such-dir").join("up.sock");
    let mut args = chain.successor_args();
    let at = args.iter().position(|a| a == "--upgrade-socket").unwrap() + 1;
    args[at] = unusable.display().to_string();
    let mut new = Porxy::launch(&args.iter().map(String::as_str).collect::<Vec<_>>());
    wait_until(WAIT, "the old or the new porxy to give up", || {
        old.exit_status().is_some() || new.exit_status().is_some()
    });
    finish(connect_to(tunnel, b'X', "after the failed upgrade"));
}

/// A predecessor that hands its sockets over and goes away without answering the successor's
/// `READY` (it crashed, say): the successor never knows the takeover is complete, so it prints
/// no READY line, lets its connections finish, and exits 1 naming what went wrong.
#[test]
fn unconfirmed_takeover_prints_no_ready_and_exits_1() {
    use sendfd::SendWithFd;
    use std::io::{BufRead, BufReader};
    use std::os::fd::AsRawFd;

    let backend = Backend::greeting_echo(b"X");
    let super::FakePredecessor {
        dir: _dir,
        path,
        upgrade,
        tunnel,
        tunnel_addr,
    } = super::FakePredecessor::bind();
    let predecessor = std::thread::spawn(move || {
        let (conn, _) = upgrade.accept().unwrap();
        conn.set_read_timeout(Some(RUN_TIMEOUT)).unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "TAKEOVER\n");
        let text = format!("tunnel cli-1 {tunnel_addr}\nEND\n");
        conn.send_with_fd(text.as_bytes(), &[tunnel.as_raw_fd()])
            .unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        // Goes away here instead of answering OK.
        line
    });

    let spec = spec_to(&backend);
    let path_arg = path.display().to_string();
    // The fake predecessor speaks the takeover without the runtime journal.
    let out = run(
        &[
            "--tunnel",
            &spec,
            "--takeover",
            &path_arg,
            "--takeover-config-only",
        ],
        RUN_TIMEOUT,
    );
    assert_eq!(
        predecessor.join().unwrap(),
        "READY\n",
        "the successor said READY"
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(!out.stdout.contains("READY"), "no READY line: {out:?}");
    assert!(
        out.stderr.contains(&format!(
            "upgrade socket {path_arg}: the running porxy closed the connection without answering READY"
        )),
        "the error says what happened: {}",
        out.stderr
    );
}
