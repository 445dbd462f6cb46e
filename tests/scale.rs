//! A thousand connections at once over four reactors: dealt evenly when the listener thread
//! accepts, spread within a few connections of even when the reactors accept.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use porxy_core::{AcceptMode, CloseReason, ReactorStatus};

use crate::support::client::{connect, read_until_end, End};
use crate::support::payload::assert_same;
use crate::support::proxy::{builder, spec_to, start, wait_all_closed, wait_tunnel};
use crate::support::{raise_fd_limit, wait_for, Backend};

const CONNS: usize = 1000;
const REACTORS: usize = 4;
/// porxy-core's `SPREAD_SLACK`: how far past the average a reactor may go before it steps aside.
const SPREAD_SLACK: u64 = 4;

#[test]
fn thousand_connections_over_four_reactors() {
    thousand_connections(AcceptMode::Listener, |reactors| {
        for r in reactors {
            assert_eq!(
                r.open,
                (CONNS / REACTORS) as u64,
                "connections are dealt in turn: {reactors:?}"
            );
        }
    });
}

/// When reactors accept, the kernel wakes the first idle one for each client; a reactor past the
/// average plus `SPREAD_SLACK` steps aside (after the client it was woken for), so none holds
/// more than `average + SPREAD_SLACK + 1`, and so none holds less than `average - (REACTORS - 1)
/// * (SPREAD_SLACK + 1)`.
#[test]
fn thousand_connections_spread_over_four_accepting_reactors() {
    thousand_connections(AcceptMode::Reactors, |reactors| {
        let average = (CONNS / REACTORS) as u64;
        let most = average + SPREAD_SLACK + 1;
        let least = average - (REACTORS as u64 - 1) * (SPREAD_SLACK + 1);
        for r in reactors {
            assert!(
                (least..=most).contains(&r.open),
                "reactor {} holds {} connections, not within {least}..={most}: {reactors:?}",
                r.index,
                r.open
            );
        }
    });
}

/// Opens `CONNS` connections at once over `REACTORS` reactors accepting as `mode` says, checks
/// each echoes its own message, hands the reactors' counts to `spread`, then closes them all.
fn thousand_connections(mode: AcceptMode, spread: impl Fn(&[ReactorStatus])) {
    raise_fd_limit();
    // Clients, the proxy's two sockets per connection, the backend's and its clones.
    assert!(
        crate::support::fd_limit() >= 6 * CONNS as u64,
        "the descriptor limit {} is too low for this test",
        crate::support::fd_limit()
    );
    let echo = Backend::echo();
    let proxy = start(
        builder()
            .reactors(REACTORS)
            .accept(mode)
            .tunnel(spec_to(echo.addr())),
    );
    let handle = proxy.handle();
    let local = proxy.bound()[0];

    let mut streams: Vec<_> = (0..CONNS).map(|_| connect(local)).collect();
    let message = |i: usize| format!("connection {i} says hello\n").into_bytes();
    for (i, stream) in streams.iter_mut().enumerate() {
        stream.write_all(&message(i)).unwrap();
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        let want = message(i);
        let mut got = vec![0; want.len()];
        stream
            .read_exact(&mut got)
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_same(&got, &want, &format!("echo on connection {i}"));
    }

    let reactors = wait_for(
        Duration::from_secs(5),
        "every connection open on the reactors",
        || handle.status().reactors,
        |r| r.iter().map(|r| r.open).sum::<u64>() == CONNS as u64,
    );
    spread(&reactors);

    for stream in &streams {
        stream.shutdown(Shutdown::Write).unwrap();
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        let ending = read_until_end(stream);
        assert_eq!(ending.end, End::Eof, "connection {i}");
        assert!(ending.bytes.is_empty(), "connection {i}: stray bytes");
    }
    drop(streams);
    wait_all_closed(&handle);
    let status = wait_tunnel(&handle, local, "every connection counted complete", |t| {
        t.closes.get(CloseReason::Completed) == CONNS as u64
    });
    assert_eq!(status.open, 0);
    assert_eq!(status.closes.total(), CONNS as u64, "{:?}", status.closes);
    assert_eq!(echo.accepted(), CONNS);
}
