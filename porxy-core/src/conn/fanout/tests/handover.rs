//! Freezing a fan-out connection in one process and restoring it in another, with the same
//! sockets: each destination goes on from its own position, nothing lost or sent twice, each
//! FIN passed on once. The rig after the move has fresh peers: what they record is what
//! happens after it.

use std::time::{Duration, Instant};

use super::{pattern, Peer, Rig, CHUNK, MAX_LAG};
use crate::config::TunnelSettings;
use crate::conn::close::CloseReason;
use crate::conn::fanout::frozen::{FanState, FrozenPhase};
use crate::conn::fanout::{DestEnd, FanConn, FanoutSettings};
use crate::conn::hold::Pools;
use crate::conn::pipe::PipeState;
use crate::conn::Action;
use crate::spec::Reply;

/// The settings `Rig::with` uses.
fn rig_settings() -> TunnelSettings {
    TunnelSettings {
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(300),
        client_fin_timeout: Duration::from_secs(60),
        server_fin_timeout: Duration::from_secs(60),
        queue_timeout: Duration::from_secs(5),
        splice: false,
    }
}

/// Freezes `rig`'s connection at `t0 + at` and restores it there in a new rig, whose peers are
/// fresh (destinations that did not travel have none).
fn thaw(rig: &mut Rig, at: Duration) -> (FanState, Rig) {
    let state = rig
        .conn
        .freeze(&mut rig.pools, rig.t0 + at)
        .expect("no kernel pipe fails")
        .expect("a connection with every destination settled freezes");
    assert_eq!(rig.conn.closed(), Some(CloseReason::HandedOver));
    assert_eq!(
        rig.pools.buffers.lent(),
        0,
        "freezing gives the buffers back"
    );
    let fan = rig.conn.fanout_settings();
    state
        .check(&fan)
        .expect("a frozen state keeps its invariants");
    let mut pools = Pools::new(CHUNK, CHUNK, 0);
    let conn = FanConn::restored(rig.t0 + at, rig_settings(), fan, &state, &mut pools);
    let next = Rig {
        conn,
        client: Peer::default(),
        dests: state
            .dests
            .iter()
            .map(|d| (d.phase == FrozenPhase::Open).then(Peer::default))
            .collect(),
        pools,
        t0: rig.t0,
        departed: Vec::new(),
    };
    (state, next)
}

#[test]
fn frozen_with_a_lagging_mirror_its_bytes_travel_in_the_log() {
    let data = pattern(6 * CHUNK);
    let more = pattern(2 * CHUNK + 5);
    let mut rig = Rig::new(Reply::Primary, 3);
    // Mirror 2 takes three chunks, then stops: the log holds the rest for it.
    rig.dests[2] = Some(Peer {
        window: Some(3 * CHUNK),
        ..Peer::default()
    });
    rig.client = Peer::sending(&data);
    rig.run();
    assert_eq!(rig.dest(0).written, data);
    assert_eq!(rig.dest(2).written, &data[..3 * CHUNK]);

    let (state, mut next) = thaw(&mut rig, Duration::from_secs(3));
    assert_eq!(
        state.base,
        3 * CHUNK as u64,
        "the log starts at the laggard"
    );
    assert_eq!(
        state.log,
        &data[3 * CHUNK..],
        "what the laggard lacks, once"
    );
    let sent: Vec<u64> = state.dests.iter().map(|d| d.sent).collect();
    assert_eq!(sent, [6 * CHUNK as u64, 6 * CHUNK as u64, 3 * CHUNK as u64]);
    assert!(state.dests.iter().all(|d| d.phase == FrozenPhase::Open));
    assert_eq!(state.idle_for, Duration::from_secs(2));
    assert_eq!(state.half_closed_for, None);

    // After the move, the client sends the rest and ends.
    next.client = Peer::sending(&more);
    next.client.eof = true;
    next.run();
    assert_eq!(
        next.dest(0).written,
        more,
        "the primary: the new bytes only"
    );
    assert_eq!(next.dest(1).written, more);
    assert_eq!(
        next.dest(2).written,
        [&data[3 * CHUNK..], &more[..]].concat(),
        "the laggard: from where it was, nothing twice"
    );
    for i in 0..3 {
        assert!(next.dest(i).fin, "destination {i} got its FIN");
    }
}

#[test]
fn frozen_after_a_fin_went_out_the_fin_is_not_sent_again() {
    let data = pattern(3 * CHUNK);
    let mut rig = Rig::new(Reply::None, 2);
    rig.dests[1] = Some(Peer {
        window: Some(CHUNK),
        ..Peer::default()
    });
    rig.client = Peer::sending(&data);
    rig.client.eof = true;
    rig.run();
    assert!(rig.dest(0).fin, "destination 0 had everything and its FIN");
    assert!(!rig.dest(1).fin);

    let (state, mut next) = thaw(&mut rig, Duration::from_secs(1));
    assert!(state.client_eof);
    assert!(state.dests[0].fin_sent && !state.dests[1].fin_sent);
    assert!(state.half_closed_for.is_some());
    next.run();
    // Peer::shutdown_write panics on a second FIN to one peer; a fresh peer records any.
    assert!(
        !next.dest(0).fin,
        "the FIN went out before the move, not again"
    );
    assert!(next.dest(0).written.is_empty());
    assert_eq!(next.dest(1).written, &data[CHUNK..]);
    assert!(
        next.dest(1).fin,
        "the other one's FIN comes after its last byte"
    );
    assert_eq!(
        next.conn.closed(),
        None,
        "the destinations have not ended yet"
    );
    // Both end; the client then hears FIN (a one-way feed) and the connection completes.
    next.dest_mut(0).eof = true;
    next.dest_mut(1).eof = true;
    assert!(matches!(
        next.run(),
        Action::Close {
            reason: CloseReason::Completed,
            ..
        }
    ));
    assert!(next.client.fin);
}

#[test]
fn frozen_with_the_primarys_reply_in_flight_the_client_gets_it_first() {
    let mut rig = Rig::new(Reply::Primary, 2);
    rig.client = Peer::sending(b"request");
    rig.client.window = Some(0); // The client reads nothing for now.
    rig.dest_mut(0).inbound = b"reply, part 1".to_vec();
    rig.dest_mut(1).inbound = b"mirror chatter".to_vec();
    rig.run();
    assert!(rig.client.written.is_empty());

    let (state, mut next) = thaw(&mut rig, Duration::from_secs(1));
    assert_eq!(state.down.pending, b"reply, part 1");
    assert_eq!(state.down.state, PipeState::Open);
    assert!(!state.dests[0].eof);
    next.dest_mut(0).inbound = b", part 2".to_vec();
    next.dest_mut(0).eof = true;
    next.run();
    assert_eq!(next.client.written, b"reply, part 1, part 2");
    assert!(
        next.client.fin,
        "the primary's EOF passed on, after its bytes"
    );
    assert!(
        next.dest(0).written.is_empty(),
        "the request is not sent again"
    );
    assert!(next.dest(1).written.is_empty());
}

#[test]
fn a_mirror_dropped_before_the_move_does_not_come_back() {
    let data = pattern(20 * CHUNK);
    let mut rig = Rig::new(Reply::Primary, 3);
    rig.dests[2] = Some(Peer::stalled());
    rig.client = Peer::sending(&data);
    rig.run();
    assert_eq!(rig.departed[0].end, DestEnd::Lagged);

    let (state, mut next) = thaw(&mut rig, Duration::from_secs(1));
    assert_eq!(state.dests[2].phase, FrozenPhase::Gone);
    assert!(state.log.is_empty(), "nobody open lacks a byte");
    assert!(next.dests[2].is_none(), "no socket travels for it");
    next.client = Peer::sending(b"after");
    next.client.eof = true;
    next.run();
    assert_eq!(next.dest(0).written, b"after");
    assert_eq!(next.dest(1).written, b"after");
    assert!(
        next.departed.iter().all(|d| d.dest != 2),
        "it does not leave twice: {:?}",
        next.departed
    );
}

#[test]
fn a_connection_with_a_destination_connecting_does_not_freeze() {
    let t0 = Instant::now();
    let fan = FanoutSettings {
        reply: Reply::Primary,
        max_lag: MAX_LAG,
        min_live: 1,
    };
    let mut conn = FanConn::new(t0, rig_settings(), fan, &[true, true]);
    conn.on_connected(0);
    let mut pools = Pools::new(CHUNK, CHUNK, 0);
    assert!(conn.freeze(&mut pools, t0).unwrap().is_none());
    assert_eq!(conn.closed(), None, "nothing changed");
    conn.on_connected(1);
    assert!(conn.freeze(&mut pools, t0).unwrap().is_some());
}
