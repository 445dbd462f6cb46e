//! The one API the reactor drives every connection through: readiness is routed by socket
//! number the same way for a relayed and a fan-out connection, and each says when a connect
//! is to be checked, when to drive, and when to wait.

use std::time::Instant;

use super::fake::*;
use crate::conn::fanout::{FanConn, FanoutSettings};
use crate::conn::hold::Mode;
use crate::conn::machine::{AfterReady, Machine, SocketIx};
use crate::conn::{Action, Conn};
use crate::spec::Reply;

fn fan_machine(t0: Instant, connecting: &[bool]) -> Machine {
    let fan = FanoutSettings {
        reply: Reply::Primary,
        max_lag: 1 << 20,
        min_live: 1,
    };
    Machine::Fanout(Box::new(FanConn::new(
        t0,
        settings(Mode::Copy),
        fan,
        connecting,
    )))
}

#[test]
fn relay_connecting_checks_its_connect_on_the_upstreams_signal_only() {
    let t0 = Instant::now();
    let mut machine = Machine::Relay(Conn::new(t0, settings(Mode::Copy), 1));
    assert_eq!(
        machine.on_ready(SocketIx::Client, R),
        AfterReady::Wait,
        "the client's bytes wait for the upstream"
    );
    assert_eq!(
        machine.on_ready(SocketIx::Upstream(0), R),
        AfterReady::Wait,
        "readable alone says nothing of a connect"
    );
    assert_eq!(
        machine.on_ready(SocketIx::Upstream(0), W),
        AfterReady::CheckConnect(0, RW),
        "judged on all the upstream reported since the connect began"
    );
    assert!(machine.awaiting_upstream());
    assert!(!machine.can_travel(), "a connect in flight cannot travel");
    machine.on_connected(0, t0, None, &mut pools(1));
    assert_eq!(machine.relay_phase(), Some(crate::conn::Phase::Relaying));
    assert_eq!(machine.on_ready(SocketIx::Client, R), AfterReady::Drive);
    assert_eq!(
        machine.on_ready(SocketIx::Upstream(0), W),
        AfterReady::Drive
    );
    assert!(machine.can_travel());
    assert!(machine.take_departures().is_empty());
}

#[test]
fn fanout_checks_each_destinations_connect_apart() {
    let t0 = Instant::now();
    let mut machine = fan_machine(t0, &[true, true]);
    assert_eq!(
        machine.on_ready(SocketIx::Client, R),
        AfterReady::Drive,
        "client bytes go to the log while destinations connect"
    );
    assert_eq!(machine.on_ready(SocketIx::Upstream(1), R), AfterReady::Wait);
    assert_eq!(
        machine.on_ready(SocketIx::Upstream(1), W),
        AfterReady::CheckConnect(1, W),
        "judged on what this event reported"
    );
    assert!(machine.awaiting_upstream());
    assert!(!machine.can_travel());
    machine.on_connected(0, t0, None, &mut pools(1));
    machine.on_connected(1, t0, None, &mut pools(1));
    assert_eq!(
        machine.on_ready(SocketIx::Upstream(1), W),
        AfterReady::Drive
    );
    assert!(!machine.awaiting_upstream());
    assert!(machine.can_travel());
}

#[test]
fn a_destinations_failed_connect_is_a_departure_not_the_end() {
    let t0 = Instant::now();
    let mut machine = fan_machine(t0, &[true, true]);
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    assert_eq!(machine.on_connect_failed(1, &refused), Action::Wait);
    let departures = machine.take_departures();
    assert_eq!(departures.len(), 1);
    assert_eq!(departures[0].dest, 1);
    assert!(machine.take_departures().is_empty(), "taken once");
    // The primary's failure ends the connection, as a relayed one's would.
    assert!(matches!(
        machine.on_connect_failed(0, &refused),
        Action::Close { .. }
    ));
}

#[test]
fn a_relays_failed_connect_asks_the_reactor_what_next() {
    let t0 = Instant::now();
    let mut machine = Machine::Relay(Conn::new(t0, settings(Mode::Copy), 2));
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    assert_eq!(
        machine.on_connect_failed(0, &refused),
        Action::ConnectFailed(try_another(crate::conn::close::CloseReason::ConnectRefused))
    );
}

#[test]
fn both_kinds_drive_through_the_same_call() {
    let t0 = Instant::now();
    let mut pools = pools(1);
    // Relayed: upstream 0 gets the client's bytes.
    let mut relay = Machine::Relay(Conn::new(t0, settings(Mode::Copy), 1));
    relay.on_connected(0, t0, None, &mut pools);
    let mut client = FakeStream::new().reading([data(b"one"), Rd::WouldBlock]);
    let mut upstreams = [Some(FakeStream::new())];
    relay.on_ready(SocketIx::Client, R);
    relay.on_ready(SocketIx::Upstream(0), W);
    assert_eq!(
        relay.drive(&mut client, &mut upstreams, &mut pools, t0),
        Action::Wait
    );
    assert_eq!(upstreams[0].as_ref().unwrap().written, b"one");
    assert_eq!(relay.take_unreported().to_upstream, 3);

    // Fan-out: every open destination gets them.
    let mut fan = fan_machine(t0, &[true, true]);
    fan.on_connected(0, t0, None, &mut pools);
    fan.on_connected(1, t0, None, &mut pools);
    let mut client = FakeStream::new().reading([data(b"two"), Rd::WouldBlock]);
    let mut upstreams = [Some(FakeStream::new()), Some(FakeStream::new())];
    fan.on_ready(SocketIx::Client, R);
    for i in 0..2 {
        fan.on_ready(SocketIx::Upstream(i), W);
    }
    assert_eq!(
        fan.drive(&mut client, &mut upstreams, &mut pools, t0),
        Action::Wait
    );
    for upstream in &upstreams {
        assert_eq!(upstream.as_ref().unwrap().written, b"two");
    }
    let moved = fan.take_unreported();
    assert_eq!((moved.to_upstream, moved.per_upstream), (3, vec![3, 3]));

    // A relay with no upstream socket yet does nothing.
    let mut waiting = Machine::Relay(Conn::queued(t0, settings(Mode::Copy), 1));
    let mut none: [Option<FakeStream>; 1] = [None];
    let mut client = FakeStream::new().reading([data(b"x")]);
    waiting.on_ready(SocketIx::Client, R);
    assert_eq!(
        waiting.drive(&mut client, &mut none, &mut pools, t0),
        Action::Wait
    );
    assert_eq!(client.read_calls, 0);
}
