//! Fan-out tunnels (`mode=fanout`): every client connection copied to every remote.
//!
//! Destinations here are collectors ([`crate::support::fanout`]): they read each connection to
//! its end and report a digest of what they got, so a test compares exact byte streams without
//! keeping them.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::mpsc::channel;
use std::time::Duration;

use porxy_core::{BackendChange, BackendStatus, CloseReason, TunnelStatus};

use crate::support::backend::{Backend, Refusing, Unanswered};
use crate::support::client::{connect, connect_expect_reset, read_until_end, End};
use crate::support::control::{field, porxy_with_control, ControlClient};
use crate::support::fanout::Reports;
use crate::support::fanout::{
    collector, counting_collector, echoing_primary, exchange, fanout_spec, recv, Digest,
    REPORT_WAIT,
};
use crate::support::payload::bytes;
use crate::support::process::Porxy;
use crate::support::proxy::{builder, start, tunnel, wait_all_closed, COUNTERS_SETTLE};
use crate::support::{wait_for, wait_until};

/// Sends `data` from a thread (then FIN) while this one reads the replies to their end.
fn backend_status(status: &TunnelStatus, addr: SocketAddr) -> BackendStatus {
    *status
        .backends
        .iter()
        .find(|b| b.addr == addr)
        .expect("the destination is in the tunnel's status")
}

/// The headline: four clients at once, three destinations; every destination gets every
/// client's exact stream, and each client gets the primary's echo, byte for byte, and nothing
/// of the mirrors' chatter.
#[test]
fn every_destination_receives_every_client_stream_exactly() {
    let (primary, primary_rx) = echoing_primary();
    let (mirror_a, a_rx) = collector(b"mirror A says hello");
    let (mirror_b, b_rx) = collector(b"");
    let remotes = [primary.addr(), mirror_a.addr(), mirror_b.addr()];
    let proxy = start(builder().tunnel(fanout_spec(&remotes, "")));
    let local = proxy.bound()[0];

    let payloads: Vec<Vec<u8>> = (0..4).map(|i| bytes(100 + i, 1 << 20)).collect();
    let mut sent: Vec<Digest> = payloads.iter().map(|p| Digest::of(p)).collect();
    let clients: Vec<_> = payloads
        .iter()
        .map(|p| (exchange(local, p.clone()), p))
        .collect();
    for ((sender, mut stream), payload) in clients {
        let ending = read_until_end(&mut stream);
        sender.join().expect("the sender thread");
        assert_eq!(ending.end, End::Eof);
        assert!(
            ending.bytes == *payload,
            "the client got the primary's exact echo ({} of {} bytes)",
            ending.bytes.len(),
            payload.len()
        );
    }
    sent.sort();
    for (who, rx) in [
        ("primary", &primary_rx),
        ("mirror A", &a_rx),
        ("mirror B", &b_rx),
    ] {
        let mut got: Vec<Digest> = (0..4).map(|_| recv(rx, who).expect(who)).collect();
        got.sort();
        assert_eq!(got, sent, "{who} got every client's exact stream");
    }
    wait_all_closed(&proxy.handle());
    let status = tunnel(&proxy.handle(), local);
    assert_eq!(status.closes.get(CloseReason::Completed), 4, "{status:?}");
    let total: u64 = payloads.iter().map(|p| p.len() as u64).sum();
    assert_eq!(status.bytes_to_upstream, total, "client bytes counted once");
    assert_eq!(status.bytes_to_client, total, "the primary's replies");
    for addr in remotes {
        assert_eq!(backend_status(&status, addr).bytes_sent, total, "{addr}");
    }
}

/// A destination that dies mid-stream (it resets after 64 KiB) leaves the client and the other
/// destinations untouched.
#[test]
fn a_destination_that_dies_leaves_the_rest_untouched() {
    let (primary, primary_rx) = echoing_primary();
    let (mirror, mirror_rx) = collector(b"");
    let (died_tx, died_rx) = channel();
    let dying = Backend::reset_after(64 * 1024, died_tx);
    let remotes = [primary.addr(), dying.addr(), mirror.addr()];
    // More than the payload: however busy the machine, the good mirror is never dropped.
    let proxy = start(builder().tunnel(fanout_spec(&remotes, "max_lag=8MiB")));
    let local = proxy.bound()[0];

    let payload = bytes(7, 4 << 20);
    let (sender, mut stream) = exchange(local, payload.clone());
    let ending = read_until_end(&mut stream);
    sender.join().expect("the sender thread");
    assert_eq!(ending.end, End::Eof);
    assert!(ending.bytes == payload, "the client's echo is whole");
    died_rx
        .recv_timeout(REPORT_WAIT)
        .expect("the dying destination got its 64 KiB");
    let whole = Digest::of(&payload);
    assert_eq!(recv(&primary_rx, "primary"), Ok(whole));
    assert_eq!(recv(&mirror_rx, "the other mirror"), Ok(whole));
    wait_all_closed(&proxy.handle());
    let status = tunnel(&proxy.handle(), local);
    assert_eq!(status.closes.get(CloseReason::Completed), 1, "{status:?}");
}

/// A destination that stops reading is dropped once `max_lag` behind; the client and the other
/// destinations get everything, and the drop is counted on that destination.
///
/// The client sends in rounds, each echoed back whole and read whole by the good mirror before
/// the next: a busy machine cannot then make the good mirror look behind, while the stalled one
/// falls further behind with every round.
#[test]
fn a_stalled_destination_is_dropped_past_max_lag() {
    const ROUND: usize = 1 << 20;
    const ROUNDS: usize = 16;
    let (primary, primary_rx) = echoing_primary();
    let (mirror, mirror_rx, mirror_read) = counting_collector();
    let stalled = Backend::start(|stream, ctx| {
        // Accepts and never reads: its receive buffer, then the proxy's send buffer, fill up.
        let _ = socket2::SockRef::from(&stream).set_recv_buffer_size(4096);
        ctx.hold();
    });
    let remotes = [primary.addr(), mirror.addr(), stalled.addr()];
    let proxy = start(builder().tunnel(fanout_spec(&remotes, "max_lag=2MiB")));
    let local = proxy.bound()[0];

    let payload = bytes(9, ROUND * ROUNDS);
    let mut stream = connect(local);
    for (i, round) in payload.chunks(ROUND).enumerate() {
        stream.write_all(round).expect("send a round");
        let mut echo = vec![0u8; round.len()];
        stream.read_exact(&mut echo).expect("read the round's echo");
        assert!(echo == round, "round {i} echoed whole");
        let sent = ((i + 1) * ROUND) as u64;
        wait_until(REPORT_WAIT, "the good mirror to read the round", || {
            mirror_read.load(Ordering::SeqCst) >= sent
        });
    }
    stream.shutdown(Shutdown::Write).expect("FIN to the proxy");
    assert_eq!(read_until_end(&mut stream).end, End::Eof);
    let whole = Digest::of(&payload);
    assert_eq!(recv(&primary_rx, "primary"), Ok(whole));
    assert_eq!(recv(&mirror_rx, "mirror"), Ok(whole));
    let status = wait_for(
        COUNTERS_SETTLE,
        "the stalled destination's drop to be counted",
        || tunnel(&proxy.handle(), local),
        |s| backend_status(s, stalled.addr()).lag_drops == 1,
    );
    let dropped = backend_status(&status, stalled.addr());
    assert!(
        dropped.bytes_sent < payload.len() as u64,
        "the stalled one got only part: {dropped:?}"
    );
    assert_eq!(backend_status(&status, mirror.addr()).lag_drops, 0);
}

/// `reply=none`: a one-way feed. Nothing any destination says reaches the client; the client
/// hears FIN once every destination has finished.
#[test]
fn a_one_way_feed_discards_every_reply() {
    let (a, a_rx) = collector(b"ignored reply from A");
    let (b, b_rx) = collector(b"ignored reply from B");
    let proxy = start(builder().tunnel(fanout_spec(&[a.addr(), b.addr()], "reply=none")));
    let local = proxy.bound()[0];

    let payload = bytes(11, 300_000);
    let (sender, mut stream) = exchange(local, payload.clone());
    let ending = read_until_end(&mut stream);
    sender.join().expect("the sender thread");
    assert_eq!(ending.end, End::Eof);
    assert!(ending.bytes.is_empty(), "got {} bytes", ending.bytes.len());
    let whole = Digest::of(&payload);
    assert_eq!(recv(&a_rx, "A"), Ok(whole));
    assert_eq!(recv(&b_rx, "B"), Ok(whole));
}

/// A mirror that refuses connections is counted as a connect failure; the client and the
/// primary do not notice.
#[test]
fn a_refusing_mirror_is_counted_and_skipped() {
    let (primary, primary_rx) = echoing_primary();
    let refusing = Refusing::new();
    let proxy = start(builder().tunnel(fanout_spec(&[primary.addr(), refusing.addr()], "")));
    let local = proxy.bound()[0];

    for seed in 0..3 {
        let payload = bytes(seed, 10_000);
        let (sender, mut stream) = exchange(local, payload.clone());
        let ending = read_until_end(&mut stream);
        sender.join().expect("the sender thread");
        assert!(ending.bytes == payload, "echo {seed} is whole");
        assert_eq!(recv(&primary_rx, "primary"), Ok(Digest::of(&payload)));
    }
    wait_all_closed(&proxy.handle());
    let status = tunnel(&proxy.handle(), local);
    assert_eq!(status.closes.get(CloseReason::Completed), 3, "{status:?}");
    let refused = backend_status(&status, refusing.addr());
    assert!(refused.failures >= 1, "{refused:?}");
    assert_eq!(status.connect_failures, refused.failures);
}

/// The primary refusing resets the client at once, as a plain tunnel would.
#[test]
fn a_refusing_primary_resets_the_client() {
    let refusing = Refusing::new();
    let (mirror, _mirror_rx) = collector(b"");
    let proxy = start(builder().tunnel(fanout_spec(&[refusing.addr(), mirror.addr()], "")));
    let local = proxy.bound()[0];
    // The reset may come so fast that the connect itself reports it (reactors that accept
    // take the client and fail its primary's connect within microseconds).
    connect_expect_reset(local, Duration::from_secs(5));
    wait_all_closed(&proxy.handle());
    let status = tunnel(&proxy.handle(), local);
    assert_eq!(
        status.closes.get(CloseReason::ConnectRefused),
        1,
        "{status:?}"
    );
}

/// With `min_live=2` and one of the two destinations disabled, no connection can start: the
/// client is reset at once and the close is counted as `no_backend`.
#[test]
fn too_few_live_destinations_reset_the_client() {
    let (primary, _primary_rx) = collector(b"");
    let (mirror, _mirror_rx) = collector(b"");
    let proxy =
        start(builder().tunnel(fanout_spec(&[primary.addr(), mirror.addr()], "min_live=2")));
    let local = proxy.bound()[0];
    proxy
        .handle()
        .change_backend(local, mirror.addr(), BackendChange::Disable)
        .unwrap();
    connect_expect_reset(local, Duration::from_secs(5));
    wait_all_closed(&proxy.handle());
    let status = tunnel(&proxy.handle(), local);
    assert_eq!(status.closes.get(CloseReason::NoBackend), 1, "{status:?}");
    assert_eq!(status.closes.total(), 1, "{status:?}");
}

/// The `porxy` binary with a one-way feed to a collector and to a destination that never
/// reads: however much the clients stream, porxy's memory stays within `max_lag` per
/// connection (plus its buffer pools), and `STATUS FULL` shows each destination's bytes and
/// the drops.
/// A porxy (with a control socket) whose tunnel `cli-1` copies every client to a collector and
/// to a destination that never reads, `reply=none`, `max_lag` of `max_lag_kib`.
fn past_a_stalled_mirror(max_lag_kib: u64) -> (Backend, Reports, Backend, Porxy, SocketAddr) {
    let (collector, collector_rx) = collector(b"");
    let stalled = Backend::start(|stream, ctx| {
        let _ = socket2::SockRef::from(&stream).set_recv_buffer_size(4096);
        ctx.hold();
    });
    let spec = format!(
        "127.0.0.1:0={},{}[mode=fanout,reply=none,max_lag={max_lag_kib}KiB]",
        collector.addr(),
        stalled.addr()
    );
    let (porxy, control) = porxy_with_control(&["--tunnel", &spec]);
    (collector, collector_rx, stalled, porxy, control)
}

#[test]
fn memory_stays_bounded_with_a_stalled_destination() {
    const CLIENTS: usize = 4;
    const STREAM: usize = 32 << 20;
    const MAX_LAG_KIB: u64 = 1024;
    // Two reactors' pools of free buffers (8 MiB each), and room for the allocator.
    const SLACK_KIB: u64 = 2 * 8 * 1024 + 6 * 1024;
    let (collector, collector_rx, stalled, porxy, control) = past_a_stalled_mirror(MAX_LAG_KIB);
    let local = porxy.tunnel("cli-1");
    let baseline = porxy.rss_kib();

    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let payload = bytes(50 + i as u64, STREAM);
            let digest = Digest::of(&payload);
            (exchange(local, payload), digest)
        })
        .collect();
    let mut sent = Vec::new();
    for ((sender, mut stream), digest) in clients {
        let ending = read_until_end(&mut stream);
        sender.join().expect("the sender thread");
        assert_eq!(ending.end, End::Eof, "the feed completes for its client");
        sent.push(digest);
    }
    let mut got: Vec<Digest> = (0..CLIENTS)
        .map(|_| recv(&collector_rx, "collector").expect("collector"))
        .collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "the collector got every stream whole");

    let peak = porxy.peak_rss_kib();
    let bound = baseline + CLIENTS as u64 * MAX_LAG_KIB + SLACK_KIB;
    assert!(
        peak <= bound,
        "porxy grew from {baseline} KiB to a peak of {peak} KiB (bound {bound} KiB) while \
         {CLIENTS} clients streamed {} MiB each past a stalled destination",
        STREAM >> 20
    );

    let mut control = ControlClient::connect(control);
    let lines = wait_for(
        COUNTERS_SETTLE,
        "every drop to be counted",
        || control.block("STATUS FULL"),
        |lines| {
            lines.iter().any(|l| {
                l.contains(&format!("backend {} ", stalled.addr()))
                    && l.contains(&format!("lag_drops={CLIENTS}"))
            })
        },
    );
    let tunnel_line = lines
        .iter()
        .find(|l| l.starts_with("tunnel "))
        .expect("a tunnel line");
    assert!(
        tunnel_line.contains(" mode=fanout reply=none "),
        "{tunnel_line}"
    );
    let total = (CLIENTS * STREAM) as u64;
    let collector_line = lines
        .iter()
        .find(|l| l.contains(&format!("backend {} ", collector.addr())))
        .expect("the collector's line");
    assert_eq!(
        field(collector_line, "bytes_sent"),
        total.to_string(),
        "{collector_line}"
    );
    assert_eq!(field(collector_line, "lag_drops"), "0", "{collector_line}");
}

/// A mirror whose connect never completes leaves when the connect timeout passes, and the
/// connection, whose client and primary were done, completes then rather than at the
/// half-closed timeout.
#[test]
fn an_unanswered_mirror_does_not_hold_a_finished_connection() {
    let (primary, primary_rx) = echoing_primary();
    let unanswered = Unanswered::new();
    let proxy = start(
        builder()
            .half_closed_timeout(Duration::from_secs(60))
            .tunnel(fanout_spec(&[primary.addr(), unanswered.addr()], "")),
    );
    let local = proxy.bound()[0];
    let payload = bytes(3, 5000);
    let (sender, mut stream) = exchange(local, payload.clone());
    let ending = read_until_end(&mut stream);
    sender.join().expect("the sender thread");
    assert!(ending.bytes == payload, "the client got its echo");
    assert_eq!(recv(&primary_rx, "primary"), Ok(Digest::of(&payload)));
    // The test builder's connect timeout is 2 s.
    let status = wait_for(
        COUNTERS_SETTLE,
        "the connection to complete once the mirror's connect timed out",
        || tunnel(&proxy.handle(), local),
        |s| s.open == 0,
    );
    assert_eq!(status.closes.get(CloseReason::Completed), 1, "{status:?}");
    assert_eq!(backend_status(&status, unanswered.addr()).failures, 1);
}

/// After a burst that held much memory (clients streaming past a stalled destination, each
/// holding up to `max_lag` for it), porxy gives it back once the connections are gone: its
/// resident memory returns near where it started within a few seconds of going quiet.
#[test]
fn memory_held_in_a_burst_is_given_back_once_quiet() {
    const CLIENTS: usize = 4;
    const STREAM: usize = 24 << 20;
    const MAX_LAG_KIB: u64 = 8 * 1024;
    /// What may stay above the start: the allocator's own bookkeeping and a few buffers.
    const SLACK_KIB: u64 = 3 * 1024;
    let (_collector, _collector_rx, _stalled, porxy, control) = past_a_stalled_mirror(MAX_LAG_KIB);
    let local = porxy.tunnel("cli-1");
    let mut control = ControlClient::connect(control);
    let quiet = |control: &mut ControlClient| {
        wait_for(
            COUNTERS_SETTLE,
            "no connection open",
            || control.cmd("STATUS"),
            |status| status.contains(" open=0 "),
        )
    };
    quiet(&mut control);
    let baseline = porxy.rss_kib();

    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| exchange(local, bytes(70 + i as u64, STREAM)))
        .collect();
    for (sender, mut stream) in clients {
        assert_eq!(read_until_end(&mut stream).end, End::Eof);
        sender.join().unwrap();
    }
    quiet(&mut control);
    let peak = porxy.peak_rss_kib();
    assert!(
        peak > baseline + MAX_LAG_KIB,
        "the burst held memory: {baseline} KiB, then a peak of {peak} KiB"
    );
    // Given back within a few seconds of going quiet (the reactors trim after a second).
    wait_for(
        Duration::from_secs(5),
        &format!("resident memory back near the {baseline} KiB before the burst (peak {peak} KiB)"),
        || porxy.rss_kib(),
        |&now| now <= baseline + SLACK_KIB,
    );
}
