//! The control socket of a running porxy, driven exactly as `nc` would: lines in, lines out.
//!
//! Submodules: `sessions` (idle clients cut off, the session limit, clients at once), `unix`
//! (the socket on a path), `readme` (the README's transcript and command table stay true).

mod readme;
mod sessions;
mod unix;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::support::client::{self, connect, round_trip};
use crate::support::control::{field, opened_addr, porxy_with_control, ControlClient};
use crate::support::{wait_until, Backend};

const WAIT: Duration = Duration::from_secs(10);

/// The `tunnel ADDR ...` line of a `STATUS FULL` reply, for `tunnel`.
#[track_caller]
fn tunnel_line(status: &[String], tunnel: SocketAddr) -> String {
    status
        .iter()
        .find(|l| l.starts_with(&format!("tunnel {tunnel} ")))
        .cloned()
        .unwrap_or_else(|| panic!("no line for {tunnel}: {status:?}"))
}

/// Reads a greeting backend's first bytes: which backend answered.
fn greeting(stream: &mut TcpStream) -> [u8; 1] {
    let mut hello = [0u8; 1];
    stream
        .read_exact(&mut hello)
        .expect("the backend's greeting");
    hello
}

#[test]
fn open_change_and_close_a_tunnel_from_the_control_socket() {
    let old = Backend::greeting_echo(b"A");
    let new = Backend::greeting_echo(b"B");
    let (_porxy, control_addr) = porxy_with_control(&[]);
    let mut control = ControlClient::connect(control_addr);

    let opened = control.cmd(&format!("OPEN 127.0.0.1:0={}", old.addr()));
    let tunnel = opened_addr(&opened);
    assert_eq!(opened, format!("OK opened {tunnel} -> {}", old.addr()));

    let mut established = connect(tunnel);
    assert_eq!(&greeting(&mut established), b"A");
    round_trip(&mut established, b"before the change");

    let changed = control.cmd(&format!("open {tunnel}={}", new.addr()));
    assert_eq!(changed, format!("OK changed {tunnel} -> {}", new.addr()));
    let mut fresh = connect(tunnel);
    assert_eq!(
        &greeting(&mut fresh),
        b"B",
        "a new connection reaches the new backend"
    );
    round_trip(&mut fresh, b"new");
    round_trip(&mut established, b"the old one still talks to A");

    // Traffic so far, as STATUS FULL must count it: greetings and echoes.
    let up =
        (b"before the change".len() + b"new".len() + b"the old one still talks to A".len()) as u64;
    let down = up + 2;
    // A reactor adds bytes to the counters just after it writes them: the client may read an
    // echo a moment before it is counted. Wait, with a deadline, for the figures to settle.
    let status = crate::support::wait_for(
        WAIT,
        "STATUS FULL to count every byte sent",
        || control.block("STATUS FULL"),
        |status| {
            let line = tunnel_line(status, tunnel);
            field(&line, "bytes_up") == up.to_string()
                && field(&line, "bytes_down") == down.to_string()
        },
    );
    let line = &tunnel_line(&status, tunnel);
    assert_eq!(field(line, "remotes"), new.addr().to_string());
    assert_eq!(field(line, "open"), "2");
    assert_eq!(field(line, "accepted"), "2");
    assert_eq!(field(line, "bytes_up"), up.to_string());
    assert_eq!(field(line, "bytes_down"), down.to_string());
    assert_eq!(field(line, "connect_failures"), "0");
    let reactors: Vec<&String> = status
        .iter()
        .filter(|l| l.starts_with("reactor "))
        .collect();
    assert_eq!(reactors.len(), 2, "{status:?}");
    let open_sum: u64 = reactors
        .iter()
        .map(|l| field(l, "open").parse::<u64>().unwrap())
        .sum();
    assert_eq!(open_sum, 2);

    let closed = control.cmd(&format!("CLOSE {tunnel}"));
    assert_eq!(
        closed,
        format!("OK closed {tunnel}; established connections go on")
    );
    assert!(client::refused(tunnel), "the closed tunnel's port refuses");
    round_trip(&mut established, b"still relayed after CLOSE");
    round_trip(&mut fresh, b"this one too");
    assert_eq!(
        control.cmd("STATUS"),
        "OK tunnels=0 open=2 accepted=0 bytes_up=0 bytes_down=0 connect_failures=0"
    );
}

#[test]
fn close_now_resets_the_tunnels_connections() {
    let echo = Backend::echo();
    let (_porxy, control_addr) = porxy_with_control(&[]);
    let mut control = ControlClient::connect(control_addr);
    let tunnel = opened_addr(&control.cmd(&format!("OPEN 0={}", echo.addr())));
    let mut established = connect(tunnel);
    round_trip(&mut established, b"hello");
    assert_eq!(
        control.cmd(&format!("close {} now", tunnel.port())),
        format!("OK closed {tunnel} and its connections")
    );
    client::expect_reset(&mut established, Duration::from_secs(5));
    assert!(client::refused(tunnel));
}

/// `CLOSE L NOW` after `CLOSE L` reaches the connections the closed tunnel left going, and
/// says so; with none left, there is nothing to close.
#[test]
fn close_now_after_close_resets_what_the_tunnel_left() {
    let echo = Backend::echo();
    let (_porxy, control_addr) = porxy_with_control(&[]);
    let mut control = ControlClient::connect(control_addr);
    let tunnel = opened_addr(&control.cmd(&format!("OPEN 0={}", echo.addr())));
    let mut left = connect(tunnel);
    round_trip(&mut left, b"hello");
    assert_eq!(
        control.cmd(&format!("CLOSE {tunnel}")),
        format!("OK closed {tunnel}; established connections go on")
    );
    round_trip(&mut left, b"goes on");
    assert_eq!(
        control.cmd(&format!("CLOSE {tunnel} NOW")),
        format!(
            "OK no tunnel listens on {tunnel}; connections earlier tunnels there left going, reset: 1"
        )
    );
    client::expect_reset(&mut left, Duration::from_secs(5));
    assert_eq!(
        control.cmd(&format!("CLOSE {tunnel} NOW")),
        format!("ERR: no tunnel listens on {tunnel}")
    );
}

#[test]
fn bad_input_gets_a_specific_error_and_the_proxy_goes_on() {
    let echo = Backend::echo();
    let (_porxy, control_addr) = porxy_with_control(&[]);
    // A client that connects and says nothing, for the whole test.
    let _silent = connect(control_addr);
    let mut control = ControlClient::connect(control_addr);
    let tunnel = opened_addr(&control.cmd(&format!("OPEN 0={}", echo.addr())));
    let mut data = connect(tunnel);
    round_trip(&mut data, b"before");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let cases: Vec<(Vec<u8>, String)> = vec![
        (b"FROB\n".to_vec(), "ERR: unknown command `FROB`; try HELP".into()),
        // Terminal control typed or pasted into nc comes back escaped, not acted on.
        (
            b"FROB\x1b[2J\x00\n".to_vec(),
            "ERR: unknown command `FROB\\u{1b}[2J\\u{0}`; try HELP".into(),
        ),
        (b"CLOSE foo\n".to_vec(), "ERR: bad address `foo` at column 1: `foo` needs a port, like `foo:8000`".into()),
        (
            b"OPEN 8000=foo:bar\n".to_vec(),
            "ERR: bad tunnel `8000=foo:bar` at column 10: `bar` is not a port number (0 to 65535)".into(),
        ),
        (
            b"OPEN 8000=9000[conect_timeout=1s]\n".to_vec(),
            format!(
                "ERR: bad tunnel `8000=9000[conect_timeout=1s]` at column 11: unknown option `conect_timeout`; known options: {}",
                porxy_core::OPTION_KEYS.join(", ")
            ),
        ),
        (
            format!("OPEN {taken_addr}={}\n", echo.addr()).into_bytes(),
            format!("ERR: cannot listen on {taken_addr}: Address already in use (os error 98)"),
        ),
        (b"CLOSE 127.0.0.1:1\n".to_vec(), "ERR: no tunnel listens on 127.0.0.1:1".into()),
        (b"STATUS sideways\n".to_vec(), "ERR: STATUS does not take `sideways`".into()),
        (b"\n".to_vec(), "ERR: empty line; try HELP".into()),
        (b"OPEN \xff\xfe\n".to_vec(), "ERR: line is not UTF-8 (bad byte at offset 5)".into()),
        (
            [vec![b'A'; 5000], b"\n".to_vec()].concat(),
            "ERR: line too long: over 4096 bytes, the limit is 4096".into(),
        ),
    ];
    for (line, want) in cases {
        control.send_bytes(&line);
        assert_eq!(
            control.line(),
            want,
            "reply to {:?}",
            String::from_utf8_lossy(&line[..line.len().min(60)])
        );
    }
    // A line far longer than the limit, sent in pieces: refused once, then the session goes on.
    control.send_bytes(&vec![b'x'; 100_000]);
    control.send_bytes(b"\n");
    assert_eq!(
        control.line(),
        "ERR: line too long: over 4096 bytes, the limit is 4096"
    );
    assert!(control.cmd("STATUS").starts_with("OK tunnels=1 open=1 "));
    round_trip(&mut data, b"after all that, bytes still flow");
    drop(taken);
}

#[test]
fn a_flood_of_lines_is_answered_and_data_keeps_flowing() {
    const LINES: usize = 1_000_000;
    let echo = Backend::echo();
    let (_porxy, control_addr) = porxy_with_control(&[]);
    let mut setup = ControlClient::connect(control_addr);
    let tunnel = opened_addr(&setup.cmd(&format!("OPEN 0={}", echo.addr())));

    let flood = connect(control_addr);
    let mut writer = flood.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = b"x\n".repeat(10_000);
        for _ in 0..LINES / 10_000 {
            writer.write_all(&chunk).expect("flood the control socket");
        }
    });
    // While the flood runs, data connections and other control clients are served.
    let mut data = connect(tunnel);
    round_trip(&mut data, b"during the flood");
    assert!(setup.cmd("STATUS").starts_with("OK tunnels=1"));

    let mut replies = BufReader::new(flood);
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for n in 0..LINES {
        line.clear();
        replies
            .read_line(&mut line)
            .expect("a reply to every flooded line");
        if n == 0 {
            assert_eq!(line, "ERR: unknown command `x`; try HELP\n");
        }
        assert!(line.starts_with("ERR: "), "reply {n}: {line:?}");
        assert!(Instant::now() < deadline, "the flood took over 2 minutes");
    }
    sender.join().unwrap();
    round_trip(&mut data, b"after the flood");
}

#[test]
fn a_client_that_never_reads_delays_no_other() {
    let echo = Backend::echo();
    let spec = format!("127.0.0.1:0={}", echo.addr());
    let (porxy, control_addr) = porxy_with_control(&["--tunnel", &spec]);
    let mut data = connect(porxy.tunnel("cli-1"));
    // This client asks and asks and never reads: its session blocks on writing.
    let mut hog = connect(control_addr);
    let many = b"HELP\n".repeat(20_000);
    let _ = hog.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = hog.write_all(&many);
    let mut other = ControlClient::connect(control_addr);
    let started = Instant::now();
    let help = other.block("HELP");
    assert_eq!(help[0], "OK commands:");
    assert!(help.iter().any(|l| l.starts_with("CLOSE LOCAL NOW")));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "HELP took {:?}",
        started.elapsed()
    );
    round_trip(
        &mut data,
        b"data flows while a control client blocks its session",
    );
    drop(hog);
}

#[test]
fn open_changes_options_for_new_connections_only() {
    let echo = Backend::echo();
    let (_porxy, control_addr) = porxy_with_control(&[]);
    let mut control = ControlClient::connect(control_addr);
    let tunnel = opened_addr(&control.cmd(&format!("OPEN 0={}", echo.addr())));
    let mut established = connect(tunnel);
    round_trip(&mut established, b"opened with the default idle timeout");
    let quiet_since = Instant::now();

    assert_eq!(
        control.cmd(&format!("OPEN {tunnel}={}[idle_timeout=1s]", echo.addr())),
        format!("OK changed {tunnel} -> {}", echo.addr())
    );
    let mut fresh = connect(tunnel);
    round_trip(&mut fresh, b"opened under the new options");
    let ending = client::read_until_end(&mut fresh);
    assert!(ending.bytes.is_empty(), "{ending:?}");
    assert!(
        ending.after >= Duration::from_millis(900) && ending.after < Duration::from_secs(5),
        "the new connection was closed after {:?} idle, expected about 1s",
        ending.after
    );
    // The established connection has been quiet longer than the new timeout, and lives on.
    let quiet_for = Duration::from_millis(1500);
    if let Some(rest) = quiet_for.checked_sub(quiet_since.elapsed()) {
        std::thread::sleep(rest);
    }
    round_trip(&mut established, b"the old options still hold here");
}

#[test]
fn status_full_counts_a_refused_connect() {
    let refusing = crate::support::backend::Refusing::new();
    let (_porxy, control_addr) = porxy_with_control(&[]);
    let mut control = ControlClient::connect(control_addr);
    let tunnel = opened_addr(&control.cmd(&format!("OPEN 0={}", refusing.addr())));
    // The client is reset once the backend refuses (so fast, at times, that the connect
    // itself reports it).
    client::connect_expect_reset(tunnel, Duration::from_secs(5));

    let status = crate::support::wait_for(
        WAIT,
        "STATUS FULL to count the refused connect and its close",
        || control.block("STATUS FULL"),
        |status| field(&tunnel_line(status, tunnel), "closes") != "-",
    );
    let line = tunnel_line(&status, tunnel);
    assert_eq!(field(&line, "accepted"), "1");
    assert_eq!(field(&line, "open"), "0");
    assert_eq!(field(&line, "connect_failures"), "1");
    assert_eq!(field(&line, "closes"), "connect_refused:1");
    assert_eq!(field(&status[0], "connect_failures"), "1", "{}", status[0]);
    let backend = status
        .iter()
        .find(|l| l.starts_with(&format!("  backend {} ", refusing.addr())))
        .unwrap_or_else(|| panic!("no backend line: {status:?}"));
    assert_eq!(field(backend, "failures"), "1", "{backend}");
}

#[test]
fn stop_drains_and_exits_zero() {
    let echo = Backend::echo();
    let (mut porxy, control_addr) = porxy_with_control(&[]);
    let mut control = ControlClient::connect(control_addr);
    let tunnel = opened_addr(&control.cmd(&format!("OPEN 0={}", echo.addr())));
    let mut data = connect(tunnel);
    round_trip(&mut data, b"one");
    let reply = control.cmd("STOP");
    assert_eq!(
        reply,
        "OK stopping: 1 connections to drain, for at most 30s"
    );
    wait_until(WAIT, "the tunnel to stop listening", || {
        client::refused(tunnel)
    });
    round_trip(&mut data, b"the open connection still finishes");
    drop(data);
    let status = porxy.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", porxy.stderr());
}

/// Regression: `REMOVE L B 3s` then `REMOVE L B 20s` answered "go on for at most 20s" while the
/// 3 s deadline stayed in force; a plain `REMOVE` then said "until they end". Every reply states
/// the deadline in force.
#[test]
fn a_second_remove_states_the_deadline_in_force() {
    let a = Backend::greeting_echo(b"A");
    let b = Backend::greeting_echo(b"B");
    let (_porxy, control_addr) = porxy_with_control(&[]);
    let mut control = ControlClient::connect(control_addr);
    let local = opened_addr(&control.cmd(&format!("OPEN 127.0.0.1:0={},{}", a.addr(), b.addr())));
    let mut on_a = connect(local);
    assert_eq!(&greeting(&mut on_a), b"A", "round robin starts at A");
    let a = a.addr();

    assert_eq!(
        control.cmd(&format!("REMOVE {local} {a} 30s")),
        format!("OK removing {a} from {local}: 1 connections go on for at most 30s")
    );
    let earlier = format!("OK removing {a} from {local}: 1 connections go on for at most ");
    let stands = ": the deadline of an earlier REMOVE stands";
    for again in [
        format!("REMOVE {local} {a} 1m"),
        format!("REMOVE {local} {a}"),
    ] {
        let reply = control.cmd(&again);
        let left = reply
            .strip_prefix(&earlier)
            .and_then(|rest| rest.strip_suffix(stands))
            .unwrap_or_else(|| panic!("{again}: {reply}"));
        let left = humantime::parse_duration(left).expect("a duration");
        assert!(
            left <= Duration::from_secs(30) && left > Duration::from_secs(20),
            "{again}: {reply}"
        );
    }
    round_trip(&mut on_a, b"A still relays");
    assert_eq!(
        control.cmd(&format!("REMOVE {local} {a} NOW")),
        format!("OK removing {a} from {local}: its 1 connections are closed")
    );
    client::expect_reset(&mut on_a, WAIT);
}
