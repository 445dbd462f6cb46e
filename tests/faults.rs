//! Faults: refused, unanswered and resetting upstreams, and clients that die. Each peer sees what
//! it would see without the proxy, the reason is counted, and the proxy goes on relaying.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use porxy_core::{CloseReason, ProxyHandle};

use crate::support::backend::{Refusing, Unanswered};
use crate::support::client::{
    abort, connect, connect_expect_reset, expect_reset, round_trip, IO_TIMEOUT,
};
use crate::support::payload::bytes;
use crate::support::proxy::{builder, spec_to, start, wait_tunnel};
use crate::support::Backend;

/// A reset must reach the peer this fast: nothing on the way waits for a timer.
const PROMPT: Duration = Duration::from_secs(1);

/// After a fault, a fresh connection through the proxy still relays 64 KiB exactly.
fn still_relays(local: SocketAddr) {
    let mut stream = connect(local);
    round_trip(&mut stream, &bytes(99, 64 * 1024));
}

/// Opens a second tunnel, to an echo, on a running proxy.
fn open_echo_tunnel(handle: &ProxyHandle, echo: &Backend) -> SocketAddr {
    handle.open(&spec_to(echo.addr())).unwrap().local
}

#[test]
fn refused_upstream_resets_client() {
    let refusing = Refusing::new();
    let echo = Backend::echo();
    let proxy = start(builder().tunnel(spec_to(refusing.addr())));
    let handle = proxy.handle();
    let local = proxy.bound()[0];

    connect_expect_reset(local, PROMPT);
    let status = wait_tunnel(&handle, local, "the refused connect counted", |t| {
        t.closes.get(CloseReason::ConnectRefused) == 1
    });
    assert_eq!(status.connect_failures, 1);
    assert_eq!(status.closes.total(), 1, "{:?}", status.closes);
    assert_eq!(status.open, 0);

    still_relays(open_echo_tunnel(&handle, &echo));
}

#[test]
fn unanswered_upstream_times_out() {
    let timeout = Duration::from_millis(300);
    let unanswered = Unanswered::new();
    let echo = Backend::echo();
    let proxy = start(
        builder()
            .connect_timeout(timeout)
            .tunnel(spec_to(unanswered.addr())),
    );
    let handle = proxy.handle();
    let local = proxy.bound()[0];

    let start = Instant::now();
    let mut stream = connect(local);
    expect_reset(&mut stream, Duration::from_secs(3));
    let after = start.elapsed();
    assert!(
        after >= timeout,
        "reset after {after:?}, before the {timeout:?} timeout"
    );
    let status = wait_tunnel(&handle, local, "the connect timeout counted", |t| {
        t.closes.get(CloseReason::ConnectTimeout) == 1
    });
    assert_eq!(status.connect_failures, 1);
    assert_eq!(status.closes.total(), 1, "{:?}", status.closes);

    still_relays(open_echo_tunnel(&handle, &echo));
}

/// The backend reads a little, then resets: the client sees a reset too, at once.
#[test]
fn upstream_reset_mid_stream_resets_client() {
    let (report, reports) = mpsc::channel();
    let resetting = Backend::reset_after(1000, report);
    let echo = Backend::echo();
    let proxy = start(builder().tunnel(spec_to(resetting.addr())));
    let handle = proxy.handle();
    let local = proxy.bound()[0];

    let mut stream = connect(local);
    let sent = bytes(4, 1000);
    stream.write_all(&sent).unwrap();
    let got = reports
        .recv_timeout(IO_TIMEOUT)
        .expect("the backend read its bytes");
    assert_eq!(got, sent, "the bytes before the fault arrived intact");
    expect_reset(&mut stream, PROMPT);
    let status = wait_tunnel(&handle, local, "the upstream reset counted", |t| {
        t.closes.get(CloseReason::UpstreamReset) == 1
    });
    assert_eq!(status.closes.total(), 1, "{:?}", status.closes);
    assert_eq!(status.connect_failures, 0);
    assert_eq!(status.bytes_to_upstream, 1000);

    still_relays(open_echo_tunnel(&handle, &echo));
}

/// The client resets mid-stream: the backend's read fails with a reset, at once.
#[test]
fn client_reset_mid_stream_resets_upstream() {
    let (report, reports) = mpsc::channel();
    let echo = Backend::echo_reporting(report);
    let proxy = start(builder().tunnel(spec_to(echo.addr())));
    let handle = proxy.handle();
    let local = proxy.bound()[0];

    let mut stream = connect(local);
    round_trip(&mut stream, &bytes(5, 10_000));
    let start = Instant::now();
    abort(stream);
    let end = reports
        .recv_timeout(IO_TIMEOUT)
        .expect("the backend's connection ends");
    let after = start.elapsed();
    assert_eq!(
        end,
        Err(std::io::ErrorKind::ConnectionReset),
        "the backend sees the reset"
    );
    assert!(
        after < PROMPT,
        "the backend saw the reset only after {after:?}"
    );
    let status = wait_tunnel(&handle, local, "the client reset counted", |t| {
        t.closes.get(CloseReason::ClientReset) == 1
    });
    assert_eq!(status.closes.total(), 1, "{:?}", status.closes);

    still_relays(local);
    let end = reports
        .recv_timeout(IO_TIMEOUT)
        .expect("the second connection ends");
    assert_eq!(
        end,
        Ok(64 * 1024),
        "the second connection echoed everything, then ended"
    );
}
