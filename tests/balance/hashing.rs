//! The hash strategy: each client IP sticks to one backend, the clients spread over the
//! backends, and taking one backend out moves only the clients that were on it.
//!
//! Clients are 200 loopback addresses, 127.0.1.1 to 127.0.1.200: a client socket bound to one
//! of them before connecting is, to the proxy, a client with that IP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use porxy_core::{BackendChange, Strategy};

use super::{greeters, index_of, remotes, start_balanced};
use crate::support::client::{connect_from, read_greeting};
use crate::support::proxy::tunnel;

/// Distinct client IPs.
const CLIENTS: usize = 200;
/// Client threads that share the IPs.
const THREADS: usize = 4;

/// The IP of client `i` (from 0).
fn client_ip(i: usize) -> IpAddr {
    assert!(i < 250, "client IPs are 127.0.1.1 to 127.0.1.250");
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, i as u8 + 1))
}

/// The backend each client IP reaches: one short connection per client.
fn placement(local: SocketAddr) -> Vec<usize> {
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    (t..CLIENTS)
                        .step_by(THREADS)
                        .map(|i| {
                            let mut stream = connect_from(client_ip(i), local);
                            (i, index_of(read_greeting(&mut stream)))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut placed = vec![usize::MAX; CLIENTS];
        for worker in workers {
            for (i, backend) in worker.join().expect("a client thread") {
                placed[i] = backend;
            }
        }
        placed
    })
}

/// Clients per backend index.
fn spread(placed: &[usize]) -> [usize; 4] {
    let mut counts = [0; 4];
    for &b in placed {
        counts[b] += 1;
    }
    counts
}

/// Checks that only the clients of backend `out` moved between `before` and `after`, and that
/// none of them landed on it. Returns how many moved.
#[track_caller]
fn only_clients_of(out: usize, before: &[usize], after: &[usize]) -> usize {
    let mut moved = 0;
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        if *b == out {
            assert_ne!(
                *a,
                out,
                "client {} still reached backend {out}",
                client_ip(i)
            );
            moved += 1;
        } else {
            assert_eq!(
                a,
                b,
                "client {} moved from backend {b} to {a}, though {b} is in service",
                client_ip(i)
            );
        }
    }
    moved
}

/// Each client IP reaches the same backend every time, and 200 clients spread over 4 backends
/// with each getting 12.5% to 37.5% of them. (Mean 50, standard deviation 6.1: the bound is
/// 4 deviations wide, so an even hash misses it about once in ten thousand runs.)
#[test]
fn hash_keeps_each_client_on_its_backend_and_spreads_clients() {
    let backends = greeters(4);
    let (proxy, local) = start_balanced(&remotes(&backends), "strategy=hash");
    let first = placement(local);
    for round in 2..=3 {
        let again = placement(local);
        for (i, (a, b)) in first.iter().zip(&again).enumerate() {
            assert_eq!(
                a,
                b,
                "client {} reached backend {a}, then {b} in round {round}",
                client_ip(i)
            );
        }
    }
    let counts = spread(&first);
    for (name, n) in ["A", "B", "C", "D"].iter().zip(counts) {
        assert!(
            (25..=75).contains(&n),
            "{name} got {n} of {CLIENTS} clients (25 to 75 expected): {counts:?}"
        );
    }
    let status = tunnel(&proxy.handle(), local);
    assert_eq!(status.strategy, Strategy::Hash);
    assert_eq!(status.accepted, 3 * CLIENTS as u64);
}

/// Disabling a backend moves only its clients (and enabling it brings exactly them back);
/// removing one moves only its clients too.
#[test]
fn hash_moves_only_the_clients_of_a_backend_taken_out() {
    let backends = greeters(4);
    let (proxy, local) = start_balanced(&remotes(&backends), "strategy=hash");
    let handle = proxy.handle();
    let before = placement(local);
    let counts = spread(&before);
    assert!(
        counts.iter().all(|&n| n > 0),
        "every backend has clients to move: {counts:?}"
    );

    handle
        .change_backend(local, backends[1].addr(), BackendChange::Disable)
        .unwrap();
    let moved = only_clients_of(1, &before, &placement(local));
    assert_eq!(moved, counts[1], "B's clients moved, and only they");

    handle
        .change_backend(local, backends[1].addr(), BackendChange::Enable)
        .unwrap();
    assert_eq!(placement(local), before, "B enabled: every client is back");

    handle
        .change_backend(
            local,
            backends[2].addr(),
            BackendChange::Remove { deadline: None },
        )
        .unwrap();
    let moved = only_clients_of(2, &before, &placement(local));
    assert_eq!(moved, counts[2], "C's clients moved, and only they");
    let listed: Vec<SocketAddr> = tunnel(&handle, local)
        .backends
        .iter()
        .map(|b| b.addr)
        .collect();
    assert_eq!(
        listed,
        [backends[0].addr(), backends[1].addr(), backends[3].addr()],
        "C, removed and without connections, is no longer listed"
    );
}
