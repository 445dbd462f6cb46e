//! A thousand connections at once, dealt evenly over four reactors.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use porxy_core::CloseReason;

use crate::support::client::{connect, read_until_end, End};
use crate::support::payload::assert_same;
use crate::support::proxy::{builder, spec_to, start, wait_all_closed, wait_tunnel};
use crate::support::{raise_fd_limit, wait_for, Backend};

#[test]
fn thousand_connections_over_four_reactors() {
    const CONNS: usize = 1000;
    const REACTORS: usize = 4;
    raise_fd_limit();
    // Clients, the proxy's two sockets per connection, the backend's and its clones.
    assert!(
        crate::support::fd_limit() >= 6 * CONNS as u64,
        "the descriptor limit {} is too low for this test",
        crate::support::fd_limit()
    );
    let echo = Backend::echo();
    let proxy = start(builder().reactors(REACTORS).tunnel(spec_to(echo.addr())));
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
    for r in &reactors {
        assert_eq!(
            r.open,
            (CONNS / REACTORS) as u64,
            "connections are dealt in turn: {reactors:?}"
        );
    }

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
