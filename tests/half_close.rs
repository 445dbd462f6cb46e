//! Half-close: a FIN in one direction is passed on while the other direction keeps flowing, and
//! a connection left half-closed too long is ended: after the client's FIN by
//! `client_fin_timeout`, after the upstream's by `server_fin_timeout`, both defaulting to
//! `half_closed_timeout`. The FIN tests run spliced and copied (the proxy-wide `splice` setting).

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use porxy_core::CloseReason;

use crate::support::client::{connect, read_until_end, End, IO_TIMEOUT};
use crate::support::payload::{assert_same, bytes};
use crate::support::proxy::{builder, spec_to, start, wait_tunnel, TestProxy};
use crate::support::Backend;

/// A proxy with the test defaults, `splice` on or off, and one tunnel to `remote`; returns it
/// and the tunnel address.
fn start_spliced_or_not(remote: SocketAddr, splice: bool) -> (TestProxy, SocketAddr) {
    let proxy = start(builder().splice(splice).tunnel(spec_to(remote)));
    let local = proxy.bound()[0];
    (proxy, local)
}

/// The client sends a request and shuts down writing; the backend answers only after that EOF.
/// The whole reply (bigger than the relay buffers) reaches the client, then a clean EOF.
#[test]
fn client_half_close_still_gets_whole_reply_spliced() {
    client_half_close_still_gets_whole_reply(true);
}

#[test]
fn client_half_close_still_gets_whole_reply_copied() {
    client_half_close_still_gets_whole_reply(false);
}

fn client_half_close_still_gets_whole_reply(splice: bool) {
    let backend = Backend::reply_after_eof(|request| {
        // The reply is the request twice: more than any buffer on the way, and easy to check.
        [request, request].concat()
    });
    let (proxy, local) = start_spliced_or_not(backend.addr(), splice);
    let request = bytes(1, 300 * 1024);
    let mut stream = connect(local);
    stream.write_all(&request).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let ending = read_until_end(&mut stream);
    assert_eq!(ending.end, End::Eof);
    assert_same(
        &ending.bytes,
        &[&request[..], &request[..]].concat(),
        "reply",
    );
    let status = wait_tunnel(
        &proxy.handle(),
        local,
        "the connection counted complete",
        |t| t.closes.get(CloseReason::Completed) == 1,
    );
    assert_eq!(status.bytes_to_upstream, request.len() as u64);
    assert_eq!(status.bytes_to_client, 2 * request.len() as u64);
}

/// The backend sends its payload and shuts down writing first. The client gets the payload and
/// an EOF, and can still send: the backend receives every byte, then the client's EOF.
#[test]
fn upstream_half_close_client_still_sends_spliced() {
    upstream_half_close_client_still_sends(true);
}

#[test]
fn upstream_half_close_client_still_sends_copied() {
    upstream_half_close_client_still_sends(false);
}

fn upstream_half_close_client_still_sends(splice: bool) {
    let payload = bytes(2, 200 * 1024);
    let (report, reports) = mpsc::channel();
    let backend = Backend::send_then_read(payload.clone(), report);
    let (proxy, local) = start_spliced_or_not(backend.addr(), splice);
    let mut stream = connect(local);
    let ending = read_until_end(&mut stream);
    assert_eq!(ending.end, End::Eof, "the backend's FIN reaches the client");
    assert_same(&ending.bytes, &payload, "payload from the backend");

    let late = bytes(3, 150 * 1024);
    stream
        .write_all(&late)
        .expect("the client can still write after the EOF");
    stream.shutdown(Shutdown::Write).unwrap();
    let received = reports
        .recv_timeout(IO_TIMEOUT)
        .expect("the backend reports what it read")
        .expect("the backend reads to a clean EOF");
    assert_same(
        &received,
        &late,
        "bytes the backend received after its own FIN",
    );
    let status = wait_tunnel(
        &proxy.handle(),
        local,
        "the connection counted complete",
        |t| t.closes.get(CloseReason::Completed) == 1,
    );
    assert_eq!(status.bytes_to_client, payload.len() as u64);
    assert_eq!(status.bytes_to_upstream, late.len() as u64);
}

/// The client shuts down writing; the backend never answers nor closes. After the half-closed
/// timeout the proxy ends the connection: the client sees an EOF, and the reason is counted.
#[test]
fn half_closed_timeout_ends_connection() {
    let timeout = Duration::from_millis(300);
    let backend = Backend::hold_after_eof();
    let proxy = start(
        builder()
            .half_closed_timeout(timeout)
            .tunnel(spec_to(backend.addr())),
    );
    let local = proxy.bound()[0];
    let after = unanswered_request_then_fin(local);
    assert_half_closed_timeout_fired(&proxy, local, after, timeout);
}

/// The shorter of the two FIN timeouts in the tests below: the one that must not apply.
const WRONG_FIN_TIMEOUT: Duration = Duration::from_millis(100);
/// The FIN timeout that must apply.
const FIN_TIMEOUT: Duration = Duration::from_millis(500);
/// The general half-closed timeout, far off: only a FIN timeout can end these connections.
const HALF_CLOSED_TIMEOUT: Duration = Duration::from_secs(60);

/// The client shuts down writing; the backend neither answers nor closes. `client_fin_timeout`
/// (set on the builder) ends the connection, not the shorter `server_fin_timeout`.
#[test]
fn client_fin_timeout_ends_connection_after_the_clients_fin() {
    let backend = Backend::hold_after_eof();
    let proxy = start(
        builder()
            .half_closed_timeout(HALF_CLOSED_TIMEOUT)
            .client_fin_timeout(FIN_TIMEOUT)
            .server_fin_timeout(WRONG_FIN_TIMEOUT)
            .tunnel(spec_to(backend.addr())),
    );
    let local = proxy.bound()[0];
    let after = unanswered_request_then_fin(local);
    assert_half_closed_timeout_fired(&proxy, local, after, FIN_TIMEOUT);
}

/// The backend sends, shuts down writing and reads on; the client reads to the EOF and stays
/// silent. `server_fin_timeout` (a tunnel option) ends the connection, not the shorter
/// `client_fin_timeout`: the backend then sees the end of the client's stream.
#[test]
fn server_fin_timeout_ends_connection_after_the_upstreams_fin() {
    let payload = bytes(4, 64 * 1024);
    let (report, reports) = mpsc::channel();
    let backend = Backend::send_then_read(payload.clone(), report);
    let spec = format!(
        "127.0.0.1:0={}[client_fin_timeout={}ms,server_fin_timeout={}ms]",
        backend.addr(),
        WRONG_FIN_TIMEOUT.as_millis(),
        FIN_TIMEOUT.as_millis()
    );
    let proxy = start(
        builder()
            .half_closed_timeout(HALF_CLOSED_TIMEOUT)
            .tunnel(spec.parse().unwrap()),
    );
    let local = proxy.bound()[0];
    // Before the connect: the backend's FIN, and so the proxy's clock, can only come later.
    let start = Instant::now();
    let mut stream = connect(local);
    let ending = read_until_end(&mut stream);
    assert_eq!(ending.end, End::Eof, "the backend's FIN reaches the client");
    assert_same(&ending.bytes, &payload, "payload from the backend");
    let received = reports
        .recv_timeout(IO_TIMEOUT)
        .expect("the backend reports what it read")
        .expect("the proxy ends the backend's stream with a clean EOF");
    let after = start.elapsed();
    assert!(received.is_empty(), "the client sent nothing");
    assert_half_closed_timeout_fired(&proxy, local, after, FIN_TIMEOUT);
}

/// Connects to `local`, sends a request no one answers and shuts down writing, then reads to
/// the end, which must be a graceful close; returns how long after the client's FIN it came.
#[track_caller]
fn unanswered_request_then_fin(local: SocketAddr) -> Duration {
    let mut stream = connect(local);
    stream.write_all(b"no answer expected").unwrap();
    let start = Instant::now();
    stream.shutdown(Shutdown::Write).unwrap();
    let ending = read_until_end(&mut stream);
    let after = start.elapsed();
    assert_eq!(
        ending.end,
        End::Eof,
        "the proxy closes the client gracefully"
    );
    after
}

/// The connection through `local` ended `after` its half-closed clock started (at the
/// earliest), by the `timeout` that applies: not before it, not much later, counted as a
/// half-closed timeout and nothing else, and no longer open.
#[track_caller]
fn assert_half_closed_timeout_fired(
    proxy: &TestProxy,
    local: SocketAddr,
    after: Duration,
    timeout: Duration,
) {
    assert!(
        after >= timeout,
        "ended after {after:?}, before the {timeout:?} that applies"
    );
    assert!(after < Duration::from_secs(3), "ended only after {after:?}");
    let status = wait_tunnel(
        &proxy.handle(),
        local,
        "the half-closed timeout counted, and the connection closed",
        |t| t.closes.get(CloseReason::HalfClosedTimeout) == 1 && t.open == 0,
    );
    assert_eq!(status.closes.total(), 1, "{:?}", status.closes);
}
