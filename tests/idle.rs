//! The idle timeout closes connections that pass no byte, and only those.

use std::time::{Duration, Instant};

use porxy_core::CloseReason;

use crate::support::client::{closed_when_idle, connect, round_trip};
use crate::support::proxy::{builder, spec_to, start, wait_tunnel};
use crate::support::Backend;

const IDLE: Duration = Duration::from_millis(400);

#[test]
fn idle_connection_is_closed() {
    let echo = Backend::echo();
    let proxy = start(builder().idle_timeout(IDLE).tunnel(spec_to(echo.addr())));
    let local = proxy.bound()[0];
    let after = closed_when_idle(local, IDLE);
    assert!(
        after < Duration::from_secs(3),
        "closed only after {after:?}"
    );
    let status = wait_tunnel(&proxy.handle(), local, "the idle timeout counted", |t| {
        t.closes.get(CloseReason::IdleTimeout) == 1
    });
    assert_eq!(status.closes.total(), 1, "{:?}", status.closes);
}

/// A byte every 100 ms for 1.2 s (three idle timeouts): the connection stays open and echoes
/// every byte.
#[test]
fn active_connection_outlives_idle_timeout() {
    let echo = Backend::echo();
    let proxy = start(builder().idle_timeout(IDLE).tunnel(spec_to(echo.addr())));
    let local = proxy.bound()[0];
    let mut stream = connect(local);
    let start = Instant::now();
    let mut sent = 0u8;
    while start.elapsed() < Duration::from_millis(1200) {
        // Pacing, not synchronisation: the test is about time passing with some traffic.
        std::thread::sleep(Duration::from_millis(100));
        round_trip(&mut stream, &[sent]);
        sent = sent.wrapping_add(1);
    }
    assert!(sent >= 10, "only {sent} bytes went through");
    let status = wait_tunnel(&proxy.handle(), local, "every byte counted", |t| {
        t.bytes_to_upstream == u64::from(sent) && t.bytes_to_client == u64::from(sent)
    });
    assert_eq!(status.open, 1, "the active connection is still open");
    assert_eq!(status.closes.total(), 0, "{:?}", status.closes);
}
