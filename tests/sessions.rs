//! The library's handover API between two proxies in one process: `export_sessions` on a
//! stopping proxy, `import_sessions` on another, the connection going on unbroken.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use porxy_core::{Error, StopMode, TunnelSpec};

use crate::support::client::{connect, read_until_end, round_trip, End};
use crate::support::fanout::{
    collector, echoing_primary, fanout_spec, fanout_spec_on, recv, Digest,
};
use crate::support::payload::{assert_same, bytes};
use crate::support::proxy::{builder, spec_to, start, start_to, TestProxy};
use crate::support::Backend;

/// How long the first proxy's reactors may take to let connections connecting go.
const SETTLE: Duration = Duration::from_secs(1);
/// Longest the drain of the first proxy may take.
const DRAIN: Duration = Duration::from_secs(30);

/// A connection moved to a proxy that has no tunnel on its address goes on, detached, to the
/// backend it had; the first proxy then has nothing left and stops at once, cutting nothing.
#[test]
fn a_session_goes_on_detached_in_a_proxy_without_its_tunnel() {
    let backend = Backend::echo();
    let (first, local) = start_to(backend.addr());
    let second = start(builder().tunnel(spec_to(backend.addr())));
    let mut client = connect(local);
    round_trip(&mut client, b"through the first proxy");

    let err = first.handle().export_sessions(SETTLE).unwrap_err();
    assert!(matches!(err, Error::NotStopping), "{err}");
    first.handle().stop(StopMode::Graceful { timeout: DRAIN });
    let mut export = first.handle().export_sessions(SETTLE).unwrap();
    let sessions = export.next_batch(10);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(
        (
            sessions[0].tunnel(),
            sessions[0].backend(),
            sessions[0].buffered()
        ),
        (local, Some(backend.addr()), 0)
    );
    assert!(export.next_batch(10).is_empty(), "the export is over");

    let report = second.handle().import_sessions(sessions).unwrap();
    assert_eq!(
        (report.matched, report.detached, report.reset),
        (0, 1, 0),
        "{report:?}"
    );
    drop(export);
    let first_report = first.join_within(Duration::from_secs(10));
    assert_eq!(
        first_report.cut, 0,
        "the first proxy had nothing left to cut"
    );

    round_trip(&mut client, b"through the second proxy");
    assert_eq!(second.handle().status().open_connections(), 1);
    client.shutdown(Shutdown::Write).unwrap();
    let ending = read_until_end(&mut client);
    assert_eq!(ending.end, End::Eof, "{ending:?}");
    assert_eq!(backend.accepted(), 1, "one upstream connection all along");
}

/// One exchange ("before") on `client`, a graceful stop of `proxy`, its one session exported
/// and given back to it (a handover that failed), then a second exchange ("after") and a clean
/// end: the connection went on in its own tunnel.
#[track_caller]
fn give_back_after_a_stop(proxy: &TestProxy, client: &mut TcpStream) {
    round_trip(client, b"before");
    proxy.handle().stop(StopMode::Graceful { timeout: DRAIN });
    let mut export = proxy.handle().export_sessions(SETTLE).unwrap();
    let sessions = export.next_batch(10);
    assert_eq!(sessions.len(), 1);
    let report = proxy.handle().import_sessions(sessions).unwrap();
    assert_eq!(report.matched, 1, "{report:?}");
    drop(export);
    round_trip(client, b"after");
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_end(client).end, End::Eof);
}

/// Sessions given back to the proxy they came from (a handover that failed) go on in their own
/// tunnel, even though the stop has emptied the tunnel table.
#[test]
fn a_session_given_back_returns_to_its_own_tunnel() {
    let backend = Backend::echo();
    let (proxy, local) = start_to(backend.addr());
    let mut client = connect(local);
    give_back_after_a_stop(&proxy, &mut client);
    assert_eq!(proxy.join_within(Duration::from_secs(10)).cut, 0);
}

/// A fan-out connection moves with both destinations' sockets to a proxy without its tunnel,
/// and goes on there, detached: each destination gets the whole stream once, the client the
/// primary's whole echo, and the first proxy has nothing left to cut.
#[test]
fn a_fanout_session_goes_on_detached_with_every_destination() {
    let (primary, primary_rx) = echoing_primary();
    let (mirror, mirror_rx) = collector(b"mirror chatter, never seen by the client");
    let spec = fanout_spec(&[primary.addr(), mirror.addr()], "");
    let first = start(builder().tunnel(spec));
    let local = first.bound()[0];
    let second = start(builder().tunnel(spec_to(primary.addr())));
    let before = bytes(31, 100_000);
    let after = bytes(32, 100_000);
    let mut client = connect(local);
    client.write_all(&before).unwrap();
    let mut echo = vec![0u8; before.len()];
    std::io::Read::read_exact(&mut client, &mut echo).unwrap();
    assert_same(&echo, &before, "the echo before the move");

    first.handle().stop(StopMode::Graceful { timeout: DRAIN });
    let mut export = first.handle().export_sessions(SETTLE).unwrap();
    let sessions = export.next_batch(10);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(sessions[0].is_fanout());
    assert_eq!(sessions[0].destinations(), [primary.addr(), mirror.addr()]);
    let report = second.handle().import_sessions(sessions).unwrap();
    assert_eq!(report.detached, 1, "{report:?}");
    drop(export);
    assert_eq!(first.join_within(Duration::from_secs(10)).cut, 0);

    client.write_all(&after).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let ending = read_until_end(&mut client);
    assert_eq!(ending.end, End::Eof, "{ending:?}");
    assert_same(&ending.bytes, &after, "the echo after the move");
    let whole = Digest::of(&[before, after].concat());
    assert_eq!(recv(&primary_rx, "the primary"), Ok(whole));
    assert_eq!(recv(&mirror_rx, "the mirror"), Ok(whole));
    assert_eq!((primary.accepted(), mirror.accepted()), (1, 1));
}

/// A fan-out session given back to its own proxy (a handover that failed) goes on in its own
/// tunnel, with both destinations.
#[test]
fn a_fanout_session_given_back_returns_to_its_own_tunnel() {
    let (primary, primary_rx) = echoing_primary();
    let (mirror, mirror_rx) = collector(b"");
    let spec = fanout_spec(&[primary.addr(), mirror.addr()], "");
    let proxy = start(builder().tunnel(spec));
    let local = proxy.bound()[0];
    let mut client = connect(local);
    give_back_after_a_stop(&proxy, &mut client);
    let whole = Digest::of(b"beforeafter");
    assert_eq!(recv(&primary_rx, "the primary"), Ok(whole));
    assert_eq!(recv(&mirror_rx, "the mirror"), Ok(whole));
    assert_eq!(proxy.join_within(Duration::from_secs(10)).cut, 0);
}

/// A client still waiting for a backend slot when its tunnel becomes a fan-out one across the
/// move is copied to every destination in the new proxy, as a new client of that tunnel would
/// be.
#[test]
fn a_waiting_client_moved_into_a_fanout_tunnel_reaches_every_destination() {
    let (primary, primary_rx) = echoing_primary();
    let (mirror, mirror_rx) = collector(b"");
    // The first proxy: one backend, one connection at a time, so a second client waits.
    let full: TunnelSpec = format!("127.0.0.1:0={}[max_conns=1]", primary.addr())
        .parse()
        .unwrap();
    let first = start(builder().tunnel(full));
    let local = first.bound()[0];
    let mut holder = connect(local);
    round_trip(&mut holder, b"holding the only slot");
    let mut waiting = connect(local);
    crate::support::wait_until(SETTLE, "the second client to wait for a slot", || {
        first.handle().status().open_connections() == 2
    });

    first.handle().stop(StopMode::Graceful { timeout: DRAIN });
    let spec = fanout_spec_on(local, &[primary.addr(), mirror.addr()], "");
    // Once the first proxy's listening socket is closed, the second binds the same address.
    crate::support::wait_until(SETTLE, "the first proxy to stop listening", || {
        std::net::TcpListener::bind(local).is_ok()
    });
    let second = start(builder().tunnel(spec));
    let mut export = first.handle().export_sessions(SETTLE).unwrap();
    // The two reactors send theirs each in its own time: take batches until the export ends.
    let mut sessions = Vec::new();
    for _ in 0..10 {
        let batch = export.next_batch(10);
        if batch.is_empty() {
            break;
        }
        sessions.extend(batch);
    }
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let report = second.handle().import_sessions(sessions).unwrap();
    assert_eq!(report.matched, 2, "{report:?}");
    drop(export);
    assert_eq!(first.join_within(Duration::from_secs(10)).cut, 0);

    let payload = bytes(41, 50_000);
    waiting.write_all(&payload).unwrap();
    waiting.shutdown(Shutdown::Write).unwrap();
    let ending = read_until_end(&mut waiting);
    assert_eq!(ending.end, End::Eof, "{ending:?}");
    assert_same(&ending.bytes, &payload, "the primary's echo");
    assert_eq!(recv(&mirror_rx, "the mirror"), Ok(Digest::of(&payload)));
    holder.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_end(&mut holder).end, End::Eof);
    // The primary saw the holder's stream and the moved client's.
    let mut got = [
        recv(&primary_rx, "the primary").unwrap(),
        recv(&primary_rx, "the primary").unwrap(),
    ];
    got.sort();
    let mut want = [Digest::of(b"holding the only slot"), Digest::of(&payload)];
    want.sort();
    assert_eq!(got, want);
}
