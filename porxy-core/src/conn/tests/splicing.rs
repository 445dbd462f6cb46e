//! What only the splice path does: bytes through a kernel pipe, the ambiguous `WouldBlock`,
//! and every way of falling back to copying without failing the connection.

use super::super::close::CloseReason;
use super::super::hold::Mode;
use super::super::{Action, Closing, Side};
use super::fake::*;
use crate::splice::Fallback;

const EINVAL: i32 = libc::EINVAL;

#[test]
fn splicing_moves_bytes_through_pipes_and_no_buffer() {
    let mut rig = Rig::relaying_on(Mode::Splice);
    rig.client = FakeStream::new().reading([data(b"ping"), data(b"ping")]);
    rig.upstream = FakeStream::new().reading([data(b"pong")]);
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.upstream.written, b"pingping");
    assert_eq!(rig.client.written, b"pong");
    assert_eq!(rig.conn.take_unreported(), (8, 4));
    // Every read and write was a splice; no buffer was ever taken.
    assert_eq!(rig.client.splices_in, rig.client.read_calls);
    assert_eq!(rig.upstream.splices_out, rig.upstream.write_calls);
    assert_eq!(rig.upstream.splices_in, rig.upstream.read_calls);
    assert_eq!(rig.client.splices_out, rig.client.write_calls);
    assert_eq!(rig.pools.buffers.free_count(), 0);
    assert_eq!(rig.pools.lent(), 0, "the drained pipe went back");
    // The first direction gave its pipe back before the second needed one.
    assert_eq!(rig.pools.pipes.open(), 1);
}

#[test]
fn splicing_would_block_with_bytes_in_the_pipe_waits_for_a_write_and_keeps_readiness() {
    let mut rig = Rig::relaying_on(Mode::Splice);
    rig.client = FakeStream::new().reading([data(b"ab"), Rd::WouldBlock, data(b"cd")]);
    rig.upstream = FakeStream::new().writing([], Wr::WouldBlock);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.client.read_calls, 2, "ab, then WouldBlock");
    // The pipe holds bytes, so the pipe may be what is full: no read until a write.
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.client.read_calls, 2);

    // The write empties the pipe; the client's readiness was kept, so "cd" is read without a
    // new readable event (a socket that had it would never signal it again).
    rig.upstream.write_idle = ACCEPT_ALL;
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(3)), Action::Wait);
    assert_eq!(rig.upstream.written, b"abcd");
    assert_eq!(
        rig.client.read_calls, 4,
        "cd, then WouldBlock with an empty pipe"
    );
    assert_eq!(rig.conn.take_unreported(), (4, 0));

    // An empty pipe that says WouldBlock means the socket is drained: readiness is cleared.
    assert_eq!(rig.drive(secs(4)), Action::Wait);
    assert_eq!(rig.client.read_calls, 4);
}

#[test]
fn splicing_without_a_pipe_to_be_had_copies_for_good() {
    let mut rig = Rig::relaying_on(Mode::Splice);
    rig.pools.pipes.fail_next = Some(libc::EMFILE);
    rig.client = FakeStream::new().reading([data(b"first")]);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.upstream.written, b"first", "the connection goes on");
    assert_eq!(rig.client.splices_in, 0);
    assert_eq!(rig.pools.pipes.fallbacks(Fallback::Create), 1);
    assert_eq!(rig.conn.modes(), (Mode::Copy, Mode::Splice));

    // The pipe could be made now, but this direction does not try again.
    rig.client.reads.push_back(data(b" second"));
    rig.ready(Side::Client, R);
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.upstream.written, b"first second");
    assert_eq!(rig.client.splices_in, 0);
    assert_eq!(rig.pools.pipes.open(), 0);
    assert_eq!(rig.conn.take_unreported(), (12, 0));
}

#[test]
fn splicing_at_the_pipe_budget_copies_that_burst_only() {
    let mut rig = Rig::relaying_on(Mode::Splice);
    rig.pools = pools(1);
    rig.client = FakeStream::new()
        .reading([data(b"up")])
        .writing([], Wr::WouldBlock);
    rig.upstream = FakeStream::new()
        .reading([data(b"down")])
        .writing([], Wr::WouldBlock);
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);

    // Both directions hold bytes; the one pipe went to the first, the second copies.
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!((rig.pools.pipes.lent(), rig.pools.buffers.lent()), (1, 1));
    assert_eq!(rig.client.splices_in, 2, "up, then WouldBlock");
    assert_eq!(rig.upstream.splices_in, 0);
    assert_eq!(rig.pools.pipes.fallbacks(Fallback::Budget), 1);

    rig.client.write_idle = ACCEPT_ALL;
    rig.upstream.write_idle = ACCEPT_ALL;
    rig.ready(Side::Client, W);
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.upstream.written, b"up");
    assert_eq!(rig.client.written, b"down");
    assert_eq!(rig.pools.lent(), 0);

    // Both still splice: the next burst of the second direction gets the free pipe.
    assert_eq!(rig.conn.modes(), (Mode::Splice, Mode::Splice));
    rig.upstream.reads.push_back(data(b" again"));
    rig.ready(Side::Upstream, R);
    assert_eq!(rig.drive(secs(3)), Action::Wait);
    assert_eq!(rig.client.written, b"down again");
    assert_eq!(rig.upstream.splices_in, 2, "the pipe, then its WouldBlock");
}

#[test]
fn splicing_refused_by_the_source_copies_for_good() {
    let mut rig = Rig::relaying_on(Mode::Splice);
    rig.client = FakeStream::new().reading([data(b"hello"), data(b" world")]);
    rig.client.splice_in_error = Some(EINVAL);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.upstream.written, b"hello world");
    assert_eq!(rig.client.splices_in, 1, "one refused splice, then reads");
    assert_eq!(rig.conn.modes(), (Mode::Copy, Mode::Splice));
    assert_eq!(rig.pools.pipes.fallbacks(Fallback::Unsupported), 1);
    assert_eq!(
        rig.pools.pipes.open(),
        0,
        "the pipe that saw the error is closed"
    );
    assert_eq!(rig.conn.take_unreported(), (11, 0));
}

#[test]
fn splicing_refused_by_the_sink_moves_the_held_bytes_to_a_buffer_in_order() {
    let mut rig = Rig::relaying_on(Mode::Splice);
    rig.client = FakeStream::new().reading([data(b"in the pipe")]);
    rig.upstream = FakeStream::new().writing([Wr::WouldBlock], ACCEPT_ALL);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.pools.pipes.lent(), 1);

    rig.upstream.splice_out_error = Some(EINVAL);
    rig.client.reads.push_back(data(b", then read"));
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.upstream.written, b"in the pipe, then read");
    assert_eq!(rig.conn.modes(), (Mode::Copy, Mode::Splice));
    assert_eq!(
        rig.pools.pipes.open(),
        0,
        "the pipe that saw the error is closed"
    );
    assert_eq!(rig.conn.take_unreported(), (22, 0));
}

#[test]
fn splicing_refused_with_more_in_the_pipe_than_a_buffer_holds_moves_it_all() {
    // Pipes are sized apart from buffers (256 KiB and 16 KiB by default): the bytes held in a
    // pipe a sink refuses must all move, in order, to a buffer large enough.
    let mut rig = Rig::relaying_on(Mode::Splice);
    rig.pools = pools_sized(BUFFER_SIZE, 8 * BUFFER_SIZE, 4);
    let held: Vec<u8> = (0..3 * BUFFER_SIZE).map(|i| (i % 251) as u8).collect();
    rig.client = FakeStream::new().reading([Rd::Data(held.clone())]);
    rig.upstream = FakeStream::new().writing([Wr::WouldBlock], ACCEPT_ALL);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.pools.pipes.lent(), 1);
    assert!(
        rig.upstream.written.is_empty(),
        "all of it waits in the pipe"
    );

    rig.upstream.splice_out_error = Some(EINVAL);
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(2)), Action::Wait, "the connection goes on");
    assert_eq!(rig.upstream.written, held);
    assert_eq!(rig.conn.modes(), (Mode::Copy, Mode::Splice));
    assert_eq!(rig.pools.lent(), 0, "the odd-sized buffer went back too");
}

#[test]
fn splicing_error_closes_the_pipe_instead_of_stocking_it() {
    let mut rig = Rig::relaying_on(Mode::Splice);
    rig.client = FakeStream::new().reading([Rd::Fail(std::io::ErrorKind::ConnectionReset)]);
    rig.ready(Side::Client, R);

    assert_eq!(
        rig.drive(secs(1)),
        close(CloseReason::ClientReset, Closing::Graceful, Closing::Reset)
    );
    assert_eq!(rig.pools.pipes.open(), 0);
    assert_eq!(rig.pools.pipes.free_count(), 0);
}

#[test]
fn splicing_connection_dropped_with_bytes_in_flight_closes_its_pipes() {
    let mut rig = Rig::relaying_on(Mode::Splice);
    rig.client = FakeStream::new().reading([data(b"stuck")]);
    rig.upstream = FakeStream::new().writing([], Wr::WouldBlock);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.pools.pipes.open(), 1);

    rig.conn.abort(CloseReason::ProxyStopped);
    let Rig {
        conn, mut pools, ..
    } = rig;
    drop(conn);
    assert_eq!(
        pools.pipes.open(),
        0,
        "closed with the connection, never stocked"
    );
    assert!(
        pools.pipes.take().unwrap().is_some(),
        "its budget is free again"
    );
}

#[test]
fn splicing_only_bulk_reads_and_copying_small_ones() {
    let mut rig = Rig::relaying_on(Mode::Splice);
    rig.pools.bulk_read = 100;
    rig.upstream = FakeStream::new().writing([], Wr::Accept(300));
    rig.ready(Side::Upstream, W);
    // Each arrival is read after its own readable event.
    let arrive = |rig: &mut Rig, bytes: &[u8], at: u64| {
        rig.client.reads.extend([data(bytes), Rd::WouldBlock]);
        rig.ready(Side::Client, R);
        assert_eq!(rig.drive(secs(at)), Action::Wait);
        assert_eq!(rig.client.delivered.len(), rig.upstream.written.len());
    };

    arrive(&mut rig, b"small", 1);
    arrive(&mut rig, &[b'a'; 300], 2);
    assert_eq!(
        rig.client.splices_in, 0,
        "copied: the reads before were small"
    );
    // The big read made the direction splice: "b", then the splice that met WouldBlock.
    arrive(&mut rig, &[b'b'; 300], 3);
    assert_eq!((rig.client.splices_in, rig.upstream.splices_out), (2, 1));
    // Still bulk until a small read: "tail" is spliced, and the read after it is a copy.
    arrive(&mut rig, b"tail", 4);
    assert_eq!((rig.client.splices_in, rig.upstream.splices_out), (3, 2));
    arrive(&mut rig, b"next", 5);
    assert_eq!(rig.client.splices_in, 3, "copied after a small read");

    let mut expected = b"small".to_vec();
    expected.extend([b'a'; 300]);
    expected.extend([b'b'; 300]);
    expected.extend(b"tailnext");
    assert_eq!(rig.upstream.written, expected);
    assert_eq!(rig.conn.take_unreported(), (expected.len() as u64, 0));
    assert_eq!(rig.conn.modes(), (Mode::Splice, Mode::Splice));
    assert_eq!(rig.pools.lent(), 0);
}
