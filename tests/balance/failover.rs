//! Failover: a backend that dies, one that never answers, all of them refusing; and active
//! health checks taking a dead backend out and bringing it back when it returns.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use porxy_core::{BackendState, CloseReason, Strategy};

use super::{
    backend_status, exchange, exchange_from, exchange_on, greeters, remotes, start_balanced, tally,
    wait_backend,
};
use crate::support::backend::{Ctx, Refusing, Unanswered};
use crate::support::client::{connect, connect_expect_reset, try_connect};
use crate::support::proxy::{assert_all_completed, tunnel, wait_tunnel};
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
    assert_all_completed(&handle, local, 30, "no client was reset for the timeouts");
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

    let b_port = backends[1].take().expect("B").go_down();
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

    // How many good checks that takes is `a_revived_backend_is_used_again_only_after_rise_good_checks`'s
    // business; here, that it comes back at all and serves.
    let _revived = b_port.revive_greeting_echo(b"B");
    wait_backend(
        &handle,
        local,
        addrs[1],
        "the checks to bring B back",
        |b| b.state == BackendState::Up,
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

/// Three of four backends refuse every connect, and `max_fails` is high enough that none is ever
/// marked down, so clients keep meeting them. With the default `attempts` (the number of
/// backends) no client notices, whatever the strategy. `hash` clients come from 20 source IPs,
/// so that some of them rank a dead backend first.
#[test]
fn three_dead_of_four_cost_the_clients_nothing() {
    const CLIENTS: usize = 20;
    let dead = [Refusing::new(), Refusing::new(), Refusing::new()];
    let alive = Backend::greeting_echo(b"D");
    let mut r: Vec<String> = dead.iter().map(|d| d.addr().to_string()).collect();
    r.push(alive.addr().to_string());
    for name in Strategy::NAMES {
        let (proxy, local) = start_balanced(&r, &format!("strategy={name},max_fails=1000"));
        for n in 0..CLIENTS {
            let reached = if *name == "hash" {
                exchange_from(IpAddr::from([127, 0, 0, 10 + n as u8]), local)
            } else {
                exchange(local)
            };
            assert_eq!(reached, Ok(3), "{name}: client {n} reaches D");
        }
        let status = assert_all_completed(&proxy.handle(), local, CLIENTS as u64, name);
        assert!(
            status.connect_failures > 0,
            "{name}: clients met the dead backends on the way ({status:?})"
        );
        for b in &status.backends[..3] {
            assert_eq!(
                b.state,
                BackendState::Up,
                "{name}: never marked down: {b:?}"
            );
        }
    }
}

/// One exchange's times and outcome, for the kill-under-load test.
struct Timed {
    started: Instant,
    ended: Instant,
    outcome: Result<usize, (Option<usize>, String)>,
}

/// Four clients make exchanges back to back, with no pause and no lock around the kill, so B
/// dies while connects to it are in flight. Every exchange that started after B was gone
/// succeeds, on A or C, though B stays in service for 50 refused connects. Of the ones under way when it died, only those already established to
/// B (greeted by B, or not greeted yet) may fail: no proxy can save those.
#[test]
fn a_backend_killed_while_connects_are_in_flight_costs_later_clients_nothing() {
    const CLIENTS: usize = 4;
    const BEFORE: usize = 200;
    const AFTER_EACH: usize = 100;
    let mut backends: Vec<Option<Backend>> = greeters(3).into_iter().map(Some).collect();
    let addrs: Vec<SocketAddr> = backends.iter().flatten().map(|b| b.addr()).collect();
    let r: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    // B keeps being picked (and refusing) for a good while after the kill, so that many
    // clients started after it meet the refusal and must be moved on.
    let (proxy, local) = start_balanced(&r, "max_fails=50,fail_timeout=30s");

    let done = AtomicUsize::new(0);
    // Set once B is gone: when its listener is closed and its connections shut.
    let gone: Mutex<Option<Instant>> = Mutex::new(None);
    let gone_at = || *gone.lock().unwrap_or_else(|p| p.into_inner());
    let (kill_started, runs) = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = Vec::new();
                    let mut after = 0;
                    let give_up = Instant::now() + Duration::from_secs(60);
                    // Bounded in count and time; ends once this client made its share after
                    // the kill.
                    for _ in 0..20_000 {
                        if after == AFTER_EACH || Instant::now() > give_up {
                            break;
                        }
                        let started = Instant::now();
                        let outcome = exchange_on(try_connect(local));
                        let ended = Instant::now();
                        if gone_at().is_some_and(|at| started > at) {
                            after += 1;
                        }
                        seen.push(Timed {
                            started,
                            ended,
                            outcome,
                        });
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    seen
                })
            })
            .collect();
        wait_until(Duration::from_secs(30), "the load to run", || {
            done.load(Ordering::SeqCst) >= BEFORE
        });
        let kill_started = Instant::now();
        drop(backends[1].take());
        *gone.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let runs: Vec<Timed> = clients
            .into_iter()
            .flat_map(|c| c.join().expect("a client thread"))
            .collect();
        (kill_started, runs)
    });
    let gone_at = gone_at().expect("the kill happened");

    let after: Vec<&Timed> = runs.iter().filter(|t| t.started > gone_at).collect();
    assert!(
        after.len() >= CLIENTS * AFTER_EACH,
        "each client made its exchanges after the kill: {}",
        after.len()
    );
    for t in &after {
        match &t.outcome {
            Ok(index) => assert_ne!(*index, 1, "an exchange after the kill reached B"),
            Err(why) => panic!("an exchange started after B was gone failed: {why:?}"),
        }
    }
    let under_way: Vec<&Timed> = runs
        .iter()
        .filter(|t| t.started <= gone_at && t.ended >= kill_started)
        .collect();
    assert!(
        !under_way.is_empty(),
        "the kill landed while exchanges were under way"
    );
    let failed: Vec<&(Option<usize>, String)> = runs
        .iter()
        .filter_map(|t| t.outcome.as_ref().err())
        .collect();
    assert!(
        failed.len() <= CLIENTS,
        "at most one exchange per client was established to B as it died: {failed:?}"
    );
    for (greeted, why) in &failed {
        assert!(
            matches!(greeted, None | Some(1)),
            "a failure on a backend that is alive ({greeted:?}): {why}"
        );
    }
    for t in runs.iter().filter(|t| t.ended < kill_started) {
        assert!(t.outcome.is_ok(), "an exchange before the kill failed");
    }
    let status = tunnel(&proxy.handle(), local);
    assert_eq!(
        status.closes.get(CloseReason::ConnectRefused) + status.closes.get(CloseReason::NoBackend),
        0,
        "no client was reset for B's refused connects: {:?}",
        status.closes
    );
    let b = wait_backend(&proxy.handle(), local, addrs[1], "B to be down", |b| {
        b.state == BackendState::Down
    });
    assert!(b.failures >= 50, "max_fails=50 refused connects: {b:?}");
}

/// How a check-aware backend answers the check `PING\r\n`: by itself, or by handing the
/// connection to the test, which answers when it likes.
type CheckGate = Arc<Mutex<Option<Sender<TcpStream>>>>;

/// A backend that tells a health check from a client by the first 6 bytes: `PING\r\n` is a
/// check, answered `reply` (or handed to the test while `gate` holds a sender); anything else
/// is a client, answered `name`. `checks` counts the checks, `odd` what was neither.
fn check_aware(
    name: &'static [u8],
    reply: &'static [u8],
    gate: CheckGate,
    checks: Arc<AtomicUsize>,
) -> impl Fn(TcpStream, &Ctx) + Send + Sync + 'static {
    move |mut stream, _| {
        let mut first = [0u8; 6];
        if stream.read_exact(&mut first).is_err() {
            return;
        }
        if &first != b"PING\r\n" {
            let _ = stream.write_all(name);
            return;
        }
        checks.fetch_add(1, Ordering::SeqCst);
        let handed = gate.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match handed {
            Some(to_test) => {
                let _ = to_test.send(stream);
            }
            None => {
                let _ = stream.write_all(reply);
            }
        }
    }
}

/// A client of a [`check_aware`] backend: sends 6 bytes first, reads the backend's name.
fn reach_check_aware(local: SocketAddr) -> u8 {
    let mut stream = connect(local);
    stream.write_all(b"HELLO\n").expect("write to the proxy");
    let mut name = [0u8; 1];
    stream.read_exact(&mut name).expect("the backend's name");
    name[0]
}

/// The check options the check-aware tests use, with `rise` and `fall`.
fn send_expect(rise: u32, fall: u32) -> String {
    format!(
        "check=tcp,check_interval=50ms,check_timeout=5s,rise={rise},fall={fall},\
         check_send=PING\\r\\n,check_expect=+PONG"
    )
}

/// `check_send` and `check_expect`: the check sends `PING\r\n`; a backend answering `+PONG`
/// stays up check after check, one answering `-ERR` is marked down after `fall` checks.
#[test]
fn active_check_send_expect_marks_a_wrong_reply_down() {
    let no_gate = || Arc::new(Mutex::new(None));
    let (good_checks, bad_checks) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let good = Backend::start(check_aware(
        b"A",
        b"+PONG\r\n",
        no_gate(),
        good_checks.clone(),
    ));
    let bad = Backend::start(check_aware(
        b"B",
        b"-ERR\r\n",
        no_gate(),
        bad_checks.clone(),
    ));
    let r = [good.addr().to_string(), bad.addr().to_string()];
    let (proxy, local) = start_balanced(&r, &send_expect(1, 2));
    let handle = proxy.handle();

    wait_backend(
        &handle,
        local,
        bad.addr(),
        "B's wrong replies to mark it down",
        |b| b.state == BackendState::Down,
    );
    assert!(
        bad_checks.load(Ordering::SeqCst) >= 2,
        "fall=2: two checks at least"
    );
    let seen = good_checks.load(Ordering::SeqCst);
    wait_until(Duration::from_secs(10), "three more checks of A", || {
        good_checks.load(Ordering::SeqCst) >= seen + 3
    });
    assert_eq!(
        backend_status(&handle, local, good.addr()).state,
        BackendState::Up,
        "A answers +PONG: up after {} checks",
        good_checks.load(Ordering::SeqCst)
    );
    for n in 0..6 {
        assert_eq!(reach_check_aware(local), b'A', "client {n}: B is down");
    }
}

/// `rise`: a backend that comes back is used again only after `rise` (3) good checks in a row.
/// The test answers B's checks itself, one at a time. The checker starts a check of a backend
/// only once it has recorded the one before, so when check N+1 arrives, exactly N good checks
/// are in: after one and after two, B must still be down, whatever the timing.
#[test]
fn a_revived_backend_is_used_again_only_after_rise_good_checks() {
    const RISE: u32 = 3;
    let no_gate = || Arc::new(Mutex::new(None));
    let counter = || Arc::new(AtomicUsize::new(0));
    let a = Backend::start(check_aware(b"A", b"+PONG\r\n", no_gate(), counter()));
    let b = Backend::start(check_aware(b"B", b"+PONG\r\n", no_gate(), counter()));
    let b_addr = b.addr();
    let r = [a.addr().to_string(), b_addr.to_string()];
    let (proxy, local) = start_balanced(&r, &send_expect(RISE, 1));
    let handle = proxy.handle();

    let b_port = b.go_down();
    wait_backend(&handle, local, b_addr, "the checks to mark B down", |s| {
        s.state == BackendState::Down
    });

    let (to_test, checks) = mpsc::channel();
    let gate: CheckGate = Arc::new(Mutex::new(Some(to_test)));
    let _revived = b_port.revive(check_aware(b"B", b"+PONG\r\n", gate.clone(), counter()));
    for n in 1..=RISE {
        let mut check = checks
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("check {n} of the revived B: {e}"));
        let status = backend_status(&handle, local, b_addr);
        assert_eq!(
            status.state,
            BackendState::Down,
            "{} good checks are in, rise={RISE}: {status:?}",
            n - 1
        );
        if n == RISE {
            // From now on B answers its checks itself.
            *gate.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        check.write_all(b"+PONG\r\n").expect("answer the check");
    }
    wait_backend(
        &handle,
        local,
        b_addr,
        "B to be up after rise checks",
        |s| s.state == BackendState::Up,
    );
    let names: Vec<u8> = (0..4).map(|_| reach_check_aware(local)).collect();
    assert_eq!(
        names.iter().filter(|n| **n == b'B').count(),
        2,
        "B takes its turns again: {:?}",
        String::from_utf8_lossy(&names)
    );
}
