//! `max_conns` and the queue: a backend never holds more than its limit; clients beyond it wait
//! up to `queue_timeout` for a slot, and are reset if none frees in time.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use porxy_core::CloseReason;

use super::{backend_status, start_balanced};
use crate::support::backend::Gauge;
use crate::support::client::{connect, read_greeting, round_trip};
use crate::support::proxy::{wait_tunnel, COUNTERS_SETTLE};
use crate::support::Backend;

/// Ten clients at once on a backend with `max_conns=3` and `queue_timeout=300ms`: three are
/// served (and hold on), the backend never sees more than three at a time, and the other seven
/// are reset after the queue timeout, counted as `queue_timeout`.
#[test]
fn max_conns_holds_under_a_burst_and_the_rest_time_out() {
    const QUEUE_TIMEOUT: Duration = Duration::from_millis(300);
    let gauge = Gauge::new();
    let backend = Backend::greeting_echo_gauged(b"A", gauge.clone());
    let (proxy, local) = start_balanced(
        &[backend.addr().to_string()],
        "max_conns=3,queue_timeout=300ms",
    );
    let handle = proxy.handle();

    let burst_at = Instant::now();
    let clients: Vec<(Instant, TcpStream)> =
        (0..10).map(|_| (Instant::now(), connect(local))).collect();
    let mut served = Vec::new();
    let mut waited = Vec::new();
    for (connected_at, mut stream) in clients {
        let mut hello = [0u8; 1];
        match stream.read(&mut hello) {
            Ok(1) => {
                assert_eq!(&hello, b"A");
                served.push(stream);
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                waited.push(connected_at.elapsed());
            }
            other => panic!("expected a greeting or a reset, got {other:?}"),
        }
    }
    assert_eq!((served.len(), waited.len()), (3, 7), "served, reset");
    for after in &waited {
        assert!(
            *after >= QUEUE_TIMEOUT,
            "a queued client was reset after {after:?}, before the queue timeout"
        );
    }
    let all_done = burst_at.elapsed();
    assert!(
        all_done < QUEUE_TIMEOUT + Duration::from_millis(1500),
        "the last reset came {all_done:?} after the burst"
    );
    assert_eq!(
        (gauge.now(), gauge.max()),
        (3, 3),
        "connections the backend holds, and the most it held at once"
    );
    assert_eq!(backend.accepted(), 3);
    let status = wait_tunnel(&handle, local, "the queue timeouts counted", |t| {
        t.closes.total() == 7
    });
    assert_eq!(
        status.closes.get(CloseReason::QueueTimeout),
        7,
        "{:?}",
        status.closes
    );
    assert_eq!(backend_status(&handle, local, backend.addr()).open, 3);
    for mut stream in served {
        round_trip(&mut stream, b"the served ones still relay");
    }
}

/// With `max_conns=1`, a second client waits in the queue; when the first leaves within the
/// queue time, the waiting client gets the slot and is served.
#[test]
fn a_queued_client_gets_a_slot_freed_in_time() {
    let gauge = Gauge::new();
    let backend = Backend::greeting_echo_gauged(b"A", gauge.clone());
    let (proxy, local) = start_balanced(
        &[backend.addr().to_string()],
        "max_conns=1,queue_timeout=5s",
    );
    let handle = proxy.handle();
    let mut first = connect(local);
    assert_eq!(read_greeting(&mut first), b'A');
    let mut second = connect(local);
    wait_tunnel(&handle, local, "the second client to be queued", |t| {
        t.open == 2
    });
    assert_eq!(
        backend.accepted(),
        1,
        "the second client waits in the proxy"
    );

    let freed_at = Instant::now();
    drop(first);
    assert_eq!(read_greeting(&mut second), b'A');
    assert!(
        freed_at.elapsed() < COUNTERS_SETTLE,
        "served {:?} after the slot freed",
        freed_at.elapsed()
    );
    round_trip(&mut second, b"served after waiting");
    assert_eq!(gauge.max(), 1, "the backend never held two at once");
    let status = wait_tunnel(&handle, local, "the first close counted", |t| {
        t.closes.total() == 1
    });
    assert_eq!(status.closes.get(CloseReason::QueueTimeout), 0);
    assert_eq!(status.closes.get(CloseReason::Completed), 1);
}
