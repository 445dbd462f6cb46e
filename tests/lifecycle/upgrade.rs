//! Zero-downtime upgrade: a new porxy started with `--takeover` receives the listening sockets
//! and the control socket of the one serving `--upgrade-socket`, then its established
//! connections (`handover.rs`, or with `--leave-connections` the old one drains them); the old
//! one exits 0. No client may be refused or reset at any moment.

use std::time::Duration;

use super::chain::{assert_exits_cleanly, assert_no_failure, assert_took_over, Chain};
use super::{connect_to, control_addr, field, finish, WAIT};
use crate::support::client::round_trip;
use crate::support::control::ControlClient;
use crate::support::load::Load;
use crate::support::payload::bytes;
use crate::support::{wait_for, wait_until, Backend};

/// Client threads of the steady load.
pub(super) const CLIENTS: usize = 4;
/// Exchanges the load completes before, and again after, each step it must survive.
pub(super) const EXCHANGES: usize = 200;
/// A draining porxy reports the connections it holds every 5 s; allow for a slow machine.
const DRAIN_REPORT: Duration = Duration::from_secs(9);

/// The headline: a steady load of new connections goes through an upgrade without one refused
/// or reset; the old process exits 0 by itself; afterwards the new one serves the tunnel and the
/// control socket.
#[test]
fn upgrade_under_load_refuses_no_client() {
    let backend = Backend::greeting_echo(b"X");
    let mut chain = Chain::new(&backend);
    let mut old = chain.first();
    let tunnel = old.tunnel("cli-1");
    let control = control_addr(&old);

    let load = Load::start(tunnel, CLIENTS, b'X');
    load.wait_completed(EXCHANGES, WAIT);
    // Exchanges finished before the new process exists: the old one served them all.
    let before_takeover = load.completed();
    let new = chain.successor();
    assert_took_over(&new, &old);
    assert_exits_cleanly(&mut old, "the old porxy");
    let at_old_exit = load.completed();
    load.wait_completed(at_old_exit + EXCHANGES, WAIT);
    let report = load.finish();
    assert_no_failure(&report);
    assert!(
        before_takeover < at_old_exit,
        "the load ran through the takeover ({before_takeover} exchanges before it, \
         {at_old_exit} when the old porxy exited)"
    );

    finish(connect_to(tunnel, b'X', "after the old porxy exited"));
    let status = ControlClient::connect(control).cmd("STATUS");
    assert!(
        status.starts_with("OK tunnels=1 ") && !status.contains("stopping"),
        "{status}"
    );
    // The process answering counted only connections made since the takeover: at least every
    // one that finished after the old process had exited (less those the old one served and
    // whose end a client had not counted yet), and none that finished before the takeover.
    let accepted: usize = field(&status, "accepted").parse().unwrap();
    let total = report.completed + 1;
    assert!(
        accepted + CLIENTS >= total - at_old_exit && accepted <= total - before_takeover,
        "the new porxy accepted {accepted} of {total} connections; {before_takeover} finished \
         before the takeover, {at_old_exit} before the old porxy exited"
    );
}

/// With `--leave-connections`, a connection established before the upgrade stays with the old
/// process, which keeps relaying it (exact bytes) while it drains, and exits 0 only once it is
/// closed. Meanwhile new clients and new control sessions reach the new process.
#[test]
fn left_connection_finishes_on_old_process() {
    let backend = Backend::greeting_echo(b"X");
    let mut chain = Chain::new(&backend);
    let mut old = chain.first();
    let tunnel = old.tunnel("cli-1");
    let control = control_addr(&old);
    let mut early = connect_to(tunnel, b'X', "before the upgrade");
    // A control session opened now stays with the old process after the upgrade.
    let mut old_session = ControlClient::connect(control);

    let new = chain.successor_with(&["--leave-connections"]);
    assert_took_over(&new, &old);
    // The old process learns of the takeover just after the new one's READY line.
    let old_status = wait_for(
        WAIT,
        "the old porxy to stop accepting",
        || old_session.cmd("STATUS"),
        |status| status.ends_with(" stopping"),
    );
    assert_eq!(
        field(&old_status, "open"),
        "1",
        "the old porxy drains its one connection: {old_status}"
    );
    for (seed, len) in [(1, 1), (2, 1_000), (3, 60_000)] {
        round_trip(&mut early, &bytes(seed, len));
    }

    let fresh = connect_to(tunnel, b'X', "to the new porxy");
    let new_status = ControlClient::connect(control).cmd("STATUS");
    assert!(
        field(&new_status, "accepted") == "1" && !new_status.contains("stopping"),
        "a new control session reaches the new porxy, which accepted the new client: \
         {new_status}"
    );
    finish(fresh);

    wait_until(
        DRAIN_REPORT,
        "the old porxy to report that it drains one connection",
        || old.stderr().contains("draining connections_left=1"),
    );
    assert!(
        old.exit_status().is_none(),
        "the old porxy exited with a connection open; stderr:\n{}",
        old.stderr()
    );
    round_trip(&mut early, &bytes(4, 10_000));
    finish(early);
    assert_exits_cleanly(&mut old, "the old porxy");
}

/// A → B → C on one upgrade socket path: each successor serves it in turn, no client is refused
/// across both upgrades, and each old process exits 0.
#[test]
fn chained_upgrades_refuse_no_client() {
    let backend = Backend::greeting_echo(b"X");
    let mut chain = Chain::new(&backend);
    let mut first = chain.first();
    let tunnel = first.tunnel("cli-1");

    let load = Load::start(tunnel, CLIENTS, b'X');
    load.wait_completed(EXCHANGES, WAIT);
    let mut second = chain.successor();
    assert_took_over(&second, &first);
    assert_exits_cleanly(&mut first, "the first porxy");
    let at_first_exit = load.completed();
    load.wait_completed(at_first_exit + EXCHANGES, WAIT);

    let third = chain.successor();
    assert_took_over(&third, &second);
    assert_exits_cleanly(&mut second, "the second porxy");
    let at_second_exit = load.completed();
    load.wait_completed(at_second_exit + EXCHANGES, WAIT);
    assert_no_failure(&load.finish());
    finish(connect_to(tunnel, b'X', "served by the third porxy"));
}

/// Upgrades from a porxy whose listener thread accepts to one whose reactors do, and back,
/// under a steady load: no client is refused or reset, and each old process exits 0.
#[test]
fn upgrades_between_accept_modes_refuse_no_client() {
    let backend = Backend::greeting_echo(b"X");
    let mut chain = Chain::new(&backend);
    let mut first = chain.first_with(&["--accept", "listener"]);
    let tunnel = first.tunnel("cli-1");

    let load = Load::start(tunnel, CLIENTS, b'X');
    load.wait_completed(EXCHANGES, WAIT);
    let mut second = chain.successor_with(&["--accept", "reactors"]);
    assert_took_over(&second, &first);
    assert_exits_cleanly(&mut first, "the porxy whose listener thread accepts");
    load.wait_completed(load.completed() + EXCHANGES, WAIT);

    let third = chain.successor_with(&["--accept", "listener"]);
    assert_took_over(&third, &second);
    assert_exits_cleanly(&mut second, "the porxy whose reactors accept");
    load.wait_completed(load.completed() + EXCHANGES, WAIT);
    assert_no_failure(&load.finish());
    finish(connect_to(tunnel, b'X', "served by the third porxy"));
}

/// Clients of the test below, one after the other.
const LONE_CLIENTS: usize = 100;

/// An old porxy left draining (`--leave-connections`) takes the listening sockets out of its
/// reactors' epolls when it stops accepting. It shares the sockets with its successor, and an
/// epoll registration lives as long as the socket, not the descriptor: one left behind would
/// take the kernel's one wake-up per new client away from the successor's reactors. Clients
/// come one at a time, so that nothing but its own arrival wakes a reactor for each: every one
/// is served at once by the new porxy, none by the old.
#[test]
fn draining_porxy_leaves_every_new_client_to_its_successor() {
    let backend = Backend::greeting_echo(b"X");
    let mut chain = Chain::new(&backend);
    let mut old = chain.first_with(&["--accept", "reactors"]);
    let tunnel = old.tunnel("cli-1");
    let control = control_addr(&old);
    let early = connect_to(tunnel, b'X', "holds the old porxy");
    let mut old_session = ControlClient::connect(control);

    let new = chain.successor_with(&["--leave-connections", "--accept", "reactors"]);
    assert_took_over(&new, &old);
    let old_status = wait_for(
        WAIT,
        "the old porxy to stop accepting",
        || old_session.cmd("STATUS"),
        |status| status.ends_with(" stopping"),
    );
    for i in 0..LONE_CLIENTS {
        finish(connect_to(tunnel, b'X', &format!("lone client {i}")));
    }
    let new_status = ControlClient::connect(control).cmd("STATUS");
    assert_eq!(
        field(&new_status, "accepted"),
        LONE_CLIENTS.to_string(),
        "the new porxy served every new client: {new_status}"
    );
    assert_eq!(
        field(&old_session.cmd("STATUS"), "accepted"),
        field(&old_status, "accepted"),
        "the old porxy accepted nobody once stopping"
    );
    assert!(old.exit_status().is_none(), "the old porxy drains `early`");
    finish(early);
    assert_exits_cleanly(&mut old, "the old porxy");
}

/// How many times the race below is run: a predecessor with nothing to drain exits as soon as it
/// lets go, and before the fix it could do so before its successor heard `OK`, one round in a
/// few; twenty rounds nearly always showed it.
const RACE_ROUNDS: usize = 20;

/// A script that starts the successor as soon as the READY line is out (A, then B, then C) must
/// find the upgrade socket served, and every predecessor exits cleanly.
#[test]
fn ready_means_a_successor_can_take_over() {
    let backend = Backend::greeting_echo(b"X");
    for _ in 0..RACE_ROUNDS {
        let mut chain = Chain::new(&backend);
        let mut first = chain.first();
        let mut second = chain.successor();
        assert_took_over(&second, &first);
        let third = chain.successor();
        assert_took_over(&third, &second);
        assert_exits_cleanly(&mut first, "the first porxy");
        assert_exits_cleanly(&mut second, "the second porxy");
    }
}

/// An admin endpoint on a fixed address goes on across an upgrade: the successor binds it once
/// its predecessor has let it go, and answers there (its routes are the same tunnel).
#[test]
fn the_admin_endpoint_moves_to_the_successor() {
    let backend = Backend::greeting_echo(b"X");
    let mut chain = Chain::new(&backend);
    let mut old = chain.first_with(&["--admin", "127.0.0.1:0"]);
    let admin = old.admin().expect("admin= on the READY line").to_string();
    let new = chain.successor_with(&["--admin", &admin]);
    assert_took_over(&new, &old);
    assert_eq!(new.admin(), Some(admin.as_str()), "the same address");
    assert_exits_cleanly(&mut old, "the old porxy");
    let routes = crate::support::curl::curl(&[&crate::support::curl::url(&admin, "/routes")]);
    assert_eq!(routes.status, 200);
    assert_eq!(
        routes.json()["routes"][0]["listen"],
        new.tunnel("cli-1").to_string()
    );
    let status = crate::support::curl::curl(&[&crate::support::curl::url(&admin, "/status")]);
    assert_eq!(status.json()["stopping"], false, "the successor answers");
}

/// Upgrades of a porxy with no connection: every predecessor answers its successor's request
/// for the established connections (with none) before it exits, so nothing is logged at warn
/// level or above on either side, twenty times in a row.
#[test]
fn idle_upgrades_log_no_false_alarm() {
    let backend = Backend::greeting_echo(b"X");
    let mut chain = Chain::new(&backend);
    let mut old = chain.first();
    let alarms = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.split_whitespace().any(|w| w == "WARN" || w == "ERROR"))
            .map(str::to_string)
            .collect()
    };
    for round in 0..RACE_ROUNDS {
        let new = chain.successor();
        assert_took_over(&new, &old);
        assert_exits_cleanly(&mut old, "the predecessor");
        assert_eq!(
            alarms(&old.stderr()),
            Vec::<String>::new(),
            "round {round}, old"
        );
        assert_eq!(
            alarms(&new.stderr()),
            Vec::<String>::new(),
            "round {round}, new"
        );
        assert!(
            new.stderr().contains("connections=0"),
            "round {round}: {}",
            new.stderr()
        );
        old = new;
    }
}
