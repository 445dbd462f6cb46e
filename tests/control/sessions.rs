//! Control sessions: cut off when idle, bounded in number without locking an operator out, and
//! served independently when several talk at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::client::{
    connect, connect_never_reading, hung_up, read_until_end, round_trip, tcp_buffer_max, End,
};
use crate::support::control::{field, opened_addr, porxy_with_control, ControlClient};
use crate::support::{wait_until, Backend};

/// What an idle client reads before the connection closes, with a 1 s idle timeout.
const IDLE_FAREWELL: &str = "ERR: idle for too long: no complete line within 1s; closing\n";
/// What the client that waited longest reads when a client beyond the limit comes.
const EVICTED: &str =
    "ERR: too many control connections (limit 32); closing this one, which waited longest\n";
/// Control clients served at once.
const LIMIT: usize = 32;
/// How long a control client may take to take a whole reply.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn silent_client_is_cut_off() {
    let echo = Backend::echo();
    let (_porxy, control_addr) = porxy_with_control(&["--control-idle-timeout", "1s"]);
    let mut operator = ControlClient::connect(control_addr);
    let tunnel = opened_addr(&operator.cmd(&format!("OPEN 0={}", echo.addr())));
    let mut data = connect(tunnel);
    let started = Instant::now();
    let mut silent = connect(control_addr);

    // A client that sends a byte every 100 ms and never a newline: partial bytes do not keep
    // it alive, it is cut off a second after it connected, long before it stops trickling.
    let trickle = connect(control_addr);
    let mut writer = trickle.try_clone().unwrap();
    let trickler = std::thread::spawn(move || {
        for _ in 0..50 {
            if writer.write_all(b"x").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });

    // Meanwhile an operator that sends a line now and then is served throughout.
    while started.elapsed() < Duration::from_millis(1500) {
        assert!(operator.cmd("STATUS").starts_with("OK tunnels=1 "));
        round_trip(&mut data, b"bytes flow while idle clients wait");
        std::thread::sleep(Duration::from_millis(300));
    }

    let ending = read_until_end(&mut silent);
    assert_eq!(String::from_utf8_lossy(&ending.bytes), IDLE_FAREWELL);
    assert_eq!(ending.end, End::Eof);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "still connected {:?} after it connected",
        started.elapsed()
    );

    let mut trickle = trickle;
    let ending = read_until_end(&mut trickle);
    // Bytes the client sent after the server's last read make the close a reset, which may
    // overtake the farewell; if anything arrived, it is the farewell.
    assert!(
        IDLE_FAREWELL.as_bytes().starts_with(&ending.bytes),
        "{:?}",
        String::from_utf8_lossy(&ending.bytes)
    );
    assert!(
        trickler.join().unwrap(),
        "the trickling client was not cut off before it stopped"
    );
    assert!(operator.cmd("STATUS").starts_with("OK tunnels=1 "));
    round_trip(&mut data, b"and after they are gone");
}

#[test]
fn many_silent_clients_do_not_lock_out_an_operator() {
    let echo = Backend::echo();
    let spec = format!("127.0.0.1:0={}", echo.addr());
    let (porxy, control_addr) =
        porxy_with_control(&["--control-idle-timeout", "10m", "--tunnel", &spec]);
    let mut data = connect(porxy.tunnel("cli-1"));

    // Connected one after the other, so each has waited longer than the next.
    const SILENT: usize = LIMIT + 8;
    let mut silent: Vec<TcpStream> = (0..SILENT).map(|_| connect(control_addr)).collect();
    let mut operator = ControlClient::connect(control_addr);
    assert!(operator.cmd("STATUS").starts_with("OK tunnels=1 "));
    round_trip(&mut data, b"the proxy relays meanwhile");

    // The 8 silent clients beyond the limit, and the operator, each made the client that had
    // waited longest leave: the first 9 silent ones.
    let evicted = SILENT + 1 - LIMIT;
    for (n, stream) in silent.iter_mut().enumerate().take(evicted) {
        let ending = read_until_end(stream);
        assert_eq!(
            (String::from_utf8_lossy(&ending.bytes).as_ref(), ending.end),
            (EVICTED, End::Eof),
            "silent client {n}"
        );
    }
    // The others are still served, and answer as soon as they speak.
    for (n, stream) in silent.iter_mut().enumerate().skip(evicted) {
        stream.write_all(b"STATUS\n").unwrap();
        let mut reply = [0u8; 12];
        stream
            .read_exact(&mut reply)
            .unwrap_or_else(|e| panic!("silent client {n}: {e}"));
        assert_eq!(&reply, b"OK tunnels=1", "silent client {n}");
    }
    assert!(operator.cmd("STATUS").starts_with("OK tunnels=1 "));
}

#[test]
fn eight_clients_sending_commands_at_once_each_get_their_own_replies() {
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 15;
    let echo = Backend::echo();
    let (_porxy, control_addr) = porxy_with_control(&[]);
    std::thread::scope(|scope| {
        for n in 0..CLIENTS {
            let echo = echo.addr();
            scope.spawn(move || {
                let mut control = ControlClient::connect(control_addr);
                for round in 0..ROUNDS {
                    let opened = control.cmd(&format!("open 0={echo}"));
                    let tunnel = opened_addr(&opened);
                    assert_eq!(opened, format!("OK opened {tunnel} -> {echo}"));
                    let mut data = connect(tunnel);
                    round_trip(&mut data, format!("client {n} round {round}").as_bytes());
                    let status = control.block("STATUS FULL");
                    let line = status
                        .iter()
                        .find(|l| l.starts_with(&format!("tunnel {tunnel} ")))
                        .unwrap_or_else(|| panic!("client {n}: no line for {tunnel}: {status:?}"));
                    assert_eq!(field(line, "accepted"), "1", "client {n}: {line}");
                    assert_eq!(
                        control.cmd(&format!("CLOSE {tunnel} NOW")),
                        format!("OK closed {tunnel} and its connections"),
                        "client {n}"
                    );
                    // No check that the port now refuses: another client's `open 0=...` may
                    // already have been given the same port (tests/control.rs checks it alone).
                }
                assert_eq!(control.cmd("EXIT"), "OK bye");
            });
        }
    });
}

/// Regression: the write timeout bounded each `write` of a reply, and every partial write
/// started it again, so a client that sent commands with large replies and never read was cut
/// after some 31 s instead of 10 s (32 such clients locked the operator out that long). The
/// deadline covers the whole reply, and the client is reset when it passes.
#[test]
fn a_client_that_never_reads_is_cut_within_the_write_timeout() {
    let echo = Backend::echo();
    let (_porxy, control_addr) = porxy_with_control(&[]);
    let mut operator = ControlClient::connect(control_addr);
    // 64 tunnels make a `STATUS FULL` reply of some 20 KB.
    for _ in 0..64 {
        opened_addr(&operator.cmd(&format!("OPEN 127.0.0.1:0={}", echo.addr())));
    }
    let reply_len: usize = operator
        .block("STATUS FULL")
        .iter()
        .map(|line| line.len() + 1)
        .sum();
    // Twice as many reply bytes as the kernel can buffer for a client that does not read, asked
    // for in one write: the server blocks in the middle of some reply.
    let replies = 2 * tcp_buffer_max("tcp_wmem") as usize / reply_len + 1;
    let mut stuck = connect_never_reading(control_addr);
    let asked = Instant::now();
    stuck
        .write_all("STATUS FULL\n".repeat(replies).as_bytes())
        .unwrap();

    wait_until(
        WRITE_TIMEOUT + Duration::from_secs(5),
        "the control client that never reads to be reset",
        || hung_up(&stuck),
    );
    let cut_after = asked.elapsed();
    // The reply that could not be written was started after the commands were sent: a whole
    // write timeout before the cut, at least. Making the replies up to there takes a moment.
    assert!(
        cut_after >= WRITE_TIMEOUT && cut_after < WRITE_TIMEOUT + Duration::from_secs(3),
        "cut {cut_after:?} after its commands"
    );
    assert!(operator.cmd("STATUS").starts_with("OK tunnels=64 "));
}
