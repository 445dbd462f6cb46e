//! Unit tests of the fan-out state machine, with model peers and no sockets.
//!
//! A [`Peer`] is the far end of one socket as the proxy sees it: bytes it has sent (to be
//! read), whether it has sent EOF or reset, how much more it will take (its receive window), and
//! everything written to it. Time is `t0 + Duration`; nothing sleeps.

use std::io::{self, ErrorKind};
use std::time::{Duration, Instant};

use super::{FanConn, FanoutSettings};
use crate::config::TunnelSettings;
use crate::conn::close::CloseReason;
use crate::conn::fanout::{Departure, DestEnd};
use crate::conn::hold::Pools;
use crate::conn::transport::Transport;
use crate::conn::{Action, Closing, Readiness};
use crate::spec::Reply;

mod handover;
mod model;

const CHUNK: usize = 1024;
const MAX_LAG: usize = 8 * CHUNK;

/// The far end of one socket.
#[derive(Default)]
struct Peer {
    /// Bytes it sent that the proxy has not read.
    inbound: Vec<u8>,
    /// It has sent EOF (after `inbound`).
    eof: bool,
    /// Reading or writing fails with a reset.
    reset: bool,
    /// Bytes it will still take; `None`: unlimited.
    window: Option<usize>,
    /// Everything written to it.
    written: Vec<u8>,
    /// The proxy shut down writing to it (FIN).
    fin: bool,
}

impl Peer {
    fn sending(bytes: &[u8]) -> Peer {
        Peer {
            inbound: bytes.to_vec(),
            ..Peer::default()
        }
    }

    fn stalled() -> Peer {
        Peer {
            window: Some(0),
            ..Peer::default()
        }
    }
}

impl Transport for Peer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reset {
            return Err(ErrorKind::ConnectionReset.into());
        }
        if self.inbound.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.inbound.len());
        buf[..n].copy_from_slice(&self.inbound[..n]);
        self.inbound.drain(..n);
        Ok(n)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        assert!(!self.fin, "write after FIN");
        if self.reset {
            return Err(ErrorKind::ConnectionReset.into());
        }
        let n = self.window.map_or(buf.len(), |w| w.min(buf.len()));
        if n == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        if let Some(w) = &mut self.window {
            *w -= n;
        }
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        assert!(!self.fin, "FIN twice");
        self.fin = true;
        Ok(())
    }

    fn short_read_drains(&self) -> bool {
        true
    }

    fn close_ends_stream(&self) -> bool {
        true
    }
}

fn settings() -> TunnelSettings {
    TunnelSettings {
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(300),
        client_fin_timeout: Duration::from_secs(60),
        server_fin_timeout: Duration::from_secs(60),
        queue_timeout: Duration::from_secs(5),
        splice: false,
    }
}

fn fan(reply: Reply, min_live: u32) -> FanoutSettings {
    FanoutSettings {
        reply,
        max_lag: MAX_LAG,
        min_live,
    }
}

const RW: Readiness = Readiness {
    readable: true,
    writable: true,
    failed: false,
};

/// A fan-out connection with its client and destinations, every destination connected.
struct Rig {
    conn: FanConn,
    client: Peer,
    dests: Vec<Option<Peer>>,
    pools: Pools,
    t0: Instant,
    departed: Vec<Departure>,
}

impl Rig {
    fn new(reply: Reply, dests: usize) -> Rig {
        Rig::with(reply, dests, 1)
    }

    fn with(reply: Reply, n: usize, min_live: u32) -> Rig {
        let t0 = Instant::now();
        let mut conn = FanConn::new(t0, settings(), fan(reply, min_live), &vec![true; n]);
        for i in 0..n {
            conn.on_connected(i);
            conn.on_dest_ready(i, RW);
        }
        conn.on_client_ready(RW);
        Rig {
            conn,
            client: Peer::default(),
            dests: (0..n).map(|_| Some(Peer::default())).collect(),
            pools: Pools::new(CHUNK, CHUNK, 0),
            t0,
            departed: Vec::new(),
        }
    }

    /// Drives until a drive changes nothing (bounded), as the reactor would on repeated
    /// readiness; returns the last action.
    fn run(&mut self) -> Action {
        let mut last = None;
        for _ in 0..10_000 {
            let before = self.fingerprint();
            let action = self.conn.drive(
                &mut self.client,
                &mut self.dests,
                &mut self.pools,
                self.t0 + Duration::from_secs(1),
            );
            for d in self.conn.take_departures() {
                self.dests[d.dest] = None; // The reactor closes its socket.
                self.departed.push(d);
            }
            if matches!(action, Action::Close { .. }) {
                return action;
            }
            // Readiness comes again, as epoll would report after the peers moved.
            self.conn.on_client_ready(RW);
            for i in 0..self.dests.len() {
                if self.dests[i].is_some() {
                    self.conn.on_dest_ready(i, RW);
                }
            }
            if action != Action::Again && self.fingerprint() == before && last == Some(action) {
                return action;
            }
            last = Some(action);
        }
        panic!("the connection never settled");
    }

    /// What a drive can change, to tell when it has stopped changing anything.
    fn fingerprint(&self) -> Vec<usize> {
        let mut f = vec![
            self.client.inbound.len(),
            self.client.written.len(),
            usize::from(self.client.fin),
            self.departed.len(),
        ];
        for d in self.dests.iter().flatten() {
            f.extend([d.inbound.len(), d.written.len(), usize::from(d.fin)]);
        }
        f
    }

    fn dest(&self, i: usize) -> &Peer {
        self.dests[i].as_ref().expect("destination still connected")
    }

    fn dest_mut(&mut self, i: usize) -> &mut Peer {
        self.dests[i].as_mut().expect("destination still connected")
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn every_destination_gets_every_byte_then_fin() {
    let data = pattern(10 * CHUNK + 17);
    let mut rig = Rig::new(Reply::Primary, 3);
    rig.client = Peer::sending(&data);
    rig.client.eof = true;
    rig.run();
    for i in 0..3 {
        assert_eq!(rig.dest(i).written, data, "destination {i}");
        assert!(rig.dest(i).fin, "destination {i} got FIN");
    }
    assert!(rig.conn.held() <= CHUNK, "held {}", rig.conn.held());
}

#[test]
fn a_proxy_header_goes_to_the_destinations_that_get_one_and_only_to_them() {
    let mut rig = Rig::new(Reply::Primary, 3);
    let opened = crate::conn::opening::Opened {
        early: b"early;".to_vec(),
        client_ready: RW,
        ..Default::default()
    };
    let gets = [true, false, true];
    rig.conn = FanConn::opened(
        rig.t0,
        settings(),
        fan(Reply::Primary, 1),
        &[true; 3],
        opened,
        Some((b"HDR;", &gets)),
        &mut rig.pools,
    );
    for i in 0..3 {
        rig.conn.on_connected(i);
        rig.conn.on_dest_ready(i, RW);
    }
    let data = pattern(3 * CHUNK + 5);
    rig.client = Peer::sending(&data);
    rig.client.eof = true;
    rig.run();
    let with_header = [b"HDR;early;".as_slice(), &data].concat();
    let without = [b"early;".as_slice(), &data].concat();
    assert_eq!(rig.dest(0).written, with_header);
    assert_eq!(rig.dest(1).written, without);
    assert_eq!(rig.dest(2).written, with_header);
    // The header is the proxy's, not the client's: the client's bytes are counted without it,
    // each destination's with what it was sent.
    let ((from_client, _), per_dest) = rig.conn.take_unreported();
    assert_eq!(from_client, without.len() as u64);
    let (with, bare) = (with_header.len() as u64, without.len() as u64);
    assert_eq!(per_dest, [with, bare, with]);
}

#[test]
fn primary_replies_reach_the_client_and_mirror_replies_do_not() {
    let mut rig = Rig::new(Reply::Primary, 2);
    rig.client = Peer::sending(b"request");
    rig.client.eof = true;
    rig.dest_mut(0).inbound = b"primary answer".to_vec();
    rig.dest_mut(0).eof = true;
    rig.dest_mut(1).inbound = b"mirror chatter".to_vec();
    rig.dest_mut(1).eof = true;
    let action = rig.run();
    assert_eq!(rig.client.written, b"primary answer");
    assert!(rig.client.fin, "the primary's EOF is passed on");
    assert_eq!(
        action,
        Action::Close {
            reason: CloseReason::Completed,
            client: Closing::Graceful,
            upstream: Closing::Graceful,
        }
    );
    let ends: Vec<DestEnd> = rig.departed.iter().map(|d| d.end).collect();
    assert_eq!(ends, [DestEnd::Finished, DestEnd::Finished]);
}

#[test]
fn one_way_feed_discards_every_reply_and_ends_after_all_destinations() {
    let mut rig = Rig::new(Reply::None, 2);
    rig.client = Peer::sending(b"feed");
    rig.client.eof = true;
    rig.dest_mut(0).inbound = b"ack".to_vec();
    let action = rig.run();
    assert!(rig.client.written.is_empty(), "nothing reaches the client");
    assert_eq!(action, Action::Wait, "destinations have not closed yet");
    rig.dest_mut(0).eof = true;
    rig.dest_mut(1).eof = true;
    let action = rig.run();
    assert!(
        rig.client.fin,
        "the client hears FIN once every destination is done"
    );
    assert!(matches!(
        action,
        Action::Close {
            reason: CloseReason::Completed,
            ..
        }
    ));
}

#[test]
fn a_stalled_mirror_is_dropped_past_max_lag_and_the_rest_go_on() {
    let data = pattern(40 * CHUNK);
    let mut rig = Rig::new(Reply::Primary, 3);
    rig.dests[2] = Some(Peer::stalled());
    rig.client = Peer::sending(&data);
    rig.client.eof = true;
    rig.run();
    assert_eq!(
        rig.departed.first().map(|d| (d.dest, d.end, d.closing)),
        Some((2, DestEnd::Lagged, Closing::Reset)),
        "the stalled mirror left first, with a reset"
    );
    for i in 0..2 {
        assert_eq!(rig.dest(i).written, data, "destination {i} got everything");
    }
    assert!(rig.conn.held() <= CHUNK);
}

#[test]
fn memory_stays_within_max_lag_while_a_mirror_lags() {
    let mut rig = Rig::new(Reply::None, 2);
    // The mirror takes a little at a time: it falls behind, but slowly.
    rig.dests[1] = Some(Peer {
        window: Some(4 * CHUNK),
        ..Peer::default()
    });
    let mut most = 0;
    for _ in 0..20 {
        rig.client.inbound.extend(pattern(CHUNK));
        rig.run();
        most = most.max(rig.conn.held());
    }
    assert!(
        most <= MAX_LAG + 2 * CHUNK,
        "held at most {most} bytes with max_lag {MAX_LAG}"
    );
    assert_eq!(
        rig.departed
            .iter()
            .map(|d| (d.dest, d.end))
            .collect::<Vec<_>>(),
        [(1, DestEnd::Lagged)]
    );
    assert_eq!(rig.dest(0).written.len(), 20 * CHUNK);
}

#[test]
fn a_slow_primary_holds_the_client_back_instead_of_being_dropped() {
    let mut rig = Rig::new(Reply::Primary, 2);
    rig.dests[0] = Some(Peer::stalled());
    rig.client = Peer::sending(&pattern(100 * CHUNK));
    rig.run();
    assert!(
        rig.departed.is_empty(),
        "nobody dropped: {:?}",
        rig.departed
    );
    assert!(
        rig.client.inbound.len() >= 98 * CHUNK,
        "the client was read at most a buffer ahead of the primary"
    );
    assert_eq!(rig.conn.closed(), None);
    // The primary takes everything now: all bytes flow to both.
    rig.dest_mut(0).window = None;
    rig.client.eof = true;
    rig.run();
    assert_eq!(rig.dest(0).written.len(), 100 * CHUNK);
    assert_eq!(rig.dest(1).written.len(), 100 * CHUNK);
}

#[test]
fn a_failing_mirror_leaves_alone() {
    let mut rig = Rig::new(Reply::Primary, 3);
    rig.dest_mut(1).reset = true;
    rig.client = Peer::sending(b"hello");
    rig.client.eof = true;
    rig.run();
    assert_eq!(
        rig.departed.first().map(|d| (d.dest, d.end, d.closing)),
        Some((1, DestEnd::Failed, Closing::Reset))
    );
    assert_eq!(rig.dest(0).written, b"hello");
    assert_eq!(rig.dest(2).written, b"hello");
    assert_eq!(rig.conn.closed(), None, "the client goes on");
}

#[test]
fn a_failing_primary_resets_the_client() {
    let mut rig = Rig::new(Reply::Primary, 2);
    rig.dest_mut(0).reset = true;
    rig.client = Peer::sending(b"hello");
    let action = rig.run();
    assert_eq!(
        action,
        Action::Close {
            reason: CloseReason::UpstreamReset,
            client: Closing::Reset,
            upstream: Closing::Reset,
        }
    );
}

#[test]
fn a_client_reset_resets_every_destination() {
    let mut rig = Rig::new(Reply::None, 2);
    rig.client.reset = true;
    let action = rig.run();
    assert_eq!(
        action,
        Action::Close {
            reason: CloseReason::ClientReset,
            client: Closing::Graceful,
            upstream: Closing::Reset,
        }
    );
}

#[test]
fn min_live_ends_the_feed_when_too_few_destinations_are_left() {
    let mut rig = Rig::with(Reply::None, 3, 2);
    rig.dest_mut(0).reset = true;
    rig.client = Peer::sending(b"x");
    assert_eq!(rig.run(), Action::Wait, "two of three left: goes on");
    rig.dest_mut(1).reset = true;
    rig.client.inbound = b"y".to_vec();
    assert!(matches!(
        rig.run(),
        Action::Close {
            reason: CloseReason::UpstreamReset,
            client: Closing::Reset,
            ..
        }
    ));
}

#[test]
fn a_mirror_that_cannot_connect_is_dropped_and_a_primary_that_cannot_resets() {
    let t0 = Instant::now();
    let (settings, fan) = (settings(), fan(Reply::Primary, 1));
    let mut conn = FanConn::new(t0, settings, fan, &[true, true]);
    conn.on_connected(0);
    assert_eq!(conn.deadline(), Some(t0 + Duration::from_secs(5)));
    assert_eq!(conn.on_timer(t0 + Duration::from_secs(5)), Action::Wait);
    assert_eq!(
        conn.take_departures()
            .iter()
            .map(|d| d.end)
            .collect::<Vec<_>>(),
        [DestEnd::ConnectFailed(CloseReason::ConnectTimeout)]
    );
    assert_eq!(conn.closed(), None);

    let mut conn = FanConn::new(t0, settings, fan, &[true, true]);
    let refused = io::Error::from(ErrorKind::ConnectionRefused);
    assert_eq!(
        conn.on_connect_failed(0, &refused),
        Action::Close {
            reason: CloseReason::ConnectRefused,
            client: Closing::Reset,
            upstream: Closing::Reset,
        }
    );
}

#[test]
fn a_timeout_resets_a_destination_that_has_not_had_everything() {
    let mut rig = Rig::new(Reply::Primary, 2);
    rig.dests[1] = Some(Peer::stalled());
    rig.client = Peer::sending(b"request");
    rig.client.eof = true;
    rig.dest_mut(0).inbound = b"answer".to_vec();
    rig.dest_mut(0).eof = true;
    rig.run();
    assert_eq!(rig.client.written, b"answer");
    // The client and the primary are done: only the stalled mirror is left, which the idle
    // timeout ends (no FIN timer once both sides have sent theirs).
    let at = rig.conn.deadline().expect("the idle deadline");
    let action = rig.conn.on_timer(at);
    assert_eq!(
        action,
        Action::Close {
            reason: CloseReason::IdleTimeout,
            client: Closing::Graceful,
            upstream: Closing::Graceful,
        }
    );
    let cut: Vec<(usize, DestEnd, Closing)> = rig
        .conn
        .take_departures()
        .iter()
        .map(|d| (d.dest, d.end, d.closing))
        .collect();
    assert_eq!(cut, [(1, DestEnd::CutShort, Closing::Reset)]);
}

/// With `reply=primary`, the client's FIN starts `client_fin_timeout` even when a mirror has
/// sent its FIN: a mirror's replies are thrown away, so its FIN says nothing about what the
/// client waits for (found in review: the shorter server timeout applied).
#[test]
fn a_mirror_fin_does_not_shorten_the_client_fin_timeout() {
    let t0 = Instant::now();
    let mut settings = settings();
    settings.client_fin_timeout = Duration::from_secs(60);
    settings.server_fin_timeout = Duration::from_secs(5);
    let mut rig = Rig::new(Reply::Primary, 2);
    rig.conn = FanConn::new(t0, settings, fan(Reply::Primary, 1), &[true, true]);
    rig.t0 = t0;
    for i in 0..2 {
        rig.conn.on_connected(i);
        rig.conn.on_dest_ready(i, RW);
    }
    rig.conn.on_client_ready(RW);
    rig.client = Peer::sending(b"request");
    rig.client.eof = true;
    rig.dest_mut(1).eof = true; // The mirror ends at once.
    rig.run();
    assert!(!rig.client.fin, "the primary has not replied yet");
    let deadline = rig.conn.deadline().expect("the half-closed deadline");
    assert_eq!(
        deadline.duration_since(t0),
        Duration::from_secs(1 + 60),
        "client_fin_timeout from the client's FIN"
    );
}
