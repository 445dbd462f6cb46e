//! Failures, connecting, timers, abort.

use super::super::close::CloseReason;
use super::super::hold::Mode;
use super::super::{Action, Closing, Phase, Side};
use super::fake::*;
use std::io::{self, ErrorKind};
use std::time::Duration;

// ---- Relaying: failures ----

fn relaying_client_read_reset_closes_client_reset_and_resets_upstream(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([Rd::Fail(ErrorKind::ConnectionReset)]);
    rig.ready(Side::Client, R);

    assert_eq!(
        rig.drive(secs(1)),
        close(CloseReason::ClientReset, Closing::Graceful, Closing::Reset)
    );
    assert_eq!(rig.conn.phase(), Phase::Closed(CloseReason::ClientReset));
}

fn relaying_upstream_write_error_closes_upstream_reset_and_resets_client(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([data(b"x")]);
    rig.upstream = FakeStream::new().writing([Wr::Fail(ErrorKind::BrokenPipe)], ACCEPT_ALL);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(
        rig.drive(secs(1)),
        close(
            CloseReason::UpstreamReset,
            Closing::Reset,
            Closing::Graceful
        )
    );
    assert_eq!(rig.conn.phase(), Phase::Closed(CloseReason::UpstreamReset));
}

fn relaying_upstream_read_reset_closes_upstream_reset_and_resets_client(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.upstream = FakeStream::new().reading([Rd::Fail(ErrorKind::ConnectionReset)]);
    rig.ready(Side::Upstream, R);

    assert_eq!(
        rig.drive(secs(1)),
        close(
            CloseReason::UpstreamReset,
            Closing::Reset,
            Closing::Graceful
        )
    );
}

fn relaying_client_write_error_closes_client_reset_and_resets_upstream(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.upstream = FakeStream::new().reading([data(b"x")]);
    rig.client = FakeStream::new().writing([Wr::Fail(ErrorKind::BrokenPipe)], ACCEPT_ALL);
    rig.ready(Side::Upstream, R);
    rig.ready(Side::Client, W);

    assert_eq!(
        rig.drive(secs(1)),
        close(CloseReason::ClientReset, Closing::Graceful, Closing::Reset)
    );
}

fn relaying_write_of_zero_bytes_closes_upstream_reset(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([data(b"x")]);
    rig.upstream = FakeStream::new().writing([Wr::Accept(0)], ACCEPT_ALL);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(
        rig.drive(secs(1)),
        close(
            CloseReason::UpstreamReset,
            Closing::Reset,
            Closing::Graceful
        )
    );
}

fn relaying_client_hangup_lets_the_read_report_the_reset(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([Rd::Fail(ErrorKind::ConnectionReset)]);
    rig.ready(Side::Client, FAILED);

    assert_eq!(
        rig.drive(secs(1)),
        close(CloseReason::ClientReset, Closing::Graceful, Closing::Reset)
    );
    assert_eq!(rig.client.read_calls, 1);
}

fn draining_upstream_shutdown_error_closes_upstream_reset(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([data(b"last"), Rd::Eof]);
    rig.upstream = FakeStream::new();
    rig.upstream.shutdown_error = Some(ErrorKind::NotConnected);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(
        rig.drive(secs(1)),
        close(
            CloseReason::UpstreamReset,
            Closing::Reset,
            Closing::Graceful
        )
    );
    assert_eq!(rig.upstream.written, b"last");
    assert_eq!(rig.upstream.shutdown_calls, 1);
}

/// Regression: bytes written before a failure in the same drive were never counted.
fn relaying_bytes_moved_before_an_upstream_reset_are_reported(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([data(b"hello")]);
    rig.upstream = FakeStream::new().reading([Rd::Fail(ErrorKind::ConnectionReset)]);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, RW);

    assert_eq!(
        rig.drive(secs(1)),
        close(
            CloseReason::UpstreamReset,
            Closing::Reset,
            Closing::Graceful
        )
    );
    assert_eq!(rig.upstream.written, b"hello");
    assert_eq!(rig.conn.take_unreported(), (5, 0));
}

/// Regression: bytes written before a failure in the same drive were never counted. On the
/// copy path the read of "abc" also runs short after the poller reported the error: the short
/// read must not end the reading, or the reset would wait for an event that never comes.
fn relaying_bytes_moved_before_a_client_reset_are_reported(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    rig.client = FakeStream::new().reading([data(b"abc"), Rd::Fail(ErrorKind::ConnectionReset)]);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(
        rig.drive(secs(1)),
        close(CloseReason::ClientReset, Closing::Graceful, Closing::Reset)
    );
    assert_eq!(rig.upstream.written, b"abc");
    assert_eq!(rig.conn.take_unreported(), (3, 0));
}

on_both_paths!(
    relaying_client_read_reset_closes_client_reset_and_resets_upstream,
    relaying_upstream_write_error_closes_upstream_reset_and_resets_client,
    relaying_upstream_read_reset_closes_upstream_reset_and_resets_client,
    relaying_client_write_error_closes_client_reset_and_resets_upstream,
    relaying_write_of_zero_bytes_closes_upstream_reset,
    relaying_client_hangup_lets_the_read_report_the_reset,
    draining_upstream_shutdown_error_closes_upstream_reset,
    relaying_bytes_moved_before_an_upstream_reset_are_reported,
    relaying_bytes_moved_before_a_client_reset_are_reported,
);

// ---- Connecting ----

#[test]
fn connecting_connect_failure_resets_client_with_mapped_reason() {
    let cases = [
        (
            io::Error::from(ErrorKind::ConnectionRefused),
            CloseReason::ConnectRefused,
        ),
        (
            io::Error::from_raw_os_error(libc::ECONNREFUSED),
            CloseReason::ConnectRefused,
        ),
        (
            io::Error::from(ErrorKind::TimedOut),
            CloseReason::ConnectTimeout,
        ),
        (
            io::Error::from_raw_os_error(libc::EMFILE),
            CloseReason::LocalResource,
        ),
        (
            io::Error::from_raw_os_error(libc::EADDRNOTAVAIL),
            CloseReason::LocalResource,
        ),
        (
            io::Error::from_raw_os_error(libc::ENETUNREACH),
            CloseReason::ConnectError,
        ),
        (io::Error::from(ErrorKind::Other), CloseReason::ConnectError),
    ];
    for (error, reason) in cases {
        let mut rig = Rig::connecting();
        assert_eq!(
            rig.conn.on_connect_failed(&error),
            gave_up(reason),
            "{error:?}"
        );
        assert_eq!(rig.conn.phase(), Phase::Closed(reason), "{error:?}");
        assert_eq!(rig.deadline(), None, "{error:?}");
    }
}

#[test]
fn connecting_timer_fires_at_connect_timeout_not_before() {
    let mut rig = Rig::connecting();
    assert_eq!(rig.deadline(), Some(CONNECT_TIMEOUT));
    assert_eq!(
        rig.on_timer(CONNECT_TIMEOUT - Duration::from_nanos(1)),
        Action::Wait
    );
    assert_eq!(rig.conn.phase(), Phase::Connecting);

    assert_eq!(
        rig.on_timer(CONNECT_TIMEOUT),
        Action::ConnectFailed(gave_up(CloseReason::ConnectTimeout))
    );
    assert_eq!(rig.conn.phase(), Phase::Closed(CloseReason::ConnectTimeout));
}

#[test]
fn connecting_client_bytes_wait_until_connected() {
    let mut rig = Rig::connecting();
    rig.client = FakeStream::new().reading([data(b"early")]);
    rig.ready(Side::Client, R);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.client.read_calls, 0);

    // The connect completes: the upstream reports writable, then the reactor says connected.
    rig.ready(Side::Upstream, W);
    assert!(rig.conn.upstream_signalled());
    assert_eq!(
        rig.conn
            .on_connected(rig.t0 + secs(2), None, &mut rig.pools),
        None
    );
    assert_eq!(rig.conn.phase(), Phase::Relaying);
    assert_eq!(rig.deadline(), Some(secs(2) + IDLE_TIMEOUT));
    assert_eq!(rig.on_timer(CONNECT_TIMEOUT), Action::Wait);

    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.upstream.written, b"early");
}

#[test]
fn connecting_abort_resets_both_sides() {
    let mut rig = Rig::connecting();
    assert_eq!(
        rig.conn.abort(CloseReason::ProxyStopped),
        close(CloseReason::ProxyStopped, Closing::Reset, Closing::Reset)
    );
    assert_eq!(rig.conn.phase(), Phase::Closed(CloseReason::ProxyStopped));
    assert_eq!(rig.on_timer(CONNECT_TIMEOUT), Action::Wait);
}

// ---- Timers while relaying ----

/// A FIN just before the idle deadline must not be cut as idle: it is activity.
#[test]
fn relaying_fin_counts_as_activity() {
    let mut rig = Rig::connecting();
    assert_eq!(
        rig.conn
            .on_connected(rig.t0 + secs(1), None, &mut rig.pools),
        None
    );
    rig.client.reads.push_back(Rd::Eof);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(250)), Action::Wait);
    assert_eq!(
        rig.deadline(),
        Some((secs(250) + IDLE_TIMEOUT).min(secs(250) + CLIENT_FIN_TIMEOUT))
    );
    assert_eq!(rig.on_timer(secs(1) + IDLE_TIMEOUT), Action::Wait);
}

#[test]
fn relaying_idle_timer_fires_only_after_idle_timeout_without_bytes() {
    let mut rig = Rig::connecting();
    assert_eq!(
        rig.conn
            .on_connected(rig.t0 + secs(1), None, &mut rig.pools),
        None
    );
    assert_eq!(rig.deadline(), Some(secs(1) + IDLE_TIMEOUT));
    assert_eq!(
        rig.on_timer(secs(1) + IDLE_TIMEOUT - Duration::from_millis(1)),
        Action::Wait
    );

    // A byte at 200 s pushes the deadline.
    rig.client.reads.push_back(data(b"x"));
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(200)), Action::Wait);
    assert_eq!(rig.deadline(), Some(secs(200) + IDLE_TIMEOUT));
    assert_eq!(rig.on_timer(secs(1) + IDLE_TIMEOUT), Action::Wait);

    // A wake-up that moves no byte does not.
    rig.ready(Side::Client, R);
    assert_eq!(rig.drive(secs(250)), Action::Wait);
    assert_eq!(rig.deadline(), Some(secs(200) + IDLE_TIMEOUT));

    assert_eq!(
        rig.on_timer(secs(200) + IDLE_TIMEOUT - Duration::from_nanos(1)),
        Action::Wait
    );
    assert_eq!(
        rig.on_timer(secs(200) + IDLE_TIMEOUT),
        close(
            CloseReason::IdleTimeout,
            Closing::Graceful,
            Closing::Graceful
        )
    );
    assert_eq!(rig.conn.phase(), Phase::Closed(CloseReason::IdleTimeout));
}

#[test]
fn relaying_bytes_read_into_a_blocked_sink_count_as_activity() {
    let mut rig = Rig::relaying();
    rig.client = FakeStream::new().reading([data(b"x")]);
    rig.upstream = FakeStream::new().writing([], Wr::WouldBlock);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);

    assert_eq!(rig.drive(secs(100)), Action::Wait);
    assert_eq!(rig.upstream.written, b"");
    assert_eq!(rig.deadline(), Some(secs(100) + IDLE_TIMEOUT));
    assert_eq!(rig.on_timer(IDLE_TIMEOUT), Action::Wait);
}

/// `first` sends its FIN at 10s; it is passed on at once and starts the FIN timer, which
/// fires `timeout` later. Bytes (`word`, at each second of `traffic_at`) keep flowing the other
/// way: they move the idle deadline, not this one. The timer then closes the connection as a
/// half-closed timeout; returns the rig.
fn fin_timer_fires_despite_traffic_the_other_way(
    first: Side,
    timeout: Duration,
    traffic_at: [u64; 3],
    word: &[u8],
) -> Rig {
    let other = match first {
        Side::Client => Side::Upstream,
        Side::Upstream => Side::Client,
    };
    let mut rig = Rig::relaying();
    *rig.stream(first) = FakeStream::new().reading([Rd::Eof]);
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);

    assert_eq!(rig.drive(secs(10)), Action::Wait);
    assert_eq!(
        rig.stream(other).shutdown_at,
        Some(0),
        "the FIN was passed on"
    );
    let fires = secs(10) + timeout;
    assert_eq!(rig.deadline(), Some(fires));

    for at in traffic_at {
        rig.stream(other).reads.push_back(data(word));
        rig.ready(other, R);
        assert_eq!(rig.drive(secs(at)), Action::Wait);
        assert_eq!(rig.deadline(), Some(fires));
    }
    assert_eq!(rig.stream(first).written, word.repeat(traffic_at.len()));

    assert_eq!(rig.on_timer(fires - Duration::from_nanos(1)), Action::Wait);
    assert_eq!(
        rig.on_timer(fires),
        close(
            CloseReason::HalfClosedTimeout,
            Closing::Graceful,
            Closing::Graceful
        )
    );
    rig
}

/// The client's FIN starts `client_fin_timeout`: bytes still flowing from the upstream move the
/// idle deadline, not this one.
#[test]
fn half_closed_timer_fires_after_first_fin_despite_traffic_the_other_way() {
    fin_timer_fires_despite_traffic_the_other_way(
        Side::Client,
        CLIENT_FIN_TIMEOUT,
        [30, 50, 69],
        b"tick",
    );
}

/// The upstream's FIN starts `server_fin_timeout`, not the client's: bytes still flowing from
/// the client move the idle deadline, not this one.
#[test]
fn half_closed_timer_after_upstream_fin_fires_at_server_fin_timeout() {
    assert_ne!(SERVER_FIN_TIMEOUT, CLIENT_FIN_TIMEOUT);
    let rig = fin_timer_fires_despite_traffic_the_other_way(
        Side::Upstream,
        SERVER_FIN_TIMEOUT,
        [15, 20, 29],
        b"tock",
    );
    assert_eq!(
        rig.conn.phase(),
        Phase::Closed(CloseReason::HalfClosedTimeout)
    );
}

/// Once both sides have sent FIN, bytes still held for a sink that takes nothing are the idle
/// timeout's business: a FIN timer counted from the first FIN could have run out already and
/// cut a reply still on its way (found in review). And the sink that loses bytes is reset, not
/// sent a FIN, so that it cannot take the cut stream for a whole one.
#[test]
fn half_closed_both_fins_leave_held_bytes_to_the_idle_timeout_and_reset_the_sink() {
    let mut rig = Rig::relaying();
    // The client ends first; the upstream sends its reply and ends long after both FIN
    // timeouts would have run from the client's FIN; the client takes nothing yet.
    rig.client = FakeStream::new()
        .reading([Rd::Eof])
        .writing([], Wr::WouldBlock);
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);
    assert_eq!(rig.drive(secs(10)), Action::Wait);
    assert_eq!(rig.deadline(), Some(secs(10) + CLIENT_FIN_TIMEOUT));

    let late = secs(10) + CLIENT_FIN_TIMEOUT - secs(1);
    assert!(late > secs(10) + SERVER_FIN_TIMEOUT);
    rig.upstream.reads.push_back(data(b"reply"));
    rig.upstream.reads.push_back(Rd::Eof);
    rig.ready(Side::Upstream, R);
    assert_eq!(rig.drive(late), Action::Wait);
    assert_eq!(rig.client.written, b"");
    assert_eq!(rig.deadline(), Some(late + IDLE_TIMEOUT));
    assert_eq!(rig.on_timer(late), Action::Wait, "nothing due yet");

    // The client takes the reply after all: the connection completes.
    rig.client.write_idle = ACCEPT_ALL;
    rig.ready(Side::Client, W);
    assert_eq!(
        rig.drive(late + secs(1)),
        close(CloseReason::Completed, Closing::Graceful, Closing::Graceful)
    );
    assert_eq!(rig.client.written, b"reply");
}

/// The idle timeout ends a connection whose sink stopped taking the bytes held for it: that
/// sink is reset (it lost them), the other side gets a plain close.
#[test]
fn idle_timeout_resets_the_side_whose_bytes_are_lost() {
    let mut rig = Rig::relaying();
    rig.client = FakeStream::new().writing([], Wr::WouldBlock);
    rig.upstream = FakeStream::new().reading([data(b"unread reply")]);
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.deadline(), Some(secs(1) + IDLE_TIMEOUT));
    assert_eq!(
        rig.on_timer(secs(1) + IDLE_TIMEOUT),
        close(CloseReason::IdleTimeout, Closing::Reset, Closing::Graceful)
    );
}

// ---- Abort and closed ----

#[test]
fn relaying_abort_resets_both_sides() {
    let mut rig = Rig::relaying();
    rig.client = FakeStream::new().reading([data(b"pending")]);
    rig.upstream = FakeStream::new().writing([], Wr::WouldBlock);
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(1)), Action::Wait);

    assert_eq!(
        rig.conn.abort(CloseReason::TunnelClosed),
        close(CloseReason::TunnelClosed, Closing::Reset, Closing::Reset)
    );
    assert_eq!(rig.conn.phase(), Phase::Closed(CloseReason::TunnelClosed));
    assert_eq!(rig.deadline(), None);
}

#[test]
fn closed_drive_and_timer_do_nothing() {
    let mut rig = Rig::relaying();
    rig.conn.abort(CloseReason::ProxyStopped);
    rig.client = FakeStream::new().reading([data(b"late")]);
    rig.ready(Side::Client, RW);
    rig.ready(Side::Upstream, RW);

    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!((rig.client.syscalls(), rig.upstream.syscalls()), (0, 0));
    assert_eq!(rig.on_timer(secs(1) + IDLE_TIMEOUT), Action::Wait);
    assert_eq!(rig.conn.phase(), Phase::Closed(CloseReason::ProxyStopped));
}

#[test]
fn connecting_failure_with_attempts_left_asks_for_another_backend() {
    let mut rig = Rig::with_attempts(3);
    let refused = io::Error::from(ErrorKind::ConnectionRefused);
    assert_eq!(
        rig.conn.on_connect_failed(&refused),
        try_another(CloseReason::ConnectRefused)
    );
    rig.conn.restart_connect(rig.t0 + secs(1));
    assert_eq!(rig.conn.phase(), Phase::Connecting);
    // The second attempt times out: one attempt is left, so it too asks for another backend.
    assert_eq!(
        rig.on_timer(secs(1) + CONNECT_TIMEOUT),
        Action::ConnectFailed(try_another(CloseReason::ConnectTimeout))
    );
    rig.conn.restart_connect(rig.t0 + secs(20));
    assert_eq!(
        rig.conn.on_connect_failed(&refused),
        gave_up(CloseReason::ConnectRefused),
        "the third failure is the last"
    );
}

/// porxy's own shortage is not retried on another backend: it would not help.
#[test]
fn connecting_out_of_descriptors_gives_up_at_once() {
    let mut rig = Rig::with_attempts(3);
    let emfile = io::Error::from_raw_os_error(libc::EMFILE);
    assert_eq!(
        rig.conn.on_connect_failed(&emfile),
        gave_up(CloseReason::LocalResource)
    );
}
