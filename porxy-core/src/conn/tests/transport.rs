//! A transport that is not a bare kernel socket (a TLS layer, say): what the pipes do when a
//! short read does not prove it drained, when it holds written bytes inside, when ending its
//! stream must wait, and when closing it would not end the stream by itself. A kernel socket
//! answers every one of these the other way, and its tests stay as they are.

use super::fake::*;
use crate::conn::close::CloseReason;
use crate::conn::{Action, Closing, Side};

fn record(bytes: &[u8]) -> Rd {
    Rd::Record(bytes.to_vec())
}

/// A layer may hold decoded bytes back while its socket is drained: a short read from it is
/// followed by another, until it says `WouldBlock`. A kernel socket's short read ends the round.
#[test]
fn relaying_short_read_of_a_layer_that_holds_bytes_reads_on() {
    let mut rig = Rig::relaying();
    rig.client = FakeStream::new().reading([record(b"abc"), record(b"def"), Rd::WouldBlock]);
    rig.client.short_read_drains = false;
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.upstream.written, b"abcdef");
    assert_eq!(rig.client.read_calls, 3, "read until WouldBlock");

    let mut socket = Rig::relaying();
    socket.client = FakeStream::new().reading([record(b"abc"), record(b"def"), Rd::WouldBlock]);
    socket.ready(Side::Client, R);
    socket.ready(Side::Upstream, W);
    assert_eq!(socket.drive(secs(1)), Action::Wait);
    assert_eq!(
        socket.upstream.written, b"abc",
        "a socket's short read drains it"
    );
    assert_eq!(socket.client.read_calls, 1);
}

/// Bytes the sink holds inside are flushed once everything is written to it; a flush that
/// says `WouldBlock` waits for the next writable event.
#[test]
fn relaying_bytes_held_inside_the_sink_are_flushed() {
    let mut rig = Rig::relaying();
    rig.client = FakeStream::new().reading([data(b"hello"), Rd::WouldBlock]);
    rig.upstream.holds_back = true;
    rig.upstream.flush_blocks = 1;
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.upstream.inside, b"hello");
    assert!(rig.upstream.written.is_empty());
    assert_eq!(rig.upstream.flush_calls, 1);

    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.upstream.written, b"hello");
    assert_eq!(rig.upstream.flush_calls, 2);
}

/// Regression: a `WouldBlock` from ending the sink's stream was taken for a failure, and reset
/// both sides. It waits for the sink to be writable, then ends the stream: held bytes first.
#[test]
fn draining_end_of_stream_that_would_block_waits_for_writable() {
    let mut rig = Rig::relaying();
    rig.client = FakeStream::new().reading([data(b"bye"), Rd::Eof]);
    rig.upstream.shutdown_blocks = 1;
    rig.upstream.holds_back = true;
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(
        rig.upstream.written, b"bye",
        "flushed before the end of stream"
    );
    assert_eq!(rig.upstream.shutdown_at, None);
    assert_eq!(rig.upstream.shutdown_calls, 1);
    // No new try before the sink is writable again.
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.upstream.shutdown_calls, 1);

    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(3)), Action::Wait);
    assert_eq!(rig.upstream.shutdown_at, Some(3));
}

/// A transport whose close does not end its stream (a TLS session's close_notify) is shut down
/// on the last direction too; a kernel socket is not (its close sends the FIN).
#[test]
fn relaying_last_direction_ends_a_stream_that_closing_would_not() {
    let mut rig = Rig::relaying();
    rig.client = FakeStream::new().reading([data(b"ping"), Rd::Eof]);
    rig.upstream = FakeStream::new().reading([data(b"pong"), Rd::Eof]);
    rig.client.close_ends_stream = false;
    rig.upstream.close_ends_stream = false;
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);
    assert_eq!(
        rig.drive(secs(1)),
        close(CloseReason::Completed, Closing::Graceful, Closing::Graceful)
    );
    assert_eq!(rig.upstream.shutdown_at, Some(4));
    assert_eq!(rig.client.shutdown_at, Some(4));
}
