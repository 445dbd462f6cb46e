//! The original design's redeploy, literally: an old porxy serves with `--admin`; a new one is
//! started with `--bind-wait` (and, both, `--reuse-port`); `curl .../stop` on the old one. A
//! client connected before keeps talking to the old process until it closes; new clients
//! reach the new one; no client is refused or reset in between (counted by a steady load).

use std::io::{Read, Write};

use super::WAIT;
use crate::support::client::connect;
use crate::support::curl::{curl, url};
use crate::support::load::Load;
use crate::support::process::Porxy;
use crate::support::{wait_until, Backend};

#[test]
fn stop_on_the_old_one_once_the_new_one_waits_refuses_no_client() {
    let (old_backend, new_backend) = (Backend::greeting_echo(b"X"), Backend::greeting_echo(b"X"));
    let mut old = Porxy::start(&[
        "--reuse-port",
        "--admin",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
        "--tunnel",
        &format!("127.0.0.1:0={}", old_backend.addr()),
    ]);
    let admin = old.admin().unwrap().to_string();
    let control = old.control().unwrap().to_string();
    let tunnel = old.tunnel("cli-1");
    let mut before = connect(tunnel);
    let mut greeting = [0u8; 1];
    before.read_exact(&mut greeting).unwrap();
    assert_eq!(old_backend.accepted(), 1);

    let load = Load::start(tunnel, 4, b'X');
    load.wait_completed(200, WAIT);
    let mut new = Porxy::launch(&[
        "--reuse-port",
        "--bind-wait",
        "10s",
        "--admin",
        &admin,
        "--control",
        &control,
        "--tunnel",
        &format!("{tunnel}={}", new_backend.addr()),
    ]);
    wait_until(
        WAIT,
        "the new porxy to take new clients and wait for the admin address",
        || new.stderr().contains("waiting for it to be released") && new_backend.accepted() > 0,
    );
    let served_by_old = old_backend.accepted();
    let stop = curl(&[&url(&admin, "/stop")]);
    assert_eq!(stop.status, 202, "{}", stop.body);
    new.wait_ready(WAIT);
    assert_eq!(
        new.admin(),
        Some(admin.as_str()),
        "the admin address moved too"
    );
    assert_eq!(
        new.control(),
        Some(control.as_str()),
        "and the control socket's"
    );
    assert_eq!(new.tunnel("cli-1"), tunnel);
    let at_stop = load.completed();
    load.wait_completed(at_stop + 200, WAIT);

    // The early client is still the old porxy's.
    before.write_all(b"still here").unwrap();
    let mut back = [0u8; 10];
    before.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still here");
    assert!(
        old.exit_status().is_none(),
        "the old porxy drains its client"
    );
    drop(before);
    assert_eq!(old.wait_exit(WAIT).code(), Some(0), "{}", old.stderr());

    let report = load.finish();
    assert!(
        report.failures.is_empty(),
        "{} of {} exchanges failed: {:?}",
        report.failures.len(),
        report.failures.len() + report.completed,
        report.failures
    );
    assert!(
        old_backend.accepted() <= served_by_old + 4,
        "no new client went to the old porxy once the new one shared the address"
    );
    let status = curl(&[&url(&admin, "/status")]).json();
    assert_eq!(
        status["stopping"], false,
        "the new porxy answers at the address"
    );
}
