//! `--bind-wait`: the simple path without a takeover. A new porxy waits, saying so, for a port
//! the old one still holds, and takes it as soon as the old one has stopped.

use std::io::Write;

use super::{connect_to, control_addr, field, finish, spec_to, EXIT, WAIT};
use crate::support::client::connect;
use crate::support::control::ControlClient;
use crate::support::process::Porxy;
use crate::support::{wait_for, wait_until, Backend};

#[test]
fn bind_wait_takes_the_port_once_the_old_process_stops() {
    let old_backend = Backend::greeting_echo(b"1");
    let new_backend = Backend::greeting_echo(b"2");
    let mut old = Porxy::start(&[
        "--reactors",
        "2",
        "--tunnel",
        &spec_to(&old_backend),
        "--control",
        "127.0.0.1:0",
    ]);
    // The port the system gave the old porxy is the fixed address the new one asks for.
    let addr = old.tunnel("cli-1");
    let mut new = Porxy::launch(&[
        "--reactors",
        "2",
        "--tunnel",
        &format!("{addr}={}", new_backend.addr()),
        "--bind-wait",
        "5s",
    ]);
    wait_until(WAIT, "the new porxy to say it waits for the port", || {
        new.stderr().contains("port in use")
    });
    let waiting = new.stderr();
    assert!(
        waiting.contains(&addr.to_string()),
        "the wait names the address: {waiting}"
    );
    assert!(new.exit_status().is_none(), "{waiting}");
    finish(connect_to(addr, b'1', "the old porxy serves meanwhile"));

    let mut control = ControlClient::connect(control_addr(&old));
    // A has no connection left when it is stopped: it exits 0 at once.
    wait_for(
        WAIT,
        "the old porxy to have no connection left",
        || control.cmd("STATUS"),
        |status| field(status, "open") == "0",
    );
    // STOP's reply is not checked here: with nothing to drain, porxy may exit before writing
    // it (`stop::stop_with_nothing_to_drain_replies` pins that bug).
    let mut stop = connect(control_addr(&old));
    stop.write_all(b"STOP\n").expect("send STOP");
    let status = old.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", old.stderr());

    new.wait_ready(WAIT);
    assert_eq!(new.tunnel("cli-1"), addr, "the new porxy got the port");
    finish(connect_to(addr, b'2', "the new porxy serves"));
}
