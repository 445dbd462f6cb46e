//! A relayed connection held to bandwidth limits: it reads no more than its grant, keeps the
//! source's readiness, asks to be woken when a quantum is due, and reads again then.

use std::time::Duration;

use super::fake::*;
use crate::conn::hold::Mode;
use crate::conn::throttle::Throttle;
use crate::conn::{Action, Side};

/// 64 KiB a second: a burst of 16 KiB (a quantum), then a quantum every 250 ms.
const RATE: u64 = 64 * 1024;
const QUANTUM: usize = 16 * 1024;

fn limited_down(rig: &Rig, per_second: u64) -> Box<Throttle> {
    Throttle::new(rig.t0, (None, Some(per_second)), (None, None)).expect("a limit")
}

fn throttled_reads_wait_for_their_grant(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    let throttle = limited_down(&rig, RATE);
    rig.conn.set_throttle(throttle);
    let stream = pattern(3 * QUANTUM + 100);
    rig.upstream.reads.push_back(Rd::Data(stream.clone()));
    rig.client.reads.push_back(data(b"up is not limited"));
    rig.ready(Side::Upstream, RW);
    rig.ready(Side::Client, RW);

    assert_eq!(rig.drive(Duration::ZERO), Action::Wait);
    assert_eq!(rig.client.written, stream[..QUANTUM], "the burst, no more");
    assert_eq!(rig.upstream.written, b"up is not limited");
    let due = rig.t0 + Duration::from_millis(250);
    assert_eq!(
        rig.conn.deadline(),
        Some(due),
        "woken when a quantum is due"
    );

    // Before then, nothing more is read, whatever wakes it.
    assert_eq!(rig.drive(Duration::from_millis(100)), Action::Wait);
    assert_eq!(rig.client.written.len(), QUANTUM);
    assert_eq!(rig.on_timer(Duration::from_millis(250)), Action::Again);
    // The upstream's readiness was kept: the drive reads without a new event.
    assert_eq!(rig.drive(Duration::from_millis(250)), Action::Wait);
    assert_eq!(rig.client.written, stream[..2 * QUANTUM]);
    assert_eq!(rig.on_timer(Duration::from_millis(500)), Action::Again);
    rig.drive(Duration::from_millis(500));
    assert_eq!(rig.on_timer(Duration::from_millis(750)), Action::Again);
    rig.drive(Duration::from_millis(750));
    assert_eq!(
        rig.client.written, stream,
        "every byte, in order, at the rate"
    );
}

fn an_idle_limited_connection_is_not_woken(mode: Mode) {
    let mut rig = Rig::relaying_on(mode);
    let throttle = limited_down(&rig, RATE);
    rig.conn.set_throttle(throttle);
    rig.upstream.reads.push_back(data(b"small"));
    rig.ready(Side::Upstream, RW);
    rig.ready(Side::Client, W);
    assert_eq!(rig.drive(Duration::ZERO), Action::Wait);
    assert_eq!(rig.client.written, b"small");
    let idle = rig.t0 + IDLE_TIMEOUT;
    assert_eq!(rig.conn.deadline(), Some(idle), "only the idle timeout");
}

on_both_paths!(
    throttled_reads_wait_for_their_grant,
    an_idle_limited_connection_is_not_woken,
);

/// Bytes 0, 1, ..., 250, 0, 1, ...: a misplaced byte shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
