//! How each strategy spreads connections over greeting backends.
//!
//! Round robin and least_conn with held connections are deterministic, so their shares are
//! asserted exactly; least_conn with short connections, random and hash are asserted within
//! stated tolerances, chosen several standard deviations wide so that a correct balancer fails
//! them about once in ten thousand runs.

use std::ops::RangeInclusive;

use porxy_core::{BackendChange, BackendState, Strategy};

use super::{count, greeters, hold, remotes, start_balanced, tally, wait_backend};
use crate::support::proxy::tunnel;

/// Round robin gives each backend its turn: with one pick per connection and no failures, 2,001
/// connections over three backends are exactly 667 each, whatever the interleaving of the four
/// client threads.
#[test]
fn round_robin_gives_equal_shares() {
    let backends = greeters(3);
    let (proxy, local) = start_balanced(&remotes(&backends), "");
    let counts = tally(local, 2001, 4);
    assert_eq!(
        counts,
        [667, 667, 667, 0],
        "connections per backend A, B, C"
    );

    let status = tunnel(&proxy.handle(), local);
    assert_eq!(
        status.strategy,
        Strategy::RoundRobin,
        "the default strategy"
    );
    let totals: Vec<u64> = status.backends.iter().map(|b| b.total).collect();
    assert_eq!(
        totals,
        [667, 667, 667],
        "status counts what the clients saw"
    );
}

/// Weights 3:1 give 3:1. (The smooth schedule makes it exact; the bound asked for is ±5%.)
#[test]
fn round_robin_follows_weights() {
    let backends = greeters(2);
    let r = remotes(&backends);
    let (proxy, local) = start_balanced(
        &[format!("{}*3", r[0]), r[1].clone()],
        "strategy=round_robin",
    );
    let counts = tally(local, 2000, 4);
    assert_eq!(counts, [1500, 500, 0, 0], "connections per backend A*3, B");

    let weights: Vec<u32> = tunnel(&proxy.handle(), local)
        .backends
        .iter()
        .map(|b| b.weight)
        .collect();
    assert_eq!(weights, [3, 1]);
}

/// While a backend is out of service, round robin takes the others in turn: with B drained,
/// A and C share the load evenly (±5%).
#[test]
fn round_robin_shares_the_turns_of_a_backend_out_of_service() {
    let backends = greeters(3);
    let (proxy, local) = start_balanced(&remotes(&backends), "");
    proxy
        .handle()
        .change_backend(local, backends[1].addr(), BackendChange::Drain)
        .unwrap();
    let counts = tally(local, 1000, 2);
    assert_eq!(counts[1], 0, "{counts:?}");
    for (name, n) in [("A", counts[0]), ("C", counts[2])] {
        assert!(
            (475..=525).contains(&n),
            "{name} got {n} of 1000 connections (475 to 525 expected): {counts:?}"
        );
    }
}

/// least_conn with held connections: even spread; when one backend loses connections, new ones
/// all go there until it is level with the others again.
#[test]
fn least_conn_fills_the_emptiest_backend() {
    let backends = greeters(3);
    let (proxy, local) = start_balanced(&remotes(&backends), "strategy=least_conn");
    let handle = proxy.handle();
    let mut held = hold(local, 30);
    assert_eq!(count(&held), [10, 10, 10, 0], "30 held connections, evenly");

    // Five of B's connections end.
    let mut kept = Vec::new();
    let mut ended = 0;
    for (index, stream) in held.drain(..) {
        if index == 1 && ended < 5 {
            ended += 1;
            drop(stream);
        } else {
            kept.push((index, stream));
        }
    }
    wait_backend(&handle, local, backends[1].addr(), "B to hold 5", |b| {
        b.open == 5
    });
    let refill = hold(local, 5);
    assert_eq!(
        count(&refill),
        [0, 5, 0, 0],
        "every new connection went to B"
    );
    let level = hold(local, 3);
    assert_eq!(count(&level), [1, 1, 1, 0], "level again: one each");
}

/// Balances `connections` short connections from four client threads over three backends,
/// with the tunnel `options`: each backend must get a count in `each`. Returns the strategy the
/// tunnel's status shows.
#[track_caller]
fn spread_of_short_connections(
    options: &str,
    connections: usize,
    each: RangeInclusive<usize>,
) -> Strategy {
    let backends = greeters(3);
    let (proxy, local) = start_balanced(&remotes(&backends), options);
    let counts = tally(local, connections, 4);
    for (name, n) in ["A", "B", "C"].iter().zip(counts) {
        assert!(
            each.contains(&n),
            "{name} got {n} of {connections} connections ({} to {} expected): {counts:?}",
            each.start(),
            each.end()
        );
    }
    tunnel(&proxy.handle(), local).strategy
}

/// least_conn over 2,000 short connections from four client threads: every backend within
/// ±10% of an even share (600 to 734 of 2,000 over three). Loads are mostly 0 or 1 and ties
/// go in turn, so it comes out near even; the bound leaves room for the interleaving.
#[test]
fn least_conn_spreads_short_connections_within_ten_percent() {
    assert_eq!(
        spread_of_short_connections("strategy=least_conn", 2000, 600..=734),
        Strategy::LeastConn
    );
}

/// least_conn counts connections per unit of weight: A*2 holds twice what B holds.
#[test]
fn least_conn_weighs_the_load() {
    let backends = greeters(2);
    let r = remotes(&backends);
    let (_proxy, local) = start_balanced(
        &[format!("{}*2", r[0]), r[1].clone()],
        "strategy=least_conn",
    );
    let held = hold(local, 30);
    assert_eq!(count(&held), [20, 10, 0, 0], "A*2 and B");
}

/// random over short connections: within ±10% of even. (A purely random pick: mean 1000,
/// standard deviation 26, so the bound is nearly 4 deviations wide; two choices only narrow it.)
#[test]
fn random_spreads_short_connections_within_ten_percent() {
    assert_eq!(
        spread_of_short_connections("strategy=random", 3000, 900..=1100),
        Strategy::Random,
        "the strategy in status"
    );
}

/// random draws its two candidates by weight, so weights hold for short connections too: A*3
/// and B over 2,000 connections, one client at a time, give A 1,400 to 1,750 (70% to 87.5%,
/// around 75% to 80%). Chance alone is a standard deviation of 19; the bound is wider because
/// the load comparison moves the share with the connections still open at each pick (80% with
/// one, 83% with two, in a simulation). Uniform draws, or comparing loads alone (as random
/// did), give 50% to 67% here.
#[test]
fn random_follows_weights_with_short_connections() {
    let backends = greeters(2);
    let r = remotes(&backends);
    let (_proxy, local) = start_balanced(&[format!("{}*3", r[0]), r[1].clone()], "strategy=random");
    let counts = tally(local, 2000, 1);
    assert!(
        (1400..=1750).contains(&counts[0]),
        "A*3 got {} of 2000 connections (1400 to 1750 expected): {counts:?}",
        counts[0]
    );
    assert_eq!(counts[0] + counts[1], 2000, "{counts:?}");
}

/// random is two random choices, the less loaded winning: held connections stay within ±5% of
/// even. One random choice would not (300 over 3: a standard deviation of 8 on 100).
#[test]
fn random_two_choices_keeps_held_connections_even() {
    let backends = greeters(3);
    let (_proxy, local) = start_balanced(&remotes(&backends), "strategy=random");
    let held = hold(local, 300);
    let counts = count(&held);
    for (name, n) in ["A", "B", "C"].iter().zip(counts) {
        assert!(
            (95..=105).contains(&n),
            "{name} holds {n} of 300 connections (95 to 105 expected): {counts:?}"
        );
    }
}

/// first sends everything to the first backend in service; draining it moves everything to the
/// next one.
#[test]
fn first_sends_everything_to_the_first_in_service() {
    let backends = greeters(3);
    let (proxy, local) = start_balanced(&remotes(&backends), "strategy=first");
    assert_eq!(tally(local, 300, 2), [300, 0, 0, 0], "all to A");

    let handle = proxy.handle();
    handle
        .change_backend(local, backends[0].addr(), BackendChange::Drain)
        .unwrap();
    assert_eq!(tally(local, 100, 2), [0, 100, 0, 0], "A drained: all to B");
    let status = tunnel(&handle, local);
    let states: Vec<BackendState> = status.backends.iter().map(|b| b.state).collect();
    assert_eq!(
        states,
        [BackendState::Draining, BackendState::Up, BackendState::Up]
    );
    assert_eq!(status.strategy, Strategy::First);
}
