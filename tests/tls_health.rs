//! Active health checks of TLS backends (`check_tls`, on with `backend_tls`): a check does the
//! TLS handshake, verifying the backend's certificate as a relayed connection would, and sends
//! and expects its bytes inside the session.

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use crate::support::client::connect;
use crate::support::process::Porxy;
use crate::support::tls::{tls_backend, tls_greeting_echo, TestCa};
use crate::support::wait_until;

const WAIT: Duration = Duration::from_secs(10);

/// The lines of `stderr` that say `backend` went `down` or up by health checks.
fn health_lines(stderr: &str, backend: SocketAddr, down: bool) -> Vec<String> {
    let said = if down {
        "backend is down: health checks fail"
    } else {
        "backend is up: health checks pass"
    };
    stderr
        .lines()
        .filter(|l| l.contains(said) && l.contains(&format!("backend={backend}")))
        .map(str::to_string)
        .collect()
}

#[test]
fn health_checks_of_tls_backends_verify_the_certificate_and_expect_inside_the_session() {
    let ca = TestCa::new();
    let wrong = tls_backend(&ca.server("wrong", &["wrong.test"]), b"W");
    let good_cert = ca.server("good", &["backend.test"]);
    // Not there yet: its checks fail until it listens.
    let held = tls_backend(&good_cert, b"G").go_down();
    let good = held.addr();
    let spec = format!(
        "127.0.0.1:0={},{good}[backend_tls=on,tls_ca={},tls_server_name=backend.test,\
         check=on,check_interval=100ms,check_timeout=1s,rise=1,fall=1,check_expect=G]",
        wrong.addr(),
        ca.ca_pem.display()
    );
    let porxy = Porxy::start(&["--tunnel", &spec, "--log", "warn"]);

    wait_until(WAIT, "both backends down by their checks", || {
        let err = porxy.stderr();
        !health_lines(&err, wrong.addr(), true).is_empty()
            && !health_lines(&err, good, true).is_empty()
    });
    let err = porxy.stderr();
    let wrong_down = &health_lines(&err, wrong.addr(), true)[0];
    assert!(
        wrong_down.contains("TLS handshake: invalid peer certificate: certificate not valid for name \"backend.test\""),
        "the certificate for another name failed the check: {wrong_down}"
    );

    // The good backend comes: its check passes only through a verified handshake and the
    // greeting read inside the session.
    let _good = held.revive(tls_greeting_echo(&good_cert, None, b"G"));
    wait_until(WAIT, "the good backend up by its checks", || {
        !health_lines(&porxy.stderr(), good, false).is_empty()
    });
    assert!(
        health_lines(&porxy.stderr(), wrong.addr(), false).is_empty(),
        "the wrong certificate never passes"
    );
    let mut client = connect(porxy.tunnel("cli-1"));
    let mut greeting = [0u8; 1];
    client.read_exact(&mut greeting).unwrap();
    assert_eq!(
        &greeting, b"G",
        "clients go to the backend whose checks pass"
    );
}
