//! Stopping: a graceful stop drains, a drain deadline cuts, an immediate stop resets.

use std::net::Shutdown;
use std::time::{Duration, Instant};

use porxy_core::StopMode;

use crate::support::client::{connect, expect_reset, read_until_end, refused, round_trip, End};
use crate::support::proxy::start_to;
use crate::support::{wait_until, Backend};

/// How soon after `stop` the listening sockets must be closed.
const LISTENERS_CLOSE: Duration = Duration::from_millis(500);

#[test]
fn graceful_stop_lets_open_connection_finish() {
    let echo = Backend::echo();
    let (proxy, local) = start_to(echo.addr());
    let handle = proxy.handle();
    let mut stream = connect(local);
    round_trip(&mut stream, b"before the stop");

    handle.stop(StopMode::Graceful {
        timeout: Duration::from_secs(20),
    });
    assert!(handle.status().stopping);
    wait_until(LISTENERS_CLOSE, "new connections to be refused", || {
        refused(local)
    });
    round_trip(&mut stream, b"during the drain");
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_end(&mut stream).end, End::Eof);
    let report = proxy.join_within(Duration::from_secs(5));
    assert_eq!(report.cut, 0, "the connection finished by itself");
}

#[test]
fn graceful_stop_cuts_after_timeout() {
    let echo = Backend::echo();
    let (proxy, local) = start_to(echo.addr());
    let mut stream = connect(local);
    round_trip(&mut stream, b"and then it never ends");

    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    proxy.handle().stop(StopMode::Graceful { timeout });
    let report = proxy.join_within(Duration::from_secs(5));
    let after = start.elapsed();
    assert_eq!(report.cut, 1);
    assert!(
        after >= timeout,
        "cut after {after:?}, before the {timeout:?} drain"
    );
    expect_reset(&mut stream, Duration::from_secs(1));
}

#[test]
fn stop_now_resets_open_connections() {
    let echo = Backend::echo();
    let (proxy, local) = start_to(echo.addr());
    let mut streams = [connect(local), connect(local)];
    for stream in &mut streams {
        round_trip(stream, b"open");
    }
    proxy.handle().stop(StopMode::Now);
    let report = proxy.join_within(Duration::from_secs(5));
    assert_eq!(report.cut, 2);
    for stream in &mut streams {
        expect_reset(stream, Duration::from_secs(1));
    }
    assert!(refused(local));
}

/// `Now` after `Graceful` cuts the drain short.
#[test]
fn stop_now_shortens_a_graceful_drain() {
    let echo = Backend::echo();
    let (proxy, local) = start_to(echo.addr());
    let mut stream = connect(local);
    round_trip(&mut stream, b"open");
    let handle = proxy.handle();
    handle.stop(StopMode::Graceful {
        timeout: Duration::from_secs(60),
    });
    handle.stop(StopMode::Now);
    let report = proxy.join_within(Duration::from_secs(5));
    assert_eq!(report.cut, 1);
    expect_reset(&mut stream, Duration::from_secs(1));
}

/// Every reactor answers a liveness probe while the proxy runs, busy or idle; none does once
/// the proxy has stopped (a watchdog stops its pings then).
#[test]
fn reactors_answer_while_running_and_not_once_stopped() {
    let backend = Backend::echo();
    let (proxy, local) = start_to(backend.addr());
    let handle = proxy.handle();
    assert_eq!(
        handle.unresponsive_reactors(Duration::from_secs(5)),
        Vec::<usize>::new()
    );
    let mut client = connect(local);
    round_trip(&mut client, b"busy");
    assert_eq!(
        handle.unresponsive_reactors(Duration::from_secs(5)),
        Vec::<usize>::new()
    );
    drop(client);
    handle.stop(StopMode::Now);
    proxy.join_within(Duration::from_secs(5));
    assert_eq!(
        handle.unresponsive_reactors(Duration::from_millis(100)),
        vec![0, 1],
        "two reactors, both ended"
    );
}
