//! Failover: a backend that dies, one that never answers, all of them refusing; and active
//! health checks taking a dead backend out and bringing it back when it returns.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use porxy_core::{BackendState, CloseReason};

use super::{exchange, greeters, remotes, start_balanced, tally, wait_backend};
use crate::support::backend::{Refusing, Unanswered};
use crate::support::client::connect_expect_reset;
use crate::support::proxy::{tunnel, wait_tunnel};
use crate::support::{wait_until, Backend};

/// A reset must reach the client this fast: nothing on the way waits for a timer.
const PROMPT: Duration = Duration::from_secs(1);

/// Three backends, two clients making 400 paced exchanges between them; B dies halfway. No
/// client sees a failure: a connect that B refuses moves on to another backend. B is marked
/// down after `max_fails` refused connects, and is not tried again.
///
/// The kill falls between exchanges (it takes a lock that every exchange holds while it runs):
/// no proxy can save a connection already established to a server that dies, so what is under
/// test is that every connection made after the death succeeds.
#[test]
fn a_backend_killed_under_load_costs_the_clients_nothing() {
    const CLIENTS: usize = 2;
    const EACH: usize = 200;
    const PACE: Duration = Duration::from_millis(5);
    const MAX_FAILS: u64 = 2;
    let mut backends: Vec<Option<Backend>> = greeters(3).into_iter().map(Some).collect();
    let addrs: Vec<SocketAddr> = backends.iter().flatten().map(|b| b.addr()).collect();
    let r: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let (proxy, local) = start_balanced(&r, "max_fails=2,fail_timeout=30s");
    let handle = proxy.handle();

    let gate = RwLock::new(());
    let killed = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    // (after the kill?, outcome) of every exchange.
    let outcomes: Vec<(bool, Result<usize, String>)> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = Vec::with_capacity(EACH);
                    for _ in 0..EACH {
                        {
                            let _pass = gate.read().unwrap_or_else(|p| p.into_inner());
                            seen.push((killed.load(Ordering::SeqCst), exchange(local)));
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                        // Pacing a steady load, not waiting for anything.
                        std::thread::sleep(PACE);
                    }
                    seen
                })
            })
            .collect();
        wait_until(Duration::from_secs(30), "half the exchanges", || {
            done.load(Ordering::SeqCst) >= CLIENTS * EACH / 2
        });
        {
            let _stop = gate.write().unwrap_or_else(|p| p.into_inner());
            drop(backends[1].take());
            killed.store(true, Ordering::SeqCst);
        }
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("a client thread"))
            .collect()
    });

    let failures: Vec<&String> = outcomes
        .iter()
        .filter_map(|(_, o)| o.as_ref().err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} exchanges failed, first: {:?}",
        failures.len(),
        outcomes.len(),
        failures.first()
    );
    let mut before = [0; 4];
    let mut after = [0; 4];
    for (late, outcome) in &outcomes {
        let tally = if *late { &mut after } else { &mut before };
        tally[*outcome.as_ref().unwrap()] += 1;
    }
    assert!(before[1] > 0, "B served before it died: {before:?}");
    assert_eq!(after[1], 0, "nobody reached B after it died: {after:?}");
    assert!(
        after[0] + after[2] >= CLIENTS * EACH / 4,
        "a good part of the load ran after the kill: {after:?}"
    );

    let b = wait_backend(&handle, local, addrs[1], "B to be down", |b| {
        b.state == BackendState::Down
    });
    // Each client may have had one connect in flight to B when the last counted failure landed.
    assert!(
        (MAX_FAILS..=MAX_FAILS + CLIENTS as u64).contains(&b.failures),
        "B's failed connects: {b:?}"
    );
    let status = tunnel(&handle, local);
    assert_eq!(
        status.closes.get(CloseReason::ConnectRefused),
        0,
        "no client was reset for a refused connect: {:?}",
        status.closes
    );
    assert_eq!(status.closes.get(CloseReason::NoBackend), 0);
    for other in [addrs[0], addrs[2]] {
        let s = super::backend_status(&handle, local, other);
        assert_eq!((s.state, s.failures), (BackendState::Up, 0), "{s:?}");
    }
}

/// A backend whose connects never complete, with a 200ms connect timeout: every client still
/// succeeds; the ones that tried it first were only slower, and after `max_fails` timeouts it is
/// down and costs nobody anything.
#[test]
fn an_unanswered_backend_only_slows_the_clients_that_try_it() {
    const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
    let backends = greeters(2);
    let unanswered = Unanswered::new();
    let mut r = remotes(&backends);
    r.push(unanswered.addr().to_string());
    let (proxy, local) = start_balanced(&r, "connect_timeout=200ms,max_fails=2,fail_timeout=30s");
    let handle = proxy.handle();

    let mut slow = 0;
    for n in 0..30 {
        let started = Instant::now();
        let reached = exchange(local).unwrap_or_else(|e| panic!("exchange {n}: {e}"));
        let took = started.elapsed();
        assert!(reached < 2, "exchange {n} reached backend {reached}");
        assert!(
            took < CONNECT_TIMEOUT + Duration::from_millis(1500),
            "exchange {n} took {took:?}: more than one connect timeout and a retry"
        );
        if took >= CONNECT_TIMEOUT {
            slow += 1;
        }
    }
    assert!(
        slow >= 2,
        "the two exchanges that tried the unanswered backend waited for its timeout ({slow} slow)"
    );
    let u = wait_backend(&handle, local, unanswered.addr(), "U to be down", |b| {
        b.state == BackendState::Down
    });
    assert_eq!(u.failures, 2, "two timeouts, then no more tries: {u:?}");
    let status = wait_tunnel(&handle, local, "every close counted", |t| {
        t.closes.total() == 30
    });
    assert_eq!(
        status.closes.get(CloseReason::Completed),
        30,
        "no client was reset for the timeouts: {:?}",
        status.closes
    );
}

/// Active checks (`check=tcp`, every 100ms, rise 2, fall 2): a killed backend is marked down by
/// the checks alone, clients are not sent to it, and when a server listens on its address again
/// the checks bring it back up and clients reach it again.
#[test]
fn active_checks_take_a_dead_backend_out_and_bring_it_back() {
    let mut backends: Vec<Option<Backend>> = greeters(3).into_iter().map(Some).collect();
    let addrs: Vec<SocketAddr> = backends.iter().flatten().map(|b| b.addr()).collect();
    let r: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let (proxy, local) = start_balanced(&r, "check=tcp,check_interval=100ms,rise=2,fall=2");
    let handle = proxy.handle();
    assert_eq!(tally(local, 30, 1), [10, 10, 10, 0], "all three serve");

    drop(backends[1].take());
    wait_backend(&handle, local, addrs[1], "the checks to mark B down", |b| {
        b.state == BackendState::Down
    });
    let failures = super::backend_status(&handle, local, addrs[1]).failures;
    let counts = tally(local, 30, 1);
    assert_eq!(counts[1], 0, "while B is down, A and C serve: {counts:?}");
    assert_eq!(counts[0] + counts[2], 30, "{counts:?}");
    assert_eq!(
        super::backend_status(&handle, local, addrs[1]).failures,
        failures,
        "no client connect was tried on B while it was down"
    );

    let _revived = Backend::greeting_echo_at(addrs[1], b"B", Duration::from_secs(5));
    let up_since = Instant::now();
    wait_backend(
        &handle,
        local,
        addrs[1],
        "the checks to bring B back",
        |b| b.state == BackendState::Up,
    );
    // Two good checks 100ms apart (less a little: the first may start as the port opens).
    assert!(
        up_since.elapsed() >= Duration::from_millis(80),
        "B came back after {:?}: after one good check, not two",
        up_since.elapsed()
    );
    assert_eq!(
        tally(local, 30, 1),
        [10, 10, 10, 0],
        "B serves again, its full share"
    );
}

/// Every backend refuses. The first client tries each (attempts default to the number of
/// backends), is reset, and is counted as `connect_refused` (with two failed connect attempts);
/// with `max_fails=1` that marks both
/// down. The next client is reset at once, without any connect, and counted as `no_backend`.
#[test]
fn with_every_backend_refusing_clients_are_reset_promptly() {
    let refusing = [Refusing::new(), Refusing::new()];
    let r: Vec<String> = refusing.iter().map(|b| b.addr().to_string()).collect();
    let (proxy, local) = start_balanced(&r, "max_fails=1");
    let handle = proxy.handle();

    connect_expect_reset(local, PROMPT);
    let status = wait_tunnel(&handle, local, "the refused client counted", |t| {
        t.closes.total() == 1
    });
    assert_eq!(
        status.closes.get(CloseReason::ConnectRefused),
        1,
        "{:?}",
        status.closes
    );
    // One failed connect attempt per backend tried.
    assert_eq!(status.connect_failures, 2);
    for b in &status.backends {
        assert_eq!((b.state, b.failures), (BackendState::Down, 1), "{b:?}");
    }

    connect_expect_reset(local, PROMPT);
    let status = wait_tunnel(&handle, local, "the second client counted", |t| {
        t.closes.total() == 2
    });
    assert_eq!(
        status.closes.get(CloseReason::NoBackend),
        1,
        "{:?}",
        status.closes
    );
    assert_eq!(status.connect_failures, 2, "no connect was tried for it");
    let failures: Vec<u64> = status.backends.iter().map(|b| b.failures).collect();
    assert_eq!(failures, [1, 1]);
}

/// A connect that fails and is retried on another backend is still an upstream connect that
/// failed: the tunnel's `connect_failures` (documented as "upstream connects that failed") counts
/// it, as the backend's `failures` does.
#[test]
fn a_failed_over_connect_counts_in_the_tunnel_connect_failures() {
    let refusing = Refusing::new();
    let b = Backend::greeting_echo(b"B");
    let r = [refusing.addr().to_string(), b.addr().to_string()];
    let (proxy, local) = start_balanced(&r, "");
    let handle = proxy.handle();
    assert_eq!(exchange(local), Ok(1), "refused by the first, served by B");
    let status = wait_tunnel(&handle, local, "the exchange counted", |t| {
        t.closes.total() == 1
    });
    assert_eq!(status.backends[0].failures, 1, "{:?}", status.backends);
    assert_eq!(
        status.connect_failures, 1,
        "the refused connect, in the tunnel's count"
    );
}
