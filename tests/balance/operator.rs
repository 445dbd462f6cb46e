//! What an operator does to one backend: drain and enable it, remove it with or without a
//! deadline for its established connections.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use porxy_core::{BackendChange, BackendState, CloseReason, Error};

use super::{backend_status, greeters, index_of, remotes, start_balanced, tally};
use crate::support::client::{connect, read_greeting, read_until_end, round_trip, End};
use crate::support::proxy::{tunnel, wait_tunnel};

/// Draining A, which holds an established connection: no new connection reaches A, the
/// established one goes on relaying, status says `draining`; enabling A brings it back.
#[test]
fn drain_sends_new_connections_elsewhere_and_keeps_established_ones() {
    let backends = greeters(3);
    let a = backends[0].addr();
    let (proxy, local) = start_balanced(&remotes(&backends), "");
    let handle = proxy.handle();
    let mut on_a = connect(local);
    assert_eq!(
        index_of(read_greeting(&mut on_a)),
        0,
        "round robin starts at A"
    );

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
    let mut on_a = connect(local);
    assert_eq!(
        index_of(read_greeting(&mut on_a)),
        0,
        "round robin starts at A"
    );

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
    let mut on_a = connect(local);
    assert_eq!(
        index_of(read_greeting(&mut on_a)),
        0,
        "round robin starts at A"
    );

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
