//! A graceful stop closes the control socket with the tunnels; a control session already open
//! stays, so an operator can watch the drain.

use super::{connect_to, control_addr, field, finish, spec_to, EXIT, WAIT};
use crate::support::client::{refused, round_trip};
use crate::support::control::ControlClient;
use crate::support::process::Porxy;
use crate::support::{wait_for, wait_until, Backend};

#[test]
fn graceful_stop_closes_the_control_socket_and_keeps_open_sessions() {
    let backend = Backend::greeting_echo(b"X");
    let mut porxy = Porxy::start(&[
        "--reactors",
        "2",
        "--tunnel",
        &spec_to(&backend),
        "--control",
        "127.0.0.1:0",
    ]);
    let tunnel = porxy.tunnel("cli-1");
    let control = control_addr(&porxy);
    let mut data = connect_to(tunnel, b'X', "before the stop");
    let mut session = ControlClient::connect(control);
    let before = session.cmd("STATUS");
    assert!(before.starts_with("OK tunnels=1 open=1 "), "{before}");

    porxy.signal(libc::SIGTERM);
    wait_until(WAIT, "the tunnel to refuse new clients", || refused(tunnel));
    wait_until(WAIT, "the control socket to refuse new sessions", || {
        refused(control)
    });
    // A probe above may have got in before the tunnel closed; it ends at once, leaving ours.
    let status = wait_for(
        WAIT,
        "the open session to show the drain of one connection",
        || session.cmd("STATUS"),
        |status| field(status, "open") == "1",
    );
    assert!(status.ends_with(" stopping"), "{status}");
    round_trip(&mut data, b"during the drain");
    finish(data);
    let exit = porxy.wait_exit(EXIT);
    assert_eq!(exit.code(), Some(0), "stderr:\n{}", porxy.stderr());
}

/// How many porxy processes the race below stops: it loses a few in a hundred.
const STOP_ROUNDS: usize = 100;

/// `STOP` always gets its reply, even when there is nothing to drain.
#[test]
fn stop_with_nothing_to_drain_replies() {
    for round in 0..STOP_ROUNDS {
        let mut porxy = Porxy::start(&["--reactors", "1", "--control", "127.0.0.1:0"]);
        let mut session = ControlClient::connect(control_addr(&porxy));
        // A lost reply fails here: "the control socket closed instead of replying".
        assert_eq!(
            session.cmd("STOP"),
            "OK stopping: 0 connections to drain, for at most 30s",
            "round {round}"
        );
        let exit = porxy.wait_exit(EXIT);
        assert_eq!(exit.code(), Some(0), "stderr:\n{}", porxy.stderr());
    }
}
