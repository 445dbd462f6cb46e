//! Relaying: bytes, backpressure, readiness, budget, half-close.

use super::super::close::CloseReason;
use super::super::hold::Mode;
use super::super::{Action, Closing, Phase, Side, DRIVE_BUDGET};
use super::fake::*;

// ---- Relaying: bytes ----

fn relaying_bytes_pass_both_ways_across_short_reads_and_writes(mode: Mode) {
    let request = b"GET / HTTP/1.1\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\n\r\nhi";
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new()
        .reading([data(b"GET /"), data(b" HTTP/1.1\r\n"), data(b"\r\n")])
        .writing([], Wr::Accept(5));
    rig.upstream = FakeStream::new()
        .reading([data(b"HTTP/1.1 200 OK\r\n"), data(b"\r\nhi")])
        .writing([], Wr::Accept(4));
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    // Everything was read; a short write stops writing until the next writable event.
    assert_eq!(rig.client.delivered, request);
    assert_eq!(rig.upstream.delivered, response);
    assert_eq!((rig.upstream.write_calls, rig.client.write_calls), (1, 1));
    assert_eq!(rig.conn.take_unreported(), (4, 5));

    let mut reported = (4, 5);
    for _ in 0..4 {
        rig.ready(Side::Client, W);
        rig.ready(Side::Upstream, W);
        assert_eq!(rig.drive(secs(2)), Action::Wait);
        let (up, down) = rig.conn.take_unreported();
        reported = (reported.0 + up, reported.1 + down);
    }
    assert_eq!(rig.upstream.written, request);
    assert_eq!(rig.client.written, response);
    assert_eq!(rig.upstream.write_sizes, [4, 4, 4, 4, 2]);
    assert_eq!(rig.client.write_sizes, [5, 5, 5, 5, 1]);
    assert_eq!(reported, (request.len() as u64, response.len() as u64));
    assert_eq!(rig.conn.take_unreported(), (0, 0));
    assert_eq!(rig.conn.phase(), Phase::Relaying);
}

fn relaying_chunks_read_while_blocked_go_out_in_one_write(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([data(b"ab"), data(b"cd"), data(b"ef")]);
    rig.upstream = FakeStream::new().writing([Wr::WouldBlock], ACCEPT_ALL);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    // A splice goes on to meet the WouldBlock.
    let reads = if mode == Mode::Copy { 1 } else { 2 };
    assert_eq!(
        rig.client.read_calls, reads,
        "the three chunks in one read, which ran short: nothing more to read"
    );
    assert_eq!(rig.upstream.written, b"");
    assert_eq!(rig.conn.take_unreported(), (0, 0), "read is not relayed");

    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.upstream.written, b"abcdef");
    assert_eq!(rig.upstream.write_sizes, [6]);
    assert_eq!(rig.conn.take_unreported(), (6, 0));
}

fn relaying_take_unreported_counts_written_bytes_not_read_bytes(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([data(b"0123456789")]);
    rig.upstream = FakeStream::new().writing([Wr::Accept(3)], Wr::WouldBlock);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.upstream.written, b"012");
    assert_eq!(rig.conn.take_unreported(), (3, 0));
    assert_eq!(rig.conn.take_unreported(), (0, 0), "taken means reset");

    rig.upstream.write_idle = ACCEPT_ALL;
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.upstream.written, b"0123456789");
    assert_eq!(rig.conn.take_unreported(), (7, 0));
}

// ---- Relaying: backpressure and buffers ----

fn relaying_blocked_upstream_stops_client_reads_at_buffer_size(mode: Mode) {
    let chunk = |c: u8| Rd::Data(vec![c; 1000]);
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([chunk(b'a'), chunk(b'b'), chunk(b'c')]);
    rig.upstream = FakeStream::new().writing([], Wr::WouldBlock);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    // One read fills the buffer; nothing beyond it.
    assert_eq!(rig.client.delivered.len(), BUFFER_SIZE);
    assert_eq!(rig.client.read_calls, 1);
    assert_eq!(rig.upstream.write_calls, 1);
    assert_eq!(rig.upstream.written, b"");
    assert_eq!(
        rig.pools.lent(),
        1,
        "the blocked direction holds its buffer"
    );

    // Still full: a drive with nothing new reads nothing.
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.client.read_calls, 1);

    // The upstream drains; the client's readiness was never used up, so the rest flows.
    rig.upstream.write_idle = ACCEPT_ALL;
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(3)), Action::Wait);
    let mut expected = vec![b'a'; 1000];
    expected.extend([b'b'; 1000]);
    expected.extend([b'c'; 1000]);
    assert_eq!(rig.upstream.written, expected);
    assert_eq!(rig.upstream.write_sizes, [1024, 1024, 952]);
    let reads = if mode == Mode::Copy { 3 } else { 4 };
    assert_eq!(
        rig.client.read_calls, reads,
        "the last read ran short: no WouldBlock read (but for a splice)"
    );
    assert_eq!(rig.conn.take_unreported(), (3000, 0));
    assert_eq!(rig.pools.lent(), 0);
}

fn relaying_idle_connection_holds_no_buffer(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new()
        .reading([data(b"question")])
        .writing([], Wr::WouldBlock);
    rig.upstream = FakeStream::new()
        .reading([data(b"answer")])
        .writing([], Wr::WouldBlock);
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.pools.lent(), 2, "both directions have bytes in flight");

    rig.upstream.write_idle = ACCEPT_ALL;
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.upstream.written, b"question");
    assert_eq!(
        rig.pools.lent(),
        1,
        "the drained direction gave its buffer back"
    );

    rig.client.write_idle = ACCEPT_ALL;
    rig.ready(Side::Client, W);
    assert_eq!(rig.drive(secs(3)), Action::Wait);
    assert_eq!(rig.client.written, b"answer");
    assert_eq!(rig.pools.lent(), 0);
    assert_eq!(rig.pools.stocked(), 2);

    // The next burst reuses the stock instead of allocating.
    rig.client.reads.push_back(data(b"again"));
    rig.ready(Side::Client, R);
    assert_eq!(rig.drive(secs(4)), Action::Wait);
    assert_eq!(rig.upstream.written, b"questionagain");
    assert_eq!((rig.pools.lent(), rig.pools.stocked()), (0, 2));
}

// ---- Relaying: readiness ----

fn relaying_interrupted_read_and_write_are_retried(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([Rd::Interrupted, data(b"abcd")]);
    rig.upstream = FakeStream::new().writing([Wr::Interrupted], ACCEPT_ALL);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.upstream.written, b"abcd");
    assert_eq!(rig.upstream.write_sizes, [4]);
    // A splice goes on to meet the WouldBlock; a copy that ran short knows it is drained.
    let reads = if mode == Mode::Copy { 2 } else { 3 };
    assert_eq!(rig.client.read_calls, reads, "I, abcd, (WouldBlock)");
    assert_eq!(rig.upstream.write_calls, 2, "I, abcd");
    assert_eq!(rig.conn.take_unreported(), (4, 0));
}

fn relaying_spurious_readable_waits_without_bytes(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.client.read_calls, 1);
    assert_eq!(rig.upstream.write_calls, 0);
    assert_eq!(rig.conn.take_unreported(), (0, 0));
    assert_eq!(rig.pools.lent(), 0);
    assert_eq!(rig.deadline(), Some(IDLE_TIMEOUT), "not activity");

    // WouldBlock cleared the readiness: no read until the next readable event.
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.client.read_calls, 1);
}

fn relaying_would_block_waits_for_the_next_readable(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([data(b"a"), Rd::WouldBlock, data(b"b")]);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    // A read into a buffer that runs short proves the socket drained; a splice must meet
    // the WouldBlock.
    let calls_per_arrival = if mode == Mode::Copy { 1 } else { 2 };
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.upstream.written, b"a");
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(
        rig.client.read_calls, calls_per_arrival,
        "no read without a new readable event"
    );

    rig.ready(Side::Client, R);
    assert_eq!(rig.drive(secs(3)), Action::Wait);
    assert_eq!(rig.upstream.written, b"ab");
    assert_eq!(rig.client.read_calls, 2 * calls_per_arrival);
}

fn relaying_without_readiness_makes_no_call(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([data(b"unseen")]);
    rig.upstream = FakeStream::new().reading([data(b"unseen")]);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!((rig.client.syscalls(), rig.upstream.syscalls()), (0, 0));
}

fn relaying_endless_source_yields_again_within_the_budget(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([Rd::Endless]);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(rig.drive(secs(1)), Action::Again);
    let spent = rig.client.syscalls() + rig.upstream.syscalls();
    // The client → upstream direction may spend half of the budget.
    assert_eq!(spent, DRIVE_BUDGET as usize / 2);
    assert_eq!(rig.upstream.written, rig.client.delivered);
    let first = rig.upstream.written.len();
    assert_eq!(rig.conn.take_unreported(), (first as u64, 0));

    // Readiness was kept: the next drive goes on where this one stopped.
    assert_eq!(rig.drive(secs(1)), Action::Again);
    assert_eq!(rig.upstream.written.len(), 2 * first);
    assert_eq!(rig.upstream.written, rig.client.delivered);

    rig.client.reads.clear();
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.upstream.written, rig.client.delivered);
    assert_eq!(rig.conn.take_unreported(), (first as u64, 0));
}

fn relaying_endless_download_may_spend_the_whole_budget(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.upstream = FakeStream::new().reading([Rd::Endless]);
    rig.ready(Side::Client, W);
    rig.ready(Side::Upstream, R);

    assert_eq!(rig.drive(secs(1)), Action::Again);
    let spent = rig.client.syscalls() + rig.upstream.syscalls();
    assert_eq!(
        spent, DRIVE_BUDGET as usize,
        "the idle direction left its half"
    );
    assert_eq!(rig.client.written, rig.upstream.delivered);
    let sent = rig.client.written.len() as u64;
    assert_eq!(rig.conn.take_unreported(), (0, sent));
}

/// Regression: the client → upstream pipe went first with the whole budget, so a client that
/// always had data starved the other direction for ever.
fn relaying_endless_upload_does_not_starve_the_download(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([Rd::Endless]);
    rig.upstream = FakeStream::new().reading([data(b"pong")]);
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);

    assert_eq!(rig.drive(secs(1)), Action::Again);
    assert_eq!(rig.client.written, b"pong");
    let spent = rig.client.syscalls() + rig.upstream.syscalls();
    assert!(spent <= DRIVE_BUDGET as usize, "{spent} syscalls");
    let sent = rig.upstream.written.len() as u64;
    assert_eq!(rig.conn.take_unreported(), (sent, 4));
}

// ---- Relaying: half-close ----

fn relaying_client_fin_is_passed_on_after_pending_bytes(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([data(b"abc"), Rd::Eof]);
    rig.upstream = FakeStream::new().writing([Wr::WouldBlock, Wr::Accept(2)], ACCEPT_ALL);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert!(rig.client.eof_given);
    assert_eq!(rig.upstream.shutdown_calls, 0, "bytes still pending");

    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.upstream.written, b"ab");
    assert_eq!(rig.upstream.shutdown_calls, 0, "one byte still pending");

    // The last byte goes, then the FIN; the other direction is unaffected.
    rig.upstream.reads.push_back(data(b"reply"));
    rig.ready(Side::Upstream, RW);
    rig.ready(Side::Client, W);
    assert_eq!(rig.drive(secs(3)), Action::Wait);
    assert_eq!(rig.upstream.written, b"abc");
    assert_eq!(rig.upstream.shutdown_at, Some(3));
    assert_eq!(rig.client.written, b"reply");

    rig.upstream.reads.push_back(data(b" more"));
    rig.ready(Side::Upstream, R);
    assert_eq!(rig.drive(secs(4)), Action::Wait);
    assert_eq!(rig.client.written, b"reply more");
    assert_eq!(rig.client.shutdown_calls, 0);
    assert_eq!(rig.upstream.shutdown_calls, 1);
    assert_eq!(rig.conn.phase(), Phase::Relaying);
    assert_eq!(rig.conn.take_unreported(), (3, 10));
}

fn relaying_upstream_fin_is_passed_on_after_pending_bytes(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.upstream = FakeStream::new().reading([data(b"response"), Rd::Eof]);
    rig.client = FakeStream::new().writing([Wr::Accept(3)], Wr::WouldBlock);
    rig.ready(Side::Upstream, R);
    rig.ready(Side::Client, W);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.client.written, b"res");
    assert!(rig.upstream.eof_given);
    assert_eq!(rig.client.shutdown_calls, 0, "bytes still pending");

    // The client keeps sending meanwhile.
    rig.client.reads.push_back(data(b"more request"));
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.upstream.written, b"more request");
    assert_eq!(rig.client.shutdown_calls, 0);

    rig.client.write_idle = ACCEPT_ALL;
    rig.ready(Side::Client, W);
    assert_eq!(rig.drive(secs(3)), Action::Wait);
    assert_eq!(rig.client.written, b"response");
    assert_eq!(rig.client.shutdown_at, Some(8));
    assert_eq!(rig.upstream.shutdown_calls, 0);
    assert_eq!(rig.conn.phase(), Phase::Relaying);
}

fn relaying_both_fins_close_completed_gracefully(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([data(b"ping"), Rd::Eof]);
    rig.upstream = FakeStream::new().reading([data(b"pong"), Rd::Eof]);
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);

    assert_eq!(
        rig.drive(secs(1)),
        close(CloseReason::Completed, Closing::Graceful, Closing::Graceful)
    );
    assert_eq!(rig.upstream.written, b"ping");
    assert_eq!(rig.client.written, b"pong");
    // The first FIN is passed on with a shutdown; the second direction ends the connection,
    // whose close sends the FIN: no shutdown syscall for it.
    assert_eq!(rig.upstream.shutdown_at, Some(4));
    assert_eq!(rig.client.shutdown_calls, 0);
    assert_eq!(rig.conn.take_unreported(), (4, 4));
    assert_eq!(rig.conn.phase(), Phase::Closed(CloseReason::Completed));
    assert_eq!(rig.deadline(), None);
    assert_eq!(rig.pools.lent(), 0);
}

fn half_closed_upstream_fin_completes_once_its_bytes_are_written(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new()
        .reading([Rd::Eof])
        .writing([], Wr::WouldBlock);
    rig.upstream = FakeStream::new().reading([data(b"bye"), Rd::Eof]);
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);

    // Client FIN passed on at once; the upstream's FIN waits behind "bye".
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.upstream.shutdown_at, Some(0));
    assert!(rig.upstream.eof_given);
    assert_eq!(rig.client.shutdown_calls, 0);

    rig.client.write_idle = ACCEPT_ALL;
    rig.ready(Side::Client, W);
    assert_eq!(
        rig.drive(secs(2)),
        close(CloseReason::Completed, Closing::Graceful, Closing::Graceful)
    );
    assert_eq!(rig.client.written, b"bye");
    // Every byte written, then the close (Graceful) sends the FIN; no shutdown before it.
    assert_eq!(rig.client.shutdown_calls, 0);
}

// ---- Relaying: reads that run short (the copy path) ----

#[test]
fn relaying_short_read_waits_for_the_next_readable_without_a_would_block_read() {
    let mut rig = Rig::relaying();
    rig.client = FakeStream::new().reading([data(b"ping")]);
    rig.upstream = FakeStream::new().reading([data(b"pong")]);
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(
        (
            rig.upstream.written.as_slice(),
            rig.client.written.as_slice()
        ),
        (&b"ping"[..], &b"pong"[..])
    );
    assert_eq!(
        (rig.client.read_calls, rig.upstream.read_calls),
        (1, 1),
        "a read that ran short emptied the socket: no read to hear WouldBlock"
    );

    // Bytes that arrive later wait for their readable event.
    rig.client.reads.push_back(data(b"again"));
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.client.read_calls, 1);
    rig.ready(Side::Client, R);
    assert_eq!(rig.drive(secs(3)), Action::Wait);
    assert_eq!(rig.upstream.written, b"pingagain");
    assert_eq!(rig.client.read_calls, 2);
}

#[test]
fn relaying_short_read_after_a_hangup_reads_on_to_the_eof() {
    // The FIN came with the bytes: the poller reported a hang-up, and no event will follow,
    // so the short read must not end the reading.
    let mut rig = Rig::relaying();
    rig.client = FakeStream::new().reading([data(b"last words"), Rd::Eof]);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert!(rig.client.eof_given);
    assert_eq!(rig.client.read_calls, 2);
    assert_eq!(rig.upstream.written, b"last words");
    assert_eq!(
        rig.upstream.shutdown_at,
        Some(10),
        "the FIN follows the bytes"
    );
}

// A short read after a reported error reads on to the error likewise: the copy path of
// `relaying_bytes_moved_before_a_client_reset_are_reported` (lifecycle.rs) checks it.

on_both_paths!(
    relaying_bytes_pass_both_ways_across_short_reads_and_writes,
    relaying_chunks_read_while_blocked_go_out_in_one_write,
    relaying_take_unreported_counts_written_bytes_not_read_bytes,
    relaying_blocked_upstream_stops_client_reads_at_buffer_size,
    relaying_idle_connection_holds_no_buffer,
    relaying_interrupted_read_and_write_are_retried,
    relaying_spurious_readable_waits_without_bytes,
    relaying_would_block_waits_for_the_next_readable,
    relaying_without_readiness_makes_no_call,
    relaying_endless_source_yields_again_within_the_budget,
    relaying_endless_download_may_spend_the_whole_budget,
    relaying_endless_upload_does_not_starve_the_download,
    relaying_client_fin_is_passed_on_after_pending_bytes,
    relaying_upstream_fin_is_passed_on_after_pending_bytes,
    relaying_both_fins_close_completed_gracefully,
    half_closed_upstream_fin_completes_once_its_bytes_are_written,
);
