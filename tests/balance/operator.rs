//! What an operator does to one backend: drain and enable it, remove it with or without a
//! deadline for its established connections.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use porxy_core::{BackendChange, BackendState, CloseReason, Error, Remote};

use super::{backend_status, greeters, index_of, remotes, start_balanced, tally};
use crate::support::client::{
    connect, expect_reset, read_greeting, read_until_end, round_trip, End,
};
use crate::support::control::{control_addr, field, opened_addr, ControlClient};
use crate::support::process::Porxy;
use crate::support::proxy::{tunnel, wait_tunnel};
use crate::support::wait_until;

/// A reset must reach a client whose backend is removed NOW this fast.
const PROMPT: Duration = Duration::from_secs(2);

/// The first connection through `local`, which round robin gives to the first backend, A.
#[track_caller]
fn first_connection_on_a(local: SocketAddr) -> TcpStream {
    let mut on_a = connect(local);
    assert_eq!(
        index_of(read_greeting(&mut on_a)),
        0,
        "round robin starts at A"
    );
    on_a
}

/// Draining A, which holds an established connection: no new connection reaches A, the
/// established one goes on relaying, status says `draining`; enabling A brings it back.
#[test]
fn drain_sends_new_connections_elsewhere_and_keeps_established_ones() {
    let backends = greeters(3);
    let a = backends[0].addr();
    let (proxy, local) = start_balanced(&remotes(&backends), "");
    let handle = proxy.handle();
    let mut on_a = first_connection_on_a(local);

    let open = handle
        .change_backend(local, a, BackendChange::Drain)
        .unwrap();
    assert_eq!(open, 1, "A holds one connection as it starts draining");
    let counts = tally(local, 50, 2);
    assert_eq!(counts[0], 0, "no new connection reached A: {counts:?}");
    assert_eq!(counts[1] + counts[2], 50, "{counts:?}");
    round_trip(&mut on_a, b"still relayed while A drains");
    let status = backend_status(&handle, local, a);
    assert_eq!((status.state, status.open), (BackendState::Draining, 1));

    handle
        .change_backend(local, a, BackendChange::Enable)
        .unwrap();
    assert_eq!(backend_status(&handle, local, a).state, BackendState::Up);
    assert_eq!(
        tally(local, 30, 1),
        [10, 10, 10, 0],
        "A takes its turn again"
    );
    round_trip(&mut on_a, b"and the old connection goes on");
}

/// Removing A with a 500ms deadline: its established connection relays until the deadline and
/// is then reset, counted as `backend_removed`; meanwhile status lists A as `removing`, and once
/// its connection is gone, not at all.
#[test]
fn remove_with_deadline_cuts_established_connections_at_the_deadline() {
    const DEADLINE: Duration = Duration::from_millis(500);
    let backends = greeters(2);
    let (a, b) = (backends[0].addr(), backends[1].addr());
    let (proxy, local) = start_balanced(&remotes(&backends), "");
    let handle = proxy.handle();
    let mut on_a = first_connection_on_a(local);

    let removed_at = Instant::now();
    let open = handle
        .change_backend(
            local,
            a,
            BackendChange::Remove {
                deadline: Some(DEADLINE),
            },
        )
        .unwrap();
    assert_eq!(open, 1);
    let status = tunnel(&handle, local);
    assert_eq!(status.remotes, [b], "the remotes in use");
    let a_status = backend_status(&handle, local, a);
    assert_eq!((a_status.state, a_status.open), (BackendState::Removing, 1));
    round_trip(&mut on_a, b"relayed before the deadline");
    assert_eq!(
        tally(local, 10, 1),
        [0, 10, 0, 0],
        "new connections go to B"
    );
    assert!(
        removed_at.elapsed() < DEADLINE,
        "the checks before the deadline took {:?}",
        removed_at.elapsed()
    );

    let ending = read_until_end(&mut on_a);
    let after = removed_at.elapsed();
    assert_eq!(
        ending.end,
        End::Error(ErrorKind::ConnectionReset),
        "{ending:?}"
    );
    assert!(
        after >= DEADLINE && after < DEADLINE + Duration::from_secs(1),
        "reset {after:?} after the remove, deadline {DEADLINE:?}"
    );
    let status = wait_tunnel(&handle, local, "every close counted", |t| {
        t.closes.total() == 11
    });
    assert_eq!(
        (
            status.closes.get(CloseReason::BackendRemoved),
            status.closes.get(CloseReason::Completed)
        ),
        (1, 10),
        "{:?}",
        status.closes
    );
    let status = wait_tunnel(&handle, local, "A to leave the status", |t| {
        t.backends.len() == 1
    });
    assert_eq!(status.backends[0].addr, b);
}

/// Removing A without a deadline: its connection goes on until the client ends it, normally;
/// then A leaves the status, and the tunnel no longer knows it.
#[test]
fn remove_without_deadline_waits_for_the_last_connection() {
    let backends = greeters(2);
    let (a, b) = (backends[0].addr(), backends[1].addr());
    let (proxy, local) = start_balanced(&remotes(&backends), "");
    let handle = proxy.handle();
    let mut on_a = first_connection_on_a(local);

    let open = handle
        .change_backend(local, a, BackendChange::Remove { deadline: None })
        .unwrap();
    assert_eq!(open, 1);
    assert_eq!(
        backend_status(&handle, local, a).state,
        BackendState::Removing
    );
    round_trip(&mut on_a, b"goes on as long as it likes");
    drop(on_a);

    let status = wait_tunnel(&handle, local, "A to leave the status", |t| {
        t.backends.len() == 1 && t.open == 0
    });
    let listed: Vec<SocketAddr> = status.backends.iter().map(|s| s.addr).collect();
    assert_eq!(listed, [b]);
    assert_eq!(status.closes.get(CloseReason::BackendRemoved), 0);
    assert_eq!(status.closes.get(CloseReason::Completed), 1);
    assert!(matches!(
        handle.change_backend(local, a, BackendChange::Enable),
        Err(Error::NoSuchBackend { backend, .. }) if backend == a
    ));
}

/// `change_backend(Disable)` returns the connections the backend held, which it closes (the
/// control socket's reply: `disabled B of L: its N connections are closed`). Repeated, since
/// what goes wrong is a race.
#[test]
fn disable_counts_the_connections_it_closes() {
    let backends = greeters(2);
    let (proxy, local) = start_balanced(&remotes(&backends), "");
    let handle = proxy.handle();
    for round in 0..50 {
        let mut stream = connect(local);
        let addr = backends[index_of(read_greeting(&mut stream))].addr();
        let closed = handle
            .change_backend(local, addr, BackendChange::Disable)
            .unwrap();
        assert_eq!(closed, 1, "round {round}: the one connection on {addr}");
        // Its reactor closes it a moment later; until then it still holds its slot, and the
        // next round's Disable would rightly count it too.
        wait_tunnel(
            &handle,
            local,
            "the disabled backend's connection to close",
            |t| t.open == 0,
        );
        handle
            .change_backend(local, addr, BackendChange::Enable)
            .unwrap();
    }
}

/// A backend removed without a deadline that still holds a connection is "being removed": a
/// second REMOVE may still give it a deadline (an hour, then zero: NOW, which cuts its
/// connection); it cannot be changed meanwhile, nor, once its connection is to be closed at a
/// deadline, added back (a typed error says why); once its connection is gone it leaves the
/// status, and can then be added again.
#[test]
fn a_backend_being_removed_can_be_removed_now_but_not_added_again_once_it_has_a_deadline() {
    let backends = greeters(2);
    let (a, b) = (backends[0].addr(), backends[1].addr());
    let (proxy, local) = start_balanced(&remotes(&backends), "");
    let handle = proxy.handle();
    let mut on_a = first_connection_on_a(local);

    let remove = |deadline| handle.change_backend(local, a, BackendChange::Remove { deadline });
    assert_eq!(remove(None).unwrap(), 1);
    assert_eq!(remove(Some(Duration::from_secs(3600))).unwrap(), 1);
    let a_remote: Remote = a.to_string().parse().unwrap();
    let added = handle.add_backend(local, a_remote.clone());
    assert!(
        matches!(added, Err(Error::BackendLeaving { tunnel, backend, open: 1 }) if tunnel == local && backend == a),
        "{added:?}"
    );
    assert_eq!(
        added.unwrap_err().to_string(),
        format!(
            "backend {a} of tunnel {local} is still being removed (1 connections left); wait for \
             them to end, or REMOVE it with a deadline (or NOW) to close them"
        )
    );
    assert!(matches!(
        handle.change_backend(local, a, BackendChange::Enable),
        Err(Error::BackendLeaving { open: 1, .. })
    ));
    let listed = tunnel(&handle, local);
    assert_eq!(
        listed.backends.len(),
        2,
        "one line for A: {:#?}",
        listed.backends
    );
    assert_eq!(
        (
            backend_status(&handle, local, a).state,
            backend_status(&handle, local, a).open
        ),
        (BackendState::Removing, 1)
    );
    round_trip(&mut on_a, b"a removed backend's connection goes on");

    assert_eq!(
        remove(None).unwrap(),
        1,
        "REMOVE again without a deadline changes nothing"
    );
    round_trip(&mut on_a, b"still going");
    assert_eq!(
        remove(Some(Duration::ZERO)).unwrap(),
        1,
        "REMOVE NOW acts on it"
    );
    expect_reset(&mut on_a, PROMPT);
    let status = wait_tunnel(&handle, local, "A to leave the status", |t| {
        t.backends.len() == 1 && t.open == 0
    });
    assert_eq!(status.backends[0].addr, b);
    assert_eq!(status.closes.get(CloseReason::BackendRemoved), 1);
    assert!(matches!(
        remove(Some(Duration::ZERO)),
        Err(Error::NoSuchBackend { backend, .. }) if backend == a
    ));

    assert_eq!(handle.add_backend(local, a_remote).unwrap(), a);
    assert_eq!(backend_status(&handle, local, a).state, BackendState::Up);
    assert_eq!(tally(local, 4, 1)[..2], [2, 2], "A serves again");
}

/// Lines of `text` (porxy's stderr) that report backend `addr` removed.
fn removal_reports(text: &str, addr: SocketAddr) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("backend removed") && l.contains(&format!("backend={addr}")))
        .map(str::to_string)
        .collect()
}

/// The `  backend ADDR ...` line of `STATUS FULL` for `addr`, if there is one.
fn backend_line(control: &mut ControlClient, addr: SocketAddr) -> Option<String> {
    control
        .block("STATUS FULL")
        .into_iter()
        .find(|l| l.starts_with(&format!("  backend {addr} ")))
}

/// Through the binary: the removal of a backend is reported once, at info level, when it has no
/// connection left: at once for one that had none, when its last one ends for one that had
/// some (`STATUS FULL` shows it `removing` until then, and not at all after). `REMOVE ... NOW`
/// ends what a plain REMOVE left going; `ADD` of it once it has a deadline is refused, with the
/// reason.
#[test]
fn removal_is_reported_once_when_the_backend_has_no_connection_left() {
    let backends = greeters(3);
    let (a, b, c) = (backends[0].addr(), backends[1].addr(), backends[2].addr());
    let porxy = Porxy::start(&[
        "--control",
        "127.0.0.1:0",
        "--reactors",
        "2",
        "--log",
        "info",
    ]);
    let mut control = ControlClient::connect(control_addr(&porxy));
    let opened = control.cmd(&format!("OPEN 127.0.0.1:0={a},{b},{c}"));
    let local = opened_addr(&opened);
    let mut on_a = connect(local);
    assert_eq!(read_greeting(&mut on_a), b'A');

    // C has no connection: it is gone as soon as it is removed.
    assert_eq!(
        control.cmd(&format!("REMOVE {local} {c}")),
        format!("OK removing {c} from {local}: 0 connections go on until they end")
    );
    assert_eq!(backend_line(&mut control, c), None, "C is gone at once");
    wait_until(Duration::from_secs(5), "C's removal in the log", || {
        !removal_reports(&porxy.stderr(), c).is_empty()
    });
    let reports = removal_reports(&porxy.stderr(), c);
    assert!(
        reports.len() == 1
            && reports[0].contains("INFO")
            && reports[0].contains("no connections left"),
        "{reports:#?}"
    );

    // A holds one: it is `removing` until that one ends.
    assert_eq!(
        control.cmd(&format!("REMOVE {local} {a}")),
        format!("OK removing {a} from {local}: 1 connections go on until they end")
    );
    let line = backend_line(&mut control, a).expect("A listed while it is being removed");
    assert_eq!(
        (field(&line, "state"), field(&line, "open")),
        ("removing".into(), "1".into())
    );
    // With a deadline for its connection, it cannot be added back until that one is gone.
    assert_eq!(
        control.cmd(&format!("REMOVE {local} {a} 1h")),
        format!("OK removing {a} from {local}: 1 connections go on for at most 1h")
    );
    assert_eq!(
        control.cmd(&format!("ADD {local} {a}")),
        format!(
            "ERR: backend {a} of tunnel {local} is still being removed (1 connections left); \
             wait for them to end, or REMOVE it with a deadline (or NOW) to close them"
        )
    );
    assert!(
        removal_reports(&porxy.stderr(), a).is_empty(),
        "A is not gone yet"
    );
    round_trip(&mut on_a, b"A still relays");

    assert_eq!(
        control.cmd(&format!("REMOVE {local} {a} NOW")),
        format!("OK removing {a} from {local}: its 1 connections are closed")
    );
    expect_reset(&mut on_a, PROMPT);
    wait_until(Duration::from_secs(5), "A's removal in the log", || {
        !removal_reports(&porxy.stderr(), a).is_empty()
    });
    assert_eq!(backend_line(&mut control, a), None, "A is gone");
    assert_eq!(
        control.cmd(&format!("ADD {local} {a}")),
        format!("OK added {a} to {local}")
    );
    let reports = removal_reports(&porxy.stderr(), a);
    assert!(
        reports.len() == 1 && reports[0].contains("last connection has ended"),
        "{reports:#?}"
    );
    assert_eq!(removal_reports(&porxy.stderr(), c).len(), 1, "C's, once");
}

/// The `  backend ADDR ...` lines of `STATUS FULL` for `addr`.
fn backend_lines(control: &mut ControlClient, addr: SocketAddr) -> Vec<String> {
    control
        .block("STATUS FULL")
        .into_iter()
        .filter(|l| l.starts_with(&format!("  backend {addr} ")))
        .collect()
}

/// Regression: OPEN naming a backend still being removed made a second backend for the same
/// server, with its own `max_conns`, so A held two connections with `max_conns=1`, and STATUS
/// FULL listed A twice. Now OPEN, and ADD likewise, take the leaving backend back into service:
/// its connection and limit go on, and it is listed once, `up`.
#[test]
fn open_or_add_of_a_backend_being_removed_takes_it_back() {
    let backends = greeters(2);
    let (a, b) = (backends[0].addr(), backends[1].addr());
    let porxy = Porxy::start(&[
        "--control",
        "127.0.0.1:0",
        "--reactors",
        "1",
        "--log",
        "info",
    ]);
    let mut control = ControlClient::connect(control_addr(&porxy));
    let spec = format!("{a},{b}[strategy=first,max_conns=1]");
    let local = opened_addr(&control.cmd(&format!("OPEN 127.0.0.1:0={spec}")));
    let mut on_a = connect(local);
    assert_eq!(read_greeting(&mut on_a), b'A');

    assert_eq!(
        control.cmd(&format!("REMOVE {local} {a}")),
        format!("OK removing {a} from {local}: 1 connections go on until they end")
    );
    let reopened = control.cmd(&format!("OPEN {local}={spec}"));
    assert!(reopened.starts_with("OK "), "{reopened}");
    let lines = backend_lines(&mut control, a);
    assert_eq!(lines.len(), 1, "A is listed once: {lines:#?}");
    assert_eq!(
        (field(&lines[0], "state"), field(&lines[0], "open")),
        ("up".into(), "1".into())
    );
    // A is full (max_conns=1, and its connection still counts): the next client goes to B.
    let mut on_b = connect(local);
    assert_eq!(read_greeting(&mut on_b), b'B', "A holds at most one");
    round_trip(&mut on_a, b"A's first connection goes on");

    // ADD does the same.
    assert_eq!(
        control.cmd(&format!("REMOVE {local} {a}")),
        format!("OK removing {a} from {local}: 1 connections go on until they end")
    );
    assert_eq!(
        control.cmd(&format!("ADD {local} {a}")),
        format!("OK added {a} to {local}")
    );
    let lines = backend_lines(&mut control, a);
    assert_eq!(lines.len(), 1, "A is listed once: {lines:#?}");
    assert_eq!(
        (field(&lines[0], "state"), field(&lines[0], "open")),
        ("up".into(), "1".into())
    );
    round_trip(&mut on_a, b"still going");
    assert_eq!(
        removal_reports(&porxy.stderr(), a),
        Vec::<String>::new(),
        "A was never gone"
    );
    assert!(
        porxy.stderr().contains("backend back in service"),
        "{}",
        porxy.stderr()
    );
}

/// As the README says: REMOVE again on a backend being removed can only bring its deadline
/// earlier. A later one (an hour) leaves the first (300 ms) in force.
#[test]
fn a_second_remove_never_postpones_the_deadline() {
    let backends = greeters(2);
    let a = backends[0].addr();
    let (proxy, local) = start_balanced(&remotes(&backends), "");
    let handle = proxy.handle();
    let mut on_a = first_connection_on_a(local);
    let remove = |deadline| handle.change_backend(local, a, BackendChange::Remove { deadline });
    let started = Instant::now();
    assert_eq!(remove(Some(Duration::from_millis(300))).unwrap(), 1);
    assert_eq!(remove(Some(Duration::from_secs(3600))).unwrap(), 1);
    expect_reset(&mut on_a, Duration::from_millis(300) + PROMPT);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before its deadline"
    );
}
