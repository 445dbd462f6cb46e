//! Freezing a relaying connection and restoring it (in another process, with the same sockets):
//! nothing lost, nothing written twice, each end of stream passed on once.

use super::super::close::CloseReason;
use super::super::frozen::{Frozen, RelayState};
use super::super::pipe::PipeState;
use super::super::{Action, Closing, Conn, Phase, Side};
use super::fake::*;

/// The relay of a frozen `rig`, restored at `at` in a new rig whose streams go on where the
/// old ones were (fresh fakes: what they record is what happens after the move).
fn thaw(rig: &mut Rig, at: std::time::Duration) -> (RelayState, Rig) {
    let Frozen::Relaying(state) = rig
        .conn
        .freeze(&mut rig.pools, rig.t0 + at)
        .expect("no kernel pipe fails")
    else {
        panic!("a relaying connection freezes with its state");
    };
    assert_eq!(rig.conn.phase(), Phase::Closed(CloseReason::HandedOver));
    assert_eq!(rig.pools.lent(), 0, "freezing gives the buffers back");
    let mut next = Rig::relaying();
    next.t0 = rig.t0;
    next.conn = Conn::restored(rig.t0 + at, rig_settings(), &state, &mut next.pools);
    (state, next)
}

fn rig_settings() -> crate::config::TunnelSettings {
    crate::config::TunnelSettings {
        connect_timeout: CONNECT_TIMEOUT,
        idle_timeout: IDLE_TIMEOUT,
        client_fin_timeout: CLIENT_FIN_TIMEOUT,
        server_fin_timeout: SERVER_FIN_TIMEOUT,
        queue_timeout: QUEUE_TIMEOUT,
        splice: false,
    }
}

#[test]
fn relaying_frozen_with_bytes_in_flight_resumes_them_first() {
    let mut rig = Rig::relaying();
    // Both sinks are full: what is read stays in the buffers. The client has also ended.
    rig.client = FakeStream::new()
        .reading([data(b"request part 1 "), data(b"part 2"), Rd::Eof])
        .writing([], Wr::WouldBlock);
    rig.upstream = FakeStream::new()
        .reading([data(b"response")])
        .writing([], Wr::WouldBlock);
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.conn.take_unreported(), (0, 0));

    let (state, mut next) = thaw(&mut rig, secs(2));
    assert_eq!(state.up.state, PipeState::Draining);
    assert_eq!(state.up.pending, b"request part 1 part 2");
    assert_eq!(state.down.state, PipeState::Open);
    assert_eq!(state.down.pending, b"response");
    assert_eq!(state.idle_for, secs(1));
    assert_eq!(state.half_closed_for, Some(secs(1)));

    // In the new process the kernel holds more of the response; the client's EOF was read
    // already and must not be read again.
    next.upstream = FakeStream::new().reading([data(b" and more"), Rd::Eof]);
    // Registering the socket in the new process's poller reports what its kernel holds.
    next.ready(Side::Upstream, R);
    assert_eq!(
        next.drive(secs(3)),
        Action::Close {
            reason: CloseReason::Completed,
            client: Closing::Graceful,
            upstream: Closing::Graceful,
        }
    );
    assert_eq!(next.upstream.written, b"request part 1 part 2");
    assert_eq!(
        next.upstream.shutdown_at,
        Some(21),
        "the client's EOF is passed on after its last byte"
    );
    assert_eq!(next.client.written, b"response and more");
    assert_eq!(
        next.client.read_calls, 0,
        "the client had ended: never read again"
    );
    assert_eq!(next.conn.take_unreported(), (21, 17));
}

#[test]
fn relaying_frozen_after_a_fin_was_passed_on_does_not_send_it_again() {
    let mut rig = Rig::relaying();
    rig.client = FakeStream::new().reading([data(b"ask"), Rd::Eof]);
    rig.upstream = FakeStream::new().reading([data(b"half of the answer")]);
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.upstream.shutdown_calls, 1);

    let (state, mut next) = thaw(&mut rig, secs(4));
    assert_eq!(state.up.state, PipeState::Done);
    assert!(state.up.pending.is_empty() && state.down.pending.is_empty());
    assert_eq!(state.half_closed_for, Some(secs(3)));

    next.upstream = FakeStream::new().reading([data(b", the rest"), Rd::Eof]);
    next.ready(Side::Upstream, R);
    let action = next.drive(secs(5));
    assert_eq!(
        next.upstream.shutdown_calls, 0,
        "the FIN went out before the move"
    );
    assert_eq!(next.upstream.written, b"");
    assert_eq!(next.client.read_calls, 0);
    assert_eq!(next.client.written, b", the rest");
    assert_eq!(
        action,
        Action::Close {
            reason: CloseReason::Completed,
            client: Closing::Graceful,
            upstream: Closing::Graceful,
        }
    );
}

#[test]
fn relaying_restored_keeps_its_clocks() {
    let mut rig = Rig::relaying();
    rig.client = FakeStream::new().reading([Rd::Eof]);
    rig.ready(Side::Client, R);
    assert_eq!(rig.drive(secs(10)), Action::Wait);

    let (_, mut next) = thaw(&mut rig, secs(30));
    // Idle since 10 s, half-closed since 10 s: the half-closed timeout comes first.
    assert_eq!(next.deadline(), Some(secs(10) + CLIENT_FIN_TIMEOUT));
    assert_eq!(
        next.on_timer(secs(10) + CLIENT_FIN_TIMEOUT - secs(1)),
        Action::Wait
    );
    assert_eq!(
        next.on_timer(secs(10) + CLIENT_FIN_TIMEOUT),
        Action::Close {
            reason: CloseReason::HalfClosedTimeout,
            client: Closing::Graceful,
            upstream: Closing::Graceful,
        }
    );
}

#[test]
fn relaying_restored_with_more_bytes_than_its_buffers_still_writes_them_all() {
    let carried: Vec<u8> = (0..3 * BUFFER_SIZE).map(|i| (i % 251) as u8).collect();
    let state = RelayState {
        up: super::super::pipe::PipeSnapshot {
            state: PipeState::Open,
            pending: carried.clone(),
        },
        down: super::super::pipe::PipeSnapshot {
            state: PipeState::Open,
            pending: Vec::new(),
        },
        idle_for: secs(0),
        half_closed_for: None,
    };
    let mut rig = Rig::relaying();
    rig.conn = Conn::restored(rig.t0, rig_settings(), &state, &mut rig.pools);
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.upstream.written, carried);
    assert_eq!(rig.upstream.write_sizes, [3 * BUFFER_SIZE], "in one write");
    assert_eq!(rig.pools.lent(), 0);
}

#[test]
fn connecting_does_not_freeze() {
    let mut rig = Rig::connecting();
    assert!(!rig.conn.can_travel());
    assert_eq!(
        rig.conn.freeze(&mut rig.pools, rig.t0).unwrap(),
        Frozen::Stays
    );
    assert_eq!(rig.conn.phase(), Phase::Connecting);
}

#[test]
fn queued_freezes_as_a_waiting_client() {
    let mut rig = Rig::connecting();
    rig.conn.enqueue(rig.t0);
    assert!(rig.conn.can_travel());
    assert_eq!(
        rig.conn.freeze(&mut rig.pools, rig.t0).unwrap(),
        Frozen::Waiting
    );
    assert_eq!(rig.conn.phase(), Phase::Closed(CloseReason::HandedOver));
}

/// Bytes waiting in a kernel pipe (the splice path) travel like buffered ones: read out of the
/// pipe into the state, and the pipe goes back to its pool.
#[test]
fn spliced_bytes_waiting_in_a_kernel_pipe_travel_with_the_state() {
    let mut rig = Rig::relaying_on(crate::conn::hold::Mode::Splice);
    rig.pools.bulk_read = 0; // Splice everything, however small.
    rig.client = FakeStream::new().reading([data(b"spliced, not yet written")]);
    rig.upstream = FakeStream::new().writing([], Wr::WouldBlock);
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.pools.pipes.lent(), 1, "the bytes wait in a kernel pipe");
    assert_eq!(rig.pools.buffers.lent(), 0, "and in no buffer");

    let (state, mut next) = thaw(&mut rig, secs(2));
    assert_eq!(state.up.pending, b"spliced, not yet written");
    assert_eq!(rig.pools.pipes.lent(), 0, "the pipe went back to the pool");
    next.upstream = FakeStream::new();
    assert_eq!(next.drive(secs(3)), Action::Wait);
    assert_eq!(next.upstream.written, b"spliced, not yet written");
}

/// A connection moved while half-closed after the upstream's FIN keeps `server_fin_timeout`:
/// which side ended travels with the pipes' state.
#[test]
fn relaying_restored_after_upstream_fin_keeps_the_server_fin_timeout() {
    let mut rig = Rig::relaying();
    rig.upstream = FakeStream::new().reading([Rd::Eof]);
    rig.ready(Side::Client, W);
    rig.ready(Side::Upstream, R);
    assert_eq!(rig.drive(secs(10)), Action::Wait);

    let (state, mut next) = thaw(&mut rig, secs(15));
    assert_eq!(state.half_closed_for, Some(secs(5)));
    let fires = secs(10) + SERVER_FIN_TIMEOUT;
    assert_eq!(next.deadline(), Some(fires));
    assert_eq!(next.on_timer(fires - secs(1)), Action::Wait);
    assert_eq!(
        next.on_timer(fires),
        Action::Close {
            reason: CloseReason::HalfClosedTimeout,
            client: Closing::Graceful,
            upstream: Closing::Graceful,
        }
    );
}
